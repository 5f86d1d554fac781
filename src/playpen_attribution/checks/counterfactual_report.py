"""Summary of the counterfactual retrains (see `counterfactual.py`): counterfactual.parquet,
counterfactual.png and counterfactual.md.

The words claim no more than the retrains show: with a handful of random seeds there is no
p-value, only an ordering (did removing the proponents raise the validation loss more than
every random removal?) and the spread of the random removals.
"""

from __future__ import annotations

import pandas as pd

from playpen_attribution.core.errors import WorkflowInputError

COLUMNS = [
    "removal",
    "kind",
    "fraction",
    "seed",
    "n_removed",
    "n_train_rows",
    "steps",
    "budget",
    "val_loss",
    "delta",
    "score_sum",
    "method",
    "aggregation",
]


def counterfactual_table(
    removals: list[dict], summaries: list[dict], scores: pd.DataFrame | None
) -> pd.DataFrame:
    """One row per retrain: what was removed, the validation loss, its `delta` against the
    full-data baseline retrain, and `score_sum`, the sum of the removed rows' `mean` scores
    (their predicted influence on the mean validation loss; the LDS correlates it)."""
    by_name = {s["removal"]: s for s in summaries}
    mean_score = scores.set_index("row_id")["mean"] if scores is not None else None
    rows = []
    for removal in removals:
        summary = by_name.get(removal["removal"])
        if summary is None:
            raise WorkflowInputError(f"no retrain summary for {removal['removal']}")
        if summary["n_removed"] != removal["n_removed"]:
            raise WorkflowInputError(
                f"{removal['removal']}: the retrain removed another set than removed.json"
            )
        score_sum = None
        if mean_score is not None:
            # reindex(...).sum() would count a row without a score as 0: refuse it instead
            unknown = sorted(set(removal["removed_row_ids"]) - set(mean_score.index))
            if unknown:
                raise WorkflowInputError(
                    f"{removal['removal']}: {len(unknown)} removed rows have no score in the "
                    f"attribution's scores.parquet, e.g. {unknown[:5]}"
                )
            score_sum = float(mean_score.loc[removal["removed_row_ids"]].sum())
        rows.append(
            {
                "removal": removal["removal"],
                "kind": removal["kind"],
                "fraction": float(removal["fraction"]),
                "seed": removal["seed"],
                "n_removed": int(removal["n_removed"]),
                "n_train_rows": int(summary["rows"]),
                "steps": int(summary["steps"]),
                "budget": summary["budget"],
                "val_loss": float(summary["val_loss"]),
                "score_sum": score_sum,
                "method": removal.get("method"),
                "aggregation": removal.get("aggregation"),
            }
        )
    table = pd.DataFrame(rows)
    baseline = table.loc[table["kind"] == "baseline", "val_loss"]
    if len(baseline) != 1:
        raise WorkflowInputError("the counterfactual summary needs exactly one baseline retrain")
    table["delta"] = table["val_loss"] - float(baseline.iloc[0])
    table["seed"] = table["seed"].astype("Int64")
    return table[COLUMNS]


def lds(table: pd.DataFrame) -> float | None:
    """Spearman correlation, over the LDS subsets, between the removed rows' score sum and
    the validation-loss change; positive when the scores predict the retrains (removing
    more helpful rows raises the loss more). None without at least 3 LDS retrains."""
    from scipy.stats import spearmanr

    part = table[table["kind"] == "lds"].dropna(subset=["score_sum"])
    if len(part) < 3:
        return None
    return float(spearmanr(part["score_sum"], part["delta"]).statistic)


def _fmt(x: float) -> str:
    return f"{x:+.4f}"


