"""How much memory and disk the per-query gradients and the influence matrix take, before any run.

Light (stdlib only; counting token rows imports pyarrow, not torch): the `reduce_query` and
`score_train` rules check the estimate against `attribution.memory_budget_gb` before they
import torch or load a model.

Accounting, from bergson 2.5's code (`builder.py`, `data.py:create_index`,
`score/score.py`, `score/score_writer.py`) and ours (`attribution.score_train`):

- One query row's gradient has one entry per LoRA parameter (`sum(in * out)` over the LoRA
  matrices bergson tracks), or `projection_dim**2` per matrix with a per-module projection,
  or `projection_dim` in all with a global one (TRAK).
- `reduce_query` (aggregation "none") writes them to `run/gradients.bin`, a
  `[rows, entries]` array in the gradient dtype, i.e. the LoRA weights' dtype, which is the
  `precision` the model is loaded in (fp32: float32, bf16: bfloat16, fp16: float16), plus
  `info.json` (`grad_sizes`: every module's name and size) and a few small files (the
  processor, config, the rows it read in `data.hf`). Reduce itself streams per batch into
  the memory-mapped file.
- `score_train` loads the whole file into RAM (`get_query_grads` copies the memmap;
  bfloat16 is cast to float32, so bf16 takes 4 bytes a number in RAM as fp32 does), then
  moves it to the scoring device in the scoring dtype (on a GPU a second copy; on the CPU
  the same tensor). So the query gradients in RAM are the step's largest allocation.
- Bergson's score store `scores.bin`: per training row, one (score, written flag) pair per
  query, each pair padded to a power of two (float32: 8 bytes, bf16/fp16: 4), each row to 8
  bytes. Our `matrix.npy`: train rows x query rows float32 plus the 128-byte npy header.
  Reading the store back holds the matrix in float64 (and, while stacking, its columns: 2
  copies); the aggregation (`attribution.aggregate`: scipy's rankdata argsorts, sorts and
  ranks each column) peaks at about 7 float64 copies, the matrix included.
- The pipelines (trackstar*, trak) also fit autocorrelation matrices R of the projected
  gradients: per module a `size x size` float32 matrix (size = projection_dim**2 per
  module, or projection_dim for TRAK's one global vector), so one "R unit" is
  `4 * sum(size**2)` bytes. Bergson saves each fit with its eigenvectors
  (`hessians.pth` + `hessians_eigen.pth`: 2 units on disk; the mix has no eigenvectors:
  5 units in all for `trackstar`). In memory, measured on the demo (Gemma 3 270M,
  projection 32, 1.06 GB a unit) against the same job at projection 16: a single fit
  (`trackstar_train`, `trackstar_query`) held 4.8 and 3.8 units more, so it counts 5; the
  mix, which loads both fits with their eigenvectors before building its own, counts 7
  (not measured). `PIPELINE_R_UNITS`.
Not counted: the model's own weights, and one batch of training gradients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from playpen_attribution.attribution.hessian_memory import (
    GIB,
    LinearShape,
    lora_linear_shapes,
    projection_shapes,
)

# Bytes of one stored gradient entry in gradients.bin, per `attribution.precision`;
# "auto" (bf16 on a GPU, fp32 otherwise) is counted as fp32, the larger.
STORED_BYTES = {"fp32": 4, "auto": 4, "bf16": 2, "fp16": 2, "fp64": 8}
# ...and in RAM when score_train loads them (bergson casts bfloat16 to float32).
LOADED_BYTES = {"fp32": 4, "auto": 4, "bf16": 4, "fp16": 2, "fp64": 8}
# The scoring dtype's bytes (on a GPU, the queries' second copy)
SCORE_BYTES = {"fp32": 4, "auto": 4, "bf16": 2, "fp16": 2, "fp64": 8}
NUMPY_DTYPE = {"fp32": "float32", "auto": "float32", "bf16": "bfloat16", "fp16": "float16", "fp64": "float64"}
# config.yaml, processor_config.yaml, the (empty) normalizers and hessians, total_processed
RUN_FILES_BYTES = 16 * 1024
NPY_HEADER_BYTES = 128
# float64 copies of the matrix held at once while aggregating it (7.1-7.2 measured with
# tracemalloc for 500-5,000 x 50-600; reading the store back holds 2)
MATRIX_COPIES = 7
PROJECTION_TARGETS = ("per_module", "global")
# R units (see the docstring) per pipeline: (held in memory at the peak, written to disk)
PIPELINE_R_UNITS = {"trackstar": (7, 5), "trackstar_train": (5, 2), "trackstar_query": (5, 2), "trak": (5, 2)}


@dataclass
class QueryEstimate:
    """Bytes of the query gradients and the influence matrix, for given settings."""

    n_query_rows: int
    n_train_rows: int
    projection_dim: int
    projection_target: str
    precision: str
    n_modules: int
    entries_per_row: int
    gradients_file_bytes: int  # run/gradients.bin
    info_json_bytes: int  # run/info.json
    query_memory_bytes: int  # RAM score_train holds for the queries
    query_device_bytes: int  # their copy on the scoring device (a GPU)
    scores_file_bytes: int  # bergson's score run: scores.bin
    matrix_file_bytes: int  # matrix.npy
    matrix_memory_bytes: int  # reading the store back and aggregating it
    autocorrelation_memory_bytes: int = 0  # a pipeline's R fits, at their peak
    autocorrelation_disk_bytes: int = 0  # ... and on disk (in the temporary pipeline run)

    @property
    def query_disk_bytes(self) -> int:
        """The query run on disk (without data.hf, the rows it read)."""
        return self.gradients_file_bytes + self.info_json_bytes + RUN_FILES_BYTES

    @property
    def matrix_disk_bytes(self) -> int:
        """Bergson's score store plus our matrix.npy."""
        return self.scores_file_bytes + self.matrix_file_bytes

    @property
    def peak_bytes(self) -> int:
        """The most RAM any step holds at once: the loaded queries, the matrix, or a
        pipeline's autocorrelation fits."""
        return max(self.query_memory_bytes, self.matrix_memory_bytes, self.autocorrelation_memory_bytes)

    def settings(self) -> str:
        projection = (
            f"projection_dim {self.projection_dim}"
            + (" (global)" if self.projection_target == "global" else "")
            if self.projection_dim
            else "no projection"
        )
        return f"{self.n_query_rows} query rows, {projection}, {self.n_modules} LoRA matrices"

    def row(self) -> dict:
        return {
            "query_rows": self.n_query_rows,
            "train_rows": self.n_train_rows,
            "projection_dim": self.projection_dim,
            "projection_target": self.projection_target,
            "precision": self.precision,
            "modules": self.n_modules,
            "entries_per_row": self.entries_per_row,
            "query_memory_gb": round(self.query_memory_bytes / GIB, 3),
            "query_device_gb": round(self.query_device_bytes / GIB, 3),
            "query_disk_gb": round(self.query_disk_bytes / GIB, 3),
            "matrix_memory_gb": round(self.matrix_memory_bytes / GIB, 4),
            "matrix_disk_gb": round(self.matrix_disk_bytes / GIB, 4),
            "autocorrelation_memory_gb": round(self.autocorrelation_memory_bytes / GIB, 3),
            "autocorrelation_disk_gb": round(self.autocorrelation_disk_bytes / GIB, 3),
            "peak_gb": round(self.peak_bytes / GIB, 3),
        }


