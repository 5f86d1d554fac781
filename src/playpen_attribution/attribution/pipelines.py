"""TrackStar and TRAK: Bergson's own pipelines (`bergson trackstar`, `bergson trak`) on the
token rows, writing the same scores.parquet, matrix.npy and matrix_ids.json as the
reduce + score methods (`scoring.py`).

Each is one Bergson command, run as one job: it fits its preconditioner, builds the
query index from the validation rows (one query per row) and scores every training row.
With g_i a training row's gradient and q_j a validation row's, both random-projected
(`projection_dim`, seeded by the config's `seed`), u(x) = x / |x|:

- trackstar (Chang et al. 2024): R_train and R_query are the autocorrelation (second
  moment) matrices of the projected train and query gradients, per module. Three methods
  differ only in R, the prototype's three `preconditioning_mode`s:
    trackstar        mixed: R = λ R_query + (1 − λ) R_train, λ chosen so that the two
                     sorted eigenvalue curves cross at component
                     `target_downweight_components` (§A.1.3; Bergson's default)
    trackstar_train  R = R_train (Bergson's `mix_hessians: false`; the prototype's `index`)
    trackstar_query  R = R_query (the prototype's best setting on taboo × WordGuesser)
  With D = damping_factor · mean eigenvalue of R,

      s_ij = u((R + D)^-1/2 g_i) · u((R + D)^-1/2 q_j)        (unit_normalize, default)
      s_ij = g_i · (R + D)^-1 q_j                              (unit_normalize: false)

  The second is the seed's q̃ = q (H + λI)^-1 with H the gradients' second moment, per
  query row; its mean over j (aggregation `mean`) is the seed's q_mean version. Bergson's
  `trackstar` command offers mixed and train; `trackstar_query` runs the same steps
  (Bergson's `Hessian`, `build_query`, `Score`) with the query's own R, since the command
  has no switch for it (`_trackstar_query`).
- trak (Park et al. 2023): one global projection of the whole gradient of the log-odds
  output function f = log(p / (1 − p)), G the Gram of the training rows' projected
  gradients, and the row weight 1 − p_i (p_i the row's mean label-token probability):

      s_ij = (1 − p_i) · g_i · (G + D)^-1 q_j / scale

  (`scale` is the mean absolute entry of (G + D)^-1, which puts ensemble members on one
  scale). With `checkpoints`, the scores are averaged over those adapters, member k
  projected with seed + k. Bergson ignores `unit_normalize` here.

Our loss mask and sparse logits reach every gradient both pipelines take. TRAK's 1 − p_i
is a plain forward pass inside Bergson (`_train_label_probs`) that builds the logits at
every position: the one place our sparse logits do not reach. It runs one row at a time
to bound that memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from playpen_attribution.attribution.scoring import (
    AttributionSettings,
    _bergson_run,
    _check_token_rows,
    read_score_matrix,
    resolve_precision,
    write_matrix_scores,
)
from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)

TRACKSTAR_METHODS = ("trackstar", "trackstar_train", "trackstar_query")
PIPELINE_METHODS = (*TRACKSTAR_METHODS, "trak")
# Rows per forward pass of TRAK's 1 - p_i: the pass holds [rows, seq, vocab] logits
# (262k vocabulary for Gemma 3), so one row at a time; it changes no score.
TRAK_LOSS_BATCH_SIZE = 1


@dataclass(frozen=True)
class PipelineSettings:
    """One pipeline's settings (config `attribution.trackstar` / `attribution.trak`, plus
    the method and the seed of its projection and label sampling)."""

    CONFIG_SECTION = None  # attribution.trackstar or attribution.trak, by method

    method: str = field(metadata={"config": None})
    seed: int = field(metadata={"config": "seed"})
    projection_dim: int
    damping_factor: float
    stats_sample_size: int | None
    # trackstar (mixed) only: None for the methods whose params leave it out
    target_downweight_components: int | None
    # trak only: adapter directories to average over (empty: the trained adapter)
    checkpoints: tuple[str, ...]

    @classmethod
    def from_params(cls, params: dict) -> PipelineSettings:
        """From the rule's `pipeline` params, which hold only the method's own keys."""
        params = dict(params)
        params.setdefault("target_downweight_components", None)
        params["checkpoints"] = tuple(params.get("checkpoints") or ())
        return cls(**params)


def _check_settings(pipeline: PipelineSettings, n_train: int) -> None:
    if pipeline.method not in PIPELINE_METHODS:
        raise ValueError(f"unknown pipeline {pipeline.method!r}; expected one of {PIPELINE_METHODS}")
    fitted_rows = min(n_train, pipeline.stats_sample_size or n_train)
    if pipeline.method == "trak" and pipeline.damping_factor == 0 and fitted_rows < pipeline.projection_dim:
        # The Gram of fewer rows than dimensions is singular: its undamped inverse is
        # dominated by rounding noise.
        raise WorkflowInputError(
            f"attribution.trak: the Gram is fit on {fitted_rows} training rows, fewer than "
            f"projection_dim={pipeline.projection_dim}; lower projection_dim below {fitted_rows} "
            "or set damping_factor > 0"
        )


def pipeline_scores(
    adapter_dir,
    train_tokens_dir,
    val_tokens_dir,
    out_dir,
    scores_path,
    matrix_path,
    matrix_ids_path,
    settings: AttributionSettings,
    pipeline: PipelineSettings,
) -> None:
    """Run the pipeline on the token rows and write the influence matrix and the scores
    (see `attribution.write_matrix_scores`); `out_dir` keeps Bergson's run."""
    import torch
    from bergson.config.config import InversionConfig, PreprocessConfig, QuerySetConfig, ScoreConfig

    from playpen_attribution.data.tokens import attribution_view

    settings = replace(settings, projection_dim=pipeline.projection_dim)
    index_options = {"projection_seed": pipeline.seed}
    if pipeline.method == "trak":
        index_options |= {"loss_fn": "log_odds", "projection_target": "global"}
    val_tokens = _check_token_rows(val_tokens_dir, settings)
    with _bergson_run(adapter_dir, train_tokens_dir, out_dir, settings, **index_options) as (
        tmp,
        index_cfg,
        tokens,
    ):
        _check_settings(pipeline, len(tokens))
        query_view = tmp / "query_input"  # a copy, like the train rows (Bergson caches beside it)
        attribution_view(val_tokens).save_to_disk(str(query_view))
        query = QuerySetConfig(dataset=str(query_view), aggregation="none")
        preprocess = PreprocessConfig(
            unit_normalize=settings.unit_normalize,
            inversion_cfg=InversionConfig(damping_factor=pipeline.damping_factor),
        )
        score = ScoreConfig(score="individual", precision=resolve_precision(settings.precision))
        # The autocorrelation fits sample their labels with an unseeded torch.multinomial
        # (true Fisher); in a single process this seed makes the whole pipeline reproducible.
        torch.manual_seed(pipeline.seed)
        _command(pipeline, index_cfg, query, preprocess, score).execute()
        import shutil

        shutil.rmtree(query_view)
        matrix, rows = read_score_matrix(tmp / "run" / "scores", tokens)
    write_matrix_scores(matrix, rows, val_tokens_dir, scores_path, matrix_path, matrix_ids_path)


