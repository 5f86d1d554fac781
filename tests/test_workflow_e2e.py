"""The whole DAG on a tiny model (the `workflow_dir` fixture, conftest.py), then what reruns
when a parameter, a data file, the chat template or the package code changes (dry runs),
and what the logs hold."""

import json
import os
import re
import shutil

import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY_TARGETS, assert_close_up_to_fp32_rounding, run_snakemake
from test_workflow import planned_jobs

OUT = "results/demo/taboo/WordGuesser"


def dry_run(workflow_dir, snakefile=None, targets=(), **changes):
    """Dry run with some config sections updated (a config file: --config values are strings)."""
    config = yaml.safe_load((workflow_dir / "config.yaml").read_text())

    def merge(into, values):
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(config, changes)
    changed = workflow_dir / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    args = ["-s", str(snakefile)] if snakefile else []
    proc = run_snakemake(*args, "-n", "--configfile", str(changed), "-d", str(workflow_dir), *targets)
    return proc.stdout + proc.stderr


@pytest.fixture
def workflow_copy(workflow_dir, tmp_path):
    """A copy of the finished run (mtimes and Snakemake's metadata kept), to edit freely."""
    copy = tmp_path / "run"
    shutil.copytree(workflow_dir, copy, symlinks=True)
    return copy


def copy_code(copy):
    """Copy the workflow's code (Snakefile, rules, scripts, package sources) to `copy`,
    mtimes kept (a newer script would look like a code change to Snakemake)."""
    for part in ("Snakefile", "workflow", "src", "config", "profiles"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.mkdir(exist_ok=True)
            shutil.copy2(source, copy / part)
    return copy


@pytest.fixture
def code_copy(tmp_path):
    """A copy of the workflow's code, to edit freely."""
    return copy_code(tmp_path / "code")


def edit_module(code, module):
    """A change of behaviour (not a comment) in one package module of a code copy."""
    path = code / "src/playpen_attribution" / module
    path.write_text(path.read_text() + "\nCHANGED_BEHAVIOUR = True\n")


def code_change_summary(workdir, code, targets, config="config.yaml") -> tuple[set, set]:
    """Snakemake's --summary of `targets` with the code in `code`: the rules with an output
    whose params changed (the code hash is a param), and the rules it would run (those
    and everything downstream). A plain dry run names one reason per job, and a job
    downstream of a rerun says "input files updated", hiding its own code change."""
    proc = run_snakemake(
        "-s",
        str(code / "Snakefile"),
        "--summary",
        "--configfile",
        str(workdir / config),
        "-d",
        str(workdir),
        *targets,
    )
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line.count("\t") >= 5]
    assert rows and rows[0][:6] == ["output_file", "date", "rule", "log-file(s)", "status", "plan"], (
        proc.stdout
    )
    changed = {row[2] for row in rows[1:] if row[4] == "params changed"}
    planned = {row[2] for row in rows[1:] if row[5] == "update pending"}
    return changed, planned


