"""Human-facing reports: top/bottom training rows, per-word influence, plots."""

from __future__ import annotations

import pandas as pd

from .errors import WorkflowInputError

TOPK_COLUMNS = [
    "bucket",
    "rank",
    "row_id",
    "score",
    "experiment",
    "task_id",
    "model",
    "outcome",
    "target_word",
    "n_turns",
    "prompt",
    "completion",
]


def join_scores(scores: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Scores with their training rows' metadata; every scored row must be a known row."""
    merged = scores.merge(train, on="row_id", how="left", validate="one_to_one", indicator=True)
    unknown = merged.loc[merged["_merge"] != "both", "row_id"].tolist()
    if unknown:
        raise WorkflowInputError(f"scores name row_ids absent from the training data: {unknown[:5]}")
    return merged.drop(columns="_merge")


def top_bottom(scored: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k highest and k lowest scoring rows; with fewer than 2k rows, each gets half."""
    k = min(k, max(1, len(scored) // 2))
    ordered = scored.sort_values(["score", "row_id"], ascending=[False, True], kind="stable")
    top = ordered.head(k).assign(bucket="top", rank=range(1, k + 1))
    n_bottom = min(k, len(ordered) - k)
    bottom = ordered.iloc[::-1].head(n_bottom).assign(bucket="bottom", rank=range(1, n_bottom + 1))
    out = pd.concat([top, bottom], ignore_index=True)
    out["rank"] = out["rank"].astype("int64")
    return out[TOPK_COLUMNS]


def word_influence(scored: pd.DataFrame, val: pd.DataFrame, k: int) -> pd.DataFrame:
    """Influence per target word, plus how often the word was won in train and val."""
    with_word = scored.dropna(subset=["target_word"])
    if with_word.empty:
        raise WorkflowInputError("no training row has a target word; words.parquet needs taboo data")
    topk = top_bottom(scored, k)
    in_top = set(topk.loc[topk["bucket"] == "top", "row_id"])
    in_bottom = set(topk.loc[topk["bucket"] == "bottom", "row_id"])
    grouped = with_word.assign(
        in_top=with_word["row_id"].isin(in_top),
        in_bottom=with_word["row_id"].isin(in_bottom),
        success=with_word["outcome"].eq("success"),
    ).groupby("target_word")
    words = pd.DataFrame(
        {
            "count": grouped.size(),
            "mean_score": grouped["score"].mean(),
            "sum_score": grouped["score"].sum(),
            "n_top": grouped["in_top"].sum().astype("int64"),
            "n_bottom": grouped["in_bottom"].sum().astype("int64"),
            "train_success_rate": grouped["success"].mean(),
        }
    )
    val_words = val.dropna(subset=["target_word"]).assign(success=lambda d: d["outcome"].eq("success"))
    val_stats = val_words.groupby("target_word").agg(
        val_count=("success", "size"), val_success_rate=("success", "mean")
    )
    words = words.join(val_stats, how="left")
    words["val_count"] = words["val_count"].fillna(0).astype("int64")
    words = words.sort_values(["sum_score", "mean_score"], ascending=False).reset_index()
    return words


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def topk_markdown(
    topk: pd.DataFrame,
    game: str,
    role: str,
    n_rows: int,
    unit_normalize: bool,
    words: pd.DataFrame | None = None,
) -> str:
    lines = [
        f"# Most and least influential training rows: {game} / {role}",
        "",
        f"{n_rows} training rows were scored against the mean gradient of the validation set.",
        "",
        "**How to read a score.** A row's score is the dot product of its loss gradient "
        + ("(unit-normalised) " if unit_normalize else "")
        + "with the validation query. A positive score means a training step on that row "
        "lowers the validation loss (it teaches what the validation set needs); a negative "
        "score means it raises it (it pulls the model away). Scores rank rows within this run; "
        "their absolute size depends on the model and normalisation.",
        "",
    ]
    n_negative = int((topk["score"] < 0).sum())
    if n_negative == 0:
        lines += [
            "No row shown has a negative score: every row here helps the validation loss; the "
            "lowest-scoring rows simply help least.",
            "",
        ]
    for bucket, title in (
        ("top", "Highest scores (most helpful)"),
        ("bottom", "Lowest scores (least helpful or harmful)"),
    ):
        part = topk[topk["bucket"] == bucket]
        lines += [
            f"## {title}",
            "",
            "| rank | score | row_id | word | outcome | turns | completion |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in part.itertuples():
            word = "" if pd.isna(r.target_word) else r.target_word
            completion = _clip(r.completion, 80).replace("|", "\\|")
            lines.append(
                f"| {r.rank} | {r.score:.4g} | {r.row_id} | {word} | {r.outcome} | {r.n_turns} | {completion} |"
            )
        lines.append("")
    if words is not None and len(words):
        lines += [
            "## Most influential target words",
            "",
            "Summed score of each word's training rows (all of them in `words.parquet` / `words.md`):",
            "",
        ]
        for r in words.head(5).itertuples():
            lines.append(
                f"- **{r.target_word}**: {r.sum_score:.4g} over {r.count} rows, "
                f"won in {r.train_success_rate:.0%} of training episodes"
            )
        lines.append("")
    return "\n".join(lines)


def words_markdown(words: pd.DataFrame, game: str, role: str, n: int = 15) -> str:
    lines = [
        f"# Influence per target word: {game} / {role}",
        "",
        "Summed score of each word's training rows (see topk.md for how to read a score). "
        "Words at the top drive what the model learns for the validation set; their success "
        "rates show whether they are easy or hard for the players.",
        "",
        "| word | rows | sum score | mean score | in top-k | in bottom-k | train success | val success |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def pct(x):
        return "" if pd.isna(x) else f"{x:.0%}"

    for r in words.head(n).itertuples():
        lines.append(
            f"| {r.target_word} | {r.count} | {r.sum_score:.4g} | {r.mean_score:.4g} | {r.n_top} | "
            f"{r.n_bottom} | {pct(r.train_success_rate)} | {pct(r.val_success_rate)} |"
        )
    return "\n".join(lines) + "\n"


def data_counts_markdown(data_summary: dict, tokens_summary: dict) -> str:
    """What happened to the rows before they were scored, per split (data/summary.json and
    tokens/summary.json): what was dropped, and what was kept but deserves a look."""
    lines = [
        "## Data",
        "",
        "| | train | val |",
        "|---|---|---|",
    ]
    splits = ("train", "val")
    data = [data_summary["splits"][s] for s in splits]
    tokens = [tokens_summary[s] for s in splits]

    def row(label, values):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in values) + " |")

    row("rows of this game and role", [d["rows_for_game_role"] for d in data])
    row("dropped: outcome", [sum(d["dropped_outcome"].values()) for d in data])
    row("dropped: no assistant turn", [d["dropped_no_assistant_turn"] for d in data])
    row("dropped: empty completion", [d.get("dropped_empty_completion", 0) for d in data])
    row("dropped: longer than tokenize.max_length", [t["dropped_too_long"] for t in tokens])
    row("**scored / used**", [t["rows_out"] for t in tokens])
    row("kept: empty completion", [d.get("kept_empty_completion", 0) for d in data])
    row("kept: exact duplicates of an earlier row", [d.get("exact_duplicates", 0) for d in data])
    row(
        "kept: turns after the final assistant turn removed",
        [d.get("trailing_turns_removed", 0) for d in data],
    )
    row("kept: no target word recovered", [d["target_word_missing"] for d in data])
    return "\n".join(lines) + "\n"


def _read_json(path):
    import json

    with open(path) as handle:
        return json.load(handle)


def plot_scores(scored: pd.DataFrame, topk: pd.DataFrame, path, title: str) -> None:
    """Histogram of scores by outcome, with the top-k / bottom-k thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = min(40, max(10, len(scored) // 4))
    for outcome, part in scored.groupby("outcome"):
        ax.hist(part["score"], bins=bins, alpha=0.6, label=f"{outcome} (n={len(part)})")
    for bucket, style in (("top", "--"), ("bottom", ":")):
        part = topk.loc[topk["bucket"] == bucket, "score"]
        if len(part):
            edge = part.min() if bucket == "top" else part.max()
            ax.axvline(edge, color="k", linestyle=style, label=f"{bucket}-k edge")
    ax.set_xlabel("influence score")
    ax.set_ylabel("training rows")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_words(words: pd.DataFrame, path, title: str, n: int = 20) -> None:
    """Bar chart of the words with the largest summed influence, coloured by success rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    shown = words.head(n).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(shown) + 1)))
    colours = plt.cm.RdYlGn(shown["train_success_rate"].fillna(0.5).to_numpy())
    ax.barh(shown["target_word"], shown["sum_score"], color=colours)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlabel("summed influence score (colour: train success rate, red = hard)")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_topk_report(
    scores_path,
    train_path,
    words_path,
    data_summary_path,
    tokens_summary_path,
    k,
    unit_normalize,
    game,
    role,
    topk_out,
    markdown_out,
    plot_out,
):
    """The report_topk rule. `words_path` (taboo only) adds the top words to the summary."""
    from .io import write_parquet, write_text

    scored = join_scores(pd.read_parquet(scores_path), pd.read_parquet(train_path))
    topk = top_bottom(scored, k)
    words = pd.read_parquet(words_path) if words_path else None
    counts = data_counts_markdown(_read_json(data_summary_path), _read_json(tokens_summary_path))
    write_parquet(topk, topk_out)
    write_text(
        topk_markdown(topk, game, role, len(scored), unit_normalize, words) + "\n" + counts, markdown_out
    )
    plot_scores(scored, topk, plot_out, f"Influence on validation loss: {game} / {role}")


def write_words_report(
    scores_path,
    train_path,
    val_path,
    data_summary_path,
    tokens_summary_path,
    k,
    game,
    role,
    words_out,
    markdown_out,
    plot_out,
):
    """The report_words rule."""
    from .io import write_parquet, write_text

    scored = join_scores(pd.read_parquet(scores_path), pd.read_parquet(train_path))
    words = word_influence(scored, pd.read_parquet(val_path), k)
    counts = data_counts_markdown(_read_json(data_summary_path), _read_json(tokens_summary_path))
    write_parquet(words, words_out)
    write_text(words_markdown(words, game, role) + "\n" + counts, markdown_out)
    plot_words(words, plot_out, f"Most influential target words: {game} / {role}")