def _command(pipeline: PipelineSettings, index_cfg, query, preprocess, score):
    from bergson.cli.commands import Trackstar, Trak
    from bergson.config.config import TrackstarConfig, TrakConfig

    if pipeline.method == "trak":
        return Trak(
            index_cfg=index_cfg,
            trak_cfg=TrakConfig(
                query=query,
                preprocess_cfg=preprocess,
                score_cfg=score,
                checkpoints=[str(c) for c in pipeline.checkpoints],
                stats_sample_size=pipeline.stats_sample_size,
                loss_batch_size=TRAK_LOSS_BATCH_SIZE,
            ),
        )
    trackstar_cfg = TrackstarConfig(
        query=query,
        preprocess_cfg=preprocess,
        score_cfg=score,
        target_downweight_components=pipeline.target_downweight_components or 0,
        mix_hessians=pipeline.method == "trackstar",
        stats_sample_size=pipeline.stats_sample_size,
    )
    if pipeline.method == "trackstar_query":
        return _TrackstarQuery(index_cfg, trackstar_cfg)
    return Trackstar(index_cfg=index_cfg, trackstar_cfg=trackstar_cfg)


@dataclass
class _TrackstarQuery:
    """Bergson's trackstar steps with the query's own autocorrelation as R: fit it on the
    query rows (step 2), build the query index (4), score the training rows (5). The
    command itself preconditions with the train or the mixed R only."""

    index_cfg: object
    trackstar_cfg: object

    def execute(self):
        from copy import deepcopy

        from bergson.build import build_query
        from bergson.cli.commands import Hessian, Score
        from bergson.config.config import HessianConfig

        run = self.index_cfg.run_path
        cfg = self.trackstar_cfg
        hessian_cfg = deepcopy(self.index_cfg)
        hessian_cfg.run_path = f"{run}/query_hessian"
        hessian_cfg.data = cfg.query.to_data()
        if cfg.stats_sample_size is not None:
            hessian_cfg.data.split = f"{hessian_cfg.data.split}[:{cfg.stats_sample_size}]"
        Hessian(hessian_cfg=HessianConfig(method="autocorrelation"), index_cfg=hessian_cfg).execute()

        preprocess = deepcopy(cfg.preprocess_cfg)
        preprocess.hessian_path = hessian_cfg.run_path
        preprocess.aggregation = cfg.query.aggregation
        query_cfg = deepcopy(self.index_cfg)
        query_cfg.run_path = f"{run}/query"
        build_query(query_cfg, cfg.query, preprocess)

        score_index_cfg = deepcopy(self.index_cfg)
        score_index_cfg.run_path = f"{run}/scores"
        score_cfg = deepcopy(cfg.score_cfg)
        score_cfg.query_path = query_cfg.run_path
        score_cfg.higher_is_better = True
        Score(score_cfg=score_cfg, index_cfg=score_index_cfg, preprocess_cfg=preprocess).execute()