def test_chain_outputs_are_consistent(workflow_dir):
    out = workflow_dir / OUT
    train = pd.read_parquet(out / "data/train.parquet")
    scores = pd.read_parquet(out / "attribution/none/scores.parquet")
    assert scores["row_id"].tolist() == train["row_id"].tolist()  # every training row, in order
    assert scores["score"].notna().all() and scores["score"].std() > 0
    topk = pd.read_parquet(out / "topk.parquet")
    assert list(topk.groupby("bucket").size().sort_index()) == [3, 3]
    top = topk[topk["bucket"] == "top"]
    aggregation = topk["aggregation"].iloc[0]  # the report's ranking (report.aggregation)
    assert top["score"].tolist() == sorted(scores[aggregation], reverse=True)[:3]
    assert all(len(ids) == 3 for ids in topk["helped_val_row_ids"])
    summary_md = (out / "topk.md").read_text()
    assert summary_md.count("| ") > 6 and "Most influential target words" in summary_md
    words = pd.read_parquet(out / "words.parquet")
    assert words["count"].sum() == train["target_word"].notna().sum()
    assert words["sum_score"].sum() == pytest.approx(
        scores.loc[train["target_word"].notna().to_numpy(), aggregation].sum()
    )
    metrics = pd.read_parquet(out / "sft/metrics.parquet")
    assert set(metrics["split"]) == {"train", "val"}
    summary = json.loads((out / "sft/summary.json").read_text())
    assert summary["steps"] == 2 and summary["tokens_per_second"] > 0
    for png in ("scores.png", "words.png", "sft/loss.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_intermediates_are_removed(workflow_dir):
    """Bergson's score runs are temp() and the token copies Bergson read are deleted, while
    what users read (and what later jobs need: the query, the Hessian) stays."""
    attribution = workflow_dir / OUT / "attribution"
    for method in ("none", "kfac"):
        assert (attribution / method / "scores.parquet").is_file()
        assert (attribution / method / "query" / "run").is_dir()
        assert not (attribution / method / "score").exists()
        assert not (attribution / method / "query" / "input").exists()
    assert (attribution / "kfac" / "hessian" / "run").is_dir()
    assert not (attribution / "kfac" / "hessian" / "input").exists()
    assert (workflow_dir / OUT / "adapter" / "adapter_config.json").is_file()


def test_no_op_rerun_has_nothing_to_do(workflow_dir):
    assert "Nothing to be done" in dry_run(workflow_dir)


def test_changing_k_reruns_only_the_reports(workflow_dir):
    """Only the rules that read report.k; not the generation of new instances, which
    reads word_scores.parquet (issue 21, finding 11: score_generated loads the model)."""
    jobs = planned_jobs(dry_run(workflow_dir, targets=TINY_TARGETS, report={"k": 2}))
    assert set(jobs) == {"report_topk", "report_words", "compare_rankings"}


def test_changing_the_mask_reruns_from_tokenize(workflow_dir):
    jobs = planned_jobs(dry_run(workflow_dir, tokenize={"mask": "assistant"}))
    assert {"tokenize", "train_lora", "bootstrap_adapter", "reduce_query", "score_train"} <= set(jobs)
    assert "prepare_data" not in jobs and "generate_demo_data" not in jobs


def test_changing_attribution_settings_keeps_the_adapter(workflow_dir):
    jobs = planned_jobs(dry_run(workflow_dir, attribution={"unit_normalize": False}))
    # the Hessian fit does not depend on normalisation; every method's scores do
    assert jobs == {
        "reduce_query": 2,
        "score_train": 2,
        "compare_rankings": 1,
        "report_planted": 1,
        "report_topk": 1,
        "report_words": 1,
        "all": 1,
    }


def test_both_methods_scored_every_row_and_were_compared(workflow_dir):
    train = pd.read_parquet(workflow_dir / OUT / "data/train.parquet")
    scores = {}
    for method in ("none", "kfac"):
        scores[method] = pd.read_parquet(workflow_dir / OUT / f"attribution/{method}/scores.parquet")
        assert scores[method]["row_id"].tolist() == train["row_id"].tolist()
        assert scores[method]["score"].notna().all()
    compare = pd.read_parquet(workflow_dir / OUT / "attribution/compare.parquet")
    assert compare[["method_a", "method_b"]].values.tolist() == [["none", "kfac"]]
    # Spearman's rho of the two score files under the report's aggregation, by hand: the
    # Pearson correlation of the ranks
    aggregation = compare.loc[0, "aggregation"]
    by_hand = scores["none"][aggregation].rank().corr(scores["kfac"][aggregation].rank())
    assert compare.loc[0, "spearman_rho"] == pytest.approx(by_hand, rel=1e-9)
    assert compare.loc[0, "n_rows"] == len(train)
    estimate = json.loads((workflow_dir / OUT / "attribution/kfac/hessian/estimate.json").read_text())
    assert (
        abs(estimate["estimated_disk_bytes"] - estimate["written_bytes"]) / estimate["written_bytes"] < 0.01
    )


def test_changing_the_report_method_reruns_no_gradient_job(workflow_dir):
    jobs = planned_jobs(dry_run(workflow_dir, attribution={"report_method": "kfac"}))
    assert set(jobs) - {"all"} == REPORTS


def test_changing_the_aggregation_reruns_only_the_reports(workflow_dir):
    jobs = planned_jobs(dry_run(workflow_dir, report={"aggregation": "mean"}))
    assert set(jobs) - {"all"} == REPORTS | {"compare_rankings"}


def _methods_of_planned(output: str, rule: str) -> set[str]:
    import re

    blocks = re.findall(rf"^(?:local)?rule {rule}:\n((?:    .*\n)+)", output, re.M)
    return {m for block in blocks for m in re.findall(r"method=(\w+)", block)}


def test_changing_the_inversion_reruns_only_the_preconditioned_scores(workflow_dir):
    output = dry_run(
        workflow_dir, attribution={"preconditioner": {"use_dataset_labels": True, "damping_factor": 0.5}}
    )
    jobs = planned_jobs(output)
    assert set(jobs) - {"all"} == {"reduce_query", "score_train", "compare_rankings", "report_planted"}
    assert _methods_of_planned(output, "score_train") == {"kfac"}


def test_changing_the_hessian_fit_reruns_it(workflow_dir):
    output = dry_run(workflow_dir, attribution={"preconditioner": {"use_dataset_labels": False}})
    jobs = planned_jobs(output)
    assert set(jobs) - {"all"} == {
        "hessian",
        "reduce_query",
        "score_train",
        "compare_rankings",
        "report_planted",
    }
    assert _methods_of_planned(output, "reduce_query") == {"kfac"}


def test_changing_nproc_per_node_plans_no_job(workflow_dir):
    assert "Nothing to be done" in dry_run(workflow_dir, attribution={"nproc_per_node": 2})


def test_changing_resources_plans_no_job(workflow_dir):
    """Threads and the Hessian's memory budget say how a job runs, not what it computes."""
    assert "Nothing to be done" in dry_run(
        workflow_dir, threads=1, attribution={"preconditioner": {"memory_budget_gb": 1}}
    )


DOWNSTREAM_OF_TOKENS = {
    "tokenize",
    "train_lora",
    "bootstrap_adapter",
    "hessian",
    "reduce_query",
    "score_train",
    "compare_rankings",
    "report_planted",
}
REPORTS = {"report_topk", "report_words"}


def test_editing_a_data_row_reruns_from_prepare_data(workflow_copy):
    data = workflow_copy / "results/demo/playpen-data/train.jsonl"
    lines = data.read_text().splitlines()
    row = json.loads(lines[0])
    row["messages"][-1]["content"] += " (edited)"
    lines[0] = json.dumps(row)
    data.write_text("\n".join(lines) + "\n")
    jobs = planned_jobs(dry_run(workflow_copy))
    assert set(jobs) - {"all"} == {"prepare_data"} | DOWNSTREAM_OF_TOKENS | REPORTS


def _finished_rules(output: str) -> set[str]:
    """The rules of the jobs that a real run finished."""
    return set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", output))


def _run(work) -> set[str]:
    proc = run_snakemake(
        "--cores", "2", f"--configfile={work / 'config.yaml'}", "-d", str(work), *TINY_TARGETS
    )
    return _finished_rules(proc.stdout + proc.stderr)


def test_real_size_data_reruns_only_what_its_content_changes(workflow_copy):
    """Issue 21, findings 8 and 9, on a data file over Snakemake's 1 MB checksum limit:
    rows of a game that the target does not use (wordle; the target is taboo) rerun
    prepare_data alone, whose outputs come out byte-identical (prepare_data is a
    checkpoint: what follows is planned again once it has run), and a touch reruns
    nothing (the workflow profile raises the checksum limit)."""
    data = workflow_copy / "results/demo/playpen-data/train.jsonl"
    lines = data.read_text().splitlines()
    wordle = [line for line in lines if json.loads(line)["meta"]["game"] == "wordle"]
    copies = 1_300_000 // len(wordle[0]) + 1
    data.write_text("\n".join(lines + wordle[:1] * copies) + "\n")
    assert data.stat().st_size > 1_300_000
    before = {p: p.read_bytes() for p in (workflow_copy / OUT / "data").glob("*.parquet")}
    # more rows read: data/summary.json and the reports that state it change, nothing else
    assert _run(workflow_copy) <= {"prepare_data", "report_topk", "report_words"}
    assert {p: p.read_bytes() for p in before} == before
    # an edit of a wordle row: the same number of rows, the same summary
    row = json.loads(wordle[0])
    row["messages"][-1]["content"] += " (edited)"
    data.write_text(data.read_text().replace(wordle[0], json.dumps(row), 1))
    assert _run(workflow_copy) == {"prepare_data"}
    os.utime(data)  # a touch (cp, git checkout)
    assert "Nothing to be done" in dry_run(workflow_copy)


def test_the_model_directory_is_tracked_by_content(workflow_copy):
    """Issue 21, finding 1: an edit of a file inside a local model directory (the demo's
    own chat template, the weights) went unseen; a touch must rerun nothing. The model
    directory is the copy's own (conftest.WORKFLOW_MODEL), so it is edited in place."""
    config = yaml.safe_load((workflow_copy / "config.yaml").read_text())
    model = workflow_copy / config["model"]["name_or_path"]
    assert model.resolve().is_relative_to(workflow_copy.resolve())
    template, weights = model / "chat_template.jinja", model / "model.safetensors"
    os.utime(weights)
    assert "Nothing to be done" in dry_run(workflow_copy)
    assert "<start_of_turn>" in template.read_text()
    template.write_text(template.read_text().replace("<start_of_turn>", "<start_of_turn> "))
    jobs = planned_jobs(dry_run(workflow_copy))
    assert set(jobs) - {"all"} == DOWNSTREAM_OF_TOKENS | REPORTS


def test_editing_the_chat_template_reruns_from_tokenize(workflow_copy):
    template = workflow_copy / "chat_template.jinja"
    template.write_text(template.read_text() + "\n")
    jobs = planned_jobs(dry_run(workflow_copy))
    assert set(jobs) - {"all"} == DOWNSTREAM_OF_TOKENS | REPORTS


def test_the_code_hash_follows_the_code_not_its_location_or_comments(workflow_copy, code_copy):
    assert "Nothing to be done" in dry_run(workflow_copy, snakefile=code_copy / "Snakefile")
    # every target of the tiny run, the generated instances included (their schema is code)
    assert code_change_summary(workflow_copy, code_copy, TINY_TARGETS) == (set(), set())
    tokens = code_copy / "src/playpen_attribution/data/tokens.py"
    text = tokens.read_text()
    assert text.startswith('"""One tokenization for SFT and attribution.')
    # a comment and a docstring edit (issue 21, finding 10) change no output
    text = text.replace('"""One tokenization', '"""One tokenization, edited,', 1)
    tokens.write_text(text + "\n# a comment changes no output\n")
    assert "Nothing to be done" in dry_run(workflow_copy, snakefile=code_copy / "Snakefile")


@pytest.mark.parametrize(
    "module, expected",
    [
        ("data/tokens.py", DOWNSTREAM_OF_TOKENS | REPORTS),
        (
            "attribution/scoring.py",
            {"hessian", "reduce_query", "score_train", "compare_rankings", "report_planted"} | REPORTS,
        ),
        ("attribution/report.py", REPORTS | {"report_planted"}),
        ("attribution/compare.py", {"compare_rankings"}),
        ("data/prepare.py", {"prepare_data"} | DOWNSTREAM_OF_TOKENS | REPORTS),
    ],
)
def test_editing_a_package_module_reruns_the_rules_that_run_it(workflow_copy, code_copy, module, expected):
    path = code_copy / "src/playpen_attribution" / module
    path.write_text(path.read_text() + "\nCHANGED_BEHAVIOUR = True\n")
    jobs = planned_jobs(dry_run(workflow_copy, snakefile=code_copy / "Snakefile"))
    assert set(jobs) - {"all"} == expected


# Every rule of the tiny run (TINY_TARGETS) whose code hash the module is part of (its
# script imports it, directly or through the package), then what the rerun adds downstream.
# counterfactual*.py: no rule of the tiny run; test_counterfactual checks their rules.
# word_scores: the per-word table that generation reads (report.k-free, issue 21).
ADAPTER_DOWNSTREAM = (
    DOWNSTREAM_OF_TOKENS - {"tokenize"} | REPORTS | {"word_scores", "generate_instances", "score_generated"}
)
REPORTING = {"report_topk", "report_words", "word_scores", "report_planted"}


@pytest.mark.parametrize(
    "module, changed, planned",
    [
        (
            "words/generate.py",
            {"generate_instances", "score_generated"},
            {"generate_instances", "score_generated"},
        ),
        ("words/hardness.py", {"score_generated"}, {"score_generated"}),
        ("sft/train.py", {"train_lora"}, ADAPTER_DOWNSTREAM),
        (
            "sft/models.py",
            {"tokenize", "train_lora", "bootstrap_adapter", "score_generated"},
            ADAPTER_DOWNSTREAM | {"tokenize"},
        ),
        (
            "sft/sparse_logits.py",
            # generate_instances and score_generated render through render.py, not report.py
            {"train_lora", "hessian", "reduce_query", "score_train"} | REPORTING,
            ADAPTER_DOWNSTREAM,
        ),
        ("checks/counterfactual.py", set(), set()),
        ("checks/counterfactual_report.py", set(), set()),
    ],
)
def test_editing_a_module_changes_the_code_of_exactly_the_rules_that_run_it(
    workflow_copy, code_copy, module, changed, planned
):
    edit_module(code_copy, module)
    assert code_change_summary(workflow_copy, code_copy, TINY_TARGETS) == (changed, planned)


def test_logs_hold_what_each_job_emitted(workflow_dir):
    logs = workflow_dir / "results/demo/logs/taboo/WordGuesser"
    for rule in (
        "prepare_data",
        "tokenize",
        "train_lora",
        "bootstrap_adapter",
        "none/reduce_query",
        "none/score_train",
        "kfac/hessian",
    ):
        text = (logs / f"{rule}.log").read_text()
        # ... with the job's peak memory: a process that imported torch holds > 0.1 GB
        finished = re.search(rf"{rule.split('/')[-1]} finished in [\d.]+ s, peak RSS ([\d.]+) GB", text)
        assert finished and 0.1 < float(finished.group(1)) < 24, (rule, text[-500:])
    # Library output (bergson's progress and logging, TRL's trainer) lands in the log too.
    score_log = (logs / "none/score_train.log").read_text()
    assert "it/s" in score_log or "s/it" in score_log
    assert "train_runtime" in (logs / "train_lora.log").read_text()
    assert "Loading weights" in (logs / "none/reduce_query.log").read_text()
    assert "memory estimate" in (logs / "kfac/hessian.log").read_text()
    # ... and none of it reaches the terminal, import-time messages included.
    terminal = (workflow_dir / "terminal.txt").read_text()
    for library_output in ("Loading weights", "it/s]", "train_runtime", "kernels", "Tracking"):
        assert library_output not in terminal


def test_the_reports_state_the_data_counts(workflow_dir):
    summary = json.loads((workflow_dir / OUT / "data/summary.json").read_text())
    tokens = json.loads((workflow_dir / OUT / "tokens/summary.json").read_text())
    for name in ("topk.md", "words.md"):
        text = (workflow_dir / OUT / name).read_text()
        assert "## Data" in text
        assert f"| **scored / used** | {tokens['train']['rows_out']} | {tokens['val']['rows_out']} |" in text
        dup = summary["splits"]["train"]["exact_duplicates"], summary["splits"]["val"]["exact_duplicates"]
        assert f"| kept: exact duplicates of an earlier row | {dup[0]} | {dup[1]} |" in text


def test_planted_copies_are_found_under_the_default_ranking(workflow_dir):
    """End to end through Snakemake: the default method and aggregation put the copies of
    validation episodes in the top 2 x copies."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    default_aggregation = schema["properties"]["report"]["properties"]["aggregation"]["default"]
    planted = pd.read_parquet(workflow_dir / OUT / "attribution/planted.parquet")
    assert set(planted["method"]) == {"none", "kfac"} and set(planted["n_planted"]) == {2}
    chosen = planted[(planted["method"] == "none") & (planted["aggregation"] == default_aggregation)]
    assert len(chosen) == 2 and set(chosen["source"]) <= {"query", "eval"}
    # a copy of a held-out eval row is invisible to the query: only the query's copies count
    query_copies = chosen[chosen["source"] == "query"]
    assert len(query_copies) >= 1 and query_copies["in_top_2n"].all(), planted
    topk = pd.read_parquet(workflow_dir / OUT / "topk.parquet")
    assert set(topk["aggregation"]) == {default_aggregation} and set(topk["method"]) == {"none"}
    assert set(chosen["row_id"]) <= set(topk.loc[topk["bucket"] == "top", "row_id"]) or len(topk) < 4


def test_the_planted_sidecar_is_read_by_no_ranking_rule(workflow_dir):
    import re

    proc = run_snakemake(
        "-n", "--forceall", f"--configfile={workflow_dir / 'config.yaml'}", "-d", str(workflow_dir)
    )
    output = proc.stdout + proc.stderr
    readers = {
        rule
        for rule, block in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", output, re.M)
        if "planted.json" in block.split("output:")[0]
    }
    assert readers == {"report_planted"}


def test_the_matrix_and_its_aggregations_agree(workflow_dir):
    import numpy as np

    matrix = np.load(workflow_dir / OUT / "attribution/none/matrix.npy", mmap_mode="r")
    ids = json.loads((workflow_dir / OUT / "attribution/none/matrix_ids.json").read_text())
    scores = pd.read_parquet(workflow_dir / OUT / "attribution/none/scores.parquet")
    val = pd.read_parquet(workflow_dir / OUT / "data/val.parquet")
    assert matrix.shape == (len(scores), len(val)) and ids["columns"] == val["row_id"].tolist()
    assert_close_up_to_fp32_rounding(scores["nearest"], matrix.max(axis=1))
    assert_close_up_to_fp32_rounding(scores["mean"], matrix.mean(axis=1))
    proponents = pd.read_parquet(workflow_dir / OUT / "val_proponents.parquet")
    assert set(proponents["val_row_id"]) == set(val["row_id"])


def test_the_html_report_holds_the_plots_and_tables(workflow_dir, tmp_path):
    """`snakemake --report` on the finished run: the workflow caption, the loss curve, the
    score histogram, the top-k table and the words plot, each embedded (data URIs)."""
    import base64

    report = tmp_path / "report.html"
    config = workflow_dir / "config.yaml"
    run_snakemake(f"--configfile={config}", "-d", str(workflow_dir), *TINY_TARGETS, "--report", str(report))
    html = report.read_text()
    embedded = {
        name: base64.b64decode(data)
        for name, data in re.findall(
            r"data:[^;\"]+;charset=[^;\"]+;filename=([^;\"]+);base64,([A-Za-z0-9+/=]+)", html
        )
    }
    for png in ("loss.png", "scores.png", "words.png"):
        assert embedded[png][:8] == b"\x89PNG\r\n\x1a\n", png
    topk = pd.read_parquet(workflow_dir / OUT / "topk.parquet")
    table = embedded["topk.html"].decode()
    assert "<table>" in table and topk["row_id"].iloc[0] in table
    words = pd.read_parquet(workflow_dir / OUT / "words.parquet")
    assert words["target_word"].iloc[0] in embedded["words.html"].decode()
    assert "How to read a score" in html  # workflow/report/workflow.rst, the caption


def test_a_pipeline_method_joins_the_comparison_and_its_projection_reruns_only_it(workflow_copy):
    """Adding trackstar to a finished run runs its one job (and the tables that list the
    methods), not the adapter; the comparison then holds its pairs. Changing its
    projection_dim reruns that job only; the other methods' projection_dim leaves it."""
    config = yaml.safe_load((workflow_copy / "config.yaml").read_text())
    config["attribution"]["methods"] = ["none", "kfac", "trackstar"]
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config))
    planned = planned_jobs(dry_run(workflow_copy, targets=TINY_TARGETS))
    assert set(planned) == {"pipeline_attribution", "compare_rankings", "report_planted"}
    run_snakemake(
        "--cores",
        "2",
        "--configfile",
        str(workflow_copy / "config.yaml"),
        "-d",
        str(workflow_copy),
        *TINY_TARGETS,
    )

    attribution = workflow_copy / OUT / "attribution"
    scores = pd.read_parquet(attribution / "trackstar/scores.parquet")
    assert scores["nearest"].notna().all() and scores["nearest"].std() > 0
    assert not (attribution / "trackstar/pipeline").exists()  # Bergson's run is temp()
    compare = pd.read_parquet(attribution / "compare.parquet")
    assert ["none", "trackstar"] in compare[["method_a", "method_b"]].values.tolist()
    planted = pd.read_parquet(attribution / "planted.parquet")
    assert set(planted["method"]) == {"none", "kfac", "trackstar"}

    output = dry_run(workflow_copy, targets=TINY_TARGETS, attribution={"trackstar": {"projection_dim": 8}})
    assert set(planned_jobs(output)) == {"pipeline_attribution", "compare_rankings", "report_planted"}
    assert _methods_of_planned(output, "pipeline_attribution") == {"trackstar"}
    output = dry_run(workflow_copy, targets=TINY_TARGETS, attribution={"projection_dim": 8})
    assert "pipeline_attribution" not in planned_jobs(output)
    assert "train_lora" not in planned_jobs(output)
