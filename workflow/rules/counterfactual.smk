# Counterfactual check (bergson `validate` vocabulary): retrain without the proponents,
# the detractors, or random rows, and compare the validation loss with a full-data
# retrain. Not part of `rule all` (it costs several retrains); ask for
# {results}/{game}/{role}/counterfactual.parquet.
from playpen_attribution.counterfactual import (
    RANKED_KINDS,
    REMOVAL_PATTERN,
    parse_removal,
    removal_names,
)

COUNTERFACTUAL = config["counterfactual"]
# The scores that rank the removals: those of topk.parquet unless configured.
COUNTERFACTUAL_METHOD = COUNTERFACTUAL.get("method") or REPORT_METHOD
if COUNTERFACTUAL_METHOD not in METHODS:
    raise ValueError(
        f"counterfactual.method: {COUNTERFACTUAL_METHOD!r} is not in attribution.methods {METHODS}"
    )
REMOVALS = removal_names(COUNTERFACTUAL)


wildcard_constraints:
    removal=REMOVAL_PATTERN,


def counterfactual_path(name):
    return f"{RESULTS}/{{game}}/{{role}}/counterfactual/{{removal}}/{name}"


def counterfactual_scores(wildcards):
    return f"{RESULTS}/{wildcards.game}/{wildcards.role}/attribution/{COUNTERFACTUAL_METHOD}/scores.parquet"


def _ranked(wildcards):
    return parse_removal(wildcards.removal)["kind"] in RANKED_KINDS


def removal_scores(wildcards):
    """Only a ranked removal reads the scores: random ones and the baseline stay put when
    the attribution changes."""
    return counterfactual_scores(wildcards) if _ranked(wildcards) else []


def removal_ranking(wildcards):
    """What orders a ranked removal (not report.k: changing it reruns no retrain)."""
    if not _ranked(wildcards):
        return None
    return {
        "method": COUNTERFACTUAL_METHOD,
        "aggregation": config["report"]["aggregation"],
    }


def retrained_adapter(path):
    return directory(path) if COUNTERFACTUAL["keep_adapters"] else temp(directory(path))


def counterfactual_inputs(name):
    return expand(
        f"{RESULTS}/{{game}}/{{role}}/counterfactual/{{removal}}/{name}",
        removal=REMOVALS,
        allow_missing=True,
    )


rule counterfactual_removal:
    input:
        train=rules.tokenize.output.train,
        scores=removal_scores,
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
        val=rules.tokenize.output.val,
        tokenizer=rules.tokenize.output.tokenizer,
        model=model_input,
        removed=rules.counterfactual_removal.output[0],
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
        mem_mb=8000,
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
    output:
        table=f"{RESULTS}/{{game}}/{{role}}/counterfactual.parquet",
        summary=report(
            f"{RESULTS}/{{game}}/{{role}}/counterfactual.md",
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
