"""Bergson hessian + reduce + score on the token rows, with the bootstrapped adapter.

Math: with g_i the LoRA-weight gradient of training row i's loss, q_j the same for
validation row j, u(x) = x / |x| (if unit_normalize) and H the method's Hessian
approximation (the identity for method `none`):

  unit_normalize (default), two-sided:
    query  q   = mean_j u(H^-1/2 q_j)          (bergson reduce, aggregation="mean")
    score  s_i = u(H^-1/2 g_i) . q             (bergson score, "individual" vs the one query)
  without unit_normalize, one-sided (classic influence):
    s_i = g_i . H^-1 mean_j q_j

H^-1 is bergson's damped inverse of the factored Hessian (`inversion`, `damping_factor`).

We call Bergson's command classes, not `build()`: they write each run's config.yaml, which
`score` reads to know that the query is already normalised (otherwise it re-normalises it
and every score is scaled by a constant).
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)


@dataclass
class AttributionSettings:
    """Config `attribution` (no defaults here: the schema holds them; see settings.py)."""

    CONFIG_SECTION = "attribution"

    unit_normalize: bool
    projection_dim: int
    precision: str
    token_batch_size: int
    loss_reduction: str
    filter_modules: str | None
    nproc_per_node: int
    sparse_logits: bool = field(metadata={"config": "compute.sparse_logits"})  # see sparse_logits.py


@dataclass
class PreconditionerSettings:
    """One factored Hessian method and how it is fit and inverted (config
    `attribution.preconditioner`, plus the method and the seed of the label sampling)."""

    CONFIG_SECTION = "attribution.preconditioner"

    method: str = field(metadata={"config": None})
    data: str
    use_dataset_labels: bool
    hessian_dtype: str
    module_partitions: int
    inversion: str
    damping_factor: float
    seed: int = field(metadata={"config": "seed"})

    def hessian_config(self):
        from bergson.config.config import HessianConfig

        return HessianConfig(
            # EK-FAC is K-FAC's factors plus corrected eigenvalues in their eigenbasis.
            method="kfac" if self.method == "ekfac" else self.method,
            ev_correction=self.method == "ekfac",
            hessian_dtype=self.hessian_dtype,
            use_dataset_labels=self.use_dataset_labels,
            module_partitions=self.module_partitions,
        )

    def preprocess(self, hessian_dir, unit_normalize: bool, aggregation: str):
        from bergson.config.config import InversionConfig, PreprocessConfig

        return PreprocessConfig(
            unit_normalize=unit_normalize,
            aggregation=aggregation,
            hessian_path=str(hessian_run(hessian_dir)),
            ev_correction=self.method == "ekfac",
            inversion_cfg=InversionConfig(inversion=self.inversion, damping_factor=self.damping_factor),
        )


def settings_from_params(
    params, nproc_per_node: int
) -> tuple[AttributionSettings, PreconditionerSettings | None]:
    """A rule's params (`attribution`, `compute`, `preconditioner`) as settings.
    `nproc_per_node` is the job's resource: it changes no score, so it is no param."""
    from playpen_attribution.core.settings import from_params

    settings = from_params(
        AttributionSettings,
        params.attribution,
        # the Hessian fit's params leave out unit_normalize, which it does not depend on
        absent={"unit_normalize"},
        nproc_per_node=nproc_per_node,
        sparse_logits=params.compute["sparse_logits"],
    )
    if not params.preconditioner:
        return settings, None
    # the Hessian fit's params leave out how it is inverted afterwards
    return settings, from_params(
        PreconditionerSettings, params.preconditioner, absent={"inversion", "damping_factor"}
    )


def _preprocess(settings, preconditioner, hessian_dir, aggregation):
    """Bergson's PreprocessConfig: plain, or with the method's Hessian."""
    from bergson.config.config import PreprocessConfig

    if preconditioner is None:
        return PreprocessConfig(unit_normalize=settings.unit_normalize, aggregation=aggregation)
    return preconditioner.preprocess(hessian_dir, settings.unit_normalize, aggregation)


def hessian_run(hessian_dir) -> Path:
    return Path(hessian_dir) / "run"


def resolve_precision(precision: str) -> str:
    """'auto' is bf16 on a GPU that supports it, fp32 otherwise."""
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def _check_token_rows(tokens_dir, settings: AttributionSettings):
    from playpen_attribution.data.tokens import load_token_dataset

    tokens = load_token_dataset(tokens_dir)
    longest = max(tokens["n_tokens"])
    if longest > settings.token_batch_size:
        raise WorkflowInputError(
            f"{tokens_dir}: a row has {longest} tokens, more than "
            f"attribution.token_batch_size={settings.token_batch_size}; raise it (up to the "
            "model's context length) or lower tokenize.max_length"
        )
    return tokens


