"""The locked environment: the real libraries import, and the broken torchaudio is absent."""

import importlib
import importlib.util


def test_core_libraries_import():
    for name in ("bergson", "trl", "peft", "transformers", "datasets", "snakemake"):
        module = importlib.import_module(name)
        assert module.__name__ == name
    import bergson

    assert bergson.__version__.startswith("2.5.")


def test_torchaudio_is_excluded():
    # PyPI's torchaudio is built for another CUDA than torch and breaks `import transformers`.
    assert importlib.util.find_spec("torchaudio") is None
