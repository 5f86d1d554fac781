"""Human-facing reports: top/bottom training rows, per-word influence, plots."""

from __future__ import annotations

import pandas as pd

from playpen_attribution.core.errors import WorkflowInputError
from playpen_attribution.core.render import markdown_html

TOPK_COLUMNS = [
    "bucket",
    "rank",
    "row_id",
    "score",
    "method",
    "aggregation",
    "experiment",
    "task_id",
    "model",
    "outcome",
    "target_word",
    "n_turns",
    "prompt",
    "completion",
    "helped_val_row_ids",
    "helped_val_words",
    "helped_val_scores",
]
N_HELPED = 3
AGGREGATION_TEXT = {
    "mean": "the mean of its scores over the validation rows (its influence on the mean validation loss)",
    "nearest": "its largest score over the validation rows (the validation row it helps most)",
    "rank_mean": "its percentile rank among the training rows, averaged over the validation rows",
}


def with_aggregation(scores: pd.DataFrame, aggregation: str) -> pd.DataFrame:
    """`score` becomes the chosen aggregation of the row's scores over validation rows."""
    if aggregation not in scores.columns:
        raise WorkflowInputError(f"scores have no {aggregation!r} column; columns: {list(scores.columns)}")
    return scores.assign(score=scores[aggregation])


def load_matrix(matrix_path, ids_path):
    """The influence matrix as a frame: index train row_ids, columns val row_ids (lazy load)."""
    import json

    import numpy as np

    ids = json.loads(open(ids_path).read())
    matrix = np.load(matrix_path, mmap_mode="r")
    return pd.DataFrame(np.asarray(matrix), index=ids["rows"], columns=ids["columns"])


def helped_val_rows(matrix: pd.DataFrame, row_ids, val_words: pd.Series, n: int = N_HELPED) -> pd.DataFrame:
    """For each training row, the `n` validation rows its gradient helps most."""
    out = []
    for row_id in row_ids:
        best = matrix.loc[row_id].nlargest(n)
        out.append(
            {
                "row_id": row_id,
                "helped_val_row_ids": best.index.tolist(),
                "helped_val_words": [None if pd.isna(w) else w for w in val_words.reindex(best.index)],
                "helped_val_scores": best.to_numpy(dtype=float).tolist(),
            }
        )
    return pd.DataFrame(out)


def val_proponents(matrix: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, k: int) -> pd.DataFrame:
    """For each validation row: its top-k proponents and opponents among the training rows
    (long format), with target words, and whether the training row has the same word."""
    words = train.set_index("row_id")["target_word"]
    val_meta = val.set_index("row_id")
    rows = []
    for val_id in matrix.columns:
        column = matrix[val_id]
        val_word = val_meta.at[val_id, "target_word"] if "target_word" in val_meta.columns else None
        for kind, picked in (("proponent", column.nlargest(k)), ("opponent", column.nsmallest(k))):
            for rank, (train_id, score) in enumerate(picked.items(), start=1):
                word = words.get(train_id)
                rows.append(
                    {
                        "val_row_id": val_id,
                        "val_target_word": None if pd.isna(val_word) else val_word,
                        "val_outcome": val_meta.at[val_id, "outcome"],
                        "kind": kind,
                        "rank": rank,
                        "train_row_id": train_id,
                        "train_target_word": None if pd.isna(word) else word,
                        "score": float(score),
                        "same_word": bool(not pd.isna(word) and not pd.isna(val_word) and word == val_word),
                    }
                )
    return pd.DataFrame(rows)


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
    return out[[c for c in TOPK_COLUMNS if c in out.columns]]