def _check_model_limit(adapter_dir, settings: AttributionSettings) -> None:
    """Bergson refuses a token batch longer than the model's context; say so up front."""
    import json

    from playpen_attribution.attribution.bergson_tokenizer import configured_model_max_length

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "config.json").read_text())
    text_config = config.get("text_config") or {}
    limits = [config.get("max_position_embeddings"), text_config.get("max_position_embeddings")]
    limits.append(configured_model_max_length(adapter_dir))
    limits = [int(x) for x in limits if isinstance(x, (int, float)) and x > 0]
    if limits and settings.token_batch_size > min(limits):
        raise WorkflowInputError(
            f"attribution.token_batch_size={settings.token_batch_size} exceeds the model's "
            f"maximum length {min(limits)}; lower it (it must still fit the longest row)"
        )


def _timing(start: float, tokens) -> dict:
    """Wall time of one Bergson command (model load included) and what it processed."""
    return {
        "execute_s": round(time.perf_counter() - start, 3),
        "rows": len(tokens),
        "tokens": int(sum(tokens["n_tokens"])),
    }


def _index_config(run_path, adapter_dir, tokens_dir, settings: AttributionSettings, **pipeline_options):
    """Bergson's IndexConfig for our token rows; `pipeline_options` (a pipeline's own index
    settings, e.g. TRAK's loss_fn) select TrackstarIndexConfig, which its commands take."""
    from bergson.config.config import DataConfig, DistributedConfig, IndexConfig, TrackstarIndexConfig

    kwargs = dict(pipeline_options)
    if settings.filter_modules:
        kwargs["filter_modules"] = settings.filter_modules
    config_class = TrackstarIndexConfig if pipeline_options else IndexConfig
    return config_class(
        run_path=str(run_path),
        model=str(adapter_dir),  # a dir with adapter_config.json: loaded as PEFT, LoRA grads only
        tokenizer=str(adapter_dir),
        precision=resolve_precision(settings.precision),
        overwrite=True,  # a failed earlier attempt leaves `<run>.part` behind
        projection_dim=settings.projection_dim,
        distributed=DistributedConfig(nnode=1, nproc_per_node=settings.nproc_per_node),
        # The token rows carry input_ids + labels: bergson uses them as they are.
        data=DataConfig(dataset=str(tokens_dir)),
        token_batch_size=settings.token_batch_size,
        loss_reduction=settings.loss_reduction,
        **kwargs,
    )


@contextmanager
def _bergson_run(adapter_dir, tokens_dir, out_dir, settings: AttributionSettings, **pipeline_options):
    """Set up one Bergson command's output directory; it is moved into place only on success.

    Yields (directory, IndexConfig, token rows). The directory holds `run/` (Bergson's run) and
    `timing.json`; `input/` (the exact input_ids + labels Bergson reads) exists only while
    the command runs. Bergson
    commands run in the block compute logits only at trained positions if
    `settings.sparse_logits`, and read only the tokenizer's config (bergson_tokenizer.py).
    """
    from playpen_attribution.attribution.bergson_tokenizer import config_only_tokenizer
    from playpen_attribution.core.io import atomic_path, write_json
    from playpen_attribution.data.tokens import attribution_view
    from playpen_attribution.sft.sparse_logits import bergson_sparse_logits

    _check_model_limit(adapter_dir, settings)
    if isinstance(tokens_dir, (list, tuple)):  # several splits, e.g. a Hessian on train + val
        import datasets

        tokens = datasets.concatenate_datasets([_check_token_rows(d, settings) for d in tokens_dir])
    else:
        tokens = _check_token_rows(tokens_dir, settings)
    with atomic_path(out_dir, is_dir=True) as tmp:
        # A copy, not the token rows in place: Bergson's dataset `.map` writes cache files
        # into its input directory, which would change another rule's output.
        view_dir = tmp / "input"
        attribution_view(tokens).save_to_disk(str(view_dir))
        start = time.perf_counter()
        with bergson_sparse_logits(settings.sparse_logits, settings.nproc_per_node), config_only_tokenizer():
            yield tmp, _index_config(tmp / "run", adapter_dir, view_dir, settings, **pipeline_options), tokens
        # The copy has served: Bergson's run keeps the rows it read (run/data.hf), and the
        # copy (plus Bergson's cache files in it) would double the tokens' size per run.
        shutil.rmtree(view_dir)
        write_json({**_timing(start, tokens), "sparse_logits": settings.sparse_logits}, tmp / "timing.json")


