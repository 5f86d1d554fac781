"""Load playpen interaction data, filter one game x role, split chats into prompt/completion.

The hub schema (`colab-potsdam/playpen-data`, config `interactions`) has two columns:
`messages` (list of {role, content}) and `meta` (a struct). Each row is one player's
view of one episode.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import WorkflowInputError

META_FIELDS = ("experiment", "game", "game_role", "model", "outcome", "player_name", "task_id")
KNOWN_OUTCOMES = ("success", "failure", "aborted")
SPLITS = {"train": "train", "val": "validation"}  # our name -> the hub's split name
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".parquet")

# The taboo describer's first prompt names the target word; the guesser's never does.
# The first pattern matches clembench's template, the second the offline demo's.
DEFAULT_TARGET_WORD_PATTERNS = (
    r"needs to guess:\s*\n\s*(?P<word>[^\n]+?)\s*\n",
    r"Your secret word is:\s*(?P<word>[^\n]+?)\s*\n",
)


def hub_features():
    """The `datasets` features of the hub's `interactions` config."""
    from datasets import Features, List, Value

    return Features(
        {
            "messages": List({"content": Value("string"), "role": Value("string")}),
            "meta": {
                "experiment": Value("string"),
                "game": Value("string"),
                "game_role": Value("string"),
                "model": Value("string"),
                "outcome": Value("string"),
                "player_name": Value("string"),
                "task_id": Value("int64"),
            },
        }
    )


# --------------------------------------------------------------------------- loading


def _local_split_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for hub_split in SPLITS.values():
        candidates = [directory / f"{hub_split}{s}" for s in DATA_FILE_SUFFIXES]
        existing = [c for c in candidates if c.exists()]
        if len(existing) > 1:
            raise WorkflowInputError(
                f"{directory}: several files for split {hub_split!r}: " + ", ".join(p.name for p in existing)
            )
        if existing:
            found[hub_split] = existing[0]
    return found


def load_splits(path: str, name: str | None = None, revision: str | None = None) -> dict:
    """Return {"train": Dataset, "validation": Dataset} from a hub id or a local directory.

    A local directory holds either a `save_to_disk` DatasetDict or `train.*` and
    `validation.*` files (jsonl or parquet).
    """
    import datasets

    local = Path(path)
    if local.is_dir():
        if (local / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(local))
        else:
            files = _local_split_files(local)
            missing = [s for s in SPLITS.values() if s not in files]
            if missing:
                raise WorkflowInputError(
                    f"dataset.path {path!r} is a directory without the split file(s) "
                    f"{missing}: expected train.jsonl|parquet and validation.jsonl|parquet, "
                    "or a datasets.save_to_disk directory."
                )
            kinds = {f.suffix for f in files.values()}
            builder = "parquet" if kinds == {".parquet"} else "json"
            if len(kinds) > 1:
                raise WorkflowInputError(f"{path}: mix of file types {sorted(kinds)}")
            loaded = datasets.load_dataset(builder, data_files={k: str(v) for k, v in files.items()})
    elif path.startswith((".", "/")):
        raise WorkflowInputError(f"dataset.path {path!r} does not exist.")
    else:
        loaded = _load_from_hub(path, name, revision)
    missing = [s for s in SPLITS.values() if s not in loaded]
    if missing:
        raise WorkflowInputError(f"dataset {path!r} has no split(s) {missing}; found {sorted(loaded)}")
    return {s: loaded[s] for s in SPLITS.values()}


def _load_from_hub(path: str, name: str | None, revision: str | None):
    import logging

    import datasets

    if not (revision and re.fullmatch(r"[0-9a-f]{40}", revision)):
        logging.getLogger(__name__).warning(
            "dataset.revision=%r is not a commit sha: the hub data may change under this run; "
            "pin dataset.revision for reproducible results",
            revision,
        )
    try:
        return datasets.load_dataset(path, name, revision=revision)
    except Exception as exc:  # the hub raises many types; all mean "could not get it"
        raise WorkflowInputError(
            f"Could not load dataset {path!r} (config {name!r}, revision {revision!r}) from "
            f"the Hugging Face hub or its local cache: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}\n"
            "Offline? Point `dataset.path` at a local copy (a directory with "
            "train/validation jsonl or parquet files, or a save_to_disk directory), or run "
            "the offline demo: --configfile config/demo.yaml"
        ) from None


# --------------------------------------------------------------------------- checks


def check_schema(split_name: str, dataset) -> None:
    """Fail with the name of the first missing column or meta field."""
    for column in ("messages", "meta"):
        if column not in dataset.column_names:
            raise WorkflowInputError(
                f"split {split_name!r} has no column {column!r}; columns: {dataset.column_names}"
            )
    meta_feature = dataset.features["meta"]
    present = set(meta_feature.keys()) if hasattr(meta_feature, "keys") else set()
    for field in META_FIELDS:
        if field not in present:
            raise WorkflowInputError(
                f"split {split_name!r}: meta has no field {field!r}; fields: {sorted(present)}"
            )


def game_role_counts(metas: Iterable[dict]) -> Counter:
    return Counter((m["game"], m["game_role"]) for m in metas)


def _format_pairs(counts: Counter) -> str:
    return "\n".join(f"  {g} / {r}: {n} rows" for (g, r), n in sorted(counts.items()))


# --------------------------------------------------------------------------- conversion


def split_conversation(messages: list[dict]) -> tuple[list[dict], dict] | None:
    """Split at the final assistant turn: (prompt messages, completion message).

    Returns None if there is no assistant turn. Turns after the last assistant turn
    (never seen in real data) are not part of the training example.
    """
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return None
    return [dict(m) for m in messages[:last]], dict(messages[last])


