"""How much memory a Kronecker-factored Hessian of the LoRA weights takes, before any run.

Light (stdlib only): the `hessian` rule checks the estimate against
`attribution.preconditioner.memory_budget_gb` before it imports torch or loads a model.

Accounting, from bergson 2.5's code (`hessians/hessian_approximations.py`, `kfac.py`,
`eigenvectors.py`, `preconditioner.py`). K-FAC treats each LoRA matrix as a linear layer of
its own; a layer `in -> out` keeps an activation factor `in x in` and a gradient factor
`out x out`. So `lora_A` (in -> r) keeps `in^2 + r^2` numbers and `lora_B` (r -> out)
keeps `r^2 + out^2`: the big factors are the model's own widths, not the rank.

Per layer, bergson holds and writes, in `hessian_dtype`:
- the covariances A and G (`activation_sharded`, `gradient_sharded`): sum(in^2 + out^2);
- their eigenvectors (`eigen_*_sharded`, same sizes), computed while the covariances are
  still held (the eigendecomposition itself runs in fp64, one factor at a time);
- the eigenvalues of each factor (`factor_eig_*`: in + out) and their outer product
  (`eigenvalue_sharded`: in x out);
- EK-FAC only: the corrected eigenvalues (`eigenvalue_correction_sharded`: in x out).
With `module_partitions: P` the factors are fit one module group at a time, then the
shards are merged one kind at a time (so the merge holds one whole kind, e.g. all gradient
covariances). Reduce and score load every eigenvector (and eigenvalue) in fp32 whatever
`hessian_dtype` is (`load_preconditioner` builds it in fp32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp64": 8}
# The modules whose factors are eigendecomposed and corrected per method.
FACTORED_METHODS = ("kfac", "ekfac", "tkfac", "shampoo")
GIB = 1024**3
# safetensors header per tensor (the key name and its JSON entry), a small fixed cost
HEADER_BYTES_PER_TENSOR = 120


@dataclass(frozen=True)
class LinearShape:
    name: str
    n_in: int
    n_out: int


def _text_config(config: dict) -> dict:
    return config.get("text_config") or config


def projection_shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of the Llama/Gemma-style projections, from an HF config.json dict."""
    c = _text_config(config)
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    head_dim = c.get("head_dim") or hidden // heads
    kv = c.get("num_key_value_heads") or heads
    inter = c["intermediate_size"]
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv * head_dim),
        "v_proj": (hidden, kv * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }


def lora_linear_shapes(
    config: dict, target_modules: list[str], r: int, filter_modules: str | None = None
) -> list[LinearShape]:
    """Every LoRA matrix bergson tracks, named as bergson names them, minus `filter_modules`."""
    shapes = projection_shapes(config)
    unknown = sorted(set(target_modules) - set(shapes))
    if unknown:
        raise ValueError(
            f"cannot size LoRA target modules {unknown}: the memory model knows {sorted(shapes)}"
        )
    patterns = [p.strip() for p in (filter_modules or "").split(",") if p.strip()]
    out = []
    for layer in range(_text_config(config)["num_hidden_layers"]):
        for module in target_modules:
            block = "mlp" if module in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            n_in, n_out = shapes[module]
            prefix = f"model.model.layers.{layer}.{block}.{module}"
            for name, shape in (
                (f"{prefix}.lora_A.default", (n_in, r)),
                (f"{prefix}.lora_B.default", (r, n_out)),
            ):
                if not any(fnmatchcase(name, p) for p in patterns):
                    out.append(LinearShape(name, *shape))
    return out


@dataclass
class HessianEstimate:
    """Bytes of one factored Hessian fit and of using it, for given settings."""

    method: str
    hessian_dtype: str
    module_partitions: int
    n_modules: int
    covariance_bytes: int
    eigenvector_bytes: int
    eigenvalue_bytes: int
    correction_bytes: int
    fit_peak_bytes: int
    merge_peak_bytes: int
    apply_bytes: int
    disk_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        """The most that any step holds at once: fitting, merging, or applying."""
        return max(self.fit_peak_bytes, self.merge_peak_bytes, self.apply_bytes)

    def row(self) -> dict:
        return {
            "method": self.method,
            "hessian_dtype": self.hessian_dtype,
            "module_partitions": self.module_partitions,
            "modules": self.n_modules,
            "fit_peak_gb": round(self.fit_peak_bytes / GIB, 3),
            "merge_peak_gb": round(self.merge_peak_bytes / GIB, 3),
            "apply_gb": round(self.apply_bytes / GIB, 3),
            "peak_gb": round(self.peak_bytes / GIB, 3),
            "disk_gb": round(self.disk_bytes / GIB, 3),
        }


