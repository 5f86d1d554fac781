"""One tokenization: the mask modes, truncation, and what TRL and Bergson see."""

import pytest
from conftest import chat, with_defaults

from playpen_attribution.data.tokens import (
    IGNORE_INDEX,
    assistant_spans,
    attribution_view,
    loss_mask,
    render_ids,
    tokenize_rows,
)

REPEATED = chat(
    "HINT: cold season", "GUESS: SNOW", "HINT: after autumn", "GUESS: SNOW", "HINT: skiing", "GUESS: WINTER"
)


def masked_text(tokenizer, ids, mask):
    """Decode each maximal run of masked positions separately."""
    runs, current = [], []
    for t, m in zip(ids, mask):
        if m:
            current.append(t)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_spans_cover_each_assistant_turn_and_its_end_of_turn(gemma_tokenizer):
    ids, spans = assistant_spans(gemma_tokenizer, REPEATED)
    assert ids == render_ids(gemma_tokenizer, REPEATED)
    assert len(spans) == 3
    texts = [gemma_tokenizer.decode(ids[s:e]) for s, e in spans]
    assert texts[0].startswith("GUESS: SNOW<end_of_turn>")
    assert texts[1].startswith("GUESS: SNOW<end_of_turn>")
    assert texts[2].startswith("GUESS: WINTER<end_of_turn>")
    # the span starts right after the assistant header, never inside the user turn
    assert gemma_tokenizer.decode(ids[: spans[1][0]]).endswith("<start_of_turn>model\n")


def test_completion_mask_marks_only_the_last_of_repeated_strings(gemma_tokenizer):
    chat_ = chat("HINT: cold", "GUESS: SNOW", "HINT: white", "GUESS: SNOW")
    ids, spans = assistant_spans(gemma_tokenizer, chat_)
    mask = loss_mask(len(ids), spans, "completion")
    runs = masked_text(gemma_tokenizer, ids, mask)
    assert len(runs) == 1 and runs[0].startswith("GUESS: SNOW<end_of_turn>")
    # the masked run is the *last* occurrence: string search (rfind on text) would agree
    # here, so also check the first occurrence is unmasked
    assert sum(mask[spans[0][0] : spans[0][1]]) == 0
    assert all(mask[spans[1][0] : spans[1][1]])


def test_assistant_and_all_modes(gemma_tokenizer):
    ids, spans = assistant_spans(gemma_tokenizer, REPEATED)
    assistant = loss_mask(len(ids), spans, "assistant")
    assert [r.split("<end_of_turn>")[0] for r in masked_text(gemma_tokenizer, ids, assistant)] == [
        "GUESS: SNOW",
        "GUESS: SNOW",
        "GUESS: WINTER",
    ]
    assert sum(assistant) == sum(e - s for s, e in spans)
    assert loss_mask(len(ids), spans, "all") == [1] * len(ids)
    with pytest.raises(ValueError):
        loss_mask(len(ids), spans, "prompt")


def test_truncation_drops_rows_that_would_lose_trained_tokens(gemma_tokenizer):
    rows = [{"row_id": "a", "messages": chat("short", "GUESS: A")}, {"row_id": "b", "messages": REPEATED}]
    n_short = len(render_ids(gemma_tokenizer, rows[0]["messages"]))
    out, summary = tokenize_rows(rows, gemma_tokenizer, "completion", max_length=n_short)
    assert [r["row_id"] for r in out] == ["a"]
    assert summary["dropped_too_long"] == 1 and summary["dropped_row_ids"] == ["b"]
    out, summary = tokenize_rows(rows, gemma_tokenizer, "completion", max_length=n_short - 1)
    assert out == [] and summary["dropped_too_long"] == 2


def test_labels_are_ids_where_trained(gemma_tokenizer):
    out, _ = tokenize_rows([{"row_id": "a", "messages": REPEATED}], gemma_tokenizer, "completion", 512)
    row = out[0]
    for t, m, lab in zip(row["input_ids"], row["completion_mask"], row["labels"]):
        assert lab == (t if m else IGNORE_INDEX)
    assert row["n_trained"] == sum(row["completion_mask"]) > 0


