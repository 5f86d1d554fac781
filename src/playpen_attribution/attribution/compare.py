"""How much do two attribution methods' rankings of the training rows agree?

For each pair of methods, over all training rows: Spearman's rho and Kendall's tau-b
(scipy; both handle tied scores), the Jaccard overlap of the top-k and bottom-k sets
for k in K_VALUES (capped at the number of rows), and how far the first method's top
rows move in the second method's ranking.
"""

from __future__ import annotations

from itertools import combinations

import pandas as pd

K_VALUES = (10, 50, 100)


def ranks(scores: pd.DataFrame) -> pd.Series:
    """1 = highest score; ties broken by row_id, as the top-k report breaks them."""
    ordered = scores.sort_values(["score", "row_id"], ascending=[False, True], kind="stable")
    return pd.Series(range(1, len(ordered) + 1), index=ordered["row_id"].to_numpy(), name="rank")


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def compare_pair(a: pd.DataFrame, b: pd.DataFrame, k_report: int) -> dict:
    """Agreement of two methods' scores over the same training rows (columns row_id, score)."""
    from scipy import stats

    if sorted(a["row_id"]) != sorted(b["row_id"]):
        raise ValueError("the two methods scored different training rows")
    joined = a.set_index("row_id")["score"].to_frame("a").join(b.set_index("row_id")["score"].rename("b"))
    rank_a, rank_b = ranks(a), ranks(b)
    n = len(joined)
    out = {
        "n_rows": n,
        "spearman_rho": float(stats.spearmanr(joined["a"], joined["b"]).statistic),
        "kendall_tau_b": float(stats.kendalltau(joined["a"], joined["b"], variant="b").statistic),
    }
    for k in K_VALUES:
        kk = min(k, n)
        out[f"top{k}_jaccard"] = jaccard(set(rank_a.index[:kk]), set(rank_b.index[:kk]))
        out[f"bottom{k}_jaccard"] = jaccard(set(rank_a.index[-kk:]), set(rank_b.index[-kk:]))
    top = rank_a.index[: min(k_report, n)]
    moves = (rank_b.loc[top] - rank_a.loc[top]).abs()
    out["k"] = min(k_report, n)
    out["topk_rank_change_median"] = float(moves.median())
    out["topk_rank_change_max"] = int(moves.max())
    return out


def compare_methods(scores: dict[str, pd.DataFrame], k_report: int) -> pd.DataFrame:
    """One row per pair of methods, in the configured order."""
    rows = [
        {"method_a": a, "method_b": b, **compare_pair(scores[a], scores[b], k_report)}
        for a, b in combinations(scores, 2)
    ]
    return pd.DataFrame(rows)


def plot_comparison(scores: dict[str, pd.DataFrame], table: pd.DataFrame, path) -> None:
    """Per pair: score vs score, and rank vs rank (top-k of the first method marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from playpen_attribution.core.io import write_png

    pairs = list(table.itertuples())
    # With three methods or more, one row of matrices first: all pairs at a glance.
    overview = len(scores) > 2
    n_rows = max(1, len(pairs)) + overview
    fig, axes = plt.subplots(n_rows, 2, figsize=(9, 4 * n_rows), squeeze=False)
    if overview:
        for ax, column, title in (
            (axes[0][0], "spearman_rho", "Spearman ρ"),
            (axes[0][1], "top10_jaccard", "top-10 Jaccard"),
        ):
            _pair_matrix(ax, list(scores), table, column, title)
    for row, pair in enumerate(pairs, start=overview):
        a, b = scores[pair.method_a], scores[pair.method_b]
        joined = a.set_index("row_id")["score"].to_frame("a").join(b.set_index("row_id")["score"].rename("b"))
        rank_a, rank_b = ranks(a), ranks(b)
        top = set(rank_a.index[: pair.k])
        is_top = joined.index.isin(top)
        ax = axes[row][0]
        ax.scatter(joined["a"][~is_top], joined["b"][~is_top], s=10, alpha=0.6, label="other rows")
        ax.scatter(
            joined["a"][is_top],
            joined["b"][is_top],
            s=18,
            color="C3",
            label=f"top-{pair.k} of {pair.method_a}",
        )
        ax.set_xlabel(f"score ({pair.aggregation}): {pair.method_a}")
        ax.set_ylabel(f"score ({pair.aggregation}): {pair.method_b}")
        ax.set_title(f"Spearman ρ = {pair.spearman_rho:.2f}, Kendall τ-b = {pair.kendall_tau_b:.2f}")
        ax.legend(fontsize=8)
        ax = axes[row][1]
        ra, rb = rank_a.loc[joined.index], rank_b.loc[joined.index]
        ax.scatter(ra[~is_top], rb[~is_top], s=10, alpha=0.6)
        ax.scatter(ra[is_top], rb[is_top], s=18, color="C3")
        ax.plot([1, len(joined)], [1, len(joined)], color="k", linewidth=0.8)
        ax.set_xlabel(f"rank: {pair.method_a} (1 = most helpful)")
        ax.set_ylabel(f"rank: {pair.method_b}")
        ax.set_title(f"top-{pair.k} rows move by median {pair.topk_rank_change_median:.0f} ranks")
    write_png(fig, path, dpi=100)


def pair_matrix(methods: list[str], table: pd.DataFrame, column: str):
    """A symmetric methods x methods array of one pair statistic (1 on the diagonal)."""
    import numpy as np

    index = {m: i for i, m in enumerate(methods)}
    values = np.eye(len(methods))
    for pair in table.itertuples():
        i, j = index[pair.method_a], index[pair.method_b]
        values[i, j] = values[j, i] = getattr(pair, column)
    return values


def _pair_matrix(ax, methods: list[str], table: pd.DataFrame, column: str, title: str) -> None:
    values = pair_matrix(methods, table, column)
    image = ax.imshow(values, vmin=-1 if column == "spearman_rho" else 0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    for i in range(len(methods)):
        for j in range(len(methods)):
            # dark text on viridis' light (high) end, light text on its dark end
            color = "k" if values[i, j] > 0.5 else "w"
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_title(f"{title} ({table['aggregation'].iloc[0]})")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)


def write_comparison(
    score_paths: list, methods: list[str], k_report: int, table_out, plot_out, *, aggregation: str
) -> pd.DataFrame:
    """The compare_rankings rule: the methods' rankings under the report's aggregation."""
    from playpen_attribution.core.io import write_parquet

    scores = {
        m: pd.read_parquet(p, columns=["row_id", aggregation]).rename(columns={aggregation: "score"})
        for m, p in zip(methods, score_paths)
    }
    table = compare_methods(scores, k_report)
    table.insert(2, "aggregation", aggregation)
    write_parquet(table, table_out)
    plot_comparison(scores, table, plot_out)
    return table
