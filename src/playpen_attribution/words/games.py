"""Games won on held-out rows: decode the final assistant turn greedily from its prompt and
judge it by the game's rule (taboo x WordGuesser), plus the eval loss on trained tokens.

The prompt is rendered by the project's one tokenization path (`tokens.render_ids` with the
generation prompt) and must be a token prefix of the row's token ids: the model is asked
exactly what it was trained and attributed on.

Taboo's guesser rule, as clembench's game master applies it: a reply must start with
`GUESS:`; the rest is the guess, lower-cased, with punctuation removed and whitespace
stripped; it must be one line and not empty. It is a win when the guess equals the
episode's target word (normalised the same way). A row of another game or role has no such
check here: it gets the eval loss alone, and the report says so.
"""

from __future__ import annotations

import logging
import string

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)

GUESS_PREFIX = "GUESS:"
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_word(text: str) -> str:
    return text.translate(_PUNCTUATION).strip().lower()


def parse_guess(reply: str) -> str | None:
    """The guessed word of a WordGuesser reply, or None when the reply breaks the format."""
    reply = (reply or "").strip()
    if not reply.startswith(GUESS_PREFIX):
        return None
    rest = reply[len(GUESS_PREFIX) :].strip()
    if not rest or "\n" in rest:
        return None
    guess = normalise_word(rest)
    return guess or None


def has_game_check(game: str, role: str) -> bool:
    return (game, role) == ("taboo", "WordGuesser")


def judge(replies, frame, game: str, role: str):
    """Per-row verdicts for `replies` (one per row of `frame`, the eval parquet rows)."""
    import pandas as pd

    out = pd.DataFrame({"row_id": frame["row_id"].tolist(), "reply": list(replies)})
    out["imitation"] = [
        r.strip() == str(c).strip() for r, c in zip(out["reply"], frame["completion"], strict=True)
    ]
    if not has_game_check(game, role):
        out["guess"] = None
        out["format_valid"] = float("nan")
        out["win"] = float("nan")
        return out
    guesses = [parse_guess(r) for r in out["reply"]]
    targets = [normalise_word(w) if isinstance(w, str) else None for w in frame["target_word"]]
    out["guess"] = guesses
    out["target_word"] = frame["target_word"].tolist()
    out["format_valid"] = [g is not None for g in guesses]
    out["win"] = [g is not None and t is not None and g == t for g, t in zip(guesses, targets, strict=True)]
    return out


def prompt_ids(tokenizer, frame, tokens) -> list[list[int]]:
    """Each eval row's prompt, rendered with the generation prompt; checked to be a token
    prefix of the row's tokens (the same rendering that SFT and attribution saw)."""
    from playpen_attribution.data.tokens import render_ids

    by_id = {row_id: i for i, row_id in enumerate(tokens["row_id"])}
    out = []
    for row in frame.itertuples():
        if row.row_id not in by_id:
            raise WorkflowInputError(f"eval row {row.row_id} has no token row (dropped by tokenize?)")
        ids = render_ids(tokenizer, [dict(m) for m in row.prompt], add_generation_prompt=True)
        full = tokens[by_id[row.row_id]]["input_ids"]
        if list(full[: len(ids)]) != ids:
            raise WorkflowInputError(
                f"eval row {row.row_id}: the prompt with the generation prompt is not a token "
                "prefix of the row's tokens; the chat template is not prefix-stable"
            )
        out.append(ids)
    return out


def stop_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return sorted(i for i in ids if i is not None)


def greedy_replies(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int):
    """Greedy decoding, batched with left padding; the replies as text (special tokens
    removed). Progress goes to the log, one line per batch."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    model.eval()
    replies = []
    # Longest first: batches of similar lengths waste less on padding.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    by_index = {}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=stop_token_ids(tokenizer),
            )
        for row, i in enumerate(batch):
            by_index[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
        log.info("decoded %d of %d eval rows", min(start + batch_size, len(order)), len(order))
    replies = [by_index[i] for i in range(len(prompts))]
    return replies


def summarise(rows, game: str, role: str) -> dict:
    checked = has_game_check(game, role)
    return {
        "n_eval": len(rows),
        "wins": int(rows["win"].sum()) if checked else None,
        "win_rate": float(rows["win"].mean()) if checked else None,
        "format_valid_rate": float(rows["format_valid"].mean()) if checked else None,
        "imitation_rate": float(rows["imitation"].mean()),
        "eval_loss": float(rows["eval_loss"].mean()),
        "games_judged": checked,
    }


def run_evaluation(
    model_name_or_path: str,
    revision: str | None,
    adapter_dir,
    tokenizer_dir,
    eval_parquet,
    eval_tokens_dir,
    game: str,
    role: str,
    max_new_tokens: int,
    batch_size: int,
    loss_reduction: str,
    rows_out,
    summary_out,
    arm: str,
) -> dict:
    """The evaluate_arm rule: the base model (adapter_dir None) or base + adapter on the
    eval rows. Writes per-row results (parquet) and their summary (json)."""
    import pandas as pd

    from playpen_attribution.checks.counterfactual import per_row_losses
    from playpen_attribution.core.io import write_json, write_parquet
    from playpen_attribution.data.tokens import load_token_dataset
    from playpen_attribution.sft.models import load_base_model, load_tokenizer

    frame = pd.read_parquet(eval_parquet)
    tokens = load_token_dataset(eval_tokens_dir)
    frame = frame[frame["row_id"].isin(set(tokens["row_id"]))].reset_index(drop=True)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    model = load_base_model(model_name_or_path, revision)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    if has_game_check(game, role):
        replies = greedy_replies(
            model, tokenizer, prompt_ids(tokenizer, frame, tokens), max_new_tokens, batch_size
        )
    else:
        log.info("%s x %s has no game check here: eval loss only", game, role)
        replies = [""] * len(frame)
    rows = judge(replies, frame, game, role)
    by_id = {row_id: i for i, row_id in enumerate(tokens["row_id"])}
    ordered = tokens.select([by_id[r] for r in rows["row_id"]])
    rows["eval_loss"] = per_row_losses(model, ordered, loss_reduction)
    summary = {"arm": arm, "game": game, "role": role, "loss_reduction": loss_reduction} | summarise(
        rows, game, role
    )
    log.info("%s: %s", arm, summary)
    write_parquet(rows, rows_out)
    write_json(summary, summary_out)
    return summary
