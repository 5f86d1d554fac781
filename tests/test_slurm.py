"""The workflow on a real SLURM: the shipped profile (profiles/slurm) runs the tiny-model
DAG, with only the partition, memory and GPU requests replaced by the layer
tests/slurm/profile. Every job runs as a SLURM job, the results equal a local run's, and a
job that fails is retried once, reported as failed, and fails the run.

Needs a running SLURM with the layer's partition: tests/slurm/up.sh (root, Debian) starts
one, and .ci/run does so before the tests. Elsewhere these tests are skipped, saying why.
"""

import importlib.util
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY_TARGET, snakemake_cmd, write_tiny_config

PROFILE = REPO / "profiles/slurm/config.yaml"
LAYER = REPO / "tests/slurm/profile/config.yaml"
PROFILE_ARGS = ["--profile", str(PROFILE.parent), "--profile", str(LAYER.parent)]
# ... and one setting of the test's own, on the command line: the status checks start 1 s
# after a job, not the profile's 10 s (and grow from there: 1, 11, 21 s, ...). Each of the
# run's 9 jobs, one after another, would otherwise wait ~20 s more to be seen finished.
# (MinJobAge, 300 s, stays >= 3 x this: squeue is still used.)
FAST_STATUS_ARGS = ["--slurm-init-seconds-before-status-checks", "1"]
# A guard against a hang (e.g. a status command that never answers), not a timing check.
HANG = 1200
OUT = "results/demo/taboo/WordGuesser"
PER_TARGET_RULES = [
    "prepare_data",
    "tokenize",
    "train_lora",
    "bootstrap_adapter",
    "none/reduce_query",
    "none/score_train",
    "report_words",
    "report_topk",
]
GPU_KEYS = {"gpu", "gpus", "gres", "gpu_model", "cpus_per_gpu", "tasks_per_gpu"}


def load(path):
    return yaml.safe_load(path.read_text())


