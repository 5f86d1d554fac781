"""A CPU check of generated words' hardness: the adapter's loss on the guesser's answer.

For each word (original val words, generated-hard words, generated-easy controls) the
guesser gets one clue built from the word's WordNet gloss (the definition of its first
sense of its main part of speech, without the examples), with the word and every token
sharing its Snowball stem masked as `___`. The loss is the adapter's mean token loss on
the answer `GUESS: <word>`, rendered with the project's tokenization (tokens.py: the same
chat template and the same completion mask as SFT). A higher loss = harder to guess.

Whether this proxy means anything is checked first, on the original words: Spearman's rho
between the loss and their real val success rate (it should be negative).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pandas as pd

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)

MASK = "___"
SETS = ("original", "hard", "easy")


def clue(word: str, wn=None) -> str | None:
    """The masked WordNet definition of `word`, or None if WordNet has no sense of it."""
    from playpen_attribution.words.generate import stem, word_features
    from playpen_attribution.words.wordnet import wordnet

    wn = wn or wordnet()
    features = word_features(word, wn)
    if features is None:
        return None
    definition = wn.synsets(word, features["pos"])[0].gloss.split('; "')[0].strip()
    target = stem(word)

    def mask(match: re.Match) -> str:
        token = match.group(0)
        lowered = token.lower()
        return MASK if stem(lowered) == target or word in lowered else token

    return re.sub(r"[A-Za-z]+", mask, definition)


def guesser_chat(word: str, clue_text: str, guesser_template: str, max_turns: int) -> list[dict]:
    prompt = guesser_template.replace("$N$", str(max_turns)).rstrip("\n") + f"\n\nHINT: {clue_text}"
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": f"GUESS: {word}"}]


def answer_losses(
    chats: list[list[dict]], adapter_dir, tokenizer_dir, max_length: int
) -> list[tuple[float, int]]:
    """(mean loss, trained tokens) of the final assistant turn of each chat under the adapter."""
    from peft import PeftModel

    from playpen_attribution.data.tokens import tokenize_rows
    from playpen_attribution.sft.models import load_base_model, load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_dir))
    rows = [{"row_id": str(i), "messages": m} for i, m in enumerate(chats)]
    token_rows, _ = tokenize_rows(rows, tokenizer, "completion", max_length)
    if len(token_rows) != len(rows):
        raise WorkflowInputError(
            f"{len(rows) - len(token_rows)} hardness chats are longer than {max_length} tokens"
        )
    base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(load_base_model(base), str(adapter_dir)).eval()
    return [answer_loss(model, row["input_ids"], row["labels"]) for row in token_rows]


def answer_loss(model, input_ids, labels) -> tuple[float, int]:
    """The causal-LM loss of model(input_ids, labels=labels), with logits only at the
    positions that predict a trained token (the answer is at the end; the full 262k-word
    logits at every position would cost most of the time)."""
    import torch
    import torch.nn.functional as F

    from playpen_attribution.data.tokens import IGNORE_INDEX

    labels = torch.tensor(labels)
    trained = (labels != IGNORE_INDEX).nonzero()
    if not len(trained):
        raise WorkflowInputError("a hardness chat has no trained token")
    first = int(trained[0])
    keep = len(input_ids) - first + 1  # positions first-1 .. end
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([input_ids]), logits_to_keep=keep).logits[0]
    loss = F.cross_entropy(logits[:-1].float(), labels[first:], ignore_index=IGNORE_INDEX)
    return float(loss), int(len(trained))


def hardness_table(words: pd.DataFrame, val: pd.DataFrame, generated: pd.DataFrame) -> pd.DataFrame:
    """The words to score: original val words (with their real success rates), generated."""
    val_words = val.dropna(subset=["target_word"]).assign(success=lambda d: d["outcome"].eq("success"))
    original = (
        val_words.groupby("target_word")
        .agg(val_count=("success", "size"), success_rate=("success", "mean"))
        .reset_index()
        .rename(columns={"target_word": "word"})
        .assign(set="original", seed_word=None)
    )
    if "train_success_rate" in words.columns:
        train_rate = words.set_index("target_word")["train_success_rate"]
        original["train_success_rate"] = original["word"].map(train_rate)
    made = generated[["set", "word", "seed_word"]].copy()
    return pd.concat([original, made], ignore_index=True)


def spearman(a, b) -> tuple[float, float]:
    from scipy.stats import spearmanr

    result = spearmanr(a, b)
    return float(result.statistic), float(result.pvalue)


def hardness_summary(table: pd.DataFrame) -> dict:
    from scipy.stats import mannwhitneyu

    original = table[(table["set"] == "original") & table["loss"].notna()]
    rho, p = (
        spearman(original["loss"], original["success_rate"]) if len(original) > 2 else (float("nan"),) * 2
    )
    from playpen_attribution.words.generate import zipf

    rho_zipf, _ = (
        spearman(original["loss"], original["word"].map(zipf)) if len(original) > 2 else (float("nan"), 0)
    )
    summary = {
        "n_original": len(original),
        "spearman_rho_loss_vs_zipf": rho_zipf,
        "spearman_rho_loss_vs_val_success": rho,
        "spearman_p": p,
        "tracks": bool(rho < 0 and p < 0.05),
        "mean_loss": {s: float(table.loc[table["set"] == s, "loss"].mean()) for s in SETS},
        "n": {s: int((table["set"] == s).sum()) for s in SETS},
    }
    hard = table.loc[table["set"] == "hard", "loss"].dropna()
    easy = table.loc[table["set"] == "easy", "loss"].dropna()
    if len(hard) and len(easy):
        summary["hard_vs_easy_mannwhitney_p"] = float(mannwhitneyu(hard, easy, alternative="greater").pvalue)
    return summary


def hardness_markdown(table: pd.DataFrame, summary: dict, game: str, role: str) -> str:
    rho, p = summary["spearman_rho_loss_vs_val_success"], summary["spearman_p"]
    verdict = (
        "the proxy tracks the real success rate (higher loss, fewer wins)"
        if summary["tracks"]
        else "the proxy does **not** track the real success rate here, so the losses below say "
        "nothing reliable about how hard the generated words are"
    )
    lines = [
        f"# Hardness check of the generated words: {game} / {role}",
        "",
        "Loss of the adapter on the guesser's answer `GUESS: <word>` after one clue: the word's "
        "WordNet definition with the word and its stems masked.",
        "",
        f"- On the {summary['n_original']} original val words: Spearman rho(loss, val success rate) = "
        f"{rho:.2f} (p = {p:.2g}): {verdict}.",
        f"- For context, rho(loss, zipf frequency) on the same words = {summary['spearman_rho_loss_vs_zipf']:.2f}: "
        "part of what the loss sees may be how common the word is.",
        "- Mean loss: " + ", ".join(f"{s} {summary['mean_loss'][s]:.2f} (n={summary['n'][s]})" for s in SETS),
    ]
    if "hard_vs_easy_mannwhitney_p" in summary:
        lines.append(
            f"- Generated hard > generated easy (one-sided Mann-Whitney): p = {summary['hard_vs_easy_mannwhitney_p']:.2g}"
        )
    lines += ["", "| set | word | seed | loss | val success | clue |", "|---|---|---|---|---|---|"]
    for r in table.sort_values(["set", "loss"], ascending=[True, False]).itertuples():
        rate = "" if pd.isna(r.success_rate) else f"{r.success_rate:.2f}"
        seed = r.seed_word if isinstance(r.seed_word, str) else ""
        lines.append(f"| {r.set} | {r.word} | {seed} | {r.loss:.2f} | {rate} | {r.clue} |")
    return "\n".join(lines) + "\n"


def plot_hardness(table: pd.DataFrame, summary: dict, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from playpen_attribution.core.io import write_png

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    data = [table.loc[table["set"] == s, "loss"].dropna() for s in SETS]
    left.boxplot(data, tick_labels=list(SETS))
    for i, values in enumerate(data, start=1):
        left.scatter([i] * len(values), values, s=12, alpha=0.6)
    left.set_ylabel("loss on GUESS: <word>")
    left.set_title("loss per set")
    original = table[table["set"] == "original"]
    right.scatter(original["success_rate"], original["loss"], s=14)
    right.set_xlabel("val success rate (original words)")
    right.set_ylabel("loss")
    right.set_title(f"Spearman rho = {summary['spearman_rho_loss_vs_val_success']:.2f}")
    fig.suptitle(title)
    write_png(fig, path, dpi=100)


def write_hardness(
    words_path,
    val_path,
    generated_path,
    adapter_dir,
    tokenizer_dir,
    max_turns,
    max_length,
    describer_template,
    guesser_template,
    game,
    role,
    table_out,
    plot_out,
    markdown_out,
    html_out=None,
):
    """The score_generated rule."""
    from playpen_attribution.core.io import write_parquet, write_text
    from playpen_attribution.words.generate import read_templates

    templates = read_templates(describer_template, guesser_template)
    table = hardness_table(
        pd.read_parquet(words_path), pd.read_parquet(val_path), pd.read_parquet(generated_path)
    )
    table["clue"] = [clue(w) for w in table["word"]]
    missing = table["clue"].isna()
    if missing.any():
        log.warning("no WordNet sense, not scored: %s", table.loc[missing, "word"].tolist())
    scored = table[~missing].reset_index(drop=True)
    chats = [guesser_chat(r.word, r.clue, templates["guesser"], max_turns) for r in scored.itertuples()]
    losses = answer_losses(chats, adapter_dir, tokenizer_dir, max_length)
    scored["loss"] = [loss for loss, _ in losses]
    scored["n_answer_tokens"] = [n for _, n in losses]
    table = pd.concat([scored, table[missing]], ignore_index=True)
    summary = hardness_summary(table)
    log.info("hardness: %s", summary)
    write_parquet(table, table_out)
    text = hardness_markdown(scored, summary, game, role)
    write_text(text, markdown_out)
    if html_out:
        from playpen_attribution.core.render import markdown_html

        write_text(markdown_html(text, f"hardness check: {game} / {role}"), html_out)
    plot_hardness(scored, summary, plot_out, f"Hardness check: {game} / {role}")
