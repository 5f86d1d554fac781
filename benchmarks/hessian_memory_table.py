"""Print the Hessian memory table (docs/methods.md) for Gemma 3 1B and 270M, without any weights.

The LoRA matrices are enumerated on a meta-device model (no memory, no download) and the
memory model (`playpen_attribution.attribution.hessian_memory`) is applied to their shapes; the script
also checks that the model's stdlib-only shape derivation agrees with the meta model.

    uv run python benchmarks/hessian_memory_table.py [--markdown]
"""

import argparse
import json

import torch
from _common import OUT
from peft import get_peft_model
from transformers import AutoModelForCausalLM, Gemma3TextConfig

from playpen_attribution.attribution.hessian_memory import GIB, LinearShape, estimate, lora_linear_shapes
from playpen_attribution.core.settings import from_config, schema_defaults
from playpen_attribution.sft.train import LoraSettings

# Published architecture hyperparameters (the configs can't be downloaded here).
MODELS = {
    "gemma-3-1b": dict(
        hidden_size=1152,
        intermediate_size=6912,
        num_hidden_layers=26,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        vocab_size=262144,
    ),
    "gemma-3-270m": dict(
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        vocab_size=262144,
    ),
}
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL = ATTENTION + ["gate_proj", "up_proj", "down_proj"]


def meta_shapes(hparams: dict, modules: list[str], r: int) -> list[LinearShape]:
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(Gemma3TextConfig(**hparams))
        model = get_peft_model(
            model, from_config(LoraSettings, schema_defaults(), r=r, target_modules=modules).peft_config()
        )
    return [
        LinearShape(name, m.in_features, m.out_features)
        for name, m in model.base_model.named_modules()
        if name.endswith(("lora_A.default", "lora_B.default"))
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = []
    for model_name, hparams in MODELS.items():
        for r in (8, 16):
            for label, modules in (("attention (4)", ATTENTION), ("all 7", ALL)):
                shapes = meta_shapes(hparams, modules, r)
                light = lora_linear_shapes(hparams, modules, r)
                assert sorted(shapes, key=lambda s: s.name) == sorted(light, key=lambda s: s.name)
                for method in ("kfac", "ekfac"):
                    for dtype, parts in (("fp32", 1), ("bf16", 1), ("fp32", 8)):
                        e = estimate(shapes, method, dtype, parts)
                        rows.append({**e.row(), "model": model_name, "r": r, "lora_modules": label})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hessian_memory.json").write_text(json.dumps(rows, indent=2))
    if args.markdown:
        # K-FAC and EK-FAC differ only by the corrected eigenvalues (in x out per matrix):
        # one line per setting, both methods' figures side by side.
        print(
            "| model | r | LoRA modules | dtype | partitions | fit peak (GB) | merge (GB) | apply (GB) | disk K-FAC / EK-FAC (GB) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        by_key = {}
        for row in rows:
            key = (
                row["model"],
                row["r"],
                row["lora_modules"],
                row["modules"],
                row["hessian_dtype"],
                row["module_partitions"],
            )
            by_key.setdefault(key, {})[row["method"]] = row
        for (model, r, label, n, dtype, parts), pair in by_key.items():
            kfac, ekfac = pair["kfac"], pair["ekfac"]
            fit = max(kfac["fit_peak_gb"], ekfac["fit_peak_gb"])
            print(
                f"| {model} | {r} | {label}, {n} matrices | {dtype} | {parts} | {fit:.2f} | {kfac['merge_peak_gb']:.2f} "
                f"| {ekfac['apply_gb']:.2f} | {kfac['disk_gb']:.2f} / {ekfac['disk_gb']:.2f} |"
            )
    else:
        for row in rows:
            print(row)
    print(f"(1 GB = {GIB} bytes)")


if __name__ == "__main__":
    main()
