"""The validation split, divided by group into an attribution *query* set and a held-out
*eval* set (config `split`).

The query set builds the attribution's query and is what `val.parquet` holds; the eval set
(`eval.parquet`) is read only by the evaluations (games won, the counterfactual check's
loss): no ranking, selection or training decision ever reads it.

The unit of the split (`split.unit`):

- `instance`: (game, experiment, task_id), every play of one game instance, by every
  model, on one side (the prototype's choice);
- `episode`: (game, experiment, task_id, model), one play;
- `word`: the episode's target word (taboo), so that eval words are words the query never
  saw. A row without a target word falls back to its instance (counted).

A group goes to eval when a hash of (seed, unit, group) falls below `eval_fraction`: a
function of the group alone, so both player views of an episode (the WordGuesser's and the
WordDescriber's rows, prepared by separate jobs) always land on the same side, the split is
reproducible, and it changes with the seed. The eval share is therefore `eval_fraction`
on average over groups, not exactly.
"""

from __future__ import annotations

import hashlib

from playpen_attribution.core.errors import WorkflowInputError

UNITS = ("instance", "episode", "word")


def group_key(row, unit: str) -> str:
    """The group of a prepared row (a dict or a namedtuple-like with the meta fields)."""
    get = row.get if isinstance(row, dict) else lambda key: getattr(row, key)
    instance = f"{get('game')}::{get('experiment')}::{get('task_id')}"
    if unit == "instance":
        return instance
    if unit == "episode":
        return f"{instance}::{get('model')}"
    if unit == "word":
        word = get("target_word")
        return f"word::{word}" if isinstance(word, str) and word else instance
    raise ValueError(f"split unit {unit!r} is not one of {UNITS}")


def goes_to_eval(key: str, seed: int, unit: str, eval_fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}\0{unit}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def split_validation(frame, unit: str, eval_fraction: float, seed: int, query_outcomes=None):
    """(query frame, eval frame, summary) from the prepared validation rows.

    `query_outcomes` (e.g. ["success"]) keeps only those outcomes in the query; the eval
    set keeps every outcome, so that it measures what it always measured.
    """
    if unit not in UNITS:
        raise ValueError(f"split unit {unit!r} is not one of {UNITS}")
    keys = [group_key(row, unit) for row in frame.to_dict("records")]
    to_eval = [goes_to_eval(key, seed, unit, eval_fraction) for key in keys]
    eval_frame = frame[to_eval].reset_index(drop=True)
    query_all = frame[[not e for e in to_eval]].reset_index(drop=True)
    query = query_all
    if query_outcomes:
        query = query_all[query_all["outcome"].isin(list(query_outcomes))].reset_index(drop=True)
    no_word = sum(1 for key in keys if unit == "word" and not key.startswith("word::"))
    summary = {
        "unit": unit,
        "eval_fraction": eval_fraction,
        "seed": seed,
        "query_outcomes": list(query_outcomes) if query_outcomes else None,
        "groups": len(set(keys)),
        "eval_groups": len({k for k, e in zip(keys, to_eval) if e}),
        "query_rows": len(query),
        "eval_rows": len(eval_frame),
        "query_rows_dropped_by_outcome": len(query_all) - len(query),
        "word_unit_rows_without_word": no_word,
    }
    if eval_frame.empty or query.empty:
        side = "eval" if eval_frame.empty else "query"
        raise WorkflowInputError(
            f"split: the {side} set is empty ({len(frame)} validation rows in {summary['groups']} "
            f"{unit} groups, split.eval_fraction={eval_fraction}, split.query_outcomes="
            f"{summary['query_outcomes']}); change split.eval_fraction or split.seed"
        )
    return query, eval_frame, summary
