"""Cost of preconditioned (EK-FAC) attribution next to plain attribution, on the demo.

Runs (or, with --resume, reuses) the demo up to attribution/compare.parquet and
attribution/planted.parquet in the repository's result tree, then records to
benchmarks/out/preconditioning.json, per method: the wall time and peak RSS of each rule
(Snakemake's `benchmark:` files; max_rss is sampled, so short peaks can be missed), the
Hessian's size on disk, the ratio of EK-FAC's attribution time (hessian + reduce + score)
to the plain one (reduce + score) and of their peak RSS, and where the planted copies rank.
Target (issue): EK-FAC adds at most 50% wall time and at most 1.5x peak RSS.

    uv run python benchmarks/bench_preconditioning.py [--resume]
"""

import argparse
import time

import pandas as pd
from _common import REPO, machine, read_benchmark_tsv, record, snakemake

TARGET = "taboo/WordGuesser"
RESULTS = REPO / "results/demo"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="reuse the finished demo run")
    args = parser.parse_args()
    targets = [
        f"results/demo/{TARGET}/attribution/compare.parquet",
        f"results/demo/{TARGET}/attribution/planted.parquet",
    ]
    start = time.perf_counter()
    if not args.resume:
        snakemake(f"--configfile={REPO / 'config/demo.yaml'}", *targets, workdir=REPO, cores=args.cores)
    wall = time.perf_counter() - start
    bench = RESULTS / "benchmarks" / TARGET
    rules = {
        "none": ["reduce_query", "score_train"],
        "ekfac": ["hessian", "reduce_query", "score_train"],
    }
    per_method = {}
    for method, names in rules.items():
        jobs = {name: read_benchmark_tsv(bench / method / f"{name}.tsv") for name in names}
        per_method[method] = {
            "jobs": jobs,
            "attribution_wall_s": round(sum(j["wall_s"] for j in jobs.values()), 1),
            "peak_rss_mb": max(j["max_rss_mb"] or 0 for j in jobs.values()),
        }
    hessian_dir = RESULTS / TARGET / "attribution/ekfac/hessian/run"
    planted = pd.read_parquet(RESULTS / TARGET / "attribution/planted.parquet")
    ranks = planted.groupby(["method", "aggregation"])["rank"].apply(lambda r: sorted(r.tolist()))
    result = {
        "machine": machine(),
        "wall_s_this_run": round(wall, 1),
        "per_method": per_method,
        "hessian_disk_mb": round(
            sum(p.stat().st_size for p in hessian_dir.rglob("*") if p.is_file()) / 1e6, 1
        ),
        "ekfac_over_none_wall": round(
            per_method["ekfac"]["attribution_wall_s"] / per_method["none"]["attribution_wall_s"], 2
        ),
        "ekfac_over_none_peak_rss": round(
            per_method["ekfac"]["peak_rss_mb"] / per_method["none"]["peak_rss_mb"], 2
        ),
        "planted_ranks": {f"{m}/{a}": r for (m, a), r in ranks.items()},
        "compare": pd.read_parquet(RESULTS / TARGET / "attribution/compare.parquet").to_dict("records"),
    }
    record("preconditioning", result)


if __name__ == "__main__":
    main()