def fit_hessian(
    adapter_dir,
    tokens_dirs,
    out_dir,
    settings: AttributionSettings,
    preconditioner: PreconditionerSettings,
    estimate=None,
) -> None:
    """Fit the method's factored Hessian of the LoRA weights on `tokens_dirs` (bergson
    `hessian`); `estimate.json` records the memory model's figures beside the real size."""
    import torch
    from bergson.cli.commands import Hessian

    from playpen_attribution.core.io import write_json

    with _bergson_run(adapter_dir, list(tokens_dirs), out_dir, settings) as (tmp, index_cfg, tokens):
        # bergson samples the Fisher's labels with an unseeded torch.multinomial; in a
        # single process this global seed makes the fit reproducible.
        torch.manual_seed(preconditioner.seed)
        Hessian(hessian_cfg=preconditioner.hessian_config(), index_cfg=index_cfg).execute()
        written = sum(p.stat().st_size for p in (tmp / "run").rglob("*.safetensors"))
        record = {"written_bytes": written}
        if estimate is not None:
            record |= {"estimate": estimate.row(), "estimated_disk_bytes": estimate.disk_bytes}
        write_json(record, tmp / "estimate.json")
    log.info(
        "%s Hessian from %d rows written to %s (%.1f MB)",
        preconditioner.method,
        len(tokens),
        out_dir,
        written / 1e6,
    )


def reduce_query(
    adapter_dir,
    val_tokens_dir,
    out_dir,
    settings: AttributionSettings,
    preconditioner: PreconditionerSettings | None = None,
    hessian_dir=None,
    *,
    aggregation: str,
) -> None:
    """The validation rows' (preconditioned, normalised) gradients as queries: one per row
    (aggregation "none", what the workflow runs: score_train then writes the influence
    matrix), or their mean as one query ("mean")."""
    from bergson.cli.commands import Reduce

    with _bergson_run(adapter_dir, val_tokens_dir, out_dir, settings) as (_, index_cfg, tokens):
        Reduce(
            index_cfg=index_cfg,
            preprocess_cfg=_preprocess(settings, preconditioner, hessian_dir, aggregation),
        ).execute()
    log.info(
        "queries (aggregation %s) from %d validation rows written to %s", aggregation, len(tokens), out_dir
    )


def query_run(query_dir) -> Path:
    return Path(query_dir) / "run"


def score_train(
    adapter_dir,
    train_tokens_dir,
    query_dir,
    out_dir,
    scores_path,
    settings: AttributionSettings,
    preconditioner: PreconditionerSettings | None = None,
    hessian_dir=None,
    val_tokens_dir=None,
    matrix_path=None,
    matrix_ids_path=None,
):
    """Score every training row against every query; write the run and scores.parquet.

    With one query per validation row (`val_tokens_dir` names their rows), also write the
    influence matrix (train rows x validation rows, float32 .npy, loads lazily with
    `np.load(path, mmap_mode="r")`) and its row and column ids; scores.parquet then holds
    the aggregations of each training row's scores over the validation rows."""
    from bergson.cli.commands import Score
    from bergson.config.config import ScoreConfig

    with _bergson_run(adapter_dir, train_tokens_dir, out_dir, settings) as (tmp, index_cfg, tokens):
        Score(
            score_cfg=ScoreConfig(
                query_path=str(query_run(query_dir)),
                score="individual",
                precision=resolve_precision(settings.precision),
            ),
            index_cfg=index_cfg,
            # The query is already aggregated, normalised and preconditioned (its
            # config.yaml says so); the training gradients get H^-1/2 here when normalised.
            preprocess_cfg=_preprocess(settings, preconditioner, hessian_dir, "none"),
        ).execute()
        matrix, rows = read_score_matrix(tmp / "run", tokens)
    if val_tokens_dir is None:
        from playpen_attribution.core.io import write_parquet

        scores = single_query_scores(matrix, rows)
        write_parquet(scores, scores_path)
        log.info("scored %d training rows: %s", len(scores), scores["score"].describe().to_dict())
    else:
        write_matrix_scores(matrix, rows, val_tokens_dir, scores_path, matrix_path, matrix_ids_path)


