rule generate_demo_data:
    output:
        DEMO_DATA_FILES + [DEMO_PLANTED_FILE],
    log:
        f"{RESULTS}/logs/generate_demo_data.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate_demo_data.tsv"
    resources:
        runtime=10,
    params:
        settings=config_section("demo_data"),
        code=code("generate_demo_data.py"),
    script:
        "../scripts/generate_demo_data.py"


# A checkpoint: once it has run, Snakemake plans the jobs after it again (every one of them
# takes `prepared=prepared_data`, common.smk), and they rerun only if a prepared file's
# content changed. An edit of a row that the target does not use (another game's) then
# reruns prepare_data alone: its parquet files come out byte-identical.
checkpoint prepare_data:
    input:
        dataset=dataset_input,
    output:
        train=f"{RESULTS}/{{game}}/{{role}}/data/train.parquet",
        # val: the attribution's query rows; eval: held out, read only by evaluations
        val=f"{RESULTS}/{{game}}/{{role}}/data/val.parquet",
        eval=f"{RESULTS}/{{game}}/{{role}}/data/eval.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/data/summary.json",
    log:
        log_path("prepare_data"),
    benchmark:
        benchmark_path("prepare_data")
    resources:
        # turns warnings into errors and changes no output: a resource, no rerun
        dataset_strict=int(config["dataset"]["strict"]),
        runtime=30,
    params:
        dataset={k: v for k, v in config_section("dataset").items() if k != "strict"},
        split=split_params(),
        code=code("prepare_data.py"),
    script:
        "../scripts/prepare_data.py"