def grad_sizes(shapes: list[LinearShape], projection_dim: int, projection_target: str = "per_module") -> dict:
    """Bergson's `grad_sizes` (info.json): entries per module, in its order."""
    if projection_target not in PROJECTION_TARGETS:
        raise ValueError(f"projection_target {projection_target!r} is not one of {PROJECTION_TARGETS}")
    if projection_target == "global":
        if projection_dim <= 0:
            raise ValueError("a global projection needs projection_dim > 0")
        return {"gradients": projection_dim}
    if projection_dim:
        return {s.name: projection_dim**2 for s in shapes}
    return {s.name: s.n_in * s.n_out for s in shapes}


def info_json_bytes(n_rows: int, sizes: dict, precision: str) -> int:
    """The exact size of the info.json bergson's `create_index` writes."""
    info = {
        "attribute_tokens": False,
        "num_items": n_rows,
        "num_grads": n_rows,
        "grad_sizes": sizes,
        "base_dtype": NUMPY_DTYPE[precision],
    }
    return len(json.dumps(info, indent=2).encode())


def score_row_bytes(n_queries: int, precision: str) -> int:
    """One training row of bergson's scores.bin (`_score_struct_dtype`)."""
    pair = SCORE_BYTES[precision] + 1
    aligned = 1 << (pair - 1).bit_length()
    return (n_queries * aligned + 7) // 8 * 8


