"""Bergson without loading the tokenizer, for rows that are already tokenized.

Every Bergson command (`setup_data_pipeline`) loads the whole tokenizer, and for rows that
already carry `input_ids` it reads one attribute of it: `model_max_length`, the bound on a
token batch. Our rows always carry them (tokens.py is the one source of token ids), and
Gemma 3's 262,144-token tokenizer takes about 3 s of CPU to load: once per Bergson job, and
several times in a test that runs several commands.

`config_only_tokenizer()` hands Bergson, for the commands run inside it, a stand-in with
the same `model_max_length`, read from the same `tokenizer_config.json` the way
transformers reads it. Any other use of the stand-in (Bergson tokenizing after all) raises,
naming this module, instead of tokenizing differently. Checked against the real tokenizer
in tests/test_bergson_tokenizer.py.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from unittest import mock


def configured_model_max_length(directory) -> int | None:
    """The `model_max_length` that the tokenizer_config.json in `directory` sets, or None
    where there is none (transformers then means "no limit")."""
    config_path = Path(directory) / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    return config.get("model_max_length")


class ConfigOnlyTokenizer:
    """What Bergson reads of a tokenizer for pre-tokenized rows: `model_max_length`."""

    def __init__(self, name_or_path: str):
        from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

        self.name_or_path = str(name_or_path)
        limit = configured_model_max_length(name_or_path)
        # transformers: the config's value, else "no limit" (VERY_LARGE_INTEGER).
        self.model_max_length = VERY_LARGE_INTEGER if limit is None else limit

    @classmethod
    def from_pretrained(cls, name_or_path, *args, **kwargs) -> ConfigOnlyTokenizer:
        if not Path(name_or_path).is_dir():
            raise RuntimeError(f"bergson_tokenizer: expected a local directory, got {name_or_path!r}")
        return cls(name_or_path)

    def __getattr__(self, name):
        # Not AttributeError: a getattr() with a default must not hide a real use.
        raise RuntimeError(
            f"bergson_tokenizer: Bergson used tokenizer.{name} of {self.name_or_path}, but rows "
            "reach Bergson tokenized; run it outside config_only_tokenizer()"
        )

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"bergson_tokenizer: Bergson tried to tokenize with {self.name_or_path}")


@contextmanager
def config_only_tokenizer():
    """Bergson commands run inside load `ConfigOnlyTokenizer` instead of the tokenizer."""
    import bergson.utils.batch_size
    import bergson.utils.worker_utils

    with (
        mock.patch.object(bergson.utils.worker_utils, "AutoTokenizer", ConfigOnlyTokenizer),
        mock.patch.object(bergson.utils.batch_size, "AutoTokenizer", ConfigOnlyTokenizer),
    ):
        yield
