"""TRL without loading the tokenizer, for rows that are already tokenized.

SFTTrainer takes a tokenizer (`processing_class`) even when every row carries
`input_ids`, and for such rows it reads only the special tokens: the pad and EOS tokens,
their ids (for the collator and the model's config), and `get_vocab()` to check that the
pad token exists. Our rows always arrive tokenized (tokens.py is the one source of token
ids), and Gemma 3's 262,144-token tokenizer costs a training job about 0.3 GB of its
3 GB and about 3 s to load (docs/benchmarks.md).

`special_tokens_tokenizer(directory)` builds a real `PreTrainedTokenizerFast` whose
vocabulary is only the special tokens of the tokenizer saved in `directory`
(tokenizer_config.json names them, tokenizer.json's `added_tokens` gives their ids), so
transformers and TRL read the same ids as from the whole tokenizer. It cannot tokenize
text: encoding raises instead of mapping every word to <unk>.
Where the directory does not describe every special token this way, the whole tokenizer is
loaded. Checked against the real tokenizer in tests/test_pretokenized.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")
# What a fast tokenizer's save_pretrained writes (transformers 5: the first three).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "added_tokens.json",
)


def _token_text(value) -> str | None:
    """A tokenizer_config.json special token: a string, or a dict with its `content`."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def added_token_ids(tokenizer_json: Path) -> dict[str, int]:
    """tokenizer.json's `added_tokens` (content -> id), decoded without the vocabulary and
    merges that follow them in the file."""
    text = tokenizer_json.read_text()
    key = text.find('"added_tokens"')
    if key < 0:
        return {}
    tokens, _ = json.JSONDecoder().raw_decode(text, text.index("[", key))
    return {token["content"]: token["id"] for token in tokens}


def special_tokens(directory) -> dict[str, tuple[str, int]] | None:
    """The special tokens that `directory`'s tokenizer_config.json names, each with its id
    in tokenizer.json; None where a named one has no id there (or a file is missing)."""
    directory = Path(directory)
    config_path, tokenizer_json = directory / "tokenizer_config.json", directory / "tokenizer.json"
    if not (config_path.exists() and tokenizer_json.exists()):
        return None
    config = json.loads(config_path.read_text())
    ids = added_token_ids(tokenizer_json)
    found = {}
    for key in SPECIAL_TOKEN_KEYS:
        text = _token_text(config.get(key))
        if text is None:
            continue
        if text not in ids:
            return None
        found[key] = (text, ids[text])
    return found


def special_tokens_tokenizer(directory):
    """A tokenizer for TRL over pre-tokenized rows: the special tokens of `directory`'s
    tokenizer and nothing else (the whole tokenizer where they cannot be read from it)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    found = special_tokens(directory)
    if not found or "eos_token" not in found:
        from playpen_attribution.sft.models import load_tokenizer

        log.info("special tokens of %s not found in tokenizer.json: loading the whole tokenizer", directory)
        return load_tokenizer(str(directory))
    vocab = {text: token_id for text, token_id in found.values()}

    class SpecialTokensOnly(PreTrainedTokenizerFast):
        """Encoding text raises: its vocabulary would map every word to <unk>."""

        def _refuse(self, *args, **kwargs):
            raise RuntimeError(
                f"pretokenized: TRL tried to tokenize text with the special tokens of {directory}; "
                "training rows must arrive tokenized (tokens.py)"
            )

        _encode_plus = tokenize = apply_chat_template = _refuse

    return SpecialTokensOnly(
        tokenizer_object=Tokenizer(WordLevel(vocab)),
        name_or_path=str(directory),
        **{key: text for key, (text, _) in found.items()},
    )


def copy_tokenizer_files(tokenizer_dir, destination) -> None:
    """Save the tokenizer in `tokenizer_dir` into `destination` as loading it and calling
    `save_pretrained` would: the tokenize rule wrote `tokenizer_dir` with save_pretrained,
    and a load and save give back the same bytes (tests/test_pretokenized.py)."""
    import shutil

    for name in TOKENIZER_FILES:
        source = Path(tokenizer_dir) / name
        if source.is_file():
            shutil.copyfile(source, Path(destination) / name)
