"""A failing job through Snakemake: one readable line on the terminal, everything in the log,
no output left behind."""

import json
import signal

import pytest
from conftest import REPO, chat, make_row, run_snakemake, write_jsonl

TARGET = "results/demo/taboo/WordGuesser/data/train.parquet"
LOG = "results/demo/logs/taboo/WordGuesser/prepare_data.log"


def guesser_rows():
    return [
        make_row("taboo", "WordGuesser", "success", chat("CLUE: cold", "GUESS: winter"), task_id=i)
        for i in range(3)
    ]


def run_prepare(tmp_path, data_dir):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(json.dumps({"dataset": {"path": str(data_dir)}}))
    return run_snakemake(
        "--cores",
        "1",
        "-d",
        str(tmp_path),
        TARGET,
        "--configfile",
        str(REPO / "config/demo.yaml"),
        str(overlay),
        check=False,
    )


def our_lines(terminal: str) -> list[str]:
    return [line for line in terminal.splitlines() if line.startswith("prepare_data failed:")]


def test_a_data_error_is_one_line_on_the_terminal_and_in_the_log(tmp_path):
    rows = guesser_rows()
    rows[1]["messages"] = "GUESS: winter"
    write_jsonl(tmp_path / "data/train.jsonl", rows)
    write_jsonl(tmp_path / "data/validation.jsonl", guesser_rows())
    proc = run_prepare(tmp_path, tmp_path / "data")
    assert proc.returncode != 0
    lines = our_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "train.jsonl line 2: field 'messages' must be a list" in lines[0] and LOG in lines[0]
    assert "Traceback" not in proc.stderr
    log = (tmp_path / LOG).read_text()
    assert "train.jsonl line 2: field 'messages' must be a list" in log
    assert not (tmp_path / "results/demo/taboo/WordGuesser/data").exists() or not any(
        p.suffix in (".parquet", ".json")
        for p in (tmp_path / "results/demo/taboo/WordGuesser/data").iterdir()
    )


def test_an_unexpected_error_keeps_its_traceback_in_the_log(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_dict.json").write_text("{not json")  # a broken save_to_disk directory
    proc = run_prepare(tmp_path, data)
    assert proc.returncode != 0
    lines = our_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Error" in lines[0].split(":", 2)[1] and "(log: " in lines[0]
    log = (tmp_path / LOG).read_text()
    assert "Traceback (most recent call last)" in log and "prepare_data failed" in log
    assert "Traceback" not in proc.stderr


# A job body under run_step, without Snakemake: writes its first output, then (by mode)
# finishes, raises KeyboardInterrupt (Ctrl-C) or waits for a signal.
STEP_SCRIPT = """
import logging, sys, time, types
from playpen_attribution.smk import run_step

first, second, log, mode = sys.argv[1:5]
def step(snakemake):
    if mode == "ok":
        from playpen_attribution.errors import warn_user

        warn_user(logging.getLogger("playpen_attribution.data"), "3 rows are odd")
    open(first, "w").write("written")
    if mode == "ctrl-c":
        raise KeyboardInterrupt
    if mode == "wait":
        open(first + ".ready", "w").close()
        time.sleep(60)
    open(second, "w").write("written")
run_step(types.SimpleNamespace(rule="prepare_data", log=[log], output=[first, second]), step)
"""


def _step(tmp_path, mode):
    import subprocess
    import sys

    args = [str(tmp_path / "train.parquet"), str(tmp_path / "val.parquet"), str(tmp_path / "job.log"), mode]
    return subprocess.Popen(
        [sys.executable, "-c", STEP_SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_terminal_warning_is_one_line_on_the_terminal(tmp_path):
    """Issue 21, findings 4-6: what changes the results' meaning is said on the terminal."""
    proc = _step(tmp_path, "ok")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err.splitlines() == [f"prepare_data: WARNING: 3 rows are odd (log: {tmp_path / 'job.log'})"]
    assert "WARNING playpen_attribution.data: 3 rows are odd" in (tmp_path / "job.log").read_text()


@pytest.mark.parametrize("signum", ["ctrl-c", signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_job_leaves_none_of_its_outputs(tmp_path, signum):
    """Issue 21, finding 13: a Ctrl-C just after train.parquet was written left it without
    val.parquet and summary.json."""
    import time

    proc = _step(tmp_path, "ctrl-c" if signum == "ctrl-c" else "wait")
    if signum != "ctrl-c":
        deadline = time.monotonic() + 60
        while not (tmp_path / "train.parquet.ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert not (tmp_path / "train.parquet").exists() and not (tmp_path / "val.parquet").exists()
    [line] = [line for line in err.splitlines() if "failed" in line]
    assert line.startswith("prepare_data failed: ") and line.endswith(f"(log: {tmp_path / 'job.log'})")
