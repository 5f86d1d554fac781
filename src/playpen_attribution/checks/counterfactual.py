"""Counterfactual check: retrain without the rows the attribution ranks highest (or lowest,
or at random) and see what happens to the validation loss.

Bergson's `validate` vocabulary: a *filter* removes one tail of the score ranking,
`proponents` (highest scores: the rows that most lower the validation loss) or
`detractors` (lowest scores), and is compared with random removals of the same size (its
`controls`); the *LDS* (linear datamodeling score) correlates, over random subsets, the sum
of the removed rows' scores with the retrained loss change. As in bergson, a removal of
`fraction` removes `max(1, round(fraction * n_rows))` rows.

A removal is named by one string, the `{removal}` wildcard of the retrain rules:
`baseline` (nothing removed), `proponents-f0.1`, `detractors-f0.1`, `random-f0.1-s0`,
`lds-f0.5-s3` (fraction 0.1 or 0.5, seed 0 or 3).

This module is what a retrain depends on (the removal sets, the training on the kept rows,
the validation loss); the summary of the retrains is `counterfactual_report.py`.
"""

from __future__ import annotations

import logging
import re

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)

RANKED_KINDS = ("proponents", "detractors")
RANDOM_KINDS = ("random", "lds")
KINDS = ("baseline", *RANKED_KINDS, *RANDOM_KINDS)
# A separate random stream per kind: the LDS subsets are not the random controls.
_STREAM = {"random": 0, "lds": 1}
# The wildcard constraint of {removal} (a fraction is written with Python's `g` format).
REMOVAL_PATTERN = r"baseline|(?:proponents|detractors)-f[0-9.e-]+|(?:random|lds)-f[0-9.e-]+-s[0-9]+"
_PARSE = re.compile(r"(?P<kind>[a-z]+)(?:-f(?P<fraction>[0-9.e-]+?))?(?:-s(?P<seed>[0-9]+))?")


def removal_name(kind: str, fraction: float | None = None, seed: int | None = None) -> str:
    if kind == "baseline":
        return kind
    name = f"{kind}-f{fraction:g}"
    return f"{name}-s{seed}" if kind in RANDOM_KINDS else name


def removal_names(settings: dict) -> list[str]:
    """Every retrain that config `counterfactual` asks for, the baseline first."""
    names = ["baseline"]
    for fraction in settings["fractions"]:
        names += [removal_name(kind, fraction) for kind in settings["directions"]]
        names += [removal_name("random", fraction, seed) for seed in range(settings["random_seeds"])]
    lds = settings.get("lds")
    if lds:
        names += [removal_name("lds", lds["fraction"], seed) for seed in range(lds["subsets"])]
    return names


def parse_removal(name: str) -> dict:
    """`random-f0.1-s2` -> {kind: random, fraction: 0.1, seed: 2}."""
    match = re.fullmatch(REMOVAL_PATTERN, name) and _PARSE.fullmatch(name)
    if not match or match["kind"] not in KINDS:
        raise ValueError(f"not a removal name: {name!r}")
    fraction = float(match["fraction"]) if match["fraction"] else 0.0
    seed = int(match["seed"]) if match["seed"] else None
    return {"removal": name, "kind": match["kind"], "fraction": fraction, "seed": seed}


def n_removed(fraction: float, n_rows: int) -> int:
    """bergson's size of a filter: max(1, round(fraction * n_rows)); at least one row stays."""
    if fraction == 0:
        return 0
    n = max(1, round(fraction * n_rows))
    if n >= n_rows:
        raise WorkflowInputError(
            f"counterfactual fraction {fraction} of {n_rows} training rows removes every row"
        )
    return n


def ranked(scores, aggregation: str):
    """Training rows from the highest score to the lowest under `aggregation`, ties by
    row_id (the order of topk.parquet's top bucket)."""
    if aggregation not in scores.columns:
        raise WorkflowInputError(f"scores have no {aggregation!r} column; columns: {list(scores.columns)}")
    return scores.sort_values([aggregation, "row_id"], ascending=[False, True], kind="stable")[
        "row_id"
    ].tolist()


def removal_set(
    removal: str, row_ids, scores=None, aggregation: str | None = None, base_seed: int = 0
) -> list[str]:
    """The training row_ids that `removal` removes.

    proponents: the n highest-scored rows; detractors: the n lowest (the other end of the
    same ranking); random/lds: n rows drawn without replacement by a generator seeded with
    (base_seed, kind, seed), so a seed always gives the same set and the sets of a larger
    fraction extend those of a smaller one.
    """
    import numpy as np

    spec = parse_removal(removal)
    row_ids = list(row_ids)
    if len(set(row_ids)) != len(row_ids):
        raise WorkflowInputError("training row_ids are not unique")
    n = n_removed(spec["fraction"], len(row_ids))
    kind = spec["kind"]
    if kind == "baseline":
        return []
    if kind in RANKED_KINDS:
        if scores is None or aggregation is None:
            raise ValueError(f"{removal} needs scores and an aggregation")
        if set(scores["row_id"]) != set(row_ids) or len(scores) != len(row_ids):
            raise WorkflowInputError(
                "the attribution scores do not cover exactly the training token rows; "
                "rerun the attribution (score_train)"
            )
        order = ranked(scores, aggregation)
        return order[:n] if kind == "proponents" else order[::-1][:n]
    rng = np.random.default_rng([base_seed, _STREAM[kind], spec["seed"]])
    pool = sorted(row_ids)
    return [pool[i] for i in rng.permutation(len(pool))[:n]]