def estimate(
    shapes: list[LinearShape],
    n_query_rows: int,
    n_train_rows: int,
    projection_dim: int,
    projection_target: str = "per_module",
    *,
    precision: str,
    pipeline: str | None = None,
) -> QueryEstimate:
    """The query and matrix bytes for `shapes`, plus the R fits of `pipeline` (one of
    PIPELINE_R_UNITS) if given (see the module docstring for the accounting)."""
    if precision not in STORED_BYTES:
        raise ValueError(f"precision {precision!r} is not one of {sorted(STORED_BYTES)}")
    sizes = grad_sizes(shapes, projection_dim, projection_target)
    entries = sum(sizes.values())
    cells = n_train_rows * n_query_rows
    r_unit = 4 * sum(size**2 for size in sizes.values())
    r_memory, r_disk = PIPELINE_R_UNITS[pipeline] if pipeline else (0, 0)
    return QueryEstimate(
        n_query_rows=n_query_rows,
        n_train_rows=n_train_rows,
        projection_dim=projection_dim,
        projection_target=projection_target,
        precision=precision,
        n_modules=len(shapes),
        entries_per_row=entries,
        gradients_file_bytes=n_query_rows * entries * STORED_BYTES[precision],
        info_json_bytes=info_json_bytes(n_query_rows, sizes, precision),
        query_memory_bytes=n_query_rows * entries * LOADED_BYTES[precision],
        query_device_bytes=n_query_rows * entries * SCORE_BYTES[precision],
        scores_file_bytes=n_train_rows * score_row_bytes(n_query_rows, precision),
        matrix_file_bytes=NPY_HEADER_BYTES + cells * 4,
        matrix_memory_bytes=MATRIX_COPIES * cells * 8,
        autocorrelation_memory_bytes=r_memory * r_unit,
        autocorrelation_disk_bytes=r_disk * r_unit,
    )


_estimate = estimate


def count_token_rows(tokens_dir) -> int:
    """Rows of a `datasets.save_to_disk` directory, from its arrow files (pyarrow, no torch)."""
    from pathlib import Path

    import pyarrow as pa

    tokens_dir = Path(tokens_dir)
    state = json.loads((tokens_dir / "state.json").read_text())
    if state.get("_indices_data_files"):
        raise ValueError(
            f"{tokens_dir}: saved with an indices mapping; cannot count rows from its arrow files"
        )
    rows = 0
    for entry in state["_data_files"]:
        with pa.memory_map(str(tokens_dir / entry["filename"])) as source:
            rows += sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    return rows


