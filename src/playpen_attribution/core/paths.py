"""Where the input data lives: a hub id or a local path, and which local files are read.

Light (stdlib only): the Snakefile imports it at parse time to track the data files as
inputs, and `data/prepare.py` uses the same rules to load them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SPLIT_FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
HUB_SPLITS = ("train", "validation")


def looks_like_local_path(path: str) -> bool:
    """A dataset/model reference that names a path rather than a hub id.

    Hub ids are `name` or `owner/name`. Anything absolute, starting with `./` or `../`
    (or `~`), holding more than one `/`, or existing as a directory is a path.
    """
    return (
        path.startswith(("/", "./", "../", "~"))
        or path in (".", "..")
        or path.count("/") > 1
        or Path(path).expanduser().is_dir()
    )


def local_split_files(directory: str | Path) -> dict[str, list[Path]]:
    """{hub split name: the files that hold it} under a local dataset directory.

    Two layouts: a `datasets.save_to_disk` directory (every file under it counts, except
    the cache files that a `.map` may leave there), or `train.*` and `validation.*` files.
    """
    directory = Path(directory)
    if (directory / "dataset_dict.json").exists():
        files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("cache-"))
        return {"save_to_disk": files}
    return {
        split: [
            directory / f"{split}{suffix}"
            for suffix in SPLIT_FILE_SUFFIXES
            if (directory / f"{split}{suffix}").exists()
        ]
        for split in HUB_SPLITS
    }


def tracked_data_files(directory: str | Path) -> list[str]:
    """The files of a local dataset that can change its content: a rule's inputs."""
    return [str(p) for files in local_split_files(directory).values() for p in files]


# owner/name or name: letters, digits, `-`, `_`, `.` (the hub's rule, roughly).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def hub_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def in_hub_cache(repo_id: str, kind: str) -> bool:
    """Whether the local Hugging Face caches hold `repo_id` (kind: datasets or models), so
    that it loads with the hub offline."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub")
    if (hub / f"{kind}--{repo_id.replace('/', '--')}").is_dir():
        return True
    if kind == "datasets":
        cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
        return (cache / repo_id.replace("/", "___")).is_dir()
    return False


def hub_id_problem(key: str, value: str, kind: str) -> tuple[str, bool] | None:
    """Why a reference that is not on disk may not be a hub id either: (message, fatal),
    or None. Fatal: it has the shape of a path (not a hub id's characters, or its first
    folder exists here), or it is a bare name (no owner/) while the hub is offline and the
    local cache does not hold it. An owner/name that the offline cache lacks is a warning:
    a dry run of the research config offline stays possible."""
    first = value.split("/", 1)[0]
    offline_and_missing = hub_offline() and not in_hub_cache(value, kind)
    if not HUB_ID.fullmatch(value) or ("/" in value and Path(first).is_dir()):
        reason, fatal = "it has the shape of a local path, not of a hub id (owner/name)", True
    elif offline_and_missing:
        reason = "the hub is offline (HF_HUB_OFFLINE) and the local cache does not hold it"
        fatal = "/" not in value
    else:
        return None
    message = (
        f"{key}: {value!r}: no such directory (relative to {Path.cwd()}); if you meant a hub id, {reason}"
    )
    return message, fatal
