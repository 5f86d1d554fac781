"""Benchmark the offline demo end to end, from an empty results/ directory.

Records to benchmarks/out/demo.json:
- end-to-end wall time, the median of `--runs` runs (each from an empty result tree), and
  per job the wall time and peak RSS of every run from the job's last log line (the
  kernel's ru_maxrss, as `/usr/bin/time -v` reports it; Snakemake's `benchmark:` files,
  also recorded, sample RSS every 30 s and miss short peaks);
- the attribution cost ratio: (reduce + score time, excluding model load) / (one SFT epoch
  over the same rows), where the SFT epoch time is seconds per training row (from the
  optimizer-step timer) x the number of rows attribution processed;
- the wall time of a no-op dry run (`snakemake -n`, nothing to do);
- which jobs a change of `report.k` alone would rerun.
Targets: end-to-end <= 4 min and every job's peak RSS <= 3 GB (issue 25), cost ratio
<= 1.5, no-op dry run < 5 s, and only report rules rerun for a new k.
"""

import argparse
import json
import re
import shutil
import statistics
import time
from pathlib import Path

import yaml
from _common import OUT, REPO, machine, read_benchmark_tsv, record, snakemake

TARGET = "taboo/WordGuesser"


def model_load_seconds(adapter_dir) -> float:
    """Time to load base model + adapter as Bergson does, in a warm process (a lower bound)."""
    import torch
    from peft import AutoPeftModelForCausalLM

    AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=torch.float32)  # warm the cache
    start = time.perf_counter()
    AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=torch.float32)
    return time.perf_counter() - start


# The last line of every job's log (core/smk.py's run_step).
FINISHED = re.compile(r"(\S+) finished in ([\d.]+) s, peak RSS ([\d.]+) GB")


def job_figures(work: Path) -> dict:
    """{log path: {"wall_s", "peak_rss_gb"}} of every job of a finished run."""
    logs = work / "results/demo/logs"
    figures = {}
    for log in sorted(logs.rglob("*.log")):
        found = FINISHED.findall(log.read_text())
        if found:
            _, wall, rss = found[-1]
            figures[str(log.relative_to(logs))] = {"wall_s": float(wall), "peak_rss_gb": float(rss)}
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", default=str(OUT / "demo-work"))
    parser.add_argument(
        "--runs", type=int, default=3, help="end-to-end runs, each from an empty result tree (median)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="reuse the finished end-to-end runs in --workdir"
    )
    args = parser.parse_args()
    work = Path(args.workdir)
    config_file = REPO / "config/demo.yaml"
    # `=` because --configfile takes several values and would swallow the targets.
    config = [f"--configfile={config_file}"]
    targets = [f"results/demo/{TARGET}/topk.parquet", f"results/demo/{TARGET}/words.parquet"]

    run_record = OUT / "demo-run.json"
    if not args.resume:
        walls, jobs = [], []
        for _ in range(args.runs):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            # --notemp keeps the temp() Bergson runs, whose timing.json is read below
            walls.append(snakemake(*config, *targets, "--notemp", workdir=work, cores=args.cores)["wall_s"])
            jobs.append(job_figures(work))
            print(f"run {len(walls)}: {walls[-1]} s", flush=True)
        run_record.write_text(json.dumps({"runs_wall_s": walls, "jobs": jobs}))
    run = json.loads(run_record.read_text())
    per_job = {
        log: {
            "wall_s": [figures[log]["wall_s"] for figures in run["jobs"]],
            "peak_rss_gb": max(figures[log]["peak_rss_gb"] for figures in run["jobs"]),
        }
        for log in run["jobs"][-1]
    }
    stages = {}
    for tsv in sorted((work / "results/demo/benchmarks").rglob("*.tsv")):
        stages[tsv.stem] = read_benchmark_tsv(tsv)

    out = work / "results/demo" / TARGET
    sft = json.loads((out / "sft/summary.json").read_text())
    timing = {
        name: json.loads((out / f"attribution/none/{name}/timing.json").read_text())
        for name in ("query", "score")
    }
    load_s = model_load_seconds(out / "adapter")
    attribution_s = sum(t["execute_s"] for t in timing.values()) - 2 * load_s
    attribution_rows = sum(t["rows"] for t in timing.values())
    sft_epoch_same_rows_s = sft["seconds_per_row"] * attribution_rows

    start = time.perf_counter()
    noop = snakemake("-n", *config, *targets, workdir=work, cores=args.cores)
    noop_s = time.perf_counter() - start
    # A config file, not --config: Snakemake reads nested --config values as strings.
    from playpen_attribution.core.settings import config_from_files

    changed = yaml.safe_load(config_file.read_text())
    changed.setdefault("report", {})["k"] = config_from_files(config_file)["report"]["k"] + 1
    changed_file = work / "demo-new-k.yaml"
    changed_file.write_text(yaml.safe_dump(changed))
    new_k = snakemake("-n", f"--configfile={changed_file}", *targets, workdir=work, cores=args.cores)
    table = new_k["stdout"].split("Job stats:", 1)[-1]
    rerun_for_k = sorted({m[0] for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)} - {"total", "all"})

    result = {
        "machine": machine(),
        "cores": args.cores,
        "end_to_end_wall_s": statistics.median(run["runs_wall_s"]),
        "runs_wall_s": run["runs_wall_s"],
        "jobs": per_job,
        "job_peak_rss_gb": max(job["peak_rss_gb"] for job in per_job.values()),
        "peak_rss_mb": max((s["max_rss_mb"] or 0) for s in stages.values()),
        "stages": stages,
        "sft": sft,
        "attribution": timing,
        "adapter_model_load_s": round(load_s, 2),
        "attribution_excluding_load_s": round(attribution_s, 2),
        "attribution_rows": attribution_rows,
        "sft_epoch_same_rows_s": round(sft_epoch_same_rows_s, 2),
        "attribution_cost_ratio": round(attribution_s / sft_epoch_same_rows_s, 3),
        "noop_dry_run_s": round(noop_s, 2),
        "noop_nothing_to_do": "Nothing to be done" in noop["stdout"] + noop["stderr"],
        "jobs_rerun_for_new_k": rerun_for_k,
        "targets": {
            "end_to_end_wall_s": 240,
            "job_peak_rss_gb": 3.0,
            "attribution_cost_ratio": 1.5,
            "noop_dry_run_s": 5,
        },
    }
    record("demo", result)


if __name__ == "__main__":
    main()
