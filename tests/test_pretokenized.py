"""pretokenized: TRL gets a tokenizer of the special tokens alone. Its special tokens must
be the real tokenizer's, text must not tokenize through it, and the tokenizer files saved
beside an adapter must be those save_pretrained writes. (That training with it gives the
same adapter is test_sft's test_training_on_the_special_tokens_tokenizer_...)"""

import json
import shutil

import pytest
from transformers import AutoTokenizer

from playpen_attribution.sft.pretokenized import copy_tokenizer_files, special_tokens_tokenizer

SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")


def _tokenizer_copy(source, tmp_path, **config_changes):
    out = tmp_path / "tokenizer"
    out.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).exists():
            shutil.copy(source / name, out / name)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.update(config_changes)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def test_special_tokens_and_ids_equal_the_real_tokenizers(tiny_gemma_dir):
    real = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    stand_in = special_tokens_tokenizer(tiny_gemma_dir)
    for key in SPECIAL:
        assert getattr(stand_in, key) == getattr(real, key), key
        assert getattr(stand_in, f"{key}_id") == getattr(real, f"{key}_id"), key
    assert real.pad_token_id != real.eos_token_id  # the ids tell the tokens apart
    assert stand_in.pad_token in stand_in.get_vocab()  # TRL's check of the pad token
    assert len(stand_in.get_vocab()) == len(SPECIAL) < len(real.get_vocab())


def test_text_does_not_tokenize_through_it(tiny_gemma_dir):
    stand_in = special_tokens_tokenizer(tiny_gemma_dir)
    for encode in (stand_in, stand_in.encode, stand_in.tokenize, stand_in.apply_chat_template):
        with pytest.raises(RuntimeError, match="pretokenized: TRL tried to tokenize"):
            encode("GUESS: SNOW")


def test_a_special_token_without_an_id_loads_the_whole_tokenizer(tiny_gemma_dir, tmp_path):
    # "<|pad|>" is no added token of Gemma's tokenizer.json: the stand-in cannot give its id.
    directory = _tokenizer_copy(tiny_gemma_dir, tmp_path, pad_token="<|pad|>")
    loaded = special_tokens_tokenizer(directory)
    assert len(loaded.get_vocab()) > 1000


def test_copied_tokenizer_files_equal_save_pretrained(tiny_gemma_dir, tmp_path):
    """The tokenize rule writes the tokenizer with save_pretrained; copying its files gives
    what loading it and save_pretrained would, the same files and bytes."""
    written = tmp_path / "written"
    AutoTokenizer.from_pretrained(tiny_gemma_dir).save_pretrained(written)
    resaved, copied = tmp_path / "resaved", tmp_path / "copied"
    AutoTokenizer.from_pretrained(written).save_pretrained(resaved)
    copied.mkdir()
    copy_tokenizer_files(written, copied)
    names = sorted(p.name for p in resaved.iterdir())
    assert names == sorted(p.name for p in copied.iterdir())
    assert "tokenizer.json" in names
    for name in names:
        assert (resaved / name).read_bytes() == (copied / name).read_bytes(), name
