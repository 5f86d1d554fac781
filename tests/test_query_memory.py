"""The query-gradient and influence-matrix memory model: bytes against what bergson writes
and holds, the 1B figure, and the budget check."""

import json
import subprocess
import sys

import pytest
from conftest import with_defaults
from test_attribution import CLUE_CHATS, _tokens

from playpen_attribution.attribution.hessian_memory import GIB, lora_linear_shapes
from playpen_attribution.attribution.query_memory import (
    budget_error,
    cheaper_settings,
    check_query_budget,
    count_token_rows,
    estimate,
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


def _within(estimated, measured, tolerance=0.10):
    return abs(estimated - measured) <= tolerance * measured


@pytest.mark.parametrize("projection_dim", [0, 16])
def test_estimate_matches_what_bergson_writes_and_loads(tmp_path, adapter, gemma_tokenizer, projection_dim):
    """One reduce per projection setting: gradients.bin, info.json (its grad_sizes too) and
    the queries score_train loads into memory are as estimated; with a projection, a score
    run's scores.bin and matrix.npy are too."""
    import numpy as np
    from bergson.config.config import ScoreConfig
    from bergson.score.score import get_query_grads

    from playpen_attribution.attribution.scoring import AttributionSettings, reduce_query, score_train
    from playpen_attribution.data.tokens import load_token_dataset

    settings = with_defaults(
        AttributionSettings, precision="fp32", token_batch_size=256, projection_dim=projection_dim
    )
    val_dir = _tokens(tmp_path, "val", CLUE_CHATS[:3], gemma_tokenizer)
    train_dir = _tokens(tmp_path, "train", CLUE_CHATS[3:8], gemma_tokenizer)
    n_val, n_train = count_token_rows(val_dir), count_token_rows(train_dir)
    assert (
        (n_val, n_train) == (len(load_token_dataset(val_dir)), len(load_token_dataset(train_dir))) == (3, 5)
    )
    # budget 1 GB: the tiny model fits, so the check returns the estimate
    est = check_query_budget(adapter, n_val, n_train, projection_dim, None, 1.0, precision="fp32")

    reduce_query(adapter, val_dir, tmp_path / "query", settings, aggregation="none")
    run = tmp_path / "query" / "run"
    info = json.loads((run / "info.json").read_text())
    written = (run / "gradients.bin").stat().st_size
    print(f"projection {projection_dim}: gradients.bin {written} B (estimate {est.gradients_file_bytes})")
    assert _within(est.gradients_file_bytes, written), (est.row(), written)
    assert _within(est.info_json_bytes, (run / "info.json").stat().st_size)
    assert info["base_dtype"] == "float32" and info["num_grads"] == n_val
    assert (
        sum(info["grad_sizes"].values()) == est.entries_per_row and len(info["grad_sizes"]) == est.n_modules
    )
    if projection_dim:
        assert est.entries_per_row == 28 * projection_dim**2
    # what score_train holds for the queries: bergson's own loader
    loaded, _ = get_query_grads(ScoreConfig(query_path=str(run)))
    held = sum(t.numel() * t.element_size() for t in loaded.values())
    print(f"projection {projection_dim}: queries in memory {held} B (estimate {est.query_memory_bytes})")
    assert _within(est.query_memory_bytes, held)

    if projection_dim:  # one score run is enough for the matrix's sizes
        score_train(
            adapter,
            train_dir,
            tmp_path / "query",
            tmp_path / "score",
            tmp_path / "scores.parquet",
            settings,
            val_tokens_dir=val_dir,
            matrix_path=tmp_path / "matrix.npy",
            matrix_ids_path=tmp_path / "ids.json",
        )
        scores_bin = (tmp_path / "score" / "run" / "scores.bin").stat().st_size
        matrix_npy = (tmp_path / "matrix.npy").stat().st_size
        print(f"scores.bin {scores_bin} B (estimate {est.scores_file_bytes})")
        print(f"matrix.npy {matrix_npy} B (estimate {est.matrix_file_bytes})")
        assert np.load(tmp_path / "matrix.npy").shape == (n_train, n_val)
        assert _within(est.scores_file_bytes, scores_bin)
        assert _within(est.matrix_file_bytes, matrix_npy)
        assert est.matrix_disk_bytes == est.scores_file_bytes + est.matrix_file_bytes


def test_matrix_size_at_scale():
    """matrix.npy for 5,000 x 600 is its float32 array plus the npy header, as np.save writes it."""
    import io

    import numpy as np

    shapes = lora_linear_shapes(GEMMA3_1B, MODULES, 16)
    est = estimate(shapes, 600, 5000, projection_dim=16, precision="fp32")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((5000, 600), dtype=np.float32))
    assert est.matrix_file_bytes == buffer.tell() == 5000 * 600 * 4 + 128
    # bergson's store: a (float32 score, written flag) pair padded to 8 bytes per cell
    assert est.scores_file_bytes == 5000 * 600 * 8


