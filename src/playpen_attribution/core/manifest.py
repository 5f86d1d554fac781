"""A content manifest of a local model directory: what the rules that load the model take
as their input instead of the directory.

Snakemake sees a directory input as one file: rewriting the chat template or the weights
inside it changes nothing it looks at. The manifest lists every file of the directory with
its size and SHA-256, and is rewritten only when one of them changes, so its checksum
(Snakemake records it for small inputs) changes exactly when the model does.

Hashing gigabytes of weights on every dry run would be slow, so a cache next to the
manifest keeps each file's hash under its (size, mtime_ns): a file is hashed again only
when that key changes. A `touch` costs one hash and reruns nothing; an edit reruns what
loads the model.

Light (stdlib only): the Snakefile refreshes the manifest at parse time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def _files(model_dir: Path) -> list[Path]:
    """Every file under `model_dir`, except hidden ones (e.g. the hub's .cache/)."""
    found = []
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / name for name in sorted(files) if not name.startswith(".")]
    return found


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(value: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def cache_path(manifest_path: str | Path) -> Path:
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(manifest_path.name + ".cache")


def model_manifest(model_dir: str | Path, cache_file: str | Path | None = None) -> dict:
    """{"files": {relative path: {"size", "sha256"}}} of `model_dir`; with `cache_file`,
    hashes are reused for files whose (size, mtime_ns) did not change, and the cache is
    updated."""
    model_dir = Path(model_dir)
    cache = (_read_json(Path(cache_file)) if cache_file else None) or {}
    new_cache, files = {}, {}
    for path in _files(model_dir):
        rel = path.relative_to(model_dir).as_posix()
        stat = path.stat()
        key = [stat.st_size, stat.st_mtime_ns]
        cached = cache.get(rel)
        sha = cached[2] if cached and cached[:2] == key else _sha256(path)
        new_cache[rel] = key + [sha]
        files[rel] = {"size": stat.st_size, "sha256": sha}
    if cache_file and new_cache != cache:
        _write_json(new_cache, Path(cache_file))
    return {"files": files}


def write_manifest(model_dir: str | Path, manifest_path: str | Path) -> bool:
    """Write the manifest of `model_dir` to `manifest_path` if its content changed (a file
    added, removed or rewritten); leave it untouched otherwise. Returns whether it wrote."""
    manifest_path = Path(manifest_path)
    manifest = model_manifest(model_dir, cache_path(manifest_path))
    if _read_json(manifest_path) == manifest:
        return False
    _write_json(manifest, manifest_path)
    return True
