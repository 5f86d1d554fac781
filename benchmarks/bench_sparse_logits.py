"""Benchmark `compute.sparse_logits` on the demo: train_lora, reduce_query and score_train, on vs off.

Uses the demo's token rows, model and adapter in results/ (built with snakemake first if
missing, which takes ~10 minutes on 2 cores). Each stage function runs once per setting in
a fresh child process, with the demo config's settings and OMP_NUM_THREADS=--cores, writing
under results/bench-sparse-logits/. Recorded per run:

- wall time of the stage function in the child (model load included);
- train_lora: seconds per optimizer step and input tokens per second (TRL's count, the
  StepTimer's step time, evaluation excluded);
- reduce_query / score_train: seconds inside Bergson's gradient loop
  (`CollectorComputer.run_with_collector_hooks`) and tokens per second through it;
- peak RSS of the child: `ru_maxrss` from `os.wait4` on that child, the kernel's high-water
  mark, which no short peak escapes (Snakemake's benchmark samples every 30 s).

Results: benchmarks/out/sparse_logits.json and a Markdown table on stdout. Targets (issue
14): score_train gradient time <= 0.5x, train_lora step <= 0.6x, every job <= 3 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, machine, record, snakemake

STAGES = ("reduce_query", "score_train", "train_lora")
WORK = REPO / "results" / "bench-sparse-logits"


def demo_config() -> dict:
    """The demo's resolved config: the schema's defaults, config.yaml, demo.yaml."""
    from playpen_attribution.core.settings import config_from_files

    return config_from_files(REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml")


def child(stage: str, sparse: bool, results: Path, out: Path, max_steps: int | None) -> dict:
    """Run one stage function in this process; return its figures."""
    os.chdir(REPO)  # the demo config's paths are relative to the repository
    from playpen_attribution.core.settings import from_config

    cfg = demo_config()
    if stage == "train_lora":
        from playpen_attribution.sft.train import LoraSettings, StepTimer, TrainSettings, run_training

        step_cpu = []  # measurement only: CPU seconds of this process (all threads) per step
        begin, end = StepTimer.on_step_begin, StepTimer.on_step_end

        def on_step_begin(self, *args, **kwargs):
            self._cpu = time.process_time()
            return begin(self, *args, **kwargs)

        def on_step_end(self, *args, **kwargs):
            step_cpu.append(time.process_time() - self._cpu)
            return end(self, *args, **kwargs)

        StepTimer.on_step_begin, StepTimer.on_step_end = on_step_begin, on_step_end

        train = {**cfg["train"], **({"max_steps": max_steps} if max_steps else {})}
        settings = from_config(TrainSettings, cfg | {"train": train}, sparse_logits=sparse)
        start = time.perf_counter()
        run_training(
            cfg["model"]["name_or_path"],
            None,
            results / "tokens/tokenizer",
            results / "tokens/train",
            results / "tokens/val",
            from_config(LoraSettings, cfg),
            settings,
            out / "adapter",
            out / "metrics.parquet",
            out / "loss.png",
            out / "summary.json",
            "bench",
        )
        wall = time.perf_counter() - start
        summary = json.loads((out / "summary.json").read_text())
        return {
            "wall_s": round(wall, 2),
            "steps": summary["steps"],
            "seconds_per_step": summary["seconds_per_step"],
            "cpu_seconds_per_step": round(sum(step_cpu) / len(step_cpu), 2),
            "tokens_per_s": summary["tokens_per_second"],
            "final_train_loss": summary["final_train_loss"],
        }

    from bergson.collector.collector import CollectorComputer

    from playpen_attribution.attribution.scoring import AttributionSettings, reduce_query, score_train
    from playpen_attribution.data.tokens import load_token_dataset

    loops, loops_cpu = [], []
    original = CollectorComputer.run_with_collector_hooks

    def timed(self, *args, **kwargs):
        begin, begin_cpu = time.perf_counter(), time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            loops.append(time.perf_counter() - begin)
            loops_cpu.append(time.process_time() - begin_cpu)

    CollectorComputer.run_with_collector_hooks = timed  # measurement only
    settings = from_config(AttributionSettings, cfg, sparse_logits=sparse)
    adapter = results / "adapter"
    start = time.perf_counter()
    if stage == "reduce_query":
        tokens_dir = results / "tokens/val"
        reduce_query(adapter, tokens_dir, out / "query", settings, aggregation="none")
    else:
        tokens_dir = results / "tokens/train"
        query = WORK / f"reduce_query-{'on' if sparse else 'off'}" / "query"
        score_train(adapter, tokens_dir, query, out / "score", out / "scores.parquet", settings)
    wall = time.perf_counter() - start
    tokens = load_token_dataset(tokens_dir)
    n_tokens = int(sum(tokens["n_tokens"]))
    return {
        "wall_s": round(wall, 2),
        "gradient_s": round(sum(loops), 2),
        "gradient_cpu_s": round(sum(loops_cpu), 2),
        "rows": len(tokens),
        "tokens": n_tokens,
        "trained_tokens": int(sum(tokens["n_trained"])),
        "tokens_per_s": round(n_tokens / sum(loops), 2),
    }


def run_child(stage: str, sparse: bool, args) -> dict:
    out = WORK / f"{stage}-{'on' if sparse else 'off'}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, __file__, "--child", stage, "--sparse", str(int(sparse)), "--target", args.target]
    cmd += ["--results", args.results]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.cores))
    with open(out / "child.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{stage} (sparse={sparse}) failed, see {out / 'child.log'}")
    result = json.loads((out / "result.json").read_text())
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # kB on Linux
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)  # less sensitive to other load than wall
    print(stage, "on" if sparse else "off", result, flush=True)
    return result


def score_agreement() -> dict:
    """Max |difference| of the scores and losses the two settings wrote (same adapter, fp32)."""
    import pandas as pd

    on = pd.read_parquet(WORK / "score_train-on" / "scores.parquet")
    off = pd.read_parquet(WORK / "score_train-off" / "scores.parquet")
    return {
        "max_abs_score_diff": float((on["score"] - off["score"]).abs().max()),
        "max_abs_loss_diff": float((on["loss"] - off["loss"]).abs().max()),
        "max_abs_score": float(off["score"].abs().max()),
    }


def table(runs: dict) -> str:
    rows = [
        "| stage | figure | off (full logits) | on (sparse logits) | on / off |",
        "|---|---|---|---|---|",
    ]
    figures = {
        "train_lora": (
            "wall_s",
            "cpu_s",
            "seconds_per_step",
            "cpu_seconds_per_step",
            "tokens_per_s",
            "peak_rss_mb",
        ),
        "reduce_query": ("wall_s", "cpu_s", "gradient_s", "gradient_cpu_s", "tokens_per_s", "peak_rss_mb"),
        "score_train": ("wall_s", "cpu_s", "gradient_s", "gradient_cpu_s", "tokens_per_s", "peak_rss_mb"),
    }
    for stage in STAGES:
        if stage not in runs:
            continue
        for key in figures[stage]:
            off, on = runs[stage]["off"][key], runs[stage]["on"][key]
            rows.append(f"| `{stage}` | {key} | {off} | {on} | {on / off:.2f} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--target", default="taboo/WordGuesser", help="game/role")
    parser.add_argument("--results", default="results", help="the demo's results directory")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument(
        "--max-steps", type=int, default=None, help="override train.max_steps (default: demo's)"
    )
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--sparse", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        out = WORK / f"{args.child}-{'on' if args.sparse else 'off'}"
        result = child(args.child, bool(args.sparse), REPO / args.results / args.target, out, args.max_steps)
        (out / "result.json").write_text(json.dumps(result))
        return

    snakemake(  # the inputs, reusing whatever is already built
        f"--configfile={REPO / 'config/demo.yaml'}",
        f"{args.results}/{args.target}/adapter",
        workdir=REPO,
        cores=args.cores,
    )
    runs = {}
    for stage in STAGES:  # reduce before score: score reads the same setting's query
        if stage in args.stages:
            runs[stage] = {setting: run_child(stage, setting == "on", args) for setting in ("off", "on")}
    result = {"machine": machine(), "cores": args.cores, "target": args.target, "runs": runs}
    for stage, key in (
        ("score_train", "gradient_s"),
        ("score_train", "gradient_cpu_s"),
        ("train_lora", "seconds_per_step"),
        ("train_lora", "cpu_seconds_per_step"),
    ):
        if stage in runs:
            result[f"{stage}_{key}_ratio"] = round(runs[stage]["on"][key] / runs[stage]["off"][key], 3)
    if "score_train" in runs:
        result["score_agreement"] = score_agreement()
    peak = max(r["peak_rss_mb"] for stage in runs.values() for r in stage.values())
    result["targets"] = {
        "score_train_gradient_ratio_le_0.5": result.get("score_train_gradient_s_ratio", 1) <= 0.5,
        "train_lora_step_ratio_le_0.6": result.get("train_lora_seconds_per_step_ratio", 1) <= 0.6,
        "peak_rss_le_3GB_sparse": max(s["on"]["peak_rss_mb"] for s in runs.values()) <= 3072,
        "peak_rss_le_3GB_all": peak <= 3072,
    }
    record("sparse_logits", result)
    print(table(runs))


if __name__ == "__main__":
    main()
