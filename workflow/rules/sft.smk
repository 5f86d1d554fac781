rule prepare_demo_model:
    output:
        directory(DEMO_MODEL_DIR),
    threads: MAX_THREADS
    log:
        f"{RESULTS}/logs/prepare_demo_model.log",
    resources:
        mem_mb=6000,
    script:
        "../scripts/prepare_demo_model.py"


rule tokenize:
    input:
        train=f"{RESULTS}/{{game}}/{{role}}/data/train.parquet",
        val=f"{RESULTS}/{{game}}/{{role}}/data/val.parquet",
        model=model_input,
    output:
        train=directory(f"{RESULTS}/{{game}}/{{role}}/tokens/train"),
        val=directory(f"{RESULTS}/{{game}}/{{role}}/tokens/val"),
        tokenizer=directory(f"{RESULTS}/{{game}}/{{role}}/tokens/tokenizer"),
        summary=f"{RESULTS}/{{game}}/{{role}}/tokens/summary.json",
    params:
        model=config["model"],
        tokenize=config["tokenize"],
    log:
        log_path("tokenize"),
    script:
        "../scripts/tokenize.py"


rule train_lora:
    input:
        train=rules.tokenize.output.train,
        val=rules.tokenize.output.val,
        tokenizer=rules.tokenize.output.tokenizer,
        model=model_input,
    output:
        adapter=directory(f"{RESULTS}/{{game}}/{{role}}/sft/adapter"),
        metrics=f"{RESULTS}/{{game}}/{{role}}/sft/metrics.parquet",
        loss_plot=report(
            f"{RESULTS}/{{game}}/{{role}}/sft/loss.png",
            caption="../report/loss.rst",
            category="SFT",
            labels={"game": "{game}", "role": "{role}"},
        ),
    params:
        model=config["model"],
        lora=config["lora"],
        train=config["train"],
        max_length=config["tokenize"]["max_length"],
        seed=config["seed"],
    threads: MAX_THREADS
    log:
        log_path("train_lora"),
    resources:
        mem_mb=8000,
    script:
        "../scripts/train_lora.py"


rule bootstrap_adapter:
    input:
        adapter=rules.train_lora.output.adapter,
        model=model_input,
    output:
        directory(f"{RESULTS}/{{game}}/{{role}}/adapter"),
    params:
        model=config["model"],
    log:
        log_path("bootstrap_adapter"),
    script:
        "../scripts/bootstrap_adapter.py"
