"""LoRA SFT with TRL on the token rows, and the adapter bootstrap."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import with_defaults

from playpen_attribution.data.tokens import load_token_dataset
from playpen_attribution.sft.models import bootstrap_adapter
from playpen_attribution.sft.train import LoraSettings, TrainSettings, metrics_frame, train_lora


def masked_loss(model, tokens):
    """Mean loss over trained tokens, computed directly (not by TRL)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in tokens:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor([row["labels"]])
            logits = model(input_ids=ids).logits[:, :-1]
            target = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += loss.item()
            count += int((target != -100).sum())
    return total / count


def assert_same_lora_weights(actual, expected, rtol=0.0, atol=0.0) -> None:
    """The two models' LoRA weights: the same names, equal within the tolerance (bit for
    bit by default)."""
    got = {n: p for n, p in actual.named_parameters() if "lora_" in n}
    want = {n: p for n, p in expected.named_parameters() if "lora_" in n}
    assert got and got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=atol, msg=name)


def train_again(tiny_gemma_dir, guesser_tokens, tokenizer, settings, work):
    """train_lora on a fresh tiny model and the guesser rows, as `trained` was trained."""
    from transformers import AutoModelForCausalLM

    train_dir, val_dir = guesser_tokens
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir)
    tokens = load_token_dataset(train_dir), load_token_dataset(val_dir)
    return train_lora(model, tokenizer, *tokens, LORA, settings, work)


SETTINGS = with_defaults(
    TrainSettings, learning_rate=3e-3, epochs=4, batch_size=4, warmup_ratio=0.0, max_length=256, seed=7
)
LORA = with_defaults(LoraSettings, r=8, alpha=16, dropout=0.0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_gemma_dir, gemma_tokenizer, guesser_tokens):
    from transformers import AutoModelForCausalLM

    train_dir, val_dir = guesser_tokens
    train_tokens, val_tokens = load_token_dataset(train_dir), load_token_dataset(val_dir)
    work = tmp_path_factory.mktemp("sft")
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir)
    before = masked_loss(model, train_tokens)
    trainer = train_lora(model, gemma_tokenizer, train_tokens, val_tokens, LORA, SETTINGS, work / "run")
    after = masked_loss(trainer.model, train_tokens)
    adapter = work / "adapter"
    trainer.model.save_pretrained(adapter)
    gemma_tokenizer.save_pretrained(adapter)
    return {"trainer": trainer, "before": before, "after": after, "adapter": adapter}


def test_lora_training_reduces_training_loss(trained):
    assert trained["after"] < trained["before"] - 0.5
    metrics = metrics_frame(trained["trainer"].state.log_history)
    assert set(metrics["split"]) == {"train", "val"}
    assert (metrics["split"] == "val").sum() == SETTINGS.epochs + 1  # before training, then every epoch


def test_only_lora_weights_change(trained, tiny_gemma_dir):
    """The trained model's base weights equal the checkpoint's, bit for bit; every LoRA B
    (zero when PEFT creates it) has moved, so training reached every adapted layer."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = trained["trainer"].model
    base = {
        name.removeprefix("base_model.model.").replace(".base_layer.", "."): value
        for name, value in model.state_dict().items()
        if "lora_" not in name
    }
    checkpoint = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir).state_dict()
    assert base.keys() == checkpoint.keys()
    changed = [name for name in checkpoint if not torch.equal(base[name], checkpoint[name])]
    assert not changed, changed

    lora_b = {name: p for name, p in model.named_parameters() if "lora_B" in name}
    adapted = [name for name, m in model.named_modules() if name.split(".")[-1] in LORA.target_modules]
    assert len(lora_b) == len(adapted) == 2 * len(LORA.target_modules)  # 2 layers in the tiny model
    assert all(p.abs().max() > 0 for p in lora_b.values()), [n for n, p in lora_b.items() if not p.any()]

    weights = load_file(trained["adapter"] / "adapter_model.safetensors")
    assert weights and all("lora_" in name for name in weights)
    config = json.loads((trained["adapter"] / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == set(LORA.target_modules)


def test_training_is_deterministic_for_a_seed(
    trained, tiny_gemma_dir, gemma_tokenizer, guesser_tokens, tmp_path
):
    again = train_again(tiny_gemma_dir, guesser_tokens, gemma_tokenizer, SETTINGS, tmp_path / "run")
    assert_same_lora_weights(again.model, trained["trainer"].model)


def test_bootstrap_output_loads_offline(trained, tiny_gemma_dir, tmp_path):
    out = tmp_path / "bootstrapped"
    bootstrap_adapter(trained["adapter"], out, str(tiny_gemma_dir))
    assert (out / "config.json").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert os.path.isabs(config["base_model_name_or_path"])
    # In a fresh process, from another directory, with the hub unreachable:
    code = (
        "import sys; from peft import PeftConfig, AutoPeftModelForCausalLM; "
        "from transformers import AutoTokenizer, AutoConfig; "
        "p = sys.argv[1]; c = PeftConfig.from_pretrained(p); "
        "m = AutoPeftModelForCausalLM.from_pretrained(p); AutoTokenizer.from_pretrained(p); "
        "AutoConfig.from_pretrained(p); print(c.base_model_name_or_path)"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(tiny_gemma_dir.resolve())


def test_bootstrap_rejects_a_non_adapter_dir(tmp_path, tiny_gemma_dir):
    from playpen_attribution.core.errors import WorkflowInputError

    with pytest.raises(WorkflowInputError, match="adapter_config.json"):
        bootstrap_adapter(tmp_path, tmp_path / "out", str(tiny_gemma_dir))
    assert not (tmp_path / "out").exists()


def test_training_leaves_the_token_rows_untouched(trained, guesser_tokens):
    """TRL maps over the token rows; nothing may be written into the tokenize rule's output."""
    for directory in guesser_tokens:
        assert not list(directory.glob("cache-*")), list(directory.iterdir())


def test_training_on_the_special_tokens_tokenizer_equals_the_whole_tokenizer(
    trained, tiny_gemma_dir, guesser_tokens, tmp_path
):
    """The training rules hand TRL only the special tokens (pretokenized.py): the adapter
    must be the one the whole tokenizer gives, bit for bit, with the same pad id in the
    model's config."""
    from playpen_attribution.sft.pretokenized import special_tokens_tokenizer

    stand_in = special_tokens_tokenizer(tiny_gemma_dir)
    assert len(stand_in.get_vocab()) < 10  # the stand-in, not the whole tokenizer
    again = train_again(tiny_gemma_dir, guesser_tokens, stand_in, SETTINGS, tmp_path / "run")
    assert_same_lora_weights(again.model, trained["trainer"].model)
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        assert getattr(again.model.config, key) == getattr(trained["trainer"].model.config, key), key
    assert again.data_collator.pad_token_id == trained["trainer"].data_collator.pad_token_id


def test_activation_checkpointing_gives_the_same_adapter(trained, tiny_gemma_dir, guesser_tokens, tmp_path):
    """train.activation_checkpointing (on in the demo) recomputes activations: the same
    LoRA weights to float rounding, and TRL really turned it on."""
    import dataclasses

    checkpointed = train_again(
        tiny_gemma_dir,
        guesser_tokens,
        trained["trainer"].processing_class,
        dataclasses.replace(SETTINGS, activation_checkpointing=True),
        tmp_path / "run",
    )
    assert (
        checkpointed.model.is_activation_checkpointing
        and not trained["trainer"].model.is_activation_checkpointing
    )
    assert_same_lora_weights(checkpointed.model, trained["trainer"].model, rtol=1e-5, atol=1e-7)
