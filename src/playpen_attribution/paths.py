"""Where the input data lives: a hub id or a local path, and which local files are read.

Light (stdlib only): the Snakefile imports it at parse time to track the data files as
inputs, and `data.py` uses the same rules to load them.
"""

from __future__ import annotations

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