def slurm_missing() -> str | None:
    """Why SLURM cannot be used here, or None when the layer's partition is up."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "the SLURM executor plugin is not installed (uv sync --extra slurm)"
    partition = load(LAYER)["default-resources"]["slurm_partition"]
    if shutil.which("sinfo"):
        try:
            proc = subprocess.run(
                ["sinfo", "-h", "-p", partition, "-o", "%a"], capture_output=True, text=True, timeout=60
            )
            if proc.returncode == 0 and proc.stdout.strip() == "up":
                return None
        except subprocess.TimeoutExpired:
            pass
    if os.geteuid() != 0:
        return "SLURM is not up and cannot be started here: tests/slurm/up.sh must run as root"
    if shutil.which("apt-get") is None:
        return "SLURM is not up and cannot be started here: tests/slurm/up.sh needs apt-get (Debian)"
    return f"SLURM is not up (no partition {partition!r}): start it with `bash tests/slurm/up.sh`"


_missing = slurm_missing()
needs_slurm = pytest.mark.skipif(_missing is not None, reason=f"SLURM test skipped: {_missing}")


def test_the_layer_replaces_only_partition_memory_and_gpu():
    """The test runs the profile users copy: the layer may change nothing else."""
    profile, layer = load(PROFILE), load(LAYER)
    assert set(layer) == {"default-resources", "set-resources"}
    assert set(layer["default-resources"]) <= {"slurm_partition", "mem_mb"}
    # Top-level keys replace the shipped ones whole: the layer must name every rule that
    # the profile names, or those rules would silently lose their partition.
    assert set(layer["set-resources"]) == set(profile["set-resources"])
    for resources in layer["set-resources"].values():
        assert set(resources) <= {"slurm_partition", "mem_mb"}
    # The shipped profile: GPU rules request a GPU, CPU rules don't, and the config's
    # `threads` is not overridden.
    assert set(profile["set-resources"]) == {
        "train_lora",
        "retrain",
        "train_arm",
        "evaluate_arm",
        "hessian",
        "reduce_query",
        "score_train",
    }
    assert all(resources.get("gpu", 0) >= 1 for resources in profile["set-resources"].values())
    assert not GPU_KEYS & set(profile["default-resources"])
    assert "set-threads" not in profile
    assert profile["slurm-status-command"] == "squeue"


def test_memory_and_threads_are_each_set_in_one_place():
    """Memory only in the profile (the rules set none, so the profile is the whole
    truth); threads only in the workflow config (the profile sets none)."""
    rules = {path.name: path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk")}
    assert not [name for name, text in rules.items() if "mem_mb" in text or "mem_gb" in text]
    assert sum(text.count("threads: MAX_THREADS") for text in rules.values()) >= 4
    profile = load(PROFILE)
    assert profile["default-resources"]["mem_mb"] > 0
    assert all(resources["mem_mb"] > 0 for resources in profile["set-resources"].values())
    assert not {"set-threads", "cores"} & set(profile)


def start(work, *args):
    """Start snakemake with the profile and the layer in `work`, output to a file."""
    out = work / "snakemake.out"
    with open(out, "w") as handle:
        cmd = snakemake_cmd(*PROFILE_ARGS, *FAST_STATUS_ARGS, "-d", str(work), *args)
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    return proc, out


def finish(proc, out):
    """Wait for a started snakemake; return (exit status, its output)."""
    try:
        status = proc.wait(timeout=HANG)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"snakemake still running after {HANG} s (hung?):\n{out.read_text()}") from None
    return status, out.read_text()


@pytest.fixture(scope="module")
def slurm_runs(tmp_path_factory, tiny_gemma_dir, demo_dataset_dir, request):
    """Two runs through SLURM, started together: the tiny-model DAG ("ok") and a run
    whose first job fails ("failing"). While they wait on SLURM, the local run that they
    are compared with (conftest's workflow_dir) is made. Returns {name: (workdir, exit
    status, output)}."""
    ok = tmp_path_factory.mktemp("slurm")
    ok_config = write_tiny_config(ok, tiny_gemma_dir)
    # A role the data lacks passes the config check; only the prepare_data job sees it.
    # Data of its own, so that this job is the run's first.
    failing = tmp_path_factory.mktemp("slurm-failing")
    failing_config = write_tiny_config(failing, tiny_gemma_dir)
    config = load(failing_config)
    config["targets"] = [{"game": "taboo", "role": "NoSuchRole"}]
    config["dataset"]["path"] = str(demo_dataset_dir)
    failing_config.write_text(yaml.safe_dump(config))
    runs = {
        "ok": (ok, start(ok, f"--configfile={ok_config}", TINY_TARGET)),
        "failing": (
            failing,
            start(failing, f"--configfile={failing_config}", "results/demo/taboo/NoSuchRole/topk.parquet"),
        ),
    }
    try:
        request.getfixturevalue("workflow_dir")
        results = {name: (work, *finish(*run)) for name, (work, run) in runs.items()}
    finally:
        for _, (proc, _) in runs.values():
            if proc.poll() is None:
                proc.terminate()  # Snakemake cancels its SLURM jobs
                proc.wait(timeout=120)
    _, status, output = results["ok"]
    assert status == 0, f"the SLURM run failed:\n{output}"
    return results


def submissions(output: str) -> list[tuple[str, str]]:
    """(SLURM job id, SLURM log) of every job that the plugin reported submitting."""
    return re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", output)


@needs_slurm
def test_every_job_runs_as_a_slurm_job(slurm_runs):
    work, _, output = slurm_runs["ok"]
    logs = work / "results/demo/logs"
    paths = {"generate_demo_data": logs / "generate_demo_data.log"}
    paths |= {rule: logs / "taboo/WordGuesser" / f"{rule}.log" for rule in PER_TARGET_RULES}
    ran = {}
    for rule, path in paths.items():
        ids = re.findall(rf"{rule.split('/')[-1]} runs as SLURM job (\d+) on ", path.read_text())
        assert len(ids) == 1, f"{path} does not say which SLURM job ran it"
        ran[rule] = ids[0]
    # One SLURM job per rule, and each is a job that Snakemake submitted.
    submitted = [job_id for job_id, _ in submissions(output)]
    assert len(set(ran.values())) == len(ran)
    assert sorted(ran.values()) == sorted(submitted)
    assert (work / OUT / "topk.parquet").exists() and (work / OUT / "words.parquet").exists()


@needs_slurm
def test_results_equal_a_local_run(slurm_runs, workflow_dir):
    work, _, _ = slurm_runs["ok"]
    local = pd.read_parquet(workflow_dir / OUT / "attribution/none/scores.parquet")
    remote = pd.read_parquet(work / OUT / "attribution/none/scores.parquet")
    assert remote["row_id"].tolist() == local["row_id"].tolist()
    assert remote["score"].std() > 0
    assert remote["score"].to_numpy() == pytest.approx(local["score"].to_numpy(), rel=1e-4, abs=1e-6)
    assert remote["loss"].to_numpy() == pytest.approx(local["loss"].to_numpy(), rel=1e-4)
    local_sft = pd.read_parquet(workflow_dir / OUT / "sft/metrics.parquet")
    remote_sft = pd.read_parquet(work / OUT / "sft/metrics.parquet")
    assert remote_sft["loss"].to_numpy() == pytest.approx(local_sft["loss"].to_numpy(), rel=1e-4)
    local_words = pd.read_parquet(workflow_dir / OUT / "words.parquet").set_index("target_word")
    remote_words = pd.read_parquet(work / OUT / "words.parquet").set_index("target_word")
    assert sorted(remote_words.index) == sorted(local_words.index)
    assert remote_words["sum_score"].sort_index().to_numpy() == pytest.approx(
        local_words["sum_score"].sort_index().to_numpy(), rel=1e-4, abs=1e-6
    )


@needs_slurm
def test_a_failing_job_is_retried_reported_and_fails_the_run(slurm_runs):
    """The profile's `retries: 1` submits the failing job twice; then Snakemake stops with
    an error instead of waiting."""
    work, status, output = slurm_runs["failing"]
    assert status != 0 and "Exiting because a job execution failed" in output, output
    attempts = submissions(output)
    assert len(attempts) == 2 and attempts[0][0] != attempts[1][0], output  # the retry: a new job
    assert all("/rule_prepare_data/" in slurm_log for _, slurm_log in attempts)
    last, slurm_log = attempts[1]
    assert "Error in rule prepare_data" in output
    assert f"SLURM-job '{last}' failed, SLURM status is: 'FAILED'" in output
    log = (work / "results/demo/logs/taboo/NoSuchRole/prepare_data.log").read_text()
    assert f"prepare_data runs as SLURM job {last} on " in log  # the last attempt's log
    assert "no rows for game 'taboo', role 'NoSuchRole'" in log
    # SLURM's own log of a failed job is kept and has the job's one-line reason.
    reason = "prepare_data failed: no rows for game 'taboo', role 'NoSuchRole'"
    assert reason in open(slurm_log).read()
    assert not (work / "results/demo/taboo/NoSuchRole/data").exists()
