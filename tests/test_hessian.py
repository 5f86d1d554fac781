"""The Hessian memory model: shapes, bytes against what bergson writes, the budget check."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GUESSER_ROWS, with_defaults

from playpen_attribution.attribution.hessian_memory import (
    GIB,
    budget_error,
    cheaper_settings,
    estimate,
    lora_linear_shapes,
)

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Gemma 3 1B's published architecture (its config.json can't be downloaded here).
GEMMA3_1B = {
    "hidden_size": 1152,
    "intermediate_size": 6912,
    "num_hidden_layers": 26,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
}


def test_light_shapes_match_the_peft_model(tiny_gemma_dir):
    """The stdlib-only shape model agrees with PEFT's LoRA matrices on the real model class."""
    import torch
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from playpen_attribution.sft.train import LoraSettings

    config = AutoConfig.from_pretrained(tiny_gemma_dir)
    with torch.device("meta"):
        model = get_peft_model(
            AutoModelForCausalLM.from_config(config), with_defaults(LoraSettings, r=4).peft_config()
        )
    actual = {
        name: (module.in_features, module.out_features)
        for name, module in model.base_model.named_modules()
        if name.endswith(("lora_A.default", "lora_B.default"))
    }
    light = lora_linear_shapes(json.loads((tiny_gemma_dir / "config.json").read_text()), MODULES, 4)
    assert {s.name: (s.n_in, s.n_out) for s in light} == actual
    filtered = lora_linear_shapes(
        json.loads((tiny_gemma_dir / "config.json").read_text()), MODULES, 4, "*.mlp.*"
    )
    assert len(filtered) == len(light) * 4 // 7 and not any(".mlp." in s.name for s in filtered)


def test_gemma3_1b_all_modules_matches_the_issue_figure():
    """Gemma 3 1B, LoRA on all 7 projections: about 4e9 factor entries (16 GB fp32)."""
    config = GEMMA3_1B
    result = estimate(lora_linear_shapes(config, MODULES, 16), "kfac", "fp32", 1)
    assert 3.9e9 < result.covariance_bytes / 4 < 4.2e9
    assert result.fit_peak_bytes > 2 * result.covariance_bytes  # eigenvectors held beside them
    bf16 = estimate(lora_linear_shapes(config, MODULES, 16), "kfac", "bf16", 1)
    assert bf16.covariance_bytes * 2 == result.covariance_bytes
    assert bf16.apply_bytes == result.apply_bytes  # bergson applies the Hessian in fp32


def _labelled(function, label):
    import torch

    def wrapper(*args, **kwargs):
        with torch.profiler.record_function(label):
            return function(*args, **kwargs)

    return wrapper


# EK-FAC writes everything K-FAC does plus the corrections (2.4% of the bytes here); the
# end-to-end test checks K-FAC's estimate.json on the workflow's own run.
@pytest.mark.parametrize("method", ["ekfac"])
def test_estimate_matches_the_bytes_bergson_writes_and_holds(
    tmp_path, adapter, guesser_tokens, method, monkeypatch
):
    """disk_bytes against the files the fit writes, and fit_peak_bytes (peak_bytes here:
    what the budget check compares) against a measurement of the same thing: the torch
    profiler's record of every CPU tensor allocation and free during the fit, restricted
    to the factor tensors (the covariances, from their allocation on, and everything the
    eigendecomposition allocates: fp64 copies, LAPACK workspace tensors, eigenvectors,
    eigenvalues).

    Why not the process's peak memory: on CPU there is no allocator high-water mark like
    torch.cuda.max_memory_allocated, and the tiny model's factors (< 1 MB) are lost in its
    other memory (the 262k-token embedding alone is 67 MB, one batch's logits 270 MB). The
    estimate sizes the factors only, so only the factors are compared. The EK-FAC
    correction pass (a second pass over the data) holds less: sum(factors) + in x out."""
    import bergson.hessians.eigenvectors as eigenvectors_module
    import bergson.hessians.hessian_approximations as approximations
    import bergson.hessians.sharded_computation as sharded
    import torch

    from playpen_attribution.attribution.hessian_memory import check_adapter_budget
    from playpen_attribution.attribution.scoring import (
        AttributionSettings,
        PreconditionerSettings,
        fit_hessian,
    )

    init = sharded.ShardedMul._init_covariance_dict
    monkeypatch.setattr(sharded.ShardedMul, "_init_covariance_dict", _labelled(init, "covariance_setup"))
    eigen = eigenvectors_module.eigendecompose_owned
    monkeypatch.setattr(approximations, "eigendecompose_owned", _labelled(eigen, "eigendecompose"))
    precond = with_defaults(PreconditionerSettings, method=method, use_dataset_labels=True)
    result = check_adapter_budget(
        adapter, {"method": method, "hessian_dtype": "fp32", "module_partitions": 1}, None, 1
    )
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        fit_hessian(
            adapter,
            [guesser_tokens[0]],
            tmp_path / "h",
            with_defaults(AttributionSettings, precision="fp32", token_batch_size=256),
            precond,
            result,
        )
    record = json.loads((tmp_path / "h" / "estimate.json").read_text())
    written = sum(p.stat().st_size for p in (tmp_path / "h" / "run").rglob("*.safetensors"))
    assert record["written_bytes"] == written > 0
    # within 1% (measured: 0.12%); without the EK-FAC corrections it would be off by more
    assert abs(result.disk_bytes - written) / written < 0.01, (result.disk_bytes, written)
    assert abs(result.disk_bytes - result.correction_bytes - written) / written > 0.01
    assert (tmp_path / "h/run/eigenvalue_correction_sharded").exists() == (method == "ekfac")

    prof.export_chrome_trace(str(tmp_path / "trace.json"))
    peak, covariance_bytes = _factor_peak_bytes(
        tmp_path / "trace.json", ("covariance_setup", "eigendecompose")
    )
    # The covariances the collector allocates are exactly the model's (706,304 bytes here).
    assert covariance_bytes == result.covariance_bytes > 0
    # Measured 1,182,680 bytes against an estimate of 1,674,752 (fit_peak_bytes = peak_bytes
    # here): the estimate is an upper bound, 42% over. It charges the covariances and their
    # eigenvectors in full at once; bergson's eigendecompose_owned frees each covariance
    # once its eigenvectors exist, so it holds about one set plus the fp64 workspace of
    # one factor (~3.6 copies of the largest, 128 x 128, here).
    assert result.covariance_bytes < peak <= result.fit_peak_bytes <= 1.5 * peak, (peak, result.row())
    assert result.peak_bytes == max(result.fit_peak_bytes, result.apply_bytes)


