# Selection check: train one adapter per arm (the top-ranked rows, as many random rows, the
# bottom rows, the whole pool) and count the games each wins on the held-out eval rows,
# against the base model. Not part of `rule all` (it costs several trainings); ask for
# {results}/{game}/{role}/selection.parquet.
rule selection_arm:
    input:
        train=rules.tokenize.output.train,
        scores=arm_scores,
        prepared=prepared_data,
    output:
        selection_path("selected.json"),
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/selection/{{arm}}/selected.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/selection/{{arm}}/selected.tsv"
    resources:
        runtime=15,
    params:
        seed=config["seed"],
        code=code("selection_arm.py"),
    script:
        "../scripts/selection_arm.py"


# train_lora's settings (the same params), on the arm's rows, from the base model.
rule train_arm:
    input:
        train=rules.tokenize.output.train,
        tokenizer=rules.tokenize.output.tokenizer,
        model=model_input,
        selected=rules.selection_arm.output[0],
        prepared=prepared_data,
    output:
        adapter=selection_adapter(selection_path("adapter")),
        metrics=selection_path("metrics.parquet"),
        summary=selection_path("summary.json"),
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/selection/{{arm}}/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/selection/{{arm}}/train.tsv"
    wildcard_constraints:
        arm="(?!base$).+",
    threads: MAX_THREADS
    resources:
        runtime=240,
    params:
        model=config_section("model"),
        lora=config_section("lora"),
        train=config_section("train"),
        max_length=config["tokenize"]["max_length"],
        seed=config["seed"],
        compute=config_section("compute"),
        budget=SELECTION["budget"],
        code=code("train_arm.py"),
    script:
        "../scripts/train_arm.py"


# Games won (taboo x WordGuesser) and the eval loss on the held-out rows; `base` is the
# base model alone.
rule evaluate_arm:
    input:
        eval=rules.prepare_data.output.eval,
        eval_tokens=rules.tokenize.output.eval,
        tokenizer=rules.tokenize.output.tokenizer,
        model=model_input,
        adapter=arm_adapter,
        prepared=prepared_data,
    output:
        rows=selection_path("eval.parquet"),
        summary=selection_path("eval.json"),
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/selection/{{arm}}/evaluate.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/selection/{{arm}}/evaluate.tsv"
    threads: MAX_THREADS
    resources:
        runtime=60,
    params:
        model=config_section("model"),
        evaluation=canonical(
            {key: SELECTION[key] for key in ("max_new_tokens", "batch_size")}
        ),
        loss_reduction=config["attribution"]["loss_reduction"],
        code=code("evaluate_arm.py"),
    script:
        "../scripts/evaluate_arm.py"


rule selection:
    input:
        summaries=selection_inputs("summary.json", trained_only=True),
        evaluations=selection_inputs("eval.json"),
        rows=selection_inputs("eval.parquet"),
        data_summary=rules.prepare_data.output.summary,
        prepared=prepared_data,
    output:
        table=f"{RESULTS}/{{game}}/{{role}}/selection.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/selection.md",
        html=report(
            f"{RESULTS}/{{game}}/{{role}}/selection.html",
            caption="../report/selection.rst",
            category="Selection",
            labels={"game": "{game}", "role": "{role}", "file": "summary"},
        ),
        plot=report(
            f"{RESULTS}/{{game}}/{{role}}/selection.png",
            caption="../report/selection.rst",
            category="Selection",
            labels={"game": "{game}", "role": "{role}", "file": "plot"},
        ),
    log:
        log_path("selection"),
    benchmark:
        benchmark_path("selection")
    resources:
        runtime=15,
    params:
        arms=ARMS,
        settings=canonical(
            {
                key: SELECTION[key]
                for key in ("sizes", "kinds", "random_seeds", "random_overlap")
            }
        ),
        rankings=SELECTION_RANKINGS,
        code=code("selection_report.py"),
    script:
        "../scripts/selection_report.py"
