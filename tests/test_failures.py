"""A failing job through Snakemake: one readable line on the terminal, everything in the log,
no output left behind."""

import json

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
