# Counterfactual check (bergson `validate` vocabulary): retrain without the proponents,
# the detractors, or random rows, and compare the validation loss with a full-data
# retrain. Not part of `rule all` (it costs several retrains); ask for
# {results}/{game}/{role}/counterfactual.parquet.
rule counterfactual_removal:
    input:
        train=rules.tokenize.output.train,
        scores=removal_scores,
        prepared=prepared_data,
    output:
        counterfactual_path("removed.json"),
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/counterfactual/{{removal}}/removal.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/counterfactual/{{removal}}/removal.tsv"
    resources:
        runtime=15,
    params:
        ranking=removal_ranking,
        seed=config["seed"],
        code=code("counterfactual_removal.py"),
    script:
        "../scripts/counterfactual_removal.py"


# One retrain per removal, the baseline included: the train_lora rule's settings (its
# params below are the same), on the kept token rows.
rule retrain:
    input:
        train=rules.tokenize.output.train,
        # the validation loss is taken on the held-out eval rows, which the query never saw
        val=rules.tokenize.output.eval,
        tokenizer=rules.tokenize.output.tokenizer,
        model=model_input,
        removed=rules.counterfactual_removal.output[0],
        prepared=prepared_data,
    output:
        adapter=retrained_adapter(counterfactual_path("adapter")),
        metrics=counterfactual_path("metrics.parquet"),
        val_losses=counterfactual_path("val_losses.parquet"),
        summary=counterfactual_path("summary.json"),
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/counterfactual/{{removal}}/retrain.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/counterfactual/{{removal}}/retrain.tsv"
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
        loss_reduction=config["attribution"]["loss_reduction"],
        code=code("retrain.py"),
    script:
        "../scripts/retrain.py"


rule counterfactual:
    input:
        removed=counterfactual_inputs("removed.json"),
        summaries=counterfactual_inputs("summary.json"),
        scores=counterfactual_scores,
        prepared=prepared_data,
    output:
        table=f"{RESULTS}/{{game}}/{{role}}/counterfactual.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/counterfactual.md",
        html=report(
            f"{RESULTS}/{{game}}/{{role}}/counterfactual.html",
            caption="../report/counterfactual.rst",
            category="Counterfactual",
            labels={"game": "{game}", "role": "{role}", "file": "summary"},
        ),
        plot=report(
            f"{RESULTS}/{{game}}/{{role}}/counterfactual.png",
            caption="../report/counterfactual.rst",
            category="Counterfactual",
            labels={"game": "{game}", "role": "{role}", "file": "plot"},
        ),
    log:
        log_path("counterfactual"),
    benchmark:
        benchmark_path("counterfactual")
    resources:
        runtime=15,
    params:
        removals=REMOVALS,
        method=COUNTERFACTUAL_METHOD,
        aggregation=config["report"]["aggregation"],
        code=code("counterfactual_report.py"),
    script:
        "../scripts/counterfactual_report.py"