def extract_target_word(first_prompt: str, patterns: Iterable[str]) -> str | None:
    for pattern in patterns:
        match = re.search(pattern, first_prompt)
        if match:
            return match.group("word").strip().lower()
    return None


def describer_target_words(
    rows: list[dict], patterns: Iterable[str]
) -> dict[tuple[str, int, str], str | None]:
    """(experiment, task_id, model) -> target word, from the taboo WordDescriber rows.

    A key whose rows disagree maps to None: better no word than a wrong one.
    """
    words: dict[tuple, str | None] = {}
    for row in rows:
        meta = row["meta"]
        if meta["game"] != "taboo" or meta["game_role"] != "WordDescriber":
            continue
        first_user = next((m["content"] for m in row["messages"] if m["role"] == "user"), "")
        word = extract_target_word(first_user, patterns)
        key = (meta["experiment"], meta["task_id"], meta["model"])
        if key in words and words[key] != word:
            words[key] = None
        else:
            words.setdefault(key, word)
    return words


def prepare_split(
    split_name: str,
    dataset,
    game: str,
    role: str,
    drop_outcomes: Iterable[str],
    target_word_patterns: Iterable[str] = DEFAULT_TARGET_WORD_PATTERNS,
) -> tuple[list[dict], dict]:
    """Filter one split to game x role and convert it. Returns (records, summary)."""
    check_schema(split_name, dataset)
    drop_outcomes = set(drop_outcomes)
    metas = dataset["meta"]
    counts = game_role_counts(metas)
    selected = [i for i, m in enumerate(metas) if m["game"] == game and m["game_role"] == role]
    summary: dict[str, Any] = {
        "rows_read": len(metas),
        "rows_for_game_role": len(selected),
        "dropped_outcome": Counter(),
        "dropped_no_assistant_turn": 0,
        "unrecognised_outcome": Counter(),
        "target_word_missing": 0,
    }
    patterns = list(target_word_patterns)
    word_by_episode = {}
    if game == "taboo":
        describer_idx = [
            i for i, m in enumerate(metas) if m["game"] == "taboo" and m["game_role"] == "WordDescriber"
        ]
        word_by_episode = describer_target_words(dataset.select(describer_idx).to_list(), patterns)

    records = []
    for index, row in zip(selected, dataset.select(selected).to_list()):
        meta = row["meta"]
        outcome = meta["outcome"]
        if outcome in drop_outcomes:
            summary["dropped_outcome"][outcome] += 1
            continue
        if outcome not in KNOWN_OUTCOMES:
            summary["unrecognised_outcome"][str(outcome)] += 1
        parts = split_conversation(row["messages"])
        if parts is None:
            summary["dropped_no_assistant_turn"] += 1
            continue
        prompt, completion = parts
        target_word = None
        if game == "taboo":
            target_word = word_by_episode.get((meta["experiment"], meta["task_id"], meta["model"]))
            if target_word is None:
                summary["target_word_missing"] += 1
        records.append(
            {
                "row_id": f"{split_name}-{index:07d}",
                **{field: meta[field] for field in META_FIELDS},
                "messages": prompt + [completion],
                "prompt": prompt,
                "completion": completion["content"],
                "n_turns": sum(m["role"] == "assistant" for m in prompt) + 1,
                "target_word": target_word,
            }
        )
    summary["kept"] = len(records)
    summary["dropped_outcome"] = dict(summary["dropped_outcome"])
    summary["unrecognised_outcome"] = dict(summary["unrecognised_outcome"])
    if not selected:
        raise WorkflowInputError(
            f"no rows for game {game!r}, role {role!r} in split {split_name!r}. "
            f"Available (game, role) pairs:\n{_format_pairs(counts)}"
        )
    if not records:
        raise WorkflowInputError(
            f"split {split_name!r} is empty after filtering game {game!r}, role {role!r} "
            f"({summary['rows_for_game_role']} rows before dropping outcomes {sorted(drop_outcomes)}"
            f" and chats without an assistant turn)."
        )
    return records, summary


def records_to_frame(records: list[dict]):
    import pandas as pd

    frame = pd.DataFrame.from_records(records)
    frame["task_id"] = frame["task_id"].astype("int64")
    frame["target_word"] = frame["target_word"].astype("string")
    return frame


def prepare(
    dataset_path: str,
    dataset_name: str | None,
    dataset_revision: str | None,
    game: str,
    role: str,
    drop_outcomes: Iterable[str],
    target_word_patterns: Iterable[str] = DEFAULT_TARGET_WORD_PATTERNS,
):
    """Load, filter and convert both splits. Returns ({"train": df, "val": df}, summary)."""
    splits = load_splits(dataset_path, dataset_name, dataset_revision)
    frames, summary = {}, {"game": game, "role": role, "dataset": dataset_path, "splits": {}}
    for ours, theirs in SPLITS.items():
        records, split_summary = prepare_split(
            ours, splits[theirs], game, role, drop_outcomes, target_word_patterns
        )
        frames[ours] = records_to_frame(records)
        summary["splits"][ours] = split_summary
    return frames, summary


def prepare_to_files(train_path, val_path, summary_path, **kwargs) -> dict:
    """`prepare`, then write train/val parquet and the summary; nothing is written on error."""
    import logging

    from .io import write_json, write_parquet

    frames, summary = prepare(**kwargs)
    log = logging.getLogger(__name__)
    for split, info in summary["splits"].items():
        log.info("%s: %s", split, info)
        if info["unrecognised_outcome"]:
            log.warning(
                "%s: outcomes outside %s kept as-is: %s",
                split,
                KNOWN_OUTCOMES,
                info["unrecognised_outcome"],
            )
    write_parquet(frames["train"], train_path)
    write_parquet(frames["val"], val_path)
    write_json(summary, summary_path)
    return summary
