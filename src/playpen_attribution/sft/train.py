"""LoRA SFT with TRL on the pre-tokenized rows (see `tokens.py`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)


# Settings have no defaults: the config schema holds them (settings.py builds these).
@dataclass
class LoraSettings:
    CONFIG_SECTION = "lora"

    r: int
    alpha: float
    dropout: float
    target_modules: list[str]

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )


@dataclass
class TrainSettings:
    CONFIG_SECTION = "train"

    learning_rate: float
    epochs: float
    batch_size: int
    gradient_accumulation_steps: int
    warmup_ratio: float
    weight_decay: float
    max_steps: int
    activation_checkpointing: bool
    max_length: int = field(metadata={"config": "tokenize.max_length"})
    seed: int = field(metadata={"config": "seed"})
    sparse_logits: bool = field(metadata={"config": "compute.sparse_logits"})  # see sparse_logits.py


def settings_from_params(params) -> tuple[LoraSettings, TrainSettings]:
    """A training rule's params (`lora`, `train`, `max_length`, `seed`, `compute`) as
    settings. train_lora, retrain and train_arm take the same ones, so that each retrain
    trains as the attributed adapter did."""
    lora = LoraSettings(**params.lora)
    train = TrainSettings(
        **params.train,
        max_length=params.max_length,
        seed=params.seed,
        sparse_logits=params.compute["sparse_logits"],
    )
    return lora, train


def sft_config(settings: TrainSettings, output_dir, eval_each_epoch: bool = True):
    """TRL's SFTConfig with precision set explicitly: TRL's defaults assume a GPU."""
    import torch
    from trl import SFTConfig

    from playpen_attribution.sft.models import training_dtype

    bf16 = training_dtype() == torch.bfloat16
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=settings.weight_decay,
        lr_scheduler_type="linear",
        max_length=None,  # rows are already at most max_length (tokenize rule): never cut ids here
        completion_only_loss=True,  # loss only where completion_mask == 1
        packing=False,
        padding_free=False,
        bf16=bf16,
        fp16=False,
        use_cpu=not torch.cuda.is_available(),
        eval_strategy="epoch" if eval_each_epoch else "no",
        eval_on_start=eval_each_epoch,  # the loss curve starts from the base model's val loss
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        full_determinism=False,
        dataloader_num_workers=0,
        # TRL turns it on by default; the config decides: it recomputes the forward pass
        # (the demo train_lora: 77 s against 53 s, docs/benchmarks.md).
        activation_checkpointing=settings.activation_checkpointing,
        disable_tqdm=False,
    )


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, excluding evaluation and logging (for benchmarks)."""

    def __init__(self):
        self.durations: list[float] = []
        self._start: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.durations.append(time.perf_counter() - self._start)
            self._start = None


def train_lora(
    model, tokenizer, train_tokens, val_tokens, lora: LoraSettings, settings: TrainSettings, work_dir
):
    """Fine-tune `model` with a fresh LoRA adapter; return the trainer (model + log history)."""
    from transformers import set_seed

    from playpen_attribution.data.tokens import sft_view
    from playpen_attribution.sft.sparse_logits import sft_trainer_class

    too_long = max(train_tokens["n_tokens"]) > settings.max_length
    if too_long:
        raise WorkflowInputError("token rows exceed train max_length; re-run the tokenize rule")
    set_seed(settings.seed)
    trainer = sft_trainer_class(settings.sparse_logits)(
        model=model,
        args=sft_config(settings, work_dir, eval_each_epoch=val_tokens is not None),
        train_dataset=sft_view(train_tokens),
        eval_dataset=sft_view(val_tokens) if val_tokens is not None else None,
        processing_class=tokenizer,
        peft_config=lora.peft_config(),
        callbacks=[StepTimer()],
    )
    if val_tokens is not None:
        isolate_evaluation_rng(trainer)
    if len(trainer.train_dataset) != len(train_tokens):
        # TRL drops rows without any trained token; ours always have some, so this is a bug.
        raise RuntimeError("TRL changed the number of training rows; SFT and attribution would diverge")
    trainer.train()
    return trainer


def isolate_evaluation_rng(trainer) -> None:
    """Evaluation during training must not move the training's random stream.

    Each evaluation draws from torch's global generator (a DataLoader iterator takes its
    base seed from it), so the LoRA dropout masks after the first evaluation would differ
    from those of a run without evaluation: the counterfactual baseline retrain (no
    evaluation) would not retrace train_lora's loss curve (test_counterfactual's
    step-for-step test; with lora.dropout 0.05 they parted at the first step with a
    non-zero LoRA update). torch.random.fork_rng restores the CPU and CUDA generators
    after each evaluation."""
    import torch

    evaluate = trainer.evaluate

    def rng_neutral_evaluate(*args, **kwargs):
        with torch.random.fork_rng():
            return evaluate(*args, **kwargs)

    trainer.evaluate = rng_neutral_evaluate


def step_timer(trainer):
    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, StepTimer))


