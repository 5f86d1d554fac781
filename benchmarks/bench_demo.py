"""Benchmark the offline demo end to end, from an empty results/ directory.

Records to benchmarks/out/demo.json:
- end-to-end wall time and per-stage wall time and peak RSS (Snakemake `benchmark:` files);
- the attribution cost ratio: (reduce + score time, excluding model load) / (one SFT epoch
  over the same rows), where the SFT epoch time is seconds per training row (from the
  optimizer-step timer) x the number of rows attribution processed;
- the wall time of a no-op dry run (`snakemake -n`, nothing to do);
- which jobs a change of `report.k` alone would rerun.
Targets (issue): end-to-end <= 15 min, cost ratio <= 1.5, no-op dry run < 5 s, and only
report rules rerun for a new k.
"""

import argparse
import json
import re
import shutil
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


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", default=str(OUT / "demo-work"))
    parser.add_argument(
        "--resume", action="store_true", help="reuse the finished end-to-end run in --workdir"
    )
    args = parser.parse_args()
    work = Path(args.workdir)
    config_file = REPO / "config/demo.yaml"
    # `=` because --configfile takes several values and would swallow the targets.
    config = [f"--configfile={config_file}"]
    targets = [f"results/demo/{TARGET}/topk.parquet", f"results/demo/{TARGET}/words.parquet"]

    run_record = OUT / "demo-run.json"
    if not args.resume:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        run = snakemake(*config, *targets, workdir=work, cores=args.cores)
        run_record.write_text(json.dumps({"wall_s": run["wall_s"]}))
    run = json.loads(run_record.read_text())
    stages = {}
    for tsv in sorted((work / "results/demo/benchmarks").rglob("*.tsv")):
        stages[tsv.stem] = read_benchmark_tsv(tsv)

    out = work / "results/demo" / TARGET
    sft = json.loads((out / "sft/summary.json").read_text())
    timing = {
        name: json.loads((out / f"attribution/{name}/timing.json").read_text()) for name in ("query", "score")
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
        "end_to_end_wall_s": run["wall_s"],
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
        "targets": {"end_to_end_wall_s": 900, "attribution_cost_ratio": 1.5, "noop_dry_run_s": 5},
    }
    record("demo", result)


if __name__ == "__main__":
    main()