def test_over_budget_names_cheaper_settings_before_heavy_imports(adapter):
    """The check runs in a fresh process and fails before torch is imported."""
    code = f"""
import sys
from playpen_attribution.core.errors import WorkflowInputError
from playpen_attribution.attribution.hessian_memory import check_adapter_budget
try:
    check_adapter_budget({str(adapter)!r}, {{"method": "ekfac", "hessian_dtype": "fp32", "module_partitions": 1}}, None, 1e-6)
except WorkflowInputError as exc:
    print(exc)
print("torch imported:", "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch imported: False" in out
    assert "memory_budget_gb=1e-06" in out
    for lever in ("hessian_dtype: bf16", "module_partitions: 4", 'filter_modules: "*.mlp.*"'):
        assert lever in out, out


def test_cheaper_settings_are_cheaper():
    config = GEMMA3_1B
    base = estimate(lora_linear_shapes(config, MODULES, 16), "ekfac", "fp32", 1)
    options = dict(cheaper_settings(config, MODULES, 16, "ekfac", "fp32", 1, None))
    assert all(alt.peak_bytes < base.peak_bytes for alt in options.values())
    message = budget_error(base, 24, list(options.items()))
    assert message and f"{base.peak_bytes / GIB:.2f} GB" in message
    assert budget_error(base, base.peak_bytes / GIB + 1, []) is None


def test_guesser_tokens_are_short(guesser_tokens):
    """The byte test above fits on these rows: they must stay few and short (measured:
    8 train rows of 21-26 tokens, 6-7 of them trained; 3 val rows). One token batch of
    256 then holds every train row."""
    from playpen_attribution.data.tokens import load_token_dataset

    for tokens_dir, n_rows in zip(guesser_tokens, (len(GUESSER_ROWS), 3)):
        tokens = load_token_dataset(tokens_dir)
        lengths = list(tokens["n_tokens"])
        assert len(tokens) == n_rows
        assert [len(ids) for ids in tokens["input_ids"]] == lengths
        assert all(16 <= n <= 32 for n in lengths), lengths
        assert all(1 <= sum(label != -100 for label in row) <= 10 for row in tokens["labels"])
    assert sum(list(load_token_dataset(guesser_tokens[0])["n_tokens"])) <= 256


def _factor_peak_bytes(trace_path, window_names) -> tuple[int, int]:
    """From a torch profiler trace (profile_memory): the most bytes live at once of the
    covariance blocks (allocated inside `covariance_setup`) and of every block allocated
    from the first `eigendecompose` window on, up to the end of the last window; and the
    covariance bytes."""
    events = json.loads(Path(trace_path).read_text())["traceEvents"]
    windows = {
        name: [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == name and e.get("ph") == "X"]
        for name in window_names
    }
    (setup_start, setup_end), *_ = windows["covariance_setup"]
    eigen_start = min(start for start, _ in windows["eigendecompose"])
    eigen_end = max(end for _, end in windows["eigendecompose"])
    memory = sorted((e["ts"], e["args"]) for e in events if e.get("name") == "[memory]")
    live: dict[int, int] = {}
    covariance_bytes = peak = 0
    for ts, args in memory:
        addr, size = args["Addr"], args["Bytes"]
        if size > 0 and (setup_start <= ts <= setup_end or eigen_start <= ts <= eigen_end):
            live[addr] = size
            if ts <= setup_end:
                covariance_bytes += size
        elif size < 0:
            live.pop(addr, None)
        if eigen_start <= ts <= eigen_end:
            peak = max(peak, sum(live.values()))
    return peak, covariance_bytes
