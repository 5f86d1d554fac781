"""Bergson reduce + score on the token rows, with the bootstrapped adapter.

Math (identity preconditioner): with g_i the LoRA-weight gradient of training row i's loss,
q_j the same for validation row j and u(x) = x / |x| (if unit_normalize):

    query  q   = mean_j u(q_j)        (bergson reduce, aggregation="mean")
    score  s_i = u(g_i) . q           (bergson score, score="individual" vs the one query)

We call Bergson's command classes, not `build()`: they write each run's config.yaml, which
`score` reads to know that the query is already normalised (otherwise it re-normalises it
and every score is scaled by a constant).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkflowInputError

log = logging.getLogger(__name__)


@dataclass
class AttributionSettings:
    unit_normalize: bool = True
    projection_dim: int = 0
    precision: str = "auto"
    token_batch_size: int = 1024
    loss_reduction: str = "mean"
    filter_modules: str | None = None
    nproc_per_node: int = 1
    sparse_logits: bool = True  # config compute.sparse_logits (see sparse_logits.py)


def resolve_precision(precision: str) -> str:
    """'auto' is bf16 on a GPU that supports it, fp32 otherwise."""
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def _check_token_rows(tokens_dir, settings: AttributionSettings):
    from .tokens import load_token_dataset

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

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "config.json").read_text())
    text_config = config.get("text_config") or {}
    limits = [config.get("max_position_embeddings"), text_config.get("max_position_embeddings")]
    tokenizer_config = adapter_dir / "tokenizer_config.json"
    if tokenizer_config.exists():
        limits.append(json.loads(tokenizer_config.read_text()).get("model_max_length"))
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


def _index_config(run_path, adapter_dir, tokens_dir, settings: AttributionSettings):
    from bergson.config.config import DataConfig, DistributedConfig, IndexConfig

    kwargs = {}
    if settings.filter_modules:
        kwargs["filter_modules"] = settings.filter_modules
    return IndexConfig(
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
def _bergson_run(adapter_dir, tokens_dir, out_dir, settings: AttributionSettings):
    """Set up one Bergson command's output directory; it is moved into place only on success.

    Yields (directory, IndexConfig, token rows). The directory holds `input/` (the exact
    input_ids + labels Bergson reads), `run/` (Bergson's run) and `timing.json`. Bergson
    commands run in the block compute logits only at trained positions if
    `settings.sparse_logits`.
    """
    from .io import atomic_path, write_json
    from .sparse_logits import bergson_sparse_logits
    from .tokens import attribution_view

    _check_model_limit(adapter_dir, settings)
    tokens = _check_token_rows(tokens_dir, settings)
    with atomic_path(out_dir, is_dir=True) as tmp:
        # A copy, not the token rows in place: Bergson's dataset `.map` writes cache files
        # into its input directory, which would change another rule's output.
        view_dir = tmp / "input"
        attribution_view(tokens).save_to_disk(str(view_dir))
        start = time.perf_counter()
        with bergson_sparse_logits(settings.sparse_logits, settings.nproc_per_node):
            yield tmp, _index_config(tmp / "run", adapter_dir, view_dir, settings), tokens
        write_json({**_timing(start, tokens), "sparse_logits": settings.sparse_logits}, tmp / "timing.json")


def reduce_query(adapter_dir, val_tokens_dir, out_dir, settings: AttributionSettings) -> None:
    """Aggregate the validation rows' gradients into one query (mean of unit gradients)."""
    from bergson.cli.commands import Reduce
    from bergson.config.config import PreprocessConfig

    with _bergson_run(adapter_dir, val_tokens_dir, out_dir, settings) as (_, index_cfg, tokens):
        Reduce(
            index_cfg=index_cfg,
            preprocess_cfg=PreprocessConfig(unit_normalize=settings.unit_normalize, aggregation="mean"),
        ).execute()
    log.info("query from %d validation rows written to %s", len(tokens), out_dir)


def query_run(query_dir) -> Path:
    return Path(query_dir) / "run"


def score_train(
    adapter_dir, train_tokens_dir, query_dir, out_dir, scores_path, settings: AttributionSettings
):
    """Score every training row against the query; write the run and scores.parquet."""
    from bergson.cli.commands import Score
    from bergson.config.config import PreprocessConfig, ScoreConfig

    from .io import write_parquet

    with _bergson_run(adapter_dir, train_tokens_dir, out_dir, settings) as (tmp, index_cfg, tokens):
        Score(
            score_cfg=ScoreConfig(
                query_path=str(query_run(query_dir)),
                score="individual",
                precision=resolve_precision(settings.precision),
            ),
            index_cfg=index_cfg,
            # The query is already aggregated and normalised (its config.yaml says so).
            preprocess_cfg=PreprocessConfig(unit_normalize=settings.unit_normalize, aggregation="none"),
        ).execute()
        scores = read_scores(tmp / "run", tokens)
    write_parquet(scores, scores_path)
    log.info("scored %d training rows: %s", len(scores), scores["score"].describe().to_dict())


def read_scores(run_dir, tokens):
    """Bergson's row i is input row i: map scores back to row_ids, checking that claim.

    Bergson writes one record per input row, in input order, with a `written_0` flag. Its
    per-row dataset keeps the labels it scored, so we check them against ours row by row.
    """
    import datasets
    import numpy as np
    import pandas as pd
    from bergson.data import load_scores

    run_dir = Path(run_dir)
    stored = load_scores(run_dir)
    if stored.num_scores != 1:
        raise RuntimeError(f"expected one query score column, bergson wrote {stored.num_scores}")
    score = np.asarray(stored.mmap["score_0"], dtype=np.float64)
    written = np.asarray(stored.mmap["written_0"], dtype=bool)
    if len(score) != len(tokens):
        raise RuntimeError(f"bergson wrote {len(score)} scores for {len(tokens)} rows")
    if not written.all():
        missing = [tokens[int(i)]["row_id"] for i in np.flatnonzero(~written)[:10]]
        raise RuntimeError(f"bergson did not write scores for {int((~written).sum())} rows, e.g. {missing}")
    per_row = datasets.load_from_disk(str(run_dir / "data.hf"))
    if per_row["labels"] != tokens["labels"]:
        raise RuntimeError("bergson's row order differs from the token rows; scores would be mislabeled")
    loss = per_row["loss"] if "loss" in per_row.column_names else [float("nan")] * len(score)
    return pd.DataFrame(
        {
            "row_id": tokens["row_id"],
            "score": score,
            "n_tokens": np.asarray(tokens["n_tokens"], dtype=np.int64),
            "n_trained": np.asarray(tokens["n_trained"], dtype=np.int64),
            "loss": np.asarray(loss, dtype=np.float64),
        }
    )
