"""bergson_tokenizer: Bergson gets a stand-in that reads only the tokenizer's config. It must
give Bergson the very `model_max_length` the real tokenizer has, and fail loudly on any
other use. (That Bergson's scores are right with it in place is what every Bergson test
checks: test_attribution, test_pipelines, test_sparse_logits all run through it.)"""

import json
import shutil

import pytest
from transformers import AutoTokenizer

from playpen_attribution.attribution.bergson_tokenizer import ConfigOnlyTokenizer, config_only_tokenizer


def _tokenizer_copy(tiny_gemma_dir, tmp_path, **config_changes):
    out = tmp_path / "tokenizer"
    out.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_gemma_dir / name, out / name)
    config = json.loads((out / "tokenizer_config.json").read_text())
    for key, value in config_changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


# Gemma's saved value is transformers' "no limit", so it is the absent case; 128 is one
# that a stand-in returning the default would get wrong.
@pytest.mark.parametrize("model_max_length", [128, None], ids=["set", "absent"])
def test_model_max_length_equals_the_real_tokenizers(tiny_gemma_dir, tmp_path, model_max_length):
    directory = _tokenizer_copy(tiny_gemma_dir, tmp_path, model_max_length=model_max_length)
    real = AutoTokenizer.from_pretrained(directory).model_max_length
    assert ConfigOnlyTokenizer.from_pretrained(str(directory)).model_max_length == real
    assert (real == 128) if model_max_length else (real > 10**20)


def test_any_other_use_fails_loudly(tiny_gemma_dir):
    stand_in = ConfigOnlyTokenizer.from_pretrained(str(tiny_gemma_dir))
    with pytest.raises(RuntimeError, match="bergson_tokenizer: Bergson used tokenizer.apply_chat_template"):
        stand_in.apply_chat_template([])
    with pytest.raises(RuntimeError, match="tried to tokenize"):
        stand_in(["some text"])
    with pytest.raises(RuntimeError, match="expected a local directory"):
        ConfigOnlyTokenizer.from_pretrained("google/gemma-3-1b-it")


def test_bergson_reads_the_stand_in_inside_and_the_real_tokenizer_outside(tiny_gemma_dir):
    import bergson.utils.worker_utils

    with config_only_tokenizer():
        loaded = bergson.utils.worker_utils.AutoTokenizer.from_pretrained(str(tiny_gemma_dir))
        assert isinstance(loaded, ConfigOnlyTokenizer)
    assert bergson.utils.worker_utils.AutoTokenizer is AutoTokenizer
