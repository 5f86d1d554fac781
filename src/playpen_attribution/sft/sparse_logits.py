"""Next-token loss with logits only where the loss is ("sparse logits", config `compute.sparse_logits`).

Gemma 3's output layer maps every position to a 262,144-token vocabulary, but only the
positions whose *next* label is trained (label != -100) enter the loss: with the default
`completion` mask that is ~8% of them. The other logits cost most of the output layer's
time and most of the memory, and change nothing. This module is the one place that skips
them, for both consumers of the loss:

- Bergson (reduce, score): `bergson_sparse_logits()` makes every `CollectorComputer`
  built inside it use `sparse_fwd_bwd_factory(cfg)` as its `forward_backward`: the same
  per-row loss as Bergson's own `fwd_bwd_factory` (its `token_losses`, its `mean`/`sum`
  reduction, its advantage weighting, the value it stores per row), with the output layer
  applied only at trained positions through transformers' `logits_to_keep` (a boolean
  [batch, seq] mask; the model's own forward applies `final_logit_softcapping`).
- TRL (SFT): `sft_trainer_class(True)` is an `SFTTrainer` whose loss runs TRL's own fused
  LM head in its compact mode, which projects only the trained positions.

Off (`compute.sparse_logits: false`) uses Bergson's and TRL's code untouched.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from functools import cache
from unittest import mock

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


def trained_positions(labels):
    """Bool [batch, seq]: positions whose next-token label is trained.

    Position t predicts token t + 1, so it is kept when labels[:, t + 1] != -100; the last
    position predicts nothing. In row-major order these are exactly the entries of
    `labels[:, 1:] != -100`, the order in which `hidden_states[mask]` returns them.
    """
    import torch

    shifted = labels[:, 1:] != IGNORE_INDEX
    return torch.cat([shifted, shifted.new_zeros(labels.shape[0], 1)], dim=1)


def _collector_hooks_output_layer(model) -> bool:
    """Whether a Bergson collector collects gradients of the output layer itself.

    Its hooks expect [batch, seq, features] activations; with sparse logits the output
    layer sees [kept, hidden] instead, so such a run must take the full path. (With a LoRA
    adapter Bergson only hooks the LoRA layers; elementwise hooks such as Bergson's
    `logit_scale` work on kept rows as on all rows.)
    """
    from bergson.collector.collector import HookCollectorBase

    head = model.get_output_embeddings()
    return any(
        isinstance(getattr(hook, "__self__", None), HookCollectorBase)
        for module in head.modules()
        for hook in module._forward_hooks.values()
    )


def sparse_fwd_bwd_factory(cfg, full_factory=None):
    """Bergson's `fwd_bwd_factory(cfg)`, computing logits only at trained positions.

    The per-row loss is Bergson's, term by term: per-token losses from Bergson's own
    `token_losses` (cross-entropy with its label smoothing, or log-odds), zero where the
    label is -100, summed per row and divided by the row's trained-token count (`mean`) or
    by 1 (`sum`), times the row's advantage if the data has one; their sum is
    backpropagated and the per-row values are returned (Bergson stores them as `loss`).
    The per-token losses are scattered back into a zero [batch, seq - 1] tensor before the
    row sum, so the sum runs over the same layout as Bergson's. Safe because nothing else
    reads the logits: the collector's hooks sit on the LoRA layers, whose activations and
    gradients are unchanged (the rows not projected get a zero gradient either way). For
    the same reason no gradient of the (tied) output weight is built, see
    `_graph_from_embedding_output`.

    Falls back to Bergson's full computation for `loss_fn: kl` (it compares whole
    distributions against the base model) and when a collector hooks the output layer.
    """
    import torch
    from bergson.collector import collector as bergson_collector

    full = (full_factory or bergson_collector.fwd_bwd_factory)(cfg)
    if cfg.loss_fn not in ("ce", "log_odds"):
        return full

    def fwd_bwd(model, x, y, batch):
        if _collector_hooks_output_layer(model):
            return full(model, x, y, batch)
        with _graph_from_embedding_output(model):
            masks = y[:, 1:] != IGNORE_INDEX
            logits = model(x, logits_to_keep=trained_positions(y)).logits  # [kept, vocab]
            per_token = bergson_collector.token_losses(
                cfg.loss_fn, logits.unsqueeze(0), y[:, 1:][masks].unsqueeze(0), cfg.label_smoothing
            ).squeeze(0)
            losses = per_token.new_zeros(masks.shape).masked_scatter(masks, per_token)
            denoms = masks.sum(dim=1, dtype=model.dtype) if cfg.loss_reduction == "mean" else 1.0
            losses = losses.sum(1) / denoms
            if "advantage" in batch:
                losses *= torch.tensor(batch["advantage"], device=losses.device)

            losses.sum().backward()
        model.zero_grad()
        return losses

    return fwd_bwd


@contextmanager
def _graph_from_embedding_output(model):
    """Start the autograd graph at the input embedding's output, not at its weight.

    Bergson makes the input embedding weight require grad so that backward reaches the
    hooked (LoRA) layers of an otherwise frozen model, and discards every parameter
    gradient with `zero_grad()` after each batch. Gemma ties that weight to the output
    layer, so each batch also built two [vocab, hidden] weight gradients and their sum
    (0.6 GB each in fp32 for Gemma 3 270M): output-layer work nobody reads. The hooked
    layers see the same activations and output gradients either way.
    """
    embed = model.get_input_embeddings()
    weight = embed.weight
    if not weight.requires_grad:
        yield
        return
    handle = embed.register_forward_hook(lambda module, args, output: output.requires_grad_())
    weight.requires_grad_(False)
    try:
        yield
    finally:
        weight.requires_grad_(True)
        handle.remove()


def sparse_fwd_bwd_hessian_factory(index_cfg, hessian_cfg, full_factory=None):
    """Bergson's `fwd_bwd_hessian_factory` (the Hessian fit's pass), with logits only at
    trained positions.

    Bergson's version: per-token losses against the rows' own labels (`use_dataset_labels`,
    the empirical Fisher) or against labels sampled from the model's softmax at the
    positions that have a label (the true Fisher), summed per row; it backpropagates
    `sum(loss_i / sqrt(denom_i))` and returns `loss_i / denom_i`. Here the same, but the
    softmax and the sample are taken over the trained positions only, which are the only
    positions whose samples Bergson keeps. With dataset labels the gradients are identical;
    with sampled labels they follow the same distribution (the random draws differ, since
    Bergson also draws, and discards, a token at every untrained position).
    """
    import torch
    import torch.nn.functional as F
    from bergson.collector import collector as bergson_collector

    full = (full_factory or bergson_collector.fwd_bwd_hessian_factory)(index_cfg, hessian_cfg)

    def fwd_bwd_hessian(model, x, y, batch):
        if _collector_hooks_output_layer(model):
            return full(model, x, y, batch)
        with _graph_from_embedding_output(model):
            masks = y[:, 1:] != IGNORE_INDEX
            logits = model(x, logits_to_keep=trained_positions(y)).logits  # [kept, vocab]
            denoms = masks.sum(dim=1, dtype=model.dtype) if index_cfg.loss_reduction == "mean" else 1.0
            if hessian_cfg.use_dataset_labels:
                per_token = bergson_collector.token_losses(
                    index_cfg.loss_fn, logits.unsqueeze(0), y[:, 1:][masks].unsqueeze(0)
                ).squeeze(0)
            else:
                with torch.no_grad():
                    sampled = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, replacement=True)
                per_token = F.cross_entropy(logits, sampled.squeeze(1), reduction="none")
            losses = per_token.new_zeros(masks.shape).masked_scatter(masks, per_token).sum(1)
            (losses / denoms**0.5).sum().backward()
        model.zero_grad()
        return losses / denoms

    return fwd_bwd_hessian


@contextmanager
def bergson_sparse_logits(enabled: bool, nproc_per_node: int):
    """Within this block, Bergson's gradient passes compute logits at trained positions only.

    `CollectorComputer.__init__` sets `self.forward_backward = fwd_bwd_factory(cfg)`,
    reading the factory from its module at call time; we substitute that name, so every
    computer built inside the block (build/reduce and score) gets `sparse_fwd_bwd_factory`.
    Bergson's Hessian fitting sets its own `forward_backward` after building the computer,
    from `fwd_bwd_hessian_factory` as imported into `hessians.hessian_approximations`; that
    name is substituted too, with `sparse_fwd_bwd_hessian_factory`. In-process only: with
    `nproc_per_node > 1` Bergson spawns fresh worker processes, which compute full logits
    (same result, no saving).
    """
    if not enabled:
        yield
        return
    from bergson.collector import collector as bergson_collector
    from bergson.hessians import hessian_approximations

    original = bergson_collector.fwd_bwd_factory
    original_hessian = hessian_approximations.fwd_bwd_hessian_factory

    def factory(cfg):
        return sparse_fwd_bwd_factory(cfg, full_factory=original)

    def hessian_factory(index_cfg, hessian_cfg):
        return sparse_fwd_bwd_hessian_factory(index_cfg, hessian_cfg, full_factory=original_hessian)

    if nproc_per_node > 1:
        log.warning(
            "sparse logits apply in-process only: Bergson's %d workers compute full logits", nproc_per_node
        )
    with (
        mock.patch.object(bergson_collector, "fwd_bwd_factory", factory),
        mock.patch.object(hessian_approximations, "fwd_bwd_hessian_factory", hessian_factory),
    ):
        yield


@contextmanager
def _compact_trl_lm_head():
    """TRL's fused LM head projects only the positions with a label (its `compact` mode)
    where its Triton kernels run (CUDA, XPU); elsewhere it projects every position, to keep
    tile shapes fixed for compiling backends such as Neuron. Its non-Triton path computes
    the same per-token statistics on any row set, so compact mode is exact on CPU as well.
    `trl.trainer.utils._use_triton` decides only that choice there (the kernels read their
    own binding), so patching it for one loss call changes nothing else."""
    import trl.trainer.utils as trl_utils

    with mock.patch.object(trl_utils, "_use_triton", lambda device: True):
        yield


@cache
def _sparse_sft_trainer():
    from trl import SFTTrainer

    class SparseLogitsSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss (and eval loss, entropy, token accuracy) projects only the
        trained positions; the loss, its `num_items_in_batch` normalisation under gradient
        accumulation and the metrics are TRL's own."""

        def compute_loss(self, *args, **kwargs):
            with _compact_trl_lm_head():
                return super().compute_loss(*args, **kwargs)

    return SparseLogitsSFTTrainer


def sft_trainer_class(sparse_logits: bool):
    """The trainer class for `compute.sparse_logits` (off: TRL's SFTTrainer as it is)."""
    if sparse_logits:
        return _sparse_sft_trainer()
    from trl import SFTTrainer

    return SFTTrainer