def test_sft_and_attribution_see_identical_tokens(gemma_tokenizer, tiny_gemma_dir, tmp_path):
    """TRL's prepared batch (ids, labels) equals the rows Bergson is given."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from playpen_attribution.data.tokens import load_token_dataset, save_token_dataset
    from playpen_attribution.sft.train import LoraSettings, TrainSettings, sft_config

    rows = [
        {"row_id": "a", "messages": REPEATED},
        {"row_id": "b", "messages": chat("HINT: bird covering", "GUESS: FEATHER")},
        {"row_id": "c", "messages": chat("x", "GUESS: X", "y", "GUESS: X")},
    ]
    token_rows, _ = tokenize_rows(rows, gemma_tokenizer, "completion", 512)
    save_token_dataset(token_rows, tmp_path / "tokens")
    tokens = load_token_dataset(tmp_path / "tokens")

    from playpen_attribution.data.tokens import sft_view

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(
            with_defaults(TrainSettings, max_length=512, batch_size=3),
            tmp_path / "sft",
            eval_each_epoch=False,
        ),
        train_dataset=sft_view(tokens),
        processing_class=gemma_tokenizer,
        peft_config=with_defaults(LoraSettings, r=4).peft_config(),
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(tokens))])
    bergson_rows = attribution_view(tokens)
    for i in range(len(tokens)):
        n = tokens[i]["n_tokens"]
        assert batch["input_ids"][i, :n].tolist() == bergson_rows[i]["input_ids"]
        assert batch["labels"][i, :n].tolist() == bergson_rows[i]["labels"]
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
    assert torch.equal(batch["attention_mask"].sum(1), torch.tensor(tokens["n_tokens"]))


class WordTokenizer:
    """A chat template in a few lines (one token per word, a header and an end-of-turn
    token per message): tokenize_to_files without loading a real tokenizer. Like a real
    template, it fails on a role it does not know."""

    HEADER = {"user": 1, "assistant": 2}

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        ids = []
        for m in messages:
            if m["role"] not in self.HEADER:
                raise ValueError("Conversation roles must alternate user/assistant/user/assistant/...")
            ids += [self.HEADER[m["role"]]] + [9] * len(m["content"].split()) + [3]
        return ids + [2] * add_generation_prompt


def _tokenize_parquet(tmp_path, frame, max_length, **kwargs):
    from playpen_attribution.data.tokens import tokenize_to_files

    tmp_path.mkdir(exist_ok=True)
    frame.to_parquet(tmp_path / "train.parquet")
    frame.iloc[[0]].to_parquet(tmp_path / "val.parquet")
    return tokenize_to_files(
        tmp_path / "train.parquet",
        tmp_path / "val.parquet",
        WordTokenizer(),
        mode="completion",
        max_length=max_length,
        out_train=tmp_path / "tokens/train",
        out_val=tmp_path / "tokens/val",
        summary_path=tmp_path / "tokens/summary.json",
        **({"strict": False} | kwargs),
    )


def test_a_length_filter_that_removes_an_outcome_says_so_on_the_terminal(tmp_path, caplog):
    """Issue 21, finding 4: max_length dropped every (long) failure episode and the terminal
    said nothing; with dataset.strict it is an error. (Replaces the test of the log-only
    WARNING, which needed the real tokenizer.)"""
    import pandas as pd

    from playpen_attribution.core.errors import WorkflowInputError

    short, long = chat("hint", "GUESS: A"), chat("hint", "GUESS: A", "hint", "GUESS: B", "hint", "GUESS: C")
    frame = pd.DataFrame(
        {
            "row_id": ["a", "b", "c", "d"],
            "messages": [short, long, long, long],
            "outcome": ["success", "failure", "failure", "success"],
        }
    )
    with caplog.at_level("WARNING"):
        summary = _tokenize_parquet(tmp_path, frame, max_length=10)
    assert summary["train"]["outcomes_lost"] == ["failure"]
    assert summary["train"]["dropped_too_long_by_outcome"] == {"failure": 2, "success": 1}
    terminal = [r.getMessage() for r in caplog.records if getattr(r, "terminal", False)]
    assert terminal == [
        "train: tokenize.max_length 10 dropped 3 of 4 rows, all 2 'failure' rows among them "
        "(dataset.strict: true makes this an error)"
    ]
    with pytest.raises(
        WorkflowInputError, match="all 2 'failure' rows among them; raise tokenize.max_length"
    ):
        _tokenize_parquet(tmp_path / "strict", frame, max_length=10, strict=True)
    assert not (tmp_path / "strict/tokens").exists()


def test_a_chat_the_template_cannot_render_names_its_row(tmp_path):
    """Issue 21, finding 7: a jinja TemplateError named no row."""
    from playpen_attribution.core.errors import WorkflowInputError

    rows = [{"row_id": "train-0000007", "messages": [{"role": "system", "content": "x"}, *chat("u", "a")]}]
    with pytest.raises(
        WorkflowInputError,
        match=r"^row train-0000007: the chat template cannot render this chat \(roles \['system', 'user', 'assistant'\]\): ValueError: Conversation roles",
    ):
        tokenize_rows(rows, WordTokenizer(), "completion", 100)