def test_gemma3_1b_query_rows():
    """13.05 M numbers per query row for LoRA r=16 on all 7 projections: ~15.6 GB for 300 rows."""
    shapes = lora_linear_shapes(GEMMA3_1B, MODULES, 16)
    # per layer: r * sum(in + out) over q, k, v, o, gate, up, down
    per_layer = 16 * ((1152 + 1024) + 2 * (1152 + 256) + (1024 + 1152) + 3 * (1152 + 6912))
    assert per_layer * 26 == 13_045_760
    est = estimate(shapes, 300, 500, 0, precision="fp32")
    assert est.entries_per_row == 13_045_760
    assert est.gradients_file_bytes == est.query_memory_bytes == 300 * 13_045_760 * 4  # 15.66e9
    assert estimate(shapes, 600, 500, 0, precision="fp32").query_memory_bytes == 2 * est.query_memory_bytes
    # bf16 halves the file but not the RAM: bergson casts bfloat16 to float32 on load
    bf16 = estimate(shapes, 300, 500, 0, precision="bf16")
    assert bf16.gradients_file_bytes * 2 == est.gradients_file_bytes == bf16.query_memory_bytes
    # a projection: 16 x 16 per matrix (364 matrices); TRAK's global one: projection_dim
    assert estimate(shapes, 300, 500, projection_dim=16, precision="fp32").entries_per_row == 364 * 256
    assert estimate(shapes, 300, 500, 16, "global", precision="fp32").entries_per_row == 16


def test_gemma3_1b_entries_match_a_meta_model():
    """The formula's 13.05 M is the trainable LoRA parameters of a meta-device PEFT model."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    from playpen_attribution.sft.train import LoraSettings

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(Gemma3TextConfig(**GEMMA3_1B, vocab_size=1024))
        model = get_peft_model(model, with_defaults(LoraSettings, r=16, target_modules=MODULES).peft_config())
    lora = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    assert (
        lora
        == estimate(lora_linear_shapes(GEMMA3_1B, MODULES, 16), 1, 1, 0, precision="fp32").entries_per_row
        == 13_045_760
    )


def test_cheaper_settings_are_cheaper_and_fewer_rows_fit():
    budget = 8
    shapes = lora_linear_shapes(GEMMA3_1B, MODULES, 16)
    base = estimate(shapes, 600, 5000, 0, precision="fp32")
    options = dict(cheaper_settings(GEMMA3_1B, MODULES, 16, 600, 5000, 0, None, budget, precision="fp32"))
    assert len(options) == 4, list(options)
    assert all(alt.peak_bytes < base.peak_bytes for alt in options.values())
    (fewer,) = [alt for label, alt in options.items() if "query rows" in label]
    assert (
        fewer.peak_bytes
        <= budget * GIB
        < estimate(shapes, fewer.n_query_rows + 1, 5000, 0, precision="fp32").peak_bytes
    )
    message = budget_error(base, budget, list(options.items()))
    assert message and f"{base.peak_bytes / GIB:.2f} GB" in message and "\n" not in message
    assert budget_error(base, base.peak_bytes / GIB + 1, []) is None


def test_over_budget_names_cheaper_settings_before_heavy_imports(adapter, guesser_tokens):
    """The check (and counting the rows) runs in a fresh process and fails before torch is imported."""
    train_dir, val_dir = guesser_tokens
    code = f"""
import sys
from playpen_attribution.core.errors import WorkflowInputError
from playpen_attribution.attribution.query_memory import check_query_budget, count_token_rows
rows = count_token_rows({str(val_dir)!r}), count_token_rows({str(train_dir)!r})
print("rows:", rows)
try:
    check_query_budget({str(adapter)!r}, *rows, 0, None, 5e-5, precision="fp32")
except WorkflowInputError as exc:
    print("error:", exc)