def write_removal(removal, train_tokens_dir, scores_path, method, aggregation, base_seed, out) -> None:
    """The counterfactual_removal rule: removed.json for one removal."""
    import pandas as pd

    from playpen_attribution.core.io import write_json
    from playpen_attribution.data.tokens import load_token_dataset

    row_ids = list(load_token_dataset(train_tokens_dir)["row_id"])
    scores = pd.read_parquet(scores_path) if scores_path else None
    removed = removal_set(removal, row_ids, scores, aggregation, base_seed)
    spec = parse_removal(removal)
    ranked_kind = spec["kind"] in RANKED_KINDS
    write_json(
        spec
        | {
            "n_rows": len(row_ids),
            "n_removed": len(removed),
            "method": method if ranked_kind else None,
            "aggregation": aggregation if ranked_kind else None,
            "removed_row_ids": removed,
        },
        out,
    )
    log.info("%s: removes %d of %d training rows", removal, len(removed), len(row_ids))


def per_row_losses(model, tokens, reduction: str = "mean"):
    """Each row's next-token loss on its trained tokens (labels != -100), as the
    attribution's query defines it (config attribution.loss_reduction): the mean over the
    row's trained tokens (`mean`) or their sum (`sum`). The output layer is applied only at
    the positions that predict a trained token (the loss is the same). float64 [rows]."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if reduction not in ("mean", "sum"):
        raise ValueError(f"loss reduction {reduction!r} is not mean or sum")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for row in tokens:
            labels = torch.tensor(row["labels"], device=device)
            positions = torch.nonzero(labels[1:] != -100).squeeze(1)  # position t predicts t + 1
            if len(positions) == 0:
                raise WorkflowInputError(f"row {row.get('row_id')} has no trained token")
            ids = torch.tensor([row["input_ids"]], device=device)
            logits = model(input_ids=ids, logits_to_keep=positions).logits[0].float()
            loss = F.cross_entropy(logits, labels[positions + 1], reduction="sum").item()
            out.append(loss / len(positions) if reduction == "mean" else loss)
    model.train(was_training)
    return np.asarray(out, dtype=np.float64)


def budget(settings) -> dict:
    """How long a retrain trains: as the attributed adapter, the same number of optimizer
    steps if it ran train.max_steps, else the same number of epochs over the kept rows."""
    if settings.max_steps > 0:
        return {"budget": "steps", "max_steps": settings.max_steps}
    return {"budget": "epochs", "epochs": settings.epochs}


def run_retrain(
    model_name_or_path: str,
    revision: str | None,
    tokenizer_dir,
    train_tokens_dir,
    val_tokens_dir,
    removed_path,
    lora,
    settings,
    loss_reduction: str,
    adapter_out,
    metrics_out,
    val_losses_out,
    summary_out,
):
    """The retrain rule: SFT on the token rows that `removed_path` keeps, with exactly the
    attributed adapter's settings and seed; then the validation loss. Returns the trainer."""
    import json
    from pathlib import Path

    import pandas as pd

    from playpen_attribution.core.io import write_json, write_parquet
    from playpen_attribution.data.tokens import load_token_dataset
    from playpen_attribution.sft.train import (
        load_and_train,
        metrics_frame,
        save_adapter,
        select_rows,
        training_summary,
    )

    removal = json.loads(Path(removed_path).read_text())
    train_tokens = load_token_dataset(train_tokens_dir)
    val_tokens = load_token_dataset(val_tokens_dir)
    removed = set(removal["removed_row_ids"])
    unknown = removed - set(train_tokens["row_id"])
    if unknown:
        raise WorkflowInputError(
            f"{removed_path} removes {len(unknown)} rows that are not training token rows, "
            f"e.g. {sorted(unknown)[:3]}"
        )
    kept = select_rows(train_tokens, [r for r in train_tokens["row_id"] if r not in removed])
    log.info("%s: %d of %d training rows kept", removal["removal"], len(kept), len(train_tokens))
    # No evaluation during training: the validation loss is computed once, at the end,
    # the way the attribution's query defines it.
    trainer = load_and_train(
        model_name_or_path, revision, tokenizer_dir, kept, None, lora, settings, Path(summary_out).parent
    )
    losses = per_row_losses(trainer.model, val_tokens, loss_reduction)
    val_loss = float(losses.mean())
    log.info("%s: validation loss %.5f", removal["removal"], val_loss)
    save_adapter(trainer, tokenizer_dir, adapter_out)
    write_parquet(metrics_frame(trainer.state.log_history), metrics_out)
    write_parquet(pd.DataFrame({"row_id": list(val_tokens["row_id"]), "loss": losses}), val_losses_out)
    summary = training_summary(trainer, settings, len(kept)) | budget(settings)
    summary |= {key: removal[key] for key in ("removal", "kind", "fraction", "seed", "n_removed")}
    summary |= {
        "val_loss": val_loss,
        "val_rows": len(val_tokens),
        "loss_reduction": loss_reduction,
        "seed_sft": settings.seed,
        "trained_row_ids": list(kept["row_id"]),
    }
    write_json(summary, summary_out)
    return trainer
