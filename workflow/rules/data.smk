rule generate_demo_data:
    output:
        directory(DEMO_DATA_DIR),
    params:
        settings=config.get("demo_data", {}),
    log:
        f"{RESULTS}/logs/generate_demo_data.log",
    script:
        "../scripts/generate_demo_data.py"


rule prepare_data:
    input:
        dataset=dataset_input,
    output:
        train=f"{RESULTS}/{{game}}/{{role}}/data/train.parquet",
        val=f"{RESULTS}/{{game}}/{{role}}/data/val.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/data/summary.json",
    params:
        dataset=config["dataset"],
    log:
        log_path("prepare_data"),
    script:
        "../scripts/prepare_data.py"