def write_matrix_scores(matrix, rows, val_tokens_dir, scores_path, matrix_path, matrix_ids_path):
    """The influence matrix (train rows x validation rows, float32 .npy, loads lazily with
    `np.load(path, mmap_mode="r")`), its row and column ids, and scores.parquet: each
    training row's scores aggregated over the validation rows (see `aggregate`)."""
    import numpy as np

    from playpen_attribution.core.io import atomic_path, write_json, write_parquet
    from playpen_attribution.data.tokens import load_token_dataset

    val_ids = load_token_dataset(val_tokens_dir)["row_id"]
    if matrix.shape[1] != len(val_ids):
        raise RuntimeError(f"{matrix.shape[1]} query columns for {len(val_ids)} validation rows")
    if not np.isfinite(matrix).all():
        raise RuntimeError(f"{int((~np.isfinite(matrix)).sum())} scores are not finite (inf or NaN)")
    with atomic_path(matrix_path) as tmp_matrix:
        with open(tmp_matrix, "wb") as handle:
            np.save(handle, matrix.astype(np.float32))
    write_json({"rows": rows["row_id"].tolist(), "columns": list(val_ids)}, matrix_ids_path)
    scores = aggregate(matrix, rows, val_ids)
    write_parquet(scores, scores_path)
    log.info("scored %d training rows: %s", len(scores), scores["score"].describe().to_dict())


AGGREGATIONS = ("mean", "nearest", "rank_mean")


def aggregate(matrix, rows, val_ids):
    """Each training row's scores over the validation rows, three ways:

    - mean: the influence on the mean validation loss (equals scoring against the mean
      query, since the score is linear in the query);
    - nearest: the largest score over validation rows: a row that strongly helps one
      validation row counts, even if it is atypical for the rest;
    - rank_mean: the mean over validation rows of the row's percentile rank among the
      training rows (1 = top for every validation row), robust to score scale.
    Plus, for each training row, the validation row it helps most.
    """
    import numpy as np
    from scipy.stats import rankdata

    n = matrix.shape[0]
    percentile = (rankdata(matrix, axis=0) - 1) / max(n - 1, 1)
    out = rows.assign(
        score=matrix.mean(axis=1),
        mean=matrix.mean(axis=1),
        nearest=matrix.max(axis=1),
        rank_mean=percentile.mean(axis=1),
        best_val_row_id=np.asarray(val_ids, dtype=object)[matrix.argmax(axis=1)],
    )
    return out[["row_id", "score", *AGGREGATIONS, "best_val_row_id", "n_tokens", "n_trained", "loss"]]


def read_score_matrix(run_dir, tokens):
    """Bergson's row i is input row i: its scores against every query, and the row's ids.

    Bergson writes one record per input row, in input order, with a `written_j` flag per
    query. Its per-row dataset keeps the labels it scored, so we check them against ours
    row by row. Returns (matrix [rows x queries] float64, frame of row_id, n_tokens,
    n_trained, loss)."""
    import datasets
    import numpy as np
    import pandas as pd
    from bergson.data import load_scores

    run_dir = Path(run_dir)
    stored = load_scores(run_dir)
    matrix = np.stack(
        [np.asarray(stored.mmap[f"score_{j}"], dtype=np.float64) for j in range(stored.num_scores)], 1
    )
    written = np.stack(
        [np.asarray(stored.mmap[f"written_{j}"], dtype=bool) for j in range(stored.num_scores)], 1
    )
    if len(matrix) != len(tokens):
        raise RuntimeError(f"bergson wrote {len(matrix)} scores for {len(tokens)} rows")
    missing_rows = ~written.all(axis=1)
    if missing_rows.any():
        missing = [tokens[int(i)]["row_id"] for i in np.flatnonzero(missing_rows)[:10]]
        raise RuntimeError(f"bergson did not write scores for {int(missing_rows.sum())} rows, e.g. {missing}")
    per_row = datasets.load_from_disk(str(run_dir / "data.hf"))
    if per_row["labels"] != tokens["labels"]:
        raise RuntimeError("bergson's row order differs from the token rows; scores would be mislabeled")
    loss = per_row["loss"] if "loss" in per_row.column_names else [float("nan")] * len(matrix)
    rows = pd.DataFrame(
        {
            "row_id": tokens["row_id"],
            "n_tokens": np.asarray(tokens["n_tokens"], dtype=np.int64),
            "n_trained": np.asarray(tokens["n_trained"], dtype=np.int64),
            "loss": np.asarray(loss, dtype=np.float64),
        }
    )
    return matrix, rows


def single_query_scores(matrix, rows):
    """Scores against a single query (the mean-query path): row_id, score, ..."""
    if matrix.shape[1] != 1:
        raise RuntimeError(f"expected one query score column, bergson wrote {matrix.shape[1]}")
    return rows.assign(score=matrix[:, 0])[["row_id", "score", "n_tokens", "n_trained", "loss"]]


def read_scores(run_dir, tokens):
    """Bergson's scores against a single query, mapped to row_ids (see read_score_matrix)."""
    return single_query_scores(*read_score_matrix(run_dir, tokens))