def _fraction_lines(table: pd.DataFrame, fraction: float, baseline: float) -> list[str]:
    part = table[table["fraction"] == fraction]
    random = part[part["kind"] == "random"].sort_values("seed")
    n = int(part["n_removed"].iloc[0])
    n_rows = int(table.loc[table["kind"] == "baseline", "n_train_rows"].iloc[0])
    lines = [f"### Removing {fraction:g} of the training rows ({n} of {n_rows})", ""]
    if len(random):
        lo, hi = random["delta"].min(), random["delta"].max()
        seeds = ", ".join(f"s{s}: {_fmt(d)}" for s, d in zip(random["seed"], random["delta"]))
        lines.append(
            f"- **Random removals** ({len(random)} seed{'s' if len(random) > 1 else ''}): the "
            f"validation loss changed by {_fmt(lo)} to {_fmt(hi)} (spread {hi - lo:.4f}; {seeds})."
        )
    else:
        lo = hi = None
        lines.append(
            "- No random removals were run (counterfactual.random_seeds: 0): nothing to compare with."
        )
    for kind in ("proponents", "detractors"):
        row = part[part["kind"] == kind]
        if row.empty:
            continue
        delta = float(row["delta"].iloc[0])
        rel = 100 * delta / baseline if baseline else float("nan")
        text = f"- **Removing the {kind}** changed the validation loss by {_fmt(delta)} ({rel:+.2f}%). "
        if lo is None:
            pass
        elif kind == "proponents":
            if delta > hi:
                text += (
                    f"That is more than every random removal, by {delta - hi:.4f} over the largest "
                    f"random rise ({_fmt(hi)})."
                )
            else:
                beaten = int((random["delta"] >= delta).sum())
                text += (
                    f"That is **not** more than every random removal: {beaten} of {len(random)} random "
                    f"removals raised it at least as much (largest {_fmt(hi)})."
                )
        else:
            if delta < 0:
                text += "Removing them **lowered** the validation loss"
                text += (
                    ", below every random removal."
                    if delta < lo
                    else f", but a random removal lowered it at least as much ({_fmt(lo)})."
                )
            elif delta < lo:
                text += f"It rose less than after every random removal (smallest random change {_fmt(lo)})."
            else:
                above = int((random["delta"] <= delta).sum())
                text += (
                    f"That is **not** less than every random removal: {above} of {len(random)} random "
                    f"removals changed it by at most as much (smallest {_fmt(lo)})."
                )
        lines.append(text)
    return lines + [""]


def counterfactual_markdown(table: pd.DataFrame, game: str, role: str, method: str, aggregation: str) -> str:
    base = table[table["kind"] == "baseline"].iloc[0]
    baseline = float(base["val_loss"])
    n_seeds = int(table.loc[table["kind"] == "random", "seed"].nunique())
    budget = str(base["budget"])
    lines = [
        f"# Counterfactual check: {game} / {role}",
        "",
        f"Each row is one LoRA retrain with exactly the SFT settings and seed of the attributed "
        f"adapter, on the training rows that remain after a removal. Budget: the same number of "
        f"{'optimizer steps' if budget == 'steps' else 'epochs over the kept rows'} as the "
        f"attributed adapter (the full-data baseline retrain ran {int(base['steps'])} steps on "
        f"{int(base['n_train_rows'])} rows). The validation loss is the mean over the validation "
        f"rows of each row's loss on its trained tokens (the definition of the attribution's query). "
        f"`proponents`/`detractors` are the highest/lowest-scored training rows of method "
        f"`{method}` under aggregation `{aggregation}` (the ranking of topk.parquet).",
        "",
        f"Baseline (nothing removed, retrained): validation loss **{baseline:.4f}**.",
        "",
    ]
    if (table["steps"] != base["steps"]).any():
        lines += [
            "The removals trained fewer optimizer steps than the baseline (the same epochs over "
            "fewer rows), so each `delta` also holds the effect of the shorter training; the "
            "comparison that isolates the ranking is a ranked removal against the random "
            "removals of the same size, which ran the same number of steps.",
            "",
        ]
    for fraction in sorted(
        table.loc[table["kind"].isin(["proponents", "detractors", "random"]), "fraction"].unique()
    ):
        lines += _fraction_lines(table, fraction, baseline)
    rho = lds(table)
    n_lds = int((table["kind"] == "lds").sum())
    if n_lds:
        lines += [
            "### Linear datamodeling score",
            "",
            f"Over {n_lds} random subsets (each removing {table.loc[table['kind'] == 'lds', 'fraction'].iloc[0]:g} "
            "of the rows), the Spearman correlation between the sum of the removed rows' `mean` "
            "scores and the validation-loss change is "
            + (
                f"**{rho:.3f}** (1 = the scores order the retrains perfectly)."
                if rho is not None
                else "undefined (fewer than 3 subsets)."
            )
            + "",
            "",
        ]
    lines += [
        "### What this does and does not show",
        "",
        f"Each removal is a single retrain; the random removals ({n_seeds} seed{'s' if n_seeds != 1 else ''} per "
        "fraction) are the only measure of how much the validation loss moves when that many "
        "rows are removed without the attribution. Their spread includes training noise "
        "(a different set of rows changes the batches). With so few seeds this is an ordering, "
        "not a significance test, and no p-value is given: a proponent removal above every "
        "random one is evidence only as strong as the number of random seeds.",
        "",
        "| removal | n_removed | steps | val_loss | delta |",
        "|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.removal} | {row.n_removed} | {row.steps} | {row.val_loss:.4f} | {_fmt(row.delta)} |"
        )
    return "\n".join(lines) + "\n"


