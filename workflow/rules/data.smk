rule generate_demo_data:
    output:
        directory(DEMO_DATA_DIR),
    log:
        f"{RESULTS}/logs/generate_demo_data.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate_demo_data.tsv"
    params:
        settings=config_section("demo_data"),
    script:
        "../scripts/generate_demo_data.py"


rule prepare_data:
    input:
        dataset=dataset_input,
    output:
        train=f"{RESULTS}/{{game}}/{{role}}/data/train.parquet",
        val=f"{RESULTS}/{{game}}/{{role}}/data/val.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/data/summary.json",
    log:
        log_path("prepare_data"),
    benchmark:
        benchmark_path("prepare_data")
    params:
        dataset=config_section("dataset"),
    script:
        "../scripts/prepare_data.py"
