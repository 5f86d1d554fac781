"""The result tree (config `results`) as a place to write: checked before any job starts,
claimed by one run at a time, and cleaned of what a killed run left behind.

Light (stdlib only): the Snakefile uses it at parse time and in `onstart`.

- `normalise` makes `results/demo/`, `./results/demo` and `results/demo` one root.
- `problem_with_root` finds a root that can never be written (it, or a folder above it, is
  a file); `read_only_folders` finds folders under it in which a job could not
  replace an output (read-only or immutable): Snakemake would stop there with a long traceback.
- A run records itself in `{results}/.runs/<host>-<pid>.json` (`claim`), with the
  Snakemake lock files it holds. Snakemake's own lock lives in the working directory, so
  two checkouts writing the same absolute `results` would not see each other; this record
  does (`other_live_runs`). A record whose process is gone (SIGKILL, SIGHUP, a lost node)
  is stale: `clear_stale_runs` removes it together with the Snakemake locks it held, so
  the next run needs no `--unlock`, and `remove_temporaries` the `.name.<random>` folders
  of the atomic writes (io.atomic_path) that the killed jobs left.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

RUNS_DIR = ".runs"
# io.atomic_path's temporary folders: tempfile.mkdtemp(prefix=f".{name}.") adds 8 characters.
TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}$")


def normalise(results: str) -> str:
    """One spelling per root: no trailing slash, no `./`, no `//`."""
    return os.path.normpath(results)


def problem_with_root(results: str) -> str | None:
    """Why the root can never be written, or None."""
    path = Path(results)
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            if candidate.is_dir():
                return None
            what = "the result root" if candidate == path else f"{candidate}, a folder of it,"
            return (
                f"results: {results!r}: {what} is a file, not a directory; move it away or "
                "set `results:` to a directory"
            )
    return None


def read_only_folders(results: str, limit: int = 3) -> list[str]:
    """Up to `limit` folders under the root (itself included) in which a job could not
    replace an output: read-only or immutable. (A read-only output file Snakemake finds
    itself, ProtectedOutputException; a folder it does not, and fails removing the file.)"""
    found = []
    for directory, dirs, _ in os.walk(results):
        dirs[:] = [d for d in dirs if d != RUNS_DIR]
        if not os.access(directory, os.W_OK):
            found.append(directory)
            if len(found) >= limit:
                break
    return found


def remove_temporaries(results: str) -> list[str]:
    """Remove the temporary folders of interrupted atomic writes; return their paths."""
    removed = []
    for directory, dirs, _ in os.walk(results):
        for name in list(dirs):
            if TEMPORARY.match(name):
                path = os.path.join(directory, name)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
                dirs.remove(name)
    return removed


# --------------------------------------------------------------------------- run records


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(record: dict) -> bool:
    if record.get("host") != socket.gethostname():
        return True  # cannot tell from here
    pid = record.get("pid")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (TypeError, OSError):
        return False
    started = record.get("start")
    return started is None or _start_time(pid) in (None, started)


def _records(results: str) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((Path(results) / RUNS_DIR).glob("*.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            out.append((path, {}))  # unreadable: half written by a killed run
    return out


def snakemake_locks(workdir: str) -> set[str]:
    return {str(p) for p in (Path(workdir) / ".snakemake" / "locks").glob("*.lock")}


def _digest(path: str) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def clear_stale_runs(results: str) -> list[dict]:
    """Remove the records of runs whose process is gone and the Snakemake locks they
    held (only a lock file that still has the content recorded: Snakemake reuses lock
    file names, and one of the same name may be a live run's by now); return them."""
    stale = []
    for path, record in _records(results):
        if record and _alive(record):
            continue
        for lock, digest in (record.get("locks") or {}).items():
            if _digest(lock) == digest:
                Path(lock).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        stale.append(record)
    return stale


def other_live_runs(results: str) -> list[dict]:
    return [r for _, r in _records(results) if r and r.get("pid") != os.getpid() and _alive(r)]


def claim(results: str, workdir: str, locks: set[str]) -> Path:
    """Record this run (removed again when the process exits)."""
    runs = Path(results).absolute() / RUNS_DIR  # absolute: Snakemake restores the cwd at exit
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"{socket.gethostname()}-{os.getpid()}.json"
    record = {
        "pid": os.getpid(),
        "start": _start_time(os.getpid()),
        "host": socket.gethostname(),
        "workdir": os.path.abspath(workdir),
        "locks": {lock: _digest(lock) for lock in sorted(locks)},
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    atexit.register(lambda: path.unlink(missing_ok=True))
    return path


def describe(record: dict) -> str:
    return (
        f"pid {record.get('pid')} on {record.get('host')}, working directory "
        f"{record.get('workdir')}, since {record.get('since')}"
    )