def plot_counterfactual(table: pd.DataFrame, path, title: str) -> None:
    """Validation-loss change against the fraction removed: proponents, detractors, and
    the random removals (mean line, min-max band, each seed a dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from playpen_attribution.core.io import write_png

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(0, color="black", linewidth=0.8, linestyle="--", label="baseline (all rows)")
    random = table[table["kind"] == "random"]
    if len(random):
        band = random.groupby("fraction")["delta"].agg(["min", "max", "mean"]).reset_index()
        ax.fill_between(
            band["fraction"], band["min"], band["max"], color="grey", alpha=0.25, label="random: min–max"
        )
        ax.vlines(band["fraction"], band["min"], band["max"], color="grey", linewidth=6, alpha=0.35)
        ax.plot(band["fraction"], band["mean"], "-", color="grey", label="random: mean")
        ax.plot(random["fraction"], random["delta"], ".", color="grey")
    for kind, style in (("proponents", "o-"), ("detractors", "s-")):
        part = table[table["kind"] == kind].sort_values("fraction")
        if len(part):
            ax.plot(part["fraction"], part["delta"], style, label=f"{kind} removed")
    fractions = sorted(table.loc[table["kind"] != "baseline", "fraction"].unique())
    if len(fractions) == 1:
        ax.set_xlim(fractions[0] * 0.5, fractions[0] * 1.5)
    ax.set_xlabel("fraction of training rows removed")
    ax.set_ylabel("validation loss − baseline")
    ax.set_title(title)
    ax.legend(fontsize=8)
    write_png(fig, path)


def write_counterfactual_report(
    removed_paths,
    summary_paths,
    scores_path,
    method,
    aggregation,
    game,
    role,
    table_out,
    markdown_out,
    plot_out,
    html_out=None,
) -> pd.DataFrame:
    """The counterfactual rule."""
    import json
    from pathlib import Path

    from playpen_attribution.core.io import write_parquet, write_text

    removals = [json.loads(Path(p).read_text()) for p in removed_paths]
    summaries = [json.loads(Path(p).read_text()) for p in summary_paths]
    scores = pd.read_parquet(scores_path) if scores_path else None
    table = counterfactual_table(removals, summaries, scores)
    write_parquet(table, table_out)
    summary = counterfactual_markdown(table, game, role, method, aggregation)
    write_text(summary, markdown_out)
    if html_out:
        from playpen_attribution.core.render import markdown_html

        write_text(markdown_html(summary, f"counterfactual: {game} / {role}"), html_out)
    plot_counterfactual(table, plot_out, f"Counterfactual retrains: {game} / {role}")
    return table
