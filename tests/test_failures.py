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


# A guard against a hang, not a timing check: long enough for a job's imports on a loaded
# machine (60 s tripped with the test-suite's workers on 2 cores).
HANG = 180

# A job body under run_step, without Snakemake: writes its first output, then (by mode)
# finishes, raises KeyboardInterrupt (Ctrl-C) or waits for a signal.
STEP_SCRIPT = """
import logging, sys, time
from playpen_attribution.core.smk import run_step

first, second, log, mode = sys.argv[1:5]
def step():
    if mode == "ok":
        from playpen_attribution.core.errors import warn_user

        warn_user(logging.getLogger("playpen_attribution.data.prepare"), "3 rows are odd")
    open(first, "w").write("written")
    if mode == "ctrl-c":
        raise KeyboardInterrupt
    if mode == "wait":
        open(first + ".ready", "w").close()
        time.sleep(HANG)
    open(second, "w").write("written")
run_step("prepare_data", [log], [first, second], step)
""".replace("HANG", str(HANG))


def _step(tmp_path, mode):
    import subprocess
    import sys

    args = [str(tmp_path / "train.parquet"), str(tmp_path / "val.parquet"), str(tmp_path / "job.log"), mode]
    # A job started from a terminal has SIGINT at its default; an xdist worker ignores it,
    # and an ignored SIGINT is inherited (Python then installs no KeyboardInterrupt for it).
    return subprocess.Popen(
        [sys.executable, "-c", STEP_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_a_terminal_warning_is_one_line_on_the_terminal(tmp_path):
    """Issue 21, findings 4-6: what changes the results' meaning is said on the terminal."""
    proc = _step(tmp_path, "ok")
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err
    assert err.splitlines() == [f"prepare_data: WARNING: 3 rows are odd (log: {tmp_path / 'job.log'})"]
    assert "WARNING playpen_attribution.data.prepare: 3 rows are odd" in (tmp_path / "job.log").read_text()


def test_a_process_that_goes_on_after_a_job_logs_as_before(tmp_path):
    """CI on 2026-12-03: a test ran run_step in-process, and a later test's terminal
    warning in the same worker hit the job's closed terminal stream (ValueError)."""
    import logging

    from playpen_attribution.core.errors import warn_user
    from playpen_attribution.core.smk import log, run_step

    handlers = list(log.handlers)
    sigterm = signal.getsignal(signal.SIGTERM)
    run_step(
        "step",
        [str(tmp_path / "step.log")],
        [],
        lambda: warn_user(logging.getLogger("playpen_attribution.test"), "in the job"),
    )
    assert (tmp_path / "step.log").exists()
    assert log.handlers == handlers and signal.getsignal(signal.SIGTERM) is sigterm
    warn_user(log, "after the job")  # raised ValueError: I/O operation on closed file


@pytest.mark.parametrize("signum", ["ctrl-c", signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_job_leaves_none_of_its_outputs(tmp_path, signum):
    """Issue 21, finding 13: a Ctrl-C just after train.parquet was written left it without
    val.parquet and summary.json."""
    import time

    proc = _step(tmp_path, "ctrl-c" if signum == "ctrl-c" else "wait")
    if signum != "ctrl-c":
        deadline = time.monotonic() + HANG
        while not (tmp_path / "train.parquet.ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 1
    assert not (tmp_path / "train.parquet").exists() and not (tmp_path / "val.parquet").exists()
    [line] = [line for line in err.splitlines() if "failed" in line]
    assert line.startswith("prepare_data failed: ") and line.endswith(f"(log: {tmp_path / 'job.log'})")


DEMO = f"--configfile={REPO / 'config/demo.yaml'}"
DEMO_DATA = "results/demo/playpen-data/train.jsonl"


def test_a_killed_run_is_resumed_by_a_plain_rerun(tmp_path):
    """Issue 21, finding 12: after SIGKILL or SIGHUP (which Snakemake does not catch either)
    the next run stopped with LockException ... --unlock, and a half-written
    `tokens/.val.<random>/` stayed behind even after a clean rerun."""
    import os
    import subprocess
    import time

    from conftest import snakemake_cmd

    cmd = snakemake_cmd("--cores", "1", DEMO, "-d", str(tmp_path), DEMO_DATA)
    first = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    job_log = tmp_path / "results/demo/logs/generate_demo_data.log"
    deadline = time.monotonic() + 120
    while not job_log.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list((tmp_path / ".snakemake/locks").glob("*.lock")), "killed too late: no lock held"
    os.killpg(first.pid, signal.SIGKILL)  # a killed node: Snakemake and its jobs
    first.wait()
    left = tmp_path / "results/demo/taboo/WordGuesser/tokens/.val.k2x9_q0z"
    (left / "data-00000-of-00001.arrow").parent.mkdir(parents=True)
    (left / "data-00000-of-00001.arrow").write_text("half written")
    proc = run_snakemake("--cores", "1", DEMO, "-d", str(tmp_path), DEMO_DATA, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "LockException" not in proc.stderr and (tmp_path / DEMO_DATA).exists()
    assert not left.exists()
    records = [json.loads(p.read_text()) for p in (tmp_path / "results/demo/.runs").iterdir()]
    assert records == [], (first.pid, records, proc.stderr[-3000:])  # the rerun's own record is gone


def test_two_checkouts_writing_one_result_tree_do_not_run_side_by_side(tmp_path):
    """Issue 21, finding 14: two checkouts with the same absolute `results:` ran the same
    jobs on the same files. A live run of another working directory holds the tree."""
    import os
    import socket
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runs = tmp_path / "results/demo/.runs"
        runs.mkdir(parents=True)
        record = {
            "pid": other.pid,
            "host": socket.gethostname(),
            "workdir": "/elsewhere/checkout",
            "since": "now",
        }
        (runs / f"{socket.gethostname()}-{other.pid}.json").write_text(json.dumps(record))
        proc = run_snakemake("--cores", "1", DEMO, "-d", str(tmp_path), DEMO_DATA, check=False)
    finally:
        other.kill()
        other.wait()
    assert proc.returncode != 0
    assert (
        f"results: {os.path.realpath(tmp_path)}/results/demo is in use by another run (pid {other.pid}"
        in (proc.stderr.replace(str(tmp_path), os.path.realpath(tmp_path)))
    )
    assert "/elsewhere/checkout" in proc.stderr and not (tmp_path / DEMO_DATA).exists()


def test_a_folder_that_cannot_be_written_stops_the_run_before_any_job(tmp_path):
    """Issue 21, finding 3: an immutable output folder, then a params change: a 109-line
    traceback ending in PermissionError, no message of ours."""
    import os
    import subprocess

    folder = tmp_path / "results/demo/playpen-data"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("{}\n")
    if os.geteuid() == 0:  # root writes through file modes; only the immutable flag stops it
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("no chattr on this file system")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        proc = run_snakemake(
            "--cores",
            "1",
            DEMO,
            "-d",
            str(tmp_path),
            DEMO_DATA,
            "--forcerun",
            "generate_demo_data",
            check=False,
        )
    finally:
        subprocess.run(undo, check=True)
    assert proc.returncode != 0
    assert "results/demo/playpen-data cannot be written (read-only or immutable)" in proc.stderr
    assert "Traceback" not in proc.stderr and "PermissionError" not in proc.stderr
