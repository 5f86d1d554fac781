import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from playpen_attribution.core.settings import from_config, schema_defaults

# The schema's defaults (the one home of every default, issue 24): tests build settings
# from them and name only what they change.
SCHEMA_DEFAULTS = schema_defaults()


def with_defaults(cls, **given):
    """A settings dataclass at the schema's defaults, except what is given."""
    return from_config(cls, SCHEMA_DEFAULTS, **given)


# The demo data's settings at the schema's defaults.
DEMO_DATA = SCHEMA_DEFAULTS["demo_data"]
# How prepare() reads a dataset, at the schema's defaults (`dataset` section).
DATASET_OPTIONS = {
    key: SCHEMA_DEFAULTS["dataset"][key] for key in ("target_word_patterns", "keep_empty_completions")
}


def prepare_at_defaults(*args, **given):
    """data.prepare with the dataset options at the schema's defaults, except `given`."""
    from playpen_attribution.data.prepare import prepare

    return prepare(*args, **(DATASET_OPTIONS | given))


# Nothing in the test-suite may reach the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "playpen-sample"


# fp32 sums taken in another order (a mean of per-query scores against the score of the mean
# query; float64 scores against their float32 copy in matrix.npy) agree only up to rounding
# that grows with the magnitudes and depends on the CPU's kernels. One tolerance for such
# comparisons, relative to the largest magnitude compared: 2**7 fp32 epsilons (1.5e-5).
FP32_RTOL = 128 * 2.0**-23


def assert_close_up_to_fp32_rounding(actual, expected) -> None:
    import numpy as np

    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = float(np.abs(expected).max())
    assert scale > 0, "nothing to compare: every expected value is 0"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=FP32_RTOL * scale)


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


def shared_dir(tmp_path_factory, name: str, build) -> Path:
    """A directory that `build(path)` fills once per test session, also across the worker
    processes of pytest-xdist (each has a session fixture of its own): the first to ask
    builds it under a file lock, the others wait for it. Tests read it; to change it,
    copy it first. A build that fails leaves nothing, and the next to ask builds again."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # a worker's basetemp is <session's basetemp>/<worker id>
    path = base / "shared" / name
    done = path.with_name(f"{name}.done")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            try:
                build(path)
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            done.touch()
    return path


@pytest.fixture(scope="session")
def demo_dataset_dir(tmp_path_factory) -> Path:
    from playpen_attribution.data.demo_data import write_demo_dataset

    out = tmp_path_factory.mktemp("demo") / "playpen-data"
    write_demo_dataset(out, **DEMO_DATA)
    return out


def snakemake_cmd(*args) -> list[str]:
    """The command line of snakemake from the project's venv, on this Snakefile."""
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]