def _success(outcome: pd.Series) -> pd.Series:
    """1.0 won, 0.0 lost or aborted, NaN for an outcome outside data.KNOWN_OUTCOMES: a
    success rate (a mean, which skips NaN) counts only the outcomes it knows."""
    from playpen_attribution.data.prepare import KNOWN_OUTCOMES

    return outcome.eq("success").astype("float64").where(outcome.isin(KNOWN_OUTCOMES))


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
        success=_success(with_word["outcome"]),
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
    val_words = val.dropna(subset=["target_word"]).assign(success=lambda d: _success(d["outcome"]))
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
    words: pd.DataFrame | None,
    method: str,
    aggregation: str,
    proponents: pd.DataFrame | None,
) -> str:
    lines = [
        f"# Most and least influential training rows: {game} / {role}",
        "",
        f"{n_rows} training rows were scored against each validation row with method "
        f"`{method}` (preconditioner), and ranked by `{aggregation}`: "
        f"{AGGREGATION_TEXT.get(aggregation, aggregation)}.",
        "",
        "**How to read a score.** A row's score against a validation row is the dot product of "
        "their loss gradients "
        + ("(unit-normalised, so a cosine) " if unit_normalize else "")
        + "after preconditioning. A positive score means a training step on that row "
        "lowers that validation row's loss (it teaches what the validation set needs); a "
        "negative score means it raises it. Scores rank rows within this run; their absolute "
        "size depends on the model and normalisation. *Helps most* lists the validation rows "
        "(and their target words) whose loss the row lowers most. The validation rows here are "
        "the query rows; the held-out eval rows (`data/eval.parquet`) are never scored.",
        "",
        "**Does this ranking pick better training data?** A score says where a row's gradient "
        "points, not that training on the top rows wins more games. That is measured only by the "
        "selection check (`selection.md`: adapters trained on the top rows against as many random "
        "rows, games won on the held-out rows). Until it says that top beats every random arm, "
        "treat this list as a hypothesis.",
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
            "| rank | score | row_id | word | outcome | turns | completion | helps most |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in part.itertuples():
            word = "" if pd.isna(r.target_word) else r.target_word
            completion = _clip(r.completion, 80).replace("|", "\\|")
            helped = ", ".join(
                f"{v} ({w or '?'}, {x:.2g})"
                for v, w, x in zip(r.helped_val_row_ids, r.helped_val_words, r.helped_val_scores)
            )
            lines.append(
                f"| {r.rank} | {r.score:.4g} | {r.row_id} | {word} | {r.outcome} | {r.n_turns} | {completion} | {helped} |"
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
    if proponents is not None and len(proponents) and proponents["val_target_word"].notna().any():
        top1 = proponents[(proponents["kind"] == "proponent") & (proponents["rank"] == 1)]
        top1 = top1[top1["val_target_word"].notna()]
        lines += [
            "## Are validation words learned from episodes of the same word?",
            "",
            f"For {int(top1['same_word'].sum())} of {len(top1)} validation rows, the training row that "
            "helps most has the same target word (`val_proponents.parquet` lists each validation "
            "row's top proponents and opponents).",
            "",
        ]
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
    row(
        "kept: outcome not success/failure/aborted (in no success rate)",
        [sum((d.get("unrecognised_outcome") or {}).values()) for d in data],
    )
    row("kept: no target word recovered", [d["target_word_missing"] for d in data])
    row(
        "... of them: the episode's describer rows name different words",
        [d.get("target_word_conflict", 0) for d in data],
    )
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

    from playpen_attribution.core.io import write_png

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
    write_png(fig, path)


def plot_words(words: pd.DataFrame, path, title: str, n: int = 20) -> None:
    """Bar chart of the words with the largest summed influence, coloured by success rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from playpen_attribution.core.io import write_png

    shown = words.head(n).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(shown) + 1)))
    colours = plt.cm.RdYlGn(shown["train_success_rate"].fillna(0.5).to_numpy())
    ax.barh(shown["target_word"], shown["sum_score"], color=colours)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlabel("summed influence score (colour: train success rate, red = hard)")
    ax.set_title(title)
    write_png(fig, path)


def write_topk_report(
    scores_path,
    train_path,
    val_path,
    matrix_path,
    matrix_ids_path,
    words_path,
    data_summary_path,
    tokens_summary_path,
    k,
    unit_normalize,
    method,
    aggregation,
    game,
    role,
    topk_out,
    markdown_out,
    plot_out,
    proponents_out,
    html_out=None,
):
    """The report_topk rule. `words_path` (taboo only) adds the top words to the summary."""
    from playpen_attribution.core.io import write_parquet, write_text

    train, val = pd.read_parquet(train_path), pd.read_parquet(val_path)
    scored = join_scores(with_aggregation(pd.read_parquet(scores_path), aggregation), train)
    topk = top_bottom(scored.assign(method=method, aggregation=aggregation), k)
    matrix = load_matrix(matrix_path, matrix_ids_path)
    helped = helped_val_rows(matrix, topk["row_id"], val.set_index("row_id")["target_word"])
    topk = topk.merge(helped, on="row_id", how="left", validate="many_to_one")[TOPK_COLUMNS]
    proponents = val_proponents(matrix, train, val, k)
    words = pd.read_parquet(words_path) if words_path else None
    counts = data_counts_markdown(_read_json(data_summary_path), _read_json(tokens_summary_path))
    write_parquet(topk, topk_out)
    write_parquet(proponents, proponents_out)
    summary = topk_markdown(
        topk, game, role, len(scored), unit_normalize, words, method, aggregation, proponents
    )
    write_text(summary + "\n" + counts, markdown_out)
    if html_out:
        write_text(markdown_html(summary + "\n" + counts, f"top-k rows: {game} / {role}"), html_out)
    plot_scores(
        scored, topk, plot_out, f"Influence on validation loss ({method}, {aggregation}): {game} / {role}"
    )


def write_word_scores(scores_path, train_path, val_path, aggregation, words_out) -> None:
    """The word_scores rule: words.parquet without the top-k/bottom-k counts, so that
    what reads it (generate_instances, score_generated) does not rerun when report.k
    changes."""
    from playpen_attribution.core.io import write_parquet

    scored = join_scores(
        with_aggregation(pd.read_parquet(scores_path), aggregation), pd.read_parquet(train_path)
    )
    # k only decides n_top and n_bottom, dropped here
    words = word_influence(scored, pd.read_parquet(val_path), 1).drop(columns=["n_top", "n_bottom"])
    write_parquet(words, words_out)


def write_words_report(
    scores_path,
    train_path,
    val_path,
    data_summary_path,
    tokens_summary_path,
    k,
    aggregation,
    game,
    role,
    words_out,
    markdown_out,
    plot_out,
    html_out=None,
):
    """The report_words rule."""
    from playpen_attribution.core.io import write_parquet, write_text

    scored = join_scores(
        with_aggregation(pd.read_parquet(scores_path), aggregation), pd.read_parquet(train_path)
    )
    words = word_influence(scored, pd.read_parquet(val_path), k)
    counts = data_counts_markdown(_read_json(data_summary_path), _read_json(tokens_summary_path))
    write_parquet(words, words_out)
    summary = words_markdown(words, game, role) + "\n" + counts
    write_text(summary, markdown_out)
    if html_out:
        write_text(markdown_html(summary, f"words: {game} / {role}"), html_out)
    plot_words(words, plot_out, f"Most influential target words: {game} / {role}")


def planted_ranks(
    planted: list[dict], train: pd.DataFrame, scores: dict[str, pd.DataFrame], game, role, eval_rows=None
):
    """Rank of every planted copy (in this game and role) under every method x aggregation.

    `source`: whether the copied validation episode is a query row (the attribution can
    find its copy) or a held-out eval row (`eval_rows`; its copy is a training row like any
    other to the query, and is expected anywhere)."""
    from playpen_attribution.attribution.scoring import AGGREGATIONS

    copies = [p for p in planted if p["game"] == game and p["game_role"] == role]
    keys = {(p["experiment"], p["task_id"], p["model"]) for p in copies}
    held_out = set()
    if eval_rows is not None:
        held_out = set(zip(eval_rows["experiment"], eval_rows["task_id"], eval_rows["model"]))
    source_of = {
        (p["experiment"], p["task_id"], p["model"]): (
            "eval"
            if (p["experiment"], p.get("copy_of_validation_task_id"), p["model"]) in held_out
            else "query"
        )
        for p in copies
    }
    is_copy = [(e, t, m) in keys for e, t, m in zip(train["experiment"], train["task_id"], train["model"])]
    copy_ids = train.loc[is_copy, "row_id"].tolist()
    copy_source = {
        row_id: source_of[(e, t, m)]
        for row_id, e, t, m in zip(train["row_id"], train["experiment"], train["task_id"], train["model"])
        if (e, t, m) in keys
    }
    if len(copy_ids) != len(copies):
        raise WorkflowInputError(
            f"planted.json names {len(copies)} {game}/{role} rows, the training data holds {len(copy_ids)} of them"
        )
    rows = []
    for method, frame in scores.items():
        for aggregation in AGGREGATIONS:
            ordered = frame.sort_values([aggregation, "row_id"], ascending=[False, True], kind="stable")
            rank = pd.Series(range(1, len(ordered) + 1), index=ordered["row_id"].to_numpy())
            for row_id in copy_ids:
                rows.append(
                    {
                        "method": method,
                        "aggregation": aggregation,
                        "row_id": row_id,
                        "rank": int(rank[row_id]),
                        "n_rows": len(frame),
                        "n_planted": len(copy_ids),
                        "source": copy_source[row_id],
                        "in_top_2n": bool(rank[row_id] <= 2 * len(copy_ids)),
                    }
                )
    return pd.DataFrame(rows)


def planted_markdown(table: pd.DataFrame, game, role) -> str:
    lines = [
        f"# Where the planted copies rank: {game} / {role}",
        "",
        "Copies of validation episodes were planted in the training data; a ranking that finds "
        "what drives the validation loss should put them near the top. Ranks out of "
        f"{table['n_rows'].iloc[0]} training rows; the target is the top 2 x {table['n_planted'].iloc[0]}. "
        "Only copies of query rows can be found: a copy of a held-out eval row (marked "
        "*eval*) is invisible to the query, and it puts that eval episode into the training pool.",
        "",
        "| method | aggregation | ranks of the copies | query copies all in top 2N |",
        "|---|---|---|---|",
    ]
    for (method, aggregation), part in table.groupby(["method", "aggregation"], sort=False):
        ranks = ", ".join(
            f"{r} (eval)" if source == "eval" else str(r)
            for r, source in sorted(zip(part["rank"], part["source"]))
        )
        query = part[part["source"] == "query"]
        found = "–" if query.empty else ("yes" if query["in_top_2n"].all() else "no")
        lines.append(f"| {method} | {aggregation} | {ranks} | {found} |")
    return "\n".join(lines) + "\n"


def write_planted_report(
    planted_path, score_paths, methods, train_path, game, role, table_out, markdown_out, eval_path=None
):
    """The report_planted rule."""
    from playpen_attribution.core.io import write_parquet, write_text

    planted = _read_json(planted_path)
    scores = {m: pd.read_parquet(p) for m, p in zip(methods, score_paths)}
    eval_rows = pd.read_parquet(eval_path) if eval_path else None
    table = planted_ranks(planted, pd.read_parquet(train_path), scores, game, role, eval_rows)
    if table.empty:
        raise WorkflowInputError(f"no planted copies for {game}/{role} (demo_data.planted_copies is 0?)")
    write_parquet(table, table_out)
    write_text(planted_markdown(table, game, role), markdown_out)
    return table