print("torch imported:", "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch imported: False" in out
    assert "rows: (3, 8)" in out
    (error,) = [line for line in out.splitlines() if line.startswith("error:")]  # one line
    # 5e-5 GB (52 KB) holds one of the tiny model's 32 KB query rows, not three
    assert "memory_budget_gb=5e-05" in error
    for lever in ("projection_dim: 16", "query rows at most 1 ", 'filter_modules: "*.mlp.*"'):
        assert lever in error, error


@pytest.mark.parametrize("script", ["reduce_query", "score_train"])
def test_rule_scripts_check_the_budget_before_torch(adapter, guesser_tokens, script):
    """The rules' scripts read attribution.memory_budget_gb from their resources and stop over
    it before importing torch (a fake `snakemake` object with no log: the step runs in the open)."""
    from conftest import REPO

    train_dir, val_dir = guesser_tokens
    code = f"""
import runpy, sys
from types import SimpleNamespace
from playpen_attribution.core.errors import WorkflowInputError
fake = SimpleNamespace(
    rule={script!r},
    log=[],
    input=SimpleNamespace(adapter={str(adapter)!r}, val={str(val_dir)!r}, train={str(train_dir)!r}),
    params=SimpleNamespace(attribution={{"projection_dim": 0, "filter_modules": None, "precision": "fp32"}}),
    output=[],
    resources=SimpleNamespace(memory_budget_gb="5e-05", nproc_per_node=1),
)
try:
    runpy.run_path({str(REPO / "workflow" / "scripts" / f"{script}.py")!r}, init_globals={{"snakemake": fake}})
except WorkflowInputError as exc:
    print("error:", exc)
print("torch imported:", "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch imported: False" in out, out
    (error,) = [line for line in out.splitlines() if line.startswith("error:")]
    assert "memory_budget_gb=5e-05" in error and "3 query rows" in error
    # score_train counts the training rows for the matrix; reduce_query has none
    assert ("for 8 training rows" in error) == (script == "score_train"), error


def test_global_projection_matches_what_bergson_writes(tmp_path, adapter, guesser_tokens):
    """TRAK's global projection: one vector of projection_dim per query row (a bergson
    reduce with projection_target "global", called directly)."""
    from bergson.cli.commands import Reduce
    from bergson.config.config import DataConfig, DistributedConfig, IndexConfig, PreprocessConfig

    from playpen_attribution.data.tokens import attribution_view, load_token_dataset

    _, val_dir = guesser_tokens
    attribution_view(load_token_dataset(val_dir)).save_to_disk(str(tmp_path / "input"))
    run = tmp_path / "run"
    Reduce(
        index_cfg=IndexConfig(
            run_path=str(run),
            model=str(adapter),
            tokenizer=str(adapter),
            precision="fp32",
            projection_dim=64,
            projection_target="global",
            distributed=DistributedConfig(nnode=1, nproc_per_node=1),
            data=DataConfig(dataset=str(tmp_path / "input")),
            token_batch_size=256,
        ),
        preprocess_cfg=PreprocessConfig(aggregation="none"),
    ).execute()
    n_val = count_token_rows(val_dir)
    est = check_query_budget(adapter, n_val, 8, 64, None, 1.0, projection_target="global", precision="fp32")
    info = json.loads((run / "info.json").read_text())
    assert info["grad_sizes"] == {"gradients": 64} and est.entries_per_row == 64
    assert est.gradients_file_bytes == (run / "gradients.bin").stat().st_size == n_val * 64 * 4
    assert est.info_json_bytes == (run / "info.json").stat().st_size


def test_matrix_memory_matches_the_aggregation_peak():
    """score_train's largest matrix allocation, aggregating it (rank_mean's rankdata), is as
    estimated: measured with tracemalloc, the matrix itself included."""
    import tracemalloc

    import numpy as np
    import pandas as pd
    import scipy.stats  # noqa: F401  (imported inside aggregate: not part of the peak)

    from playpen_attribution.attribution.scoring import aggregate

    n_train, n_query = 2000, 300
    rows = pd.DataFrame(
        {"row_id": [f"r{i}" for i in range(n_train)], "n_tokens": 1, "n_trained": 1, "loss": 0.0}
    )
    tracemalloc.start()
    try:
        matrix = np.random.default_rng(0).normal(size=(n_train, n_query))
        aggregate(matrix, rows, [f"v{j}" for j in range(n_query)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    est = estimate(
        lora_linear_shapes(GEMMA3_1B, MODULES, 16), n_query, n_train, projection_dim=16, precision="fp32"
    )
    print(f"aggregation peak {peak} B (estimate {est.matrix_memory_bytes})")
    assert _within(est.matrix_memory_bytes, peak), (est.matrix_memory_bytes, peak)


def test_pipeline_script_checks_the_budget_before_torch(adapter, guesser_tokens):
    """pipeline_attribution counts its R fits too, stops before torch over budget, and
    names the pipeline's own projection setting."""
    from conftest import REPO

    train_dir, val_dir = guesser_tokens
    code = f"""
import runpy, sys
from types import SimpleNamespace
from playpen_attribution.core.errors import WorkflowInputError
fake = SimpleNamespace(
    rule="pipeline_attribution",
    log=[],
    input=SimpleNamespace(adapter={str(adapter)!r}, val={str(val_dir)!r}, train={str(train_dir)!r}),
    params=SimpleNamespace(
        attribution={{"filter_modules": None, "precision": "fp32"}},
        pipeline={{"method": "trackstar", "projection_dim": 64}},
    ),
    output=[],
    resources=SimpleNamespace(memory_budget_gb="1e-3", nproc_per_node=1),
)
try:
    runpy.run_path({str(REPO / "workflow" / "scripts" / "pipeline_attribution.py")!r}, init_globals={{"snakemake": fake}})
except WorkflowInputError as exc:
    print("error:", exc)
print("torch imported:", "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch imported: False" in out, out
    (error,) = [line for line in out.splitlines() if line.startswith("error:")]
    # 28 matrices x (64^2)^2 x 4 bytes x 7 R units: the fits, not the queries, are over
    assert "autocorrelation fits 12.25 GB" in error, error
    assert "attribution.trackstar.projection_dim: 16" in error, error
