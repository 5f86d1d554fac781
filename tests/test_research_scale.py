"""benchmarks/research_scale.py --tiny runs every stage and records what it should (issue 25).

One run of the script (a subprocess, as a user runs it) on the tiny model and a few rows;
no timing assertions (these machines are noisy), only that each figure is there and that
the memory models' byte counts match what Bergson wrote where the bytes are files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

STAGES = ("sft", "hessian", "attribution_none", "attribution_ekfac")


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory, request, gemma_tokenizer) -> dict:
    # the tokenizer the gemma_tokenizer fixture converted once (pytest's cache dir)
    tokenizer_dir = Path(request.config.cache.mkdir("gemma3-tokenizer"))
    out = tmp_path_factory.mktemp("research-scale") / "research_scale.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/research_scale.py"),
            "--tiny",
            "--tokenizer-dir",
            str(tokenizer_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "tokens/s" in proc.stdout  # the table
    return json.loads(out.read_text())


def measured(result: dict) -> dict:
    """The precisions that ran (bf16 is skipped without a bf16 GPU, with the reason)."""
    ran = {p: stages for p, stages in result["stages"].items() if isinstance(stages, dict)}
    assert "fp32" in ran
    for precision, stages in result["stages"].items():
        if precision not in ran:
            assert stages.startswith("skipped")
    return ran


def test_every_stage_has_throughput_and_peak_memory(tiny_result):
    assert tiny_result["scale"] == "tiny"
    assert tiny_result["data"]["train"]["rows"] > 0 and tiny_result["data"]["val"]["rows"] > 0
    for precision, stages in measured(tiny_result).items():
        assert set(stages) == set(STAGES), precision
        for stage, figures in stages.items():
            assert figures["tokens"] > 0, (precision, stage)
            assert figures["seconds"] > 0, (precision, stage)
            assert figures["tokens_per_second"] > 0, (precision, stage)
            assert figures["peak_rss_bytes"] > 0, (precision, stage)
            assert figures["peak_gpu_bytes"] is None or figures["peak_gpu_bytes"] > 0
        # attribution reads train and val rows; SFT and the Hessian the training rows
        assert stages["sft"]["tokens"] == tiny_result["data"]["train"]["tokens"]
        assert stages["hessian"]["tokens"] == tiny_result["data"]["train"]["tokens"]
        total = tiny_result["data"]["train"]["tokens"] + tiny_result["data"]["val"]["tokens"]
        assert stages["attribution_ekfac"]["tokens"] == stages["attribution_none"]["tokens"] == total


def test_memory_model_figures_sit_beside_the_bytes_bergson_wrote(tiny_result):
    for stages in measured(tiny_result).values():
        hessian = stages["hessian"]
        assert {"fit_peak_gb", "apply_gb", "disk_gb"} <= set(hessian["estimate"])
        assert hessian["estimated_fit_peak_bytes"] > 0 and hessian["estimated_apply_bytes"] > 0
        written = hessian["written_bytes"]
        # the estimate's safetensors headers are approximate: within 1% (test_hessian.py)
        assert written > 0 and abs(hessian["estimated_disk_bytes"] - written) / written < 0.01
        for method in ("none", "ekfac"):
            figures = stages[f"attribution_{method}"]
            assert {"query_memory_gb", "matrix_memory_gb", "peak_gb"} <= set(figures["estimate"])
            assert figures["estimated_query_memory_bytes"] > 0
            # exact byte counts of the files (query_memory's accounting)
            for kind in ("gradients", "scores", "matrix"):
                assert figures[f"{kind}_file_bytes"] > 0
                assert figures[f"estimated_{kind}_file_bytes"] == figures[f"{kind}_file_bytes"], kind


def test_the_tiny_model_is_the_tests_tiny_model(tiny_result, tiny_gemma_dir):
    """--tiny restates conftest's tiny Gemma 3 (a benchmark does not import the tests):
    the two shapes must not drift apart."""
    config = json.loads((tiny_gemma_dir / "config.json").read_text())
    shape = {key: value for key, value in tiny_result["model"].items() if key != "parameters"}
    assert {"hidden_size", "num_hidden_layers", "vocab_size"} <= set(shape)
    assert {key: config[key] for key in shape} == shape
