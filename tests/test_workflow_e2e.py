"""The whole DAG on a tiny model (the `workflow_dir` fixture, conftest.py), then what reruns
when a parameter, a data file, the chat template or the package code changes (dry runs),
and what the logs hold."""

import json
import shutil

import pandas as pd
import pytest
import yaml
from conftest import REPO, run_snakemake
from test_workflow import planned_jobs

OUT = "results/demo/taboo/WordGuesser"


def dry_run(workflow_dir, snakefile=None, **changes):
    """Dry run with some config sections updated (a config file: --config values are strings)."""
    config = yaml.safe_load((workflow_dir / "config.yaml").read_text())
    for section, values in changes.items():
        config[section].update(values)
    changed = workflow_dir / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    args = ["-s", str(snakefile)] if snakefile else []
    proc = run_snakemake(*args, "-n", "--configfile", str(changed), "-d", str(workflow_dir))
    return proc.stdout + proc.stderr


@pytest.fixture
def workflow_copy(workflow_dir, tmp_path):
    """A copy of the finished run (mtimes and Snakemake's metadata kept), to edit freely."""
    copy = tmp_path / "run"
    shutil.copytree(workflow_dir, copy, symlinks=True)
    return copy


@pytest.fixture
def code_copy(tmp_path):
    """A copy of the workflow's code: the Snakefile, rules, scripts and package sources."""
    copy = tmp_path / "code"
    for part in ("Snakefile", "workflow", "src", "config", "profiles"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.mkdir(exist_ok=True)
            shutil.copy2(source, copy / part)
    return copy


def test_chain_outputs_are_consistent(workflow_dir):
    out = workflow_dir / OUT
    train = pd.read_parquet(out / "data/train.parquet")
    scores = pd.read_parquet(out / "attribution/scores.parquet")
    assert scores["row_id"].tolist() == train["row_id"].tolist()  # every training row, in order
    assert scores["score"].notna().all() and scores["score"].std() > 0
    topk = pd.read_parquet(out / "topk.parquet")
    assert list(topk.groupby("bucket").size().sort_index()) == [3, 3]
    top = topk[topk["bucket"] == "top"]
    assert top["score"].tolist() == sorted(scores["score"], reverse=True)[:3]
    summary_md = (out / "topk.md").read_text()
    assert summary_md.count("| ") > 6 and "Most influential target words" in summary_md
    words = pd.read_parquet(out / "words.parquet")
    assert words["count"].sum() == train["target_word"].notna().sum()
    assert words["sum_score"].sum() == pytest.approx(scores["score"].sum())
    metrics = pd.read_parquet(out / "sft/metrics.parquet")
    assert set(metrics["split"]) == {"train", "val"}
    summary = json.loads((out / "sft/summary.json").read_text())
    assert summary["steps"] == 2 and summary["tokens_per_second"] > 0
    for png in ("scores.png", "words.png", "sft/loss.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_op_rerun_has_nothing_to_do(workflow_dir):
    assert "Nothing to be done" in dry_run(workflow_dir)


def test_changing_k_reruns_only_the_reports(workflow_dir):
    jobs = planned_jobs(dry_run(workflow_dir, report={"k": 2}))
    assert set(jobs) - {"all"} == {"report_topk", "report_words"}


def test_changing_the_mask_reruns_from_tokenize(workflow_dir):
    jobs = planned_jobs(dry_run(workflow_dir, tokenize={"mask": "assistant"}))
    assert {"tokenize", "train_lora", "bootstrap_adapter", "reduce_query", "score_train"} <= set(jobs)
    assert "prepare_data" not in jobs and "generate_demo_data" not in jobs


def test_changing_attribution_settings_keeps_the_adapter(workflow_dir):
    jobs = planned_jobs(dry_run(workflow_dir, attribution={"unit_normalize": False}))
    assert set(jobs) - {"all"} == {"reduce_query", "score_train", "report_topk", "report_words"}


DOWNSTREAM_OF_TOKENS = {"tokenize", "train_lora", "bootstrap_adapter", "reduce_query", "score_train"}
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


def test_editing_the_chat_template_reruns_from_tokenize(workflow_copy):
    template = workflow_copy / "chat_template.jinja"
    template.write_text(template.read_text() + "\n")
    jobs = planned_jobs(dry_run(workflow_copy))
    assert set(jobs) - {"all"} == DOWNSTREAM_OF_TOKENS | REPORTS


def test_the_code_hash_follows_the_code_not_its_location_or_comments(workflow_copy, code_copy):
    assert "Nothing to be done" in dry_run(workflow_copy, snakefile=code_copy / "Snakefile")
    tokens = code_copy / "src/playpen_attribution/tokens.py"
    tokens.write_text(tokens.read_text() + "\n# a comment changes no output\n")
    assert "Nothing to be done" in dry_run(workflow_copy, snakefile=code_copy / "Snakefile")


@pytest.mark.parametrize(
    "module, expected",
    [
        ("tokens.py", DOWNSTREAM_OF_TOKENS | REPORTS),
        ("attribution.py", {"reduce_query", "score_train"} | REPORTS),
        ("report.py", REPORTS),
        ("data.py", {"prepare_data"} | DOWNSTREAM_OF_TOKENS | REPORTS),
    ],
)
def test_editing_a_package_module_reruns_the_rules_that_run_it(workflow_copy, code_copy, module, expected):
    path = code_copy / "src/playpen_attribution" / module
    path.write_text(path.read_text() + "\nCHANGED_BEHAVIOUR = True\n")
    jobs = planned_jobs(dry_run(workflow_copy, snakefile=code_copy / "Snakefile"))
    assert set(jobs) - {"all"} == expected


def test_logs_hold_what_each_job_emitted(workflow_dir):
    logs = workflow_dir / "results/demo/logs/taboo/WordGuesser"
    for rule in (
        "prepare_data",
        "tokenize",
        "train_lora",
        "bootstrap_adapter",
        "reduce_query",
        "score_train",
    ):
        text = (logs / f"{rule}.log").read_text()
        assert f"{rule} finished in" in text, rule
    # Library output (bergson's progress and logging, TRL's trainer) lands in the log too.
    assert (
        "it/s" in (logs / "score_train.log").read_text() or "s/it" in (logs / "score_train.log").read_text()
    )
    assert "train_runtime" in (logs / "train_lora.log").read_text()


def test_the_reports_state_the_data_counts(workflow_dir):
    summary = json.loads((workflow_dir / OUT / "data/summary.json").read_text())
    tokens = json.loads((workflow_dir / OUT / "tokens/summary.json").read_text())
    for name in ("topk.md", "words.md"):
        text = (workflow_dir / OUT / name).read_text()
        assert "## Data" in text
        assert f"| **scored / used** | {tokens['train']['rows_out']} | {tokens['val']['rows_out']} |" in text
        dup = summary["splits"]["train"]["exact_duplicates"], summary["splits"]["val"]["exact_duplicates"]
        assert f"| kept: exact duplicates of an earlier row | {dup[0]} | {dup[1]} |" in text
