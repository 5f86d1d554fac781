"""Benchmark the demo's SFT stage (train_lora) on this machine's cores.

Runs the demo chain up to the LoRA adapter in the repository's results/demo/ (reusing the
converted demo model if present) and forces train_lora to run again. Records wall time,
seconds per optimizer step, trained tokens per second and peak RSS to
benchmarks/out/sft.json. Targets (issue): at most 5 minutes and 4 GB peak RSS on 2 cores.
"""

import argparse
import json

from _common import REPO, machine, read_benchmark_tsv, record, snakemake


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--target", default="taboo/WordGuesser")
    args = parser.parse_args()
    out = REPO / "results/demo" / args.target
    run = snakemake(
        f"--configfile={REPO / 'config/demo.yaml'}",  # `=`: these options take several values
        "--forcerun=train_lora",
        f"results/demo/{args.target}/sft/adapter",
        workdir=REPO,
        cores=args.cores,
    )
    job = read_benchmark_tsv(REPO / "results/demo/benchmarks" / args.target / "train_lora.tsv")
    summary = json.loads((out / "sft/summary.json").read_text())
    result = {
        "machine": machine(),
        "cores": args.cores,
        "stage_wall_s": job["wall_s"],
        "stage_peak_rss_mb": job["max_rss_mb"],
        "snakemake_wall_s": run["wall_s"],
        **{f"train_{k}": v for k, v in summary.items()},
        "target_wall_s": 300,
        "target_peak_rss_mb": 4096,
    }
    result["within_targets"] = result["stage_wall_s"] <= 300 and (result["stage_peak_rss_mb"] or 0) <= 4096
    record("sft", result)


if __name__ == "__main__":
    main()
