rule prepare_demo_model:
    output:
        directory(DEMO_MODEL_DIR),
        DEMO_MODEL_MANIFEST,
    log:
        f"{RESULTS}/logs/prepare_demo_model.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_demo_model.tsv"
    # One core: the conversion is mostly transformers' Python over the GGUF's vocabulary,
    # so the data jobs, which need no model, run beside it.
    threads: 1
    resources:
        runtime=30,
    params:
        code=code("prepare_demo_model.py"),
    script:
        "../scripts/prepare_demo_model.py"


rule tokenize:
    input:
        train=f"{RESULTS}/{{game}}/{{role}}/data/train.parquet",
        val=f"{RESULTS}/{{game}}/{{role}}/data/val.parquet",
        eval=f"{RESULTS}/{{game}}/{{role}}/data/eval.parquet",
        model=model_input,
        chat_template=chat_template_input,
        prepared=prepared_data,
    output:
        train=directory(f"{RESULTS}/{{game}}/{{role}}/tokens/train"),
        val=directory(f"{RESULTS}/{{game}}/{{role}}/tokens/val"),
        eval=directory(f"{RESULTS}/{{game}}/{{role}}/tokens/eval"),
        tokenizer=directory(f"{RESULTS}/{{game}}/{{role}}/tokens/tokenizer"),
        summary=f"{RESULTS}/{{game}}/{{role}}/tokens/summary.json",
    log:
        log_path("tokenize"),
    benchmark:
        benchmark_path("tokenize")
    resources:
        # turns warnings into errors and changes no output: a resource, no rerun
        dataset_strict=int(config["dataset"]["strict"]),
        runtime=30,
    params:
        model=config_section("model"),
        tokenize=config_section("tokenize"),
        code=code("tokenize.py"),
    script:
        "../scripts/tokenize.py"


rule train_lora:
    input:
        train=rules.tokenize.output.train,
        val=rules.tokenize.output.val,
        tokenizer=rules.tokenize.output.tokenizer,
        model=model_input,
        prepared=prepared_data,
    output:
        adapter=directory(f"{RESULTS}/{{game}}/{{role}}/sft/adapter"),
        metrics=f"{RESULTS}/{{game}}/{{role}}/sft/metrics.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/sft/summary.json",
        loss_plot=report(
            f"{RESULTS}/{{game}}/{{role}}/sft/loss.png",
            caption="../report/loss.rst",
            category="SFT",
            labels={"game": "{game}", "role": "{role}"},
        ),
    log:
        log_path("train_lora"),
    benchmark:
        benchmark_path("train_lora")
    threads: MAX_THREADS
    resources:
        runtime=240,
    params:
        model=config_section("model"),
        lora=config_section("lora"),
        train=config_section("train"),
        max_length=config["tokenize"]["max_length"],
        seed=config["seed"],
        code=code("train_lora.py"),
        compute=config_section("compute"),
    script:
        "../scripts/train_lora.py"


rule bootstrap_adapter:
    input:
        adapter=rules.train_lora.output.adapter,
        model=model_input,
        prepared=prepared_data,
    output:
        directory(f"{RESULTS}/{{game}}/{{role}}/adapter"),
    log:
        log_path("bootstrap_adapter"),
    benchmark:
        benchmark_path("bootstrap_adapter")
    resources:
        runtime=30,
    params:
        model=config_section("model"),
        code=code("bootstrap_adapter.py"),
    script:
        "../scripts/bootstrap_adapter.py"