def run_snakemake(*args, cwd=REPO, check=True):
    """Run snakemake from the project's venv; return the CompletedProcess."""
    proc = subprocess.run(snakemake_cmd(*args), cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def gemma_tokenizer(request, tmp_path_factory):
    """The real Gemma 3 tokenizer with the Gemma 3 chat template, converted from the GGUF
    package as the demo model's tokenizer is (models.save_demo_tokenizer).

    Converting it takes seconds of CPU (a Python pass over the 262k-entry vocabulary),
    so the result is cached in pytest's cache dir
    (one conversion at a time: xdist workers share it), or, without the cache plugin
    (-p no:cacheprovider), made once per session.
    """
    from filelock import FileLock
    from transformers import AutoTokenizer

    from playpen_attribution.sft.models import save_demo_tokenizer as convert

    if getattr(request.config, "cache", None) is None:
        return AutoTokenizer.from_pretrained(shared_dir(tmp_path_factory, "gemma3-tokenizer", convert))
    cache = Path(request.config.cache.mkdir("gemma3-tokenizer"))
    with FileLock(f"{cache}.lock"):
        if not (cache / "tokenizer_config.json").exists():
            convert(cache)
    return AutoTokenizer.from_pretrained(cache)


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory, gemma_tokenizer) -> Path:
    """A tiny random Gemma 3 (hidden 64, 2 layers) with the real tokenizer, saved to disk."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(gemma_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        sliding_window=128,
        pad_token_id=gemma_tokenizer.pad_token_id,
        bos_token_id=gemma_tokenizer.bos_token_id,
        eos_token_id=gemma_tokenizer.eos_token_id,
    )
    model = Gemma3ForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-gemma")
    model.save_pretrained(out)
    gemma_tokenizer.save_pretrained(out)
    return out


def chat(*turns):
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


GUESSER_ROWS = [
    chat(f"HINT: {hint}", f"GUESS: {guess}")
    for hint, guess in [
        ("white and cold, falls in winter", "SNOW"),
        ("you sit on it", "CHAIR"),
        ("a sheltered place for ships", "HARBOR"),
        ("it burns slowly on a cake", "CANDLE"),
        ("sea mammal with tusks", "WALRUS"),
        ("points north", "COMPASS"),
        ("a staple food you slice", "BREAD"),
        ("runs to the sea", "RIVER"),
    ]
]


@pytest.fixture(scope="session")
def guesser_tokens(tmp_path_factory, gemma_tokenizer):
    """Token rows (save_to_disk dirs) for a few guesser chats: train and val."""
    from playpen_attribution.data.tokens import save_token_dataset, tokenize_rows

    root = tmp_path_factory.mktemp("tokens")
    train_rows = [{"row_id": f"train-{i}", "messages": m} for i, m in enumerate(GUESSER_ROWS)]
    val_rows = [{"row_id": f"val-{i}", "messages": m} for i, m in enumerate(GUESSER_ROWS[:3])]
    for name, rows in (("train", train_rows), ("val", val_rows)):
        token_rows, _ = tokenize_rows(rows, gemma_tokenizer, "completion", 256)
        save_token_dataset(token_rows, root / name)
    return root / "train", root / "val"


@pytest.fixture(scope="session")
def adapter(tmp_path_factory, tiny_gemma_dir, gemma_tokenizer):
    """A bootstrapped LoRA adapter on the tiny model, with non-zero random LoRA weights.

    (A fresh adapter has lora_B = 0, which makes every lora_A gradient zero.)
    """
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from playpen_attribution.sft.models import bootstrap_adapter
    from playpen_attribution.sft.train import LoraSettings

    torch.manual_seed(1)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_gemma_dir), with_defaults(LoraSettings, r=4).peft_config()
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.05)
    root = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(root / "raw")
    gemma_tokenizer.save_pretrained(root / "raw")
    bootstrap_adapter(root / "raw", root / "boot", str(tiny_gemma_dir))
    return root / "boot"


def write_tiny_config(work: Path, tiny_gemma_dir: Path, model: str | None = None) -> Path:
    """The demo config on the tiny model, sized for tests: taboo x WordGuesser, generated
    data, 2 SFT steps. Writes config.yaml (and a chat template file) into `work`.
    `model`: the config's model.name_or_path (default: tiny_gemma_dir's absolute path)."""
    import yaml

    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["model"] = {"name_or_path": model or str(tiny_gemma_dir)}
    config["demo_data"] = {
        "seed": 3,
        "train_episodes": 24,
        "validation_episodes": 8,
        "wordle_episodes": 2,
        "planted_copies": 2,
    }
    config["targets"] = [{"game": "taboo", "role": "WordGuesser"}]
    # A template file of our own (the tokenizer's own text): a tracked input of tokenize.
    (work / "chat_template.jinja").write_text((tiny_gemma_dir / "chat_template.jinja").read_text())
    config["model"]["chat_template"] = "chat_template.jinja"
    config["train"] = {"epochs": 1, "batch_size": 8, "max_steps": 2, "learning_rate": 0.001}
    config["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    # Two methods side by side; K-FAC on the rows' own labels is the cheapest factored one.
    config["attribution"] = {
        "precision": "fp32",
        "token_batch_size": 512,
        "methods": ["none", "kfac"],
        "report_method": "none",
        "preconditioner": {"use_dataset_labels": True},
    }
    config["report"] = {"k": 3}
    # Every word is seen about once in 24 episodes; a short candidate list keeps it quick.
    config["generate"] = {"min_count": 1, "candidate_top_n": 5000}
    # Unsorted keys here, sorted in test_workflow_e2e.dry_run(): key order must not look
    # like a change.
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# The README's target: asking for topk.parquet also builds words.parquet (taboo); it
# needs the report method's scores only.
TINY_TARGET = "results/demo/taboo/WordGuesser/topk.parquet"
# ... plus the comparison of the two methods and the planted copies' ranks.
TINY_TARGETS = (
    TINY_TARGET,
    "results/demo/taboo/WordGuesser/attribution/compare.parquet",
    "results/demo/taboo/WordGuesser/attribution/planted.parquet",
    # ... plus the generated instances and their hardness check (issue 12).
    "results/demo/taboo/WordGuesser/generated/hardness.parquet",
)


# Where workflow_dir holds its model, as its config names it: relative to the run, so
# that a copy of the run is a run of its own copy of the model (one that a test may edit).
WORKFLOW_MODEL = "./tiny-gemma"


@pytest.fixture(scope="session")
def workflow_dir(tmp_path_factory, tiny_gemma_dir):
    """A local run of data -> tokenize -> SFT -> bootstrap -> reduce -> score -> reports on
    the tiny model (write_tiny_config), the model inside it (WORKFLOW_MODEL). Session-wide
    and made once (shared_dir), also under pytest-xdist; each process gets a copy of its
    own. The end-to-end tests read it, and the SLURM test compares its own run with it.
    Tests must not change it (copy it first)."""

    def build(work: Path) -> None:
        shutil.copytree(tiny_gemma_dir, work / WORKFLOW_MODEL)
        config = write_tiny_config(work, tiny_gemma_dir, model=WORKFLOW_MODEL)
        proc = run_snakemake("--cores", "2", f"--configfile={config}", "-d", str(work), *TINY_TARGETS)
        (work / "terminal.txt").write_text(proc.stdout + proc.stderr)

    work = tmp_path_factory.mktemp("workflow")
    shutil.copytree(shared_dir(tmp_path_factory, "workflow", build), work, symlinks=True, dirs_exist_ok=True)
    return work


def pytest_configure(config):
    """pytest-xdist (>= 3.6) by default hands out the files of --dist loadfile largest
    first (by number of tests), which undoes pytest_collection_modifyitems' order: the
    SLURM test then ran last and alone (measured 2026-12-03: the suite 618 s with the
    reorder, 519 s without)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Run the SLURM tests first. Their fixture builds workflow_dir (the local tiny run they
    compare with) while its own run waits on SLURM, so the two DAGs overlap; an earlier
    test that needs workflow_dir (test_counterfactual, test_generate) would build it alone
    first, and the SLURM run would then run alone after it (~4 min more). Then the files
    that need no workflow_dir: under pytest-xdist, the other workers run them meanwhile
    instead of waiting for it.

    pytest-xdist hands the files out in this order only with its loadscope reorder off
    (pytest_configure below)."""
    needs_workflow = {item.path for item in items if "workflow_dir" in item.fixturenames}
    items.sort(key=lambda item: (item.path.name != "test_slurm.py", item.path in needs_workflow))