def estimate(
    shapes: list[LinearShape], method: str, hessian_dtype: str, module_partitions: int
) -> HessianEstimate:
    """The Hessian step's bytes for `shapes` (see the module docstring for the accounting)."""
    if method not in FACTORED_METHODS:
        raise ValueError(f"method {method!r} has no factored Hessian; one of {FACTORED_METHODS}")
    size = DTYPE_BYTES[hessian_dtype]
    corrected = method == "ekfac"
    squares = [s.n_in**2 + s.n_out**2 for s in shapes]
    outer = sum(s.n_in * s.n_out for s in shapes)
    vectors = sum(s.n_in + s.n_out for s in shapes)

    # Fit: covariances + eigenvectors of one partition, and the fp64 eigendecomposition
    # of its largest factor (input copy + eigenvectors).
    groups = _partition(squares, module_partitions)
    largest_factor = max((max(s.n_in, s.n_out) for s in shapes), default=0)
    eigh_workspace = 2 * largest_factor**2 * DTYPE_BYTES["fp64"]
    fit_peak = max((2 * sum(g) * size for g in groups), default=0) + eigh_workspace
    if corrected:  # the correction pass: eigenvectors of a partition + the corrections
        fit_peak = max(fit_peak, max((sum(g) for g in groups), default=0) * size + outer * size)
    # Merge (P > 1 only): one whole kind of factor at a time, e.g. all gradient covariances.
    merge_peak = 0
    if len(groups) > 1:
        merge_peak = max(sum(s.n_in**2 for s in shapes), sum(s.n_out**2 for s in shapes)) * size
    n_tensors = len(shapes) * (6 + corrected)
    disk = (2 * sum(squares) + vectors + outer * (1 + corrected)) * size + n_tensors * HEADER_BYTES_PER_TENSOR
    return HessianEstimate(
        method=method,
        hessian_dtype=hessian_dtype,
        module_partitions=module_partitions,
        n_modules=len(shapes),
        covariance_bytes=sum(squares) * size,
        eigenvector_bytes=sum(squares) * size,
        eigenvalue_bytes=(vectors + outer) * size,
        correction_bytes=outer * size if corrected else 0,
        fit_peak_bytes=fit_peak,
        merge_peak_bytes=merge_peak,
        # reduce/score: eigenvectors and (corrected) eigenvalues, always fp32
        apply_bytes=(sum(squares) + outer) * DTYPE_BYTES["fp32"],
        disk_bytes=disk,
    )


def _partition(sizes: list[int], parts: int) -> list[list[int]]:
    """Contiguous groups of near-equal count, as bergson's `partition_modules` makes them."""
    parts = max(1, min(parts, len(sizes))) if sizes else 1
    step, extra = divmod(len(sizes), parts)
    groups, start = [], 0
    for i in range(parts):
        end = start + step + (1 if i < extra else 0)
        groups.append(sizes[start:end])
        start = end
    return groups


def cheaper_settings(
    config: dict,
    target_modules: list[str],
    r: int,
    method: str,
    hessian_dtype: str,
    module_partitions: int,
    filter_modules: str | None,
) -> list[tuple[str, HessianEstimate]]:
    """Alternatives to suggest when the estimate is over budget, cheapest levers first."""
    shapes = lora_linear_shapes(config, target_modules, r, filter_modules)
    options = []
    if hessian_dtype not in ("bf16", "fp16"):
        options.append(
            ("preconditioner.hessian_dtype: bf16", estimate(shapes, method, "bf16", module_partitions))
        )
    for parts in (module_partitions * 4, module_partitions * 16):
        if parts <= len(shapes):
            options.append(
                (f"preconditioner.module_partitions: {parts}", estimate(shapes, method, hessian_dtype, parts))
            )
    mlp = [m for m in target_modules if m in ("gate_proj", "up_proj", "down_proj")]
    if mlp:
        extra = "*.mlp.*"
        combined = f"{filter_modules},{extra}" if filter_modules else extra
        fewer = lora_linear_shapes(config, target_modules, r, combined)
        options.append(
            (
                f'attribution.filter_modules: "{combined}" (attention only)',
                estimate(fewer, method, hessian_dtype, module_partitions),
            )
        )
        options.append(
            (
                f'attribution.filter_modules: "{combined}" and hessian_dtype: bf16',
                estimate(fewer, method, "bf16", module_partitions),
            )
        )
    return options


def budget_error(
    estimate_: HessianEstimate, budget_gb: float, alternatives: list[tuple[str, HessianEstimate]]
) -> str | None:
    """None if the estimate fits `budget_gb`, else a one-paragraph message naming cheaper settings."""
    if estimate_.peak_bytes <= budget_gb * GIB:
        return None
    cheaper = "; ".join(
        f"{label}: {alt.peak_bytes / GIB:.2f} GB"
        for label, alt in alternatives
        if alt.peak_bytes < estimate_.peak_bytes
    )
    return (
        f"the {estimate_.method} Hessian needs about {estimate_.peak_bytes / GIB:.2f} GB "
        f"(fit {estimate_.fit_peak_bytes / GIB:.2f}, merge {estimate_.merge_peak_bytes / GIB:.2f}, "
        f"apply {estimate_.apply_bytes / GIB:.2f}) over {estimate_.n_modules} LoRA matrices, more than "
        f"attribution.preconditioner.memory_budget_gb={budget_gb}. Cheaper settings: {cheaper or 'none'}"
    )


def check_adapter_budget(adapter_dir, preconditioner: dict, filter_modules: str | None, budget_gb: float):
    """Estimate the Hessian step for a bootstrapped adapter (its config.json and
    adapter_config.json, nothing else) and fail with cheaper settings when over budget."""
    import json
    import logging
    from pathlib import Path

    from playpen_attribution.core.errors import WorkflowInputError

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "config.json").read_text())
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    target_modules = sorted(adapter["target_modules"])
    method, dtype, parts = (
        preconditioner["method"],
        preconditioner["hessian_dtype"],
        preconditioner["module_partitions"],
    )
    shapes = lora_linear_shapes(config, target_modules, adapter["r"], filter_modules)
    result = estimate(shapes, method, dtype, parts)
    logging.getLogger(__name__).info("memory estimate: %s (budget %s GB)", result.row(), budget_gb)
    message = budget_error(
        result,
        budget_gb,
        cheaper_settings(config, target_modules, adapter["r"], method, dtype, parts, filter_modules),
    )
    if message:
        raise WorkflowInputError(message)
    return result