def training_summary(trainer, settings: TrainSettings, n_train_rows: int) -> dict:
    """Throughput figures: seconds per optimizer step and trained tokens per second."""
    durations = step_timer(trainer).durations
    tokens = max((e.get("num_tokens", 0) for e in trainer.state.log_history), default=0)
    step_time = sum(durations)
    rows_per_step = settings.batch_size * settings.gradient_accumulation_steps
    return {
        "steps": len(durations),
        "rows": n_train_rows,
        "rows_per_step": rows_per_step,
        "sparse_logits": settings.sparse_logits,
        "step_seconds_total": round(step_time, 3),
        "seconds_per_step": round(step_time / max(1, len(durations)), 3),
        "seconds_per_row": round(step_time / max(1, len(durations) * rows_per_step), 4),
        "tokens_seen": int(float(tokens)),
        "tokens_per_second": round(float(tokens) / step_time, 2) if step_time else None,
        "final_train_loss": next(
            (e["loss"] for e in reversed(trainer.state.log_history) if "loss" in e), None
        ),
    }


def metrics_frame(log_history: list[dict]):
    """Per-step training loss and per-epoch eval loss from the trainer's log history."""
    import pandas as pd

    rows = []
    for entry in log_history:
        if "loss" in entry:
            rows.append(
                {
                    "step": entry.get("step"),
                    "epoch": entry.get("epoch"),
                    "split": "train",
                    "loss": entry["loss"],
                }
            )
        if "eval_loss" in entry:
            rows.append(
                {
                    "step": entry.get("step"),
                    "epoch": entry.get("epoch"),
                    "split": "val",
                    "loss": entry["eval_loss"],
                }
            )
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss"])


def plot_loss(metrics, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from playpen_attribution.core.io import write_png

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for split, style in (("train", "-"), ("val", "o-")):
        part = metrics[metrics["split"] == split]
        if len(part):
            ax.plot(part["step"], part["loss"], style, label=f"{split} loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (trained tokens)")
    ax.set_title(title)
    ax.legend()
    write_png(fig, path)


def select_rows(tokens, keep_row_ids):
    """The token rows whose row_id is in `keep_row_ids`, in their training order; every
    kept id must be a token row (a removal is a row selection, never a new tokenization)."""
    keep = set(keep_row_ids)
    unknown = keep - set(tokens["row_id"])
    if unknown:
        raise WorkflowInputError(
            f"{len(unknown)} row_ids to keep are not token rows, e.g. {sorted(unknown)[:3]}"
        )
    return tokens.select([i for i, row_id in enumerate(tokens["row_id"]) if row_id in keep])


def load_and_train(
    model_name_or_path: str,
    revision: str | None,
    tokenizer_dir,
    train_tokens,
    val_tokens,
    lora: LoraSettings,
    settings: TrainSettings,
    work_parent,
):
    """Load the base model, train on the token rows given (`val_tokens` None: no
    evaluation during training); return the trainer. The rows are tokenized: TRL gets the
    tokenizer's special tokens only (pretokenized.py)."""
    import tempfile

    from playpen_attribution.sft.models import load_base_model, training_dtype
    from playpen_attribution.sft.pretokenized import special_tokens_tokenizer

    tokenizer = special_tokens_tokenizer(tokenizer_dir)
    model = load_base_model(model_name_or_path, revision, dtype=training_dtype())
    log.info(
        "training on %d rows, evaluating on %s",
        len(train_tokens),
        len(val_tokens) if val_tokens is not None else "none",
    )
    Path(work_parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sft-", dir=work_parent) as work:
        trainer = train_lora(model, tokenizer, train_tokens, val_tokens, lora, settings, work)
    return trainer


def save_adapter(trainer, tokenizer_dir, adapter_out) -> None:
    """The trained adapter, with the tokenizer the rows were tokenized with beside it."""
    from playpen_attribution.core.io import atomic_path
    from playpen_attribution.sft.pretokenized import copy_tokenizer_files

    with atomic_path(adapter_out, is_dir=True) as tmp:
        trainer.model.save_pretrained(tmp)
        copy_tokenizer_files(tokenizer_dir, tmp)


def run_training(
    model_name_or_path: str,
    revision: str | None,
    tokenizer_dir,
    train_tokens_dir,
    val_tokens_dir,
    lora: LoraSettings,
    settings: TrainSettings,
    adapter_out,
    metrics_out,
    plot_out,
    summary_out,
    title: str,
) -> None:
    """The train_lora rule: train, then write adapter (+ tokenizer), metrics and loss curve."""
    from playpen_attribution.core.io import write_json, write_parquet
    from playpen_attribution.data.tokens import load_token_dataset

    train_tokens = load_token_dataset(train_tokens_dir)
    val_tokens = load_token_dataset(val_tokens_dir)
    trainer = load_and_train(
        model_name_or_path,
        revision,
        tokenizer_dir,
        train_tokens,
        val_tokens,
        lora,
        settings,
        Path(adapter_out).parent,
    )
    metrics = metrics_frame(trainer.state.log_history)
    save_adapter(trainer, tokenizer_dir, adapter_out)
    write_parquet(metrics, metrics_out)
    write_json(training_summary(trainer, settings, len(train_tokens)), summary_out)
    plot_loss(metrics, plot_out, title)
