"""Shared helpers for the benchmark scripts: run snakemake, time it, record peak RSS."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"


def snakemake(*args: str, workdir: Path, cores: int = 2) -> dict:
    """Run snakemake in `workdir`; return wall seconds, exit code and the peak RSS of its jobs."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--cores",
        str(cores),
        "-d",
        str(workdir),
        *args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"snakemake failed: {' '.join(cmd)}")
    return {
        "wall_s": round(wall, 2),
        # ru_maxrss of children is the largest single descendant seen so far (kB on Linux)
        "peak_rss_mb_so_far": round(max(peak_kb, before) / 1024, 1),
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }


def machine() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def record(name: str, result: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    print(f"recorded to {path}")
    return path


def read_benchmark_tsv(path: Path) -> dict:
    """Snakemake's `benchmark:` file: wall seconds and max RSS (MB) of one job."""
    header, values = path.read_text().splitlines()[:2]
    row = dict(zip(header.split("\t"), values.split("\t")))
    return {"wall_s": float(row["s"]), "max_rss_mb": float(row["max_rss"]) if row["max_rss"] != "-" else None}
