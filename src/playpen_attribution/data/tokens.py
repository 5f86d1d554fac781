"""One tokenization for SFT and attribution.

Each row's chat is rendered once with the model's chat template. The trained positions are
found by rendering successive message prefixes and comparing token ids (never by searching
strings, which breaks when a chat repeats an assistant reply). The result, `input_ids` plus
a 0/1 `completion_mask`, is written once; TRL reads (`input_ids`, `completion_mask`) and
Bergson reads (`input_ids`, `labels`) from the same rows, where `labels` is `input_ids`
with -100 on every untrained position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)

MASK_MODES = ("completion", "assistant", "all")
IGNORE_INDEX = -100


def render_ids(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of `messages` under the tokenizer's chat template."""
    out = tokenizer.apply_chat_template(
        list(messages), tokenize=True, add_generation_prompt=add_generation_prompt
    )
    if hasattr(out, "keys"):  # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    return [int(t) for t in out]


def assistant_spans(tokenizer, messages: Sequence[dict]) -> tuple[list[int], list[tuple[int, int]]]:
    """Render a chat; return (ids, [(start, end) of each assistant turn]).

    A span starts after the template's assistant header (what `add_generation_prompt`
    appends) and ends after the template's end-of-turn marker, which is trained so that the
    model learns to stop. Every prefix rendering must be a token prefix of the full one.
    """
    ids = render_ids(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_ids(tokenizer, messages[:i], add_generation_prompt=True) if i else []
        through = render_ids(tokenizer, messages[: i + 1])
        if through[: len(before)] != before or ids[: len(through)] != through:
            raise WorkflowInputError(
                f"the chat template is not prefix-stable at message {i}: rendering a shorter "
                "chat does not give a token prefix of the longer one, so trained positions "
                "cannot be located exactly. Use another chat template (model.chat_template)."
            )
        if len(through) <= len(before):
            raise WorkflowInputError(f"assistant message {i} renders to no tokens")
        spans.append((len(before), len(through)))
    return ids, spans


def loss_mask(n_tokens: int, spans: list[tuple[int, int]], mode: str) -> list[int]:
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode {mode!r} is not one of {MASK_MODES}")
    if mode == "all":
        return [1] * n_tokens
    mask = [0] * n_tokens
    for start, end in spans[-1:] if mode == "completion" else spans:
        mask[start:end] = [1] * (end - start)
    return mask


def labels_from_mask(input_ids: Sequence[int], mask: Sequence[int]) -> list[int]:
    return [t if m else IGNORE_INDEX for t, m in zip(input_ids, mask)]


def tokenize_rows(rows: Iterable[dict], tokenizer, mode: str, max_length: int) -> tuple[list[dict], dict]:
    """Tokenize rows that have `row_id` and `messages`. Returns (token rows, summary).

    Policy for long rows: a row longer than `max_length` tokens would lose trained tokens to
    truncation (the completion is last), so it is dropped from SFT and attribution alike.
    """
    out, dropped = [], []
    for row in rows:
        try:
            ids, spans = assistant_spans(tokenizer, list(row["messages"]))
        except WorkflowInputError as exc:
            raise WorkflowInputError(f"row {row['row_id']}: {exc}") from None
        except Exception as exc:  # the chat template's own error (jinja TemplateError, ...)
            roles = [m["role"] for m in row["messages"]]
            raise WorkflowInputError(
                f"row {row['row_id']}: the chat template cannot render this chat (roles {roles}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        if not spans:
            raise WorkflowInputError(f"row {row['row_id']} has no assistant turn")
        if len(ids) > max_length:
            dropped.append(row["row_id"])
            continue
        mask = loss_mask(len(ids), spans, mode)
        out.append(
            {
                "row_id": row["row_id"],
                "input_ids": ids,
                "completion_mask": mask,
                "labels": labels_from_mask(ids, mask),
                "n_tokens": len(ids),
                "n_trained": sum(mask),
            }
        )
    lengths = [r["n_tokens"] for r in out]
    summary = {
        "rows_in": len(out) + len(dropped),
        "rows_out": len(out),
        "dropped_too_long": len(dropped),
        "dropped_row_ids": dropped[:50],
        "max_length": max_length,
        "mask": mode,
        "tokens": sum(lengths),
        "trained_tokens": sum(r["n_trained"] for r in out),
        "max_tokens": max(lengths, default=0),
    }
    return out, summary


def too_long_message(split: str, summary: dict, outcomes_before) -> str:
    """`val: max_length 90 dropped 71 of 111 rows, all 30 'failure' rows among them`."""
    message = (
        f"{split}: tokenize.max_length {summary['max_length']} dropped {summary['dropped_too_long']} "
        f"of {summary['rows_in']} rows"
    )
    lost = summary.get("outcomes_lost") or []
    if lost:
        message += ", " + ", ".join(f"all {outcomes_before[o]} {o!r} rows" for o in lost) + " among them"
    else:
        by_outcome = summary.get("dropped_too_long_by_outcome") or {}
        message += " (" + ", ".join(f"{n} {o!r}" for o, n in sorted(by_outcome.items())) + ")"
    return message


def save_token_dataset(token_rows: list[dict], path) -> None:
    """Write token rows as a `datasets.save_to_disk` directory, atomically."""
    import datasets

    from playpen_attribution.core.io import atomic_path

    features = datasets.Features(
        {
            "row_id": datasets.Value("string"),
            "input_ids": datasets.List(datasets.Value("int32")),
            "completion_mask": datasets.List(datasets.Value("int8")),
            "labels": datasets.List(datasets.Value("int32")),
            "n_tokens": datasets.Value("int32"),
            "n_trained": datasets.Value("int32"),
        }
    )
    ds = datasets.Dataset.from_list(token_rows, features=features)
    with atomic_path(path, is_dir=True) as tmp:
        ds.save_to_disk(str(tmp))


def load_token_dataset(path):
    """Token rows, in memory: a `.map` (TRL's label building) on a dataset loaded from disk
    writes cache files into its directory, i.e. into the tokenize rule's output."""
    import datasets

    return datasets.load_from_disk(str(path), keep_in_memory=True)


def sft_view(token_ds):
    """What TRL trains on: ids and the 0/1 completion mask."""
    return token_ds.select_columns(["input_ids", "completion_mask"])


def attribution_view(token_ds):
    """What Bergson scores: ids and labels (-100 = untrained)."""
    return token_ds.select_columns(["input_ids", "labels"])


def tokenize_to_files(
    train_parquet,
    val_parquet,
    tokenizer,
    mode,
    max_length,
    out_train,
    out_val,
    summary_path,
    eval_parquet=None,
    out_eval=None,
    *,
    strict: bool,
):
    """Tokenize the train, query (val) and, when given, held-out eval rows, the same way.

    Rows dropped as too long are a WARNING on the terminal that names every outcome they
    remove entirely; with `strict` (dataset.strict) such a loss is an error.
    """
    from collections import Counter

    import pandas as pd

    from playpen_attribution.core.errors import warn_user
    from playpen_attribution.core.io import write_json

    sources = {"train": (train_parquet, out_train), "val": (val_parquet, out_val)}
    if eval_parquet is not None:
        sources["eval"] = (eval_parquet, out_eval)
    summary = {}
    results = {}
    for split, (src, _) in sources.items():
        frame = pd.read_parquet(src, columns=["row_id", "messages", "outcome"])
        rows = [{"row_id": r.row_id, "messages": [dict(m) for m in r.messages]} for r in frame.itertuples()]
        token_rows, split_summary = tokenize_rows(rows, tokenizer, mode, max_length)
        kept = {r["row_id"] for r in token_rows}
        before = Counter(frame["outcome"])
        after = Counter(o for i, o in zip(frame["row_id"], frame["outcome"]) if i in kept)
        split_summary["dropped_too_long_by_outcome"] = {
            o: n - after[o] for o, n in before.items() if n > after[o]
        }
        # Outcomes that the length filter removes entirely: the attribution no longer sees them.
        split_summary["outcomes_lost"] = sorted(o for o in before if not after[o])
        if not token_rows:
            raise WorkflowInputError(
                f"split {split!r}: every row is longer than tokenize.max_length={max_length}"
            )
        log.info("%s: %s", split, {k: v for k, v in split_summary.items() if k != "dropped_row_ids"})
        if split_summary["dropped_too_long"]:
            log.info("%s: rows dropped as too long, e.g. %s", split, split_summary["dropped_row_ids"][:3])
            message = too_long_message(split, split_summary, before)
            if strict and split_summary["outcomes_lost"]:
                raise WorkflowInputError(f"{message}; raise tokenize.max_length (dataset.strict: true)")
            warn_user(
                log,
                message
                + (" (dataset.strict: true makes this an error)" if split_summary["outcomes_lost"] else ""),
            )
        summary[split] = split_summary
        results[split] = token_rows
    for split, (_, out) in sources.items():
        save_token_dataset(results[split], out)
    write_json(summary, summary_path)
    return summary
