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

from playpen_attribution.core.errors import WorkflowInputError, warn_user
from playpen_attribution.core.paths import local_split_files, looks_like_local_path

META_FIELDS = ("experiment", "game", "game_role", "model", "outcome", "player_name", "task_id")
# player_name is the only meta field the workflow never reads; the others may not be null.
NULLABLE_META_FIELDS = ("player_name",)
KNOWN_OUTCOMES = ("success", "failure", "aborted")
# The roles a chat may have: the final assistant turn is trained, user turns are context.
# Anything else (`system`, `Assistant`, the template's own `model`) is refused when the
# data is read: a chat template fails on it, or renders it and trains none of it.
ROLES = ("user", "assistant")
SPLITS = {"train": "train", "val": "validation"}  # our name -> the hub's split name


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


def _where(source: str, index: int, line_numbers: bool) -> str:
    return f"{source} line {index + 1}" if line_numbers else f"{source} row {index}"


def check_row(row, where: str) -> None:
    """Fail, naming the row and the field, unless `row` has the hub schema."""
    if not isinstance(row, dict):
        raise WorkflowInputError(
            f"{where}: a row must be an object with 'messages' and 'meta', got {type(row).__name__}"
        )
    for column in ("messages", "meta"):
        if column not in row:
            raise WorkflowInputError(f"{where}: no column {column!r}; columns: {sorted(row)}")
    messages = row["messages"]
    if not isinstance(messages, list):
        raise WorkflowInputError(
            f"{where}: field 'messages' must be a list of {{role, content}} objects, got {type(messages).__name__}"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise WorkflowInputError(
                f"{where}: messages[{i}] must be an object, got {type(message).__name__}"
            )
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                got = "nothing" if key not in message else type(message[key]).__name__
                raise WorkflowInputError(f"{where}: messages[{i}].{key} must be a string, got {got}")
        if message["role"] not in ROLES:
            raise WorkflowInputError(
                f"{where}: messages[{i}].role is {message['role']!r}; a role must be 'user' or "
                "'assistant' (lower case; fold a system prompt into the first user turn)"
            )
    meta = row["meta"]
    if not isinstance(meta, dict):
        raise WorkflowInputError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
    for field in META_FIELDS:
        if field not in meta:
            raise WorkflowInputError(f"{where}: meta has no field {field!r}; fields: {sorted(meta)}")
        value = meta[field]
        if value is None and field in NULLABLE_META_FIELDS:
            continue
        expected = int if field == "task_id" else str
        if not isinstance(value, expected) or isinstance(value, bool):
            raise WorkflowInputError(
                f"{where}: meta.{field} must be {'an integer' if expected is int else 'a string'}, "
                f"got {'null' if value is None else type(value).__name__}"
            )


def _hub_rows(rows: list) -> list[dict]:
    """Checked rows reduced to the hub schema's fields (extra keys are not ours to keep)."""
    return [
        {
            "messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]],
            "meta": {field: row["meta"][field] for field in META_FIELDS},
        }
        for row in rows
    ]


def read_split_file(path: str | Path) -> list[dict]:
    """Rows of one jsonl / json / parquet split file, every row checked (file, row, field)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise WorkflowInputError(f"{path}: not a readable parquet file: {exc}") from None
        line_numbers = False
    else:
        rows = _read_json_rows(path)
        line_numbers = True
    if not rows:
        raise WorkflowInputError(f"{path}: the file has no rows")
    for index, row in enumerate(rows):
        check_row(row, _where(str(path), index, line_numbers))
    return _hub_rows(rows)


def _read_json_rows(path: Path) -> list:
    """JSON lines (or, for `.json`, one JSON array), decoded strictly as UTF-8."""
    import json

    raw = path.read_bytes()
    if path.suffix == ".json" and raw.lstrip().startswith(b"["):
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise WorkflowInputError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise WorkflowInputError(f"{path} line {exc.lineno}: invalid JSON: {exc.msg}") from None
    rows = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WorkflowInputError(
                f"{path} line {number}: not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
            ) from None
        if not text.strip():
            continue
        try:
            rows.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise WorkflowInputError(
                f"{path} line {number}: invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None
    return rows


def _checked_dataset(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_list(rows, features=hub_features())


def load_splits(path: str, name: str | None = None, revision: str | None = None) -> dict:
    """Return {"train": Dataset, "validation": Dataset} from a hub id or a local directory.

    A local directory holds either a `save_to_disk` DatasetDict or `train.*` and
    `validation.*` files (jsonl or parquet). Every row is checked against the hub schema
    first, so that an error names the file, the row and the field.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        files = local_split_files(local)
        if "save_to_disk" in files:
            import datasets

            loaded = _checked_datasets(datasets.load_from_disk(str(local)), str(local))
        else:
            missing = [s for s in SPLITS.values() if not files[s]]
            if missing:
                raise WorkflowInputError(
                    f"dataset.path {path!r} is a directory without the split file(s) "
                    f"{missing}: expected train.jsonl|parquet and validation.jsonl|parquet, "
                    "or a datasets.save_to_disk directory."
                )
            several = {s: f for s, f in files.items() if len(f) > 1}
            if several:
                split, found = next(iter(several.items()))
                raise WorkflowInputError(
                    f"{local}: several files for split {split!r}: " + ", ".join(p.name for p in found)
                )
            loaded = {s: _checked_dataset(read_split_file(f[0])) for s, f in files.items()}
    elif looks_like_local_path(path):
        raise WorkflowInputError(
            f"dataset.path {path!r} does not exist (relative paths are read from {Path.cwd()})"
        )
    else:
        loaded = _checked_datasets(_load_from_hub(path, name, revision), path)
    missing = [s for s in SPLITS.values() if s not in loaded]
    if missing:
        raise WorkflowInputError(f"dataset {path!r} has no split(s) {missing}; found {sorted(loaded)}")
    return {s: loaded[s] for s in SPLITS.values()}


def _checked_datasets(loaded, source: str) -> dict:
    """Check every row of an Arrow-backed DatasetDict (hub or save_to_disk)."""
    out = {}
    for split in loaded:
        dataset = loaded[split]
        for column in ("messages", "meta"):
            if column not in dataset.column_names:
                raise WorkflowInputError(
                    f"{source} split {split!r} has no column {column!r}; columns: {dataset.column_names}"
                )
        if len(dataset) == 0:
            raise WorkflowInputError(f"{source} split {split!r} has no rows")
        rows = dataset.select_columns(["messages", "meta"]).to_list()
        for index, row in enumerate(rows):
            check_row(row, f"{source} split {split!r} row {index}")
        out[split] = _checked_dataset(_hub_rows(rows))
    return out


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
    return ", ".join(f"{g}/{r} ({n} rows)" for (g, r), n in sorted(counts.items()))


# --------------------------------------------------------------------------- conversion


def split_conversation(messages: list[dict]) -> tuple[list[dict], dict] | None:
    """Split at the final assistant turn: (prompt messages, completion message).

    Returns None if there is no assistant turn. Turns after the last assistant turn are
    not part of the training example (the caller counts them).
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

    A key whose rows disagree maps to None: better no word than a wrong one (see
    `target_word_conflicts`, which names them).
    """
    return _describer_words(rows, patterns)[0]


def target_word_conflicts(rows: list[dict], patterns: Iterable[str]) -> dict[tuple, list]:
    """The keys whose describer rows name different words, with the words they name."""
    return _describer_words(rows, patterns)[1]


def _describer_words(rows, patterns):
    seen: dict[tuple, set] = {}
    for row in rows:
        meta = row["meta"]
        if meta["game"] != "taboo" or meta["game_role"] != "WordDescriber":
            continue
        first_user = next((m["content"] for m in row["messages"] if m["role"] == "user"), "")
        key = (meta["experiment"], meta["task_id"], meta["model"])
        seen.setdefault(key, set()).add(extract_target_word(first_user, patterns))
    words = {key: next(iter(found)) if len(found) == 1 else None for key, found in seen.items()}
    conflicts = {key: sorted(str(w) for w in found) for key, found in seen.items() if len(found) > 1}
    return words, conflicts


# Counts that a researcher should see: each is logged as a WARNING when non-zero and
# stated in the reports. (summary key, what it means)
NOTABLE_COUNTS = {
    "dropped_empty_completion": "rows dropped: empty final assistant turn",
    "kept_empty_completion": "rows kept with an empty final assistant turn (keep_empty_completions)",
    "exact_duplicates": "rows kept that exactly repeat an earlier row (messages and meta)",
    "trailing_turns_removed": "rows whose turns after the final assistant turn were removed",
    "dropped_no_assistant_turn": "rows dropped: no assistant turn",
}


def prepare_split(
    split_name: str,
    dataset,
    game: str,
    role: str,
    drop_outcomes: Iterable[str],
    *,
    target_word_patterns: Iterable[str],
    keep_empty_completions: bool,
) -> tuple[list[dict], dict]:
    """Filter one split to game x role and convert it. Returns (records, summary)."""
    import json

    check_schema(split_name, dataset)
    drop_outcomes = set(drop_outcomes)
    metas = dataset["meta"]
    counts = game_role_counts(metas)
    selected = [i for i, m in enumerate(metas) if m["game"] == game and m["game_role"] == role]
    if not selected:
        raise WorkflowInputError(
            f"no rows for game {game!r}, role {role!r} in split {split_name!r}. "
            f"Available (game, role) pairs: {_format_pairs(counts)}"
        )
    summary: dict[str, Any] = {
        "rows_read": len(metas),
        "rows_for_game_role": len(selected),
        "dropped_outcome": Counter(),
        "unrecognised_outcome": Counter(),
        "target_word_missing": 0,
        # kept without a word because the episode's describer rows name different words
        "target_word_conflict": 0,
        "target_word_conflict_examples": [],
        **{key: 0 for key in NOTABLE_COUNTS},
    }
    patterns = list(target_word_patterns)
    word_by_episode, conflicts = {}, {}
    if game == "taboo":
        describer_idx = [
            i for i, m in enumerate(metas) if m["game"] == "taboo" and m["game_role"] == "WordDescriber"
        ]
        word_by_episode, conflicts = _describer_words(dataset.select(describer_idx).to_list(), patterns)

    records, seen = [], set()
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
        if len(prompt) + 1 < len(row["messages"]):
            summary["trailing_turns_removed"] += 1
        if not completion["content"].strip():
            if not keep_empty_completions:
                summary["dropped_empty_completion"] += 1
                continue
            summary["kept_empty_completion"] += 1
        fingerprint = json.dumps([row["messages"], meta], sort_keys=True)
        if fingerprint in seen:
            summary["exact_duplicates"] += 1
        seen.add(fingerprint)
        target_word = None
        if game == "taboo":
            key = (meta["experiment"], meta["task_id"], meta["model"])
            target_word = word_by_episode.get(key)
            if target_word is None:
                summary["target_word_missing"] += 1
            if key in conflicts:
                summary["target_word_conflict"] += 1
                if len(summary["target_word_conflict_examples"]) < 3:
                    summary["target_word_conflict_examples"].append(
                        {"experiment": key[0], "task_id": key[1], "model": key[2], "words": conflicts[key]}
                    )
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
    if not records:
        raise WorkflowInputError(
            f"split {split_name!r} is empty after filtering game {game!r}, role {role!r} "
            f"({summary['rows_for_game_role']} rows before dropping outcomes {sorted(drop_outcomes)}, "
            "empty completions and chats without an assistant turn)."
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
    *,
    target_word_patterns: Iterable[str],
    keep_empty_completions: bool,
    extra_files: Iterable[str] = (),
):
    """Load, filter and convert both splits. Returns ({"train": df, "val": df}, summary).

    `extra_files` (hub-schema jsonl/json/parquet files, e.g. a previous round's
    played/episodes.jsonl) join the training rows, after the dataset's own: the dataset's
    row_ids stay as they were, the k-th file's rows get `extra{k}-{index in the file}`, and
    a `source` column (only with extra files) says where each row came from."""
    splits = load_splits(dataset_path, dataset_name, dataset_revision)
    frames, summary = {}, {"game": game, "role": role, "dataset": dataset_path, "splits": {}}
    for ours, theirs in SPLITS.items():
        records, split_summary = prepare_split(
            ours,
            splits[theirs],
            game,
            role,
            drop_outcomes,
            target_word_patterns=target_word_patterns,
            keep_empty_completions=keep_empty_completions,
        )
        frames[ours] = records_to_frame(records)
        summary["splits"][ours] = split_summary
    extra_files = [str(f) for f in extra_files or ()]
    if extra_files:
        import pandas as pd

        parts = [frames["train"].assign(source="dataset")]
        for k, path in enumerate(extra_files):
            dataset = _checked_dataset(read_split_file(path))
            records, split_summary = prepare_split(
                f"extra{k}",
                dataset,
                game,
                role,
                drop_outcomes,
                target_word_patterns=target_word_patterns,
                keep_empty_completions=keep_empty_completions,
            )
            parts.append(records_to_frame(records).assign(source=path))
            summary["splits"][f"extra{k}"] = split_summary | {"path": path}
        frames["train"] = pd.concat(parts, ignore_index=True)
    return frames, summary


def data_problems(split_name: str, info: dict) -> list[str]:
    """What in a split's summary changes what the attribution means, one line each: rows
    with an outcome that no success rate counts, rows without a word because their
    episode's describer rows disagree."""
    problems = []
    unrecognised = info.get("unrecognised_outcome") or {}
    if unrecognised:
        named = ", ".join(f"{n} {outcome!r}" for outcome, n in sorted(unrecognised.items()))
        problems.append(
            f"{split_name}: {sum(unrecognised.values())} rows kept with an outcome outside "
            f"{list(KNOWN_OUTCOMES)} ({named}); no success rate counts them"
        )
    if info.get("target_word_conflict"):
        example = info["target_word_conflict_examples"][0]
        problems.append(
            f"{split_name}: {info['target_word_conflict']} rows kept without a target word: their "
            "episode's describer rows name different words, e.g. experiment "
            f"{example['experiment']!r} task_id {example['task_id']} model {example['model']!r}: "
            + " / ".join(example["words"])
        )
    return problems


def prepare_to_files(
    train_path, val_path, summary_path, eval_path=None, split=None, *, strict: bool, **kwargs
) -> dict:
    """`prepare`, then write train/val parquet and the summary; nothing is written on error.

    What `data_problems` finds is a WARNING on the terminal, or with `strict` an error.

    With `split` ({unit, eval_fraction, seed, query_outcomes}) and `eval_path`, the
    validation rows are divided by group (split.py): the query rows go to `val_path`, the
    held-out eval rows to `eval_path`.
    """
    import logging

    from playpen_attribution.core.io import write_json, write_parquet

    frames, summary = prepare(**kwargs)
    if split is not None:
        from playpen_attribution.data.split import split_validation

        frames["val"], frames["eval"], summary["split"] = split_validation(
            frames["val"], split["unit"], split["eval_fraction"], split["seed"], split.get("query_outcomes")
        )
        logging.getLogger(__name__).info("validation split: %s", summary["split"])
    log = logging.getLogger(__name__)
    for split_name, info in summary["splits"].items():
        log.info("%s: %s", split_name, info)
        for problem in data_problems(split_name, info):
            if strict:
                raise WorkflowInputError(f"{problem} (dataset.strict: true)")
            warn_user(log, f"{problem} (dataset.strict: true makes this an error)")
        notable = {key: info[key] for key in NOTABLE_COUNTS if info[key]}
        if notable:
            log.warning(
                "%s: %s", split_name, "; ".join(f"{NOTABLE_COUNTS[k]}: {n}" for k, n in notable.items())
            )
    write_parquet(frames["train"], train_path)
    write_parquet(frames["val"], val_path)
    if split is not None:
        write_parquet(frames["eval"], eval_path)
    write_json(summary, summary_path)
    return summary
