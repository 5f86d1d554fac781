"""Wall time and peak RSS of each attribution method's jobs on a finished demo tree.

For each method, reruns only its attribution jobs (`--forcerun`: hessian + reduce_query +
score_train, or the one pipeline_attribution job) under `/usr/bin/time -v`, one method at
a time, so the peak RSS is that method's largest job (Snakemake's own process included,
~0.3 GB), not Snakemake's 30 s sampler. Writes benchmarks/out/methods.json.

    uv run python benchmarks/bench_methods.py [--methods none ekfac trackstar trak] [--configfile ...]
"""

import argparse
import json
import re
import subprocess
import sys

from _common import OUT, REPO, machine

TARGET = "results/demo/taboo/WordGuesser"
FORCED = ["hessian", "reduce_query", "score_train", "pipeline_attribution"]


def run_method(method: str, configfiles: list[str], cores: int) -> dict:
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "snakemake",
        f"{TARGET}/attribution/{method}/scores.parquet",
        "--cores",
        str(cores),
        "--forcerun",
        *FORCED,
        "--configfile",
        *configfiles,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{method}: snakemake failed")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr)[1]
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
    jobs = re.findall(r"^(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M)
    return {
        "method": method,
        "wall_s": round(seconds, 1),
        "peak_rss_gb": round(peak_kb / 1e6, 2),
        "jobs": jobs,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", nargs="+", default=["none", "ekfac", "trackstar", "trak"])
    parser.add_argument("--configfile", nargs="+", default=["config/demo.yaml"])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    rows = [run_method(method, args.configfile, args.cores) for method in args.methods]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "methods.json").write_text(json.dumps({"machine": machine(), "methods": rows}, indent=2))
    print("| method | jobs | wall (s) | peak RSS (GB) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {', '.join(row['jobs'])} | {row['wall_s']} | {row['peak_rss_gb']} |")


if __name__ == "__main__":
    main()