def cheaper_settings(
    config: dict,
    target_modules: list[str],
    r: int,
    n_query_rows: int,
    n_train_rows: int,
    projection_dim: int,
    filter_modules: str | None,
    budget_gb: float,
    projection_target: str = "per_module",
    *,
    precision: str,
    pipeline: str | None = None,
    projection_key: str = "attribution.projection_dim",
) -> list[tuple[str, QueryEstimate]]:
    """Alternatives to suggest when the estimate is over budget, cheapest levers first."""

    def estimate(*args):
        return _estimate(*args, precision=precision, pipeline=pipeline)

    shapes = lora_linear_shapes(config, target_modules, r, filter_modules)
    current = estimate(shapes, n_query_rows, n_train_rows, projection_dim, projection_target)
    options = []
    if projection_target == "per_module":
        for dim in (16, 32):
            if not projection_dim or dim < projection_dim:
                options.append(
                    (
                        f"{projection_key}: {dim}",
                        estimate(shapes, n_query_rows, n_train_rows, dim, projection_target),
                    )
                )
    per_row = current.query_memory_bytes / max(n_query_rows, 1)
    fitting = int(budget_gb * GIB // per_row) if per_row else n_query_rows
    if 0 < fitting < n_query_rows:
        options.append(
            (
                f"query rows at most {fitting} (raise split.eval_fraction or set split.query_outcomes)",
                estimate(shapes, fitting, n_train_rows, projection_dim, projection_target),
            )
        )
    mlp = [m for m in target_modules if m in ("gate_proj", "up_proj", "down_proj")]
    if mlp and projection_target == "per_module":
        extra = "*.mlp.*"
        combined = f"{filter_modules},{extra}" if filter_modules else extra
        fewer = lora_linear_shapes(config, target_modules, r, combined)
        options.append(
            (
                f'attribution.filter_modules: "{combined}" (attention only)',
                estimate(fewer, n_query_rows, n_train_rows, projection_dim, projection_target),
            )
        )
    return options


def budget_error(
    estimate_: QueryEstimate, budget_gb: float, alternatives: list[tuple[str, QueryEstimate]]
) -> str | None:
    """None if the estimate fits `budget_gb`, else a one-line message naming cheaper settings."""
    if estimate_.peak_bytes <= budget_gb * GIB:
        return None
    cheaper = "; ".join(
        f"{label}: {alt.peak_bytes / GIB:.2f} GB"
        for label, alt in alternatives
        if alt.peak_bytes < estimate_.peak_bytes
    )
    return (
        f"the query gradients and influence matrix need about {estimate_.peak_bytes / GIB:.2f} GB of "
        f"memory ({estimate_.settings()}: {estimate_.entries_per_row:,} numbers a row; "
        f"queries {estimate_.query_memory_bytes / GIB:.2f} GB, {estimate_.query_disk_bytes / GIB:.2f} GB on disk"
        + (
            f"; autocorrelation fits {estimate_.autocorrelation_memory_bytes / GIB:.2f} GB"
            if estimate_.autocorrelation_memory_bytes
            else ""
        )
        + (
            f"; matrix {estimate_.matrix_memory_bytes / GIB:.3f} GB for {estimate_.n_train_rows} training rows"
            if estimate_.n_train_rows
            else ""
        )
        + "), "
        f"more than attribution.memory_budget_gb={budget_gb}. Cheaper settings: {cheaper or 'none'}"
    )


def check_query_budget(
    adapter_dir,
    n_query_rows: int,
    n_train_rows: int,
    projection_dim: int,
    filter_modules: str | None,
    budget_gb: float,
    projection_target: str = "per_module",
    *,
    precision: str,
    pipeline: str | None = None,
    projection_key: str = "attribution.projection_dim",
) -> QueryEstimate:
    """Estimate the query gradients and the matrix (and a pipeline's R fits) for a
    bootstrapped adapter (its config.json and adapter_config.json, nothing else) and fail
    with cheaper settings when over budget."""
    import logging
    from pathlib import Path

    from playpen_attribution.core.errors import WorkflowInputError

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "config.json").read_text())
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    # in the model's order, as bergson lists them in info.json
    order = list(projection_shapes(config))
    target_modules = sorted(
        adapter["target_modules"], key=lambda m: order.index(m) if m in order else len(order)
    )
    shapes = lora_linear_shapes(config, target_modules, adapter["r"], filter_modules)
    projection_dim = projection_dim or 0
    result = estimate(
        shapes,
        n_query_rows,
        n_train_rows,
        projection_dim,
        projection_target,
        precision=precision,
        pipeline=pipeline,
    )
    logging.getLogger(__name__).info("query memory estimate: %s (budget %s GB)", result.row(), budget_gb)
    message = budget_error(
        result,
        budget_gb,
        cheaper_settings(
            config,
            target_modules,
            adapter["r"],
            n_query_rows,
            n_train_rows,
            projection_dim,
            filter_modules,
            budget_gb,
            projection_target,
            precision=precision,
            pipeline=pipeline,
            projection_key=projection_key,
        ),
    )
    if message:
        raise WorkflowInputError(message)
    return result
