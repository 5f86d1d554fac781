"""The whole DAG on a tiny model, then what reruns when a parameter changes (dry runs)."""

import json

import pandas as pd
import pytest
import yaml
from conftest import REPO, run_snakemake
from test_workflow import planned_jobs


@pytest.fixture(scope="module")
def workflow_dir(tmp_path_factory, tiny_gemma_dir):
    """Run data -> tokenize -> SFT -> bootstrap -> reduce -> score -> reports on the tiny model."""
    work = tmp_path_factory.mktemp("workflow")
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["model"] = {"name_or_path": str(tiny_gemma_dir)}
    config["demo_data"] = {"seed": 3, "train_episodes": 24, "validation_episodes": 8, "wordle_episodes": 2}
    config["targets"] = {"taboo": ["WordGuesser"]}
    config["train"] = {"epochs": 1, "batch_size": 8, "max_steps": 2, "learning_rate": 0.001}
    config["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    config["attribution"] = {"precision": "fp32", "token_batch_size": 512}
    config["report"] = {"k": 3}
    # Unsorted keys here, sorted in dry_run(): key order must not look like a change.
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # The README's target: asking for topk.parquet also builds words.parquet (taboo).
    run_snakemake(
        "--cores",
        "2",
        f"--configfile={work / 'config.yaml'}",
        "-d",
        str(work),
        "results/taboo/WordGuesser/topk.parquet",
    )
    return work


def dry_run(workflow_dir, **changes):
    """Dry run with some config sections updated (a config file: --config values are strings)."""
    config = yaml.safe_load((workflow_dir / "config.yaml").read_text())
    for section, values in changes.items():
        config[section].update(values)
    changed = workflow_dir / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    proc = run_snakemake("-n", "--configfile", str(changed), "-d", str(workflow_dir))
    return proc.stdout + proc.stderr


def test_chain_outputs_are_consistent(workflow_dir):
    out = workflow_dir / "results/taboo/WordGuesser"
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
