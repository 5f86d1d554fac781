import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Nothing in the test-suite may reach the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "playpen-sample"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def make_row(game, role, outcome, messages, experiment="e1", task_id=0, model="m"):
    return {
        "messages": messages,
        "meta": {
            "experiment": experiment,
            "game": game,
            "game_role": role,
            "model": model,
            "outcome": outcome,
            "player_name": "Player 1",
            "task_id": task_id,
        },
    }


@pytest.fixture(scope="session")
def demo_dataset_dir(tmp_path_factory) -> Path:
    from playpen_attribution.demo_data import write_demo_dataset

    out = tmp_path_factory.mktemp("demo") / "playpen-data"
    write_demo_dataset(out, seed=0)
    return out


def run_snakemake(*args, cwd=REPO, check=True):
    """Run snakemake from the project's venv; return the CompletedProcess."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
