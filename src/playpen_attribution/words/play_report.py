"""Measured hardness of the played sets (issue 22): did the hard words lose more often?

Per set (hard, easy, eval): episodes, wins, losses and aborts with their rates and 95%
Wilson intervals (scipy's binomtest, `selection.wilson_interval`); hard vs easy: Fisher's
exact test on wins (one-sided: the hard set wins less). The loss proxy
(generated/hardness.parquet: the guesser adapter's loss on the answer after a WordNet clue)
against the played outcome on the same words: the AUC with which a higher loss marks an
episode that was not won (Mann-Whitney U, one-sided). Each comparison says "inconclusive"
when its p-value is 0.05 or more, or when a side has no episodes.
"""

from __future__ import annotations

import logging

import pandas as pd

from playpen_attribution.data.prepare import extract_target_word
from playpen_attribution.words.play import SETS, read_episodes

log = logging.getLogger(__name__)
OUTCOMES = ("success", "failure", "aborted")
# outcome -> (count column, rate column prefix) of the per-set table
COLUMNS = {"success": ("wins", "win"), "failure": ("losses", "loss"), "aborted": ("aborts", "abort")}
PROXY_SET = {"hard": "hard", "easy": "easy", "eval": "original"}


def episode_outcomes(rows: list[dict], target_word_patterns) -> pd.DataFrame:
    """One row per played episode (its describer view): set, experiment, task_id, word,
    outcome."""
    out = []
    for row in rows:
        meta = row["meta"]
        if meta["game_role"] != "WordDescriber":
            continue
        prompt = next((m["content"] for m in row["messages"] if m["role"] == "user"), "")
        out.append(
            {
                "set": meta["experiment"].split("_", 1)[0],
                "experiment": meta["experiment"],
                "task_id": meta["task_id"],
                "model": meta["model"],
                "word": extract_target_word(prompt, target_word_patterns),
                "outcome": meta["outcome"],
            }
        )
    return pd.DataFrame(out, columns=["set", "experiment", "task_id", "model", "word", "outcome"])


def set_table(episodes: pd.DataFrame) -> pd.DataFrame:
    from playpen_attribution.checks.selection import wilson_interval

    rows = []
    for name in SETS:
        part = episodes[episodes["set"] == name]
        n = len(part)
        row = {"set": name, "episodes": n}
        for outcome, (count, rate) in COLUMNS.items():
            k = int((part["outcome"] == outcome).sum())
            low, high = wilson_interval(k, n) if n else (float("nan"), float("nan"))
            row |= {count: k, f"{rate}_rate": k / n if n else float("nan")}
            row |= {f"{rate}_ci_low": low, f"{rate}_ci_high": high}
        rows.append(row)
    return pd.DataFrame(rows)


def hard_vs_easy(table: pd.DataFrame) -> dict:
    from scipy.stats import fisher_exact

    by = table.set_index("set")
    hard, easy = by.loc["hard"], by.loc["easy"]
    if not hard["episodes"] or not easy["episodes"]:
        return {
            "p": float("nan"),
            "odds_ratio": float("nan"),
            "verdict": "inconclusive (a set has no episodes)",
        }
    cells = [
        [int(hard["wins"]), int(hard["episodes"] - hard["wins"])],
        [int(easy["wins"]), int(easy["episodes"] - easy["wins"])],
    ]
    result = fisher_exact(cells, alternative="less")
    p = float(result.pvalue)
    verdict = "hard words won less often" if p < 0.05 else "inconclusive"
    return {"p": p, "odds_ratio": float(result.statistic), "verdict": verdict}


def proxy_check(episodes: pd.DataFrame, proxy: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The episodes with the loss proxy of their word and set; the proxy's AUC for a loss."""
    from scipy.stats import mannwhitneyu

    loss = proxy.dropna(subset=["loss"]).drop_duplicates(["set", "word"]).set_index(["set", "word"])["loss"]
    keys = list(zip(episodes["set"].map(PROXY_SET), episodes["word"], strict=True))
    episodes = episodes.assign(loss=[loss.get(k, float("nan")) for k in keys])
    scored = episodes.dropna(subset=["loss"])
    won = scored.loc[scored["outcome"] == "success", "loss"]
    lost = scored.loc[scored["outcome"] != "success", "loss"]
    summary = {"n_scored": len(scored), "n_won": len(won), "n_not_won": len(lost)}
    if len(won) and len(lost):
        test = mannwhitneyu(lost, won, alternative="greater")
        summary |= {"auc": float(test.statistic) / (len(won) * len(lost)), "p": float(test.pvalue)}
        summary["verdict"] = (
            "a higher loss marked the episodes not won" if summary["p"] < 0.05 else "inconclusive"
        )
    else:
        summary |= {"auc": float("nan"), "p": float("nan")}
        summary["verdict"] = "inconclusive (no won or no unwon episodes among the scored words)"
    return episodes, summary


def _pct(x) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.0f}%"


def markdown(table: pd.DataFrame, fisher: dict, proxy: dict, players: str, game: str, role: str) -> str:
    lines = [
        f"# Played hardness: {game} / {role}",
        "",
        f"Players: {players}. Rates with 95% Wilson intervals.",
        "",
        "| set | episodes | wins | win rate (95% CI) | losses | loss rate | aborts | abort rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.set} | {r.episodes} | {r.wins} | {_pct(r.win_rate)} ({_pct(r.win_ci_low)}-{_pct(r.win_ci_high)}) "
            f"| {r.losses} | {_pct(r.loss_rate)} | {r.aborts} | {_pct(r.abort_rate)} |"
        )
    lines += [
        "",
        f"Hard vs easy, Fisher's exact test on wins (one-sided, hard wins less): p = {fisher['p']:.3g}, "
        f"odds ratio {fisher['odds_ratio']:.3g}: **{fisher['verdict']}**.",
        "",
        f"Loss proxy (generated/hardness.parquet) vs played outcome on the same words: "
        f"{proxy['n_scored']} episodes scored ({proxy['n_won']} won, {proxy['n_not_won']} not), "
        f"AUC {proxy['auc']:.2f} (0.5 = no signal), one-sided Mann-Whitney p = {proxy['p']:.3g}: "
        f"**{proxy['verdict']}**.",
        "",
    ]
    return "\n".join(lines)


def plot(table: pd.DataFrame, episodes: pd.DataFrame, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from playpen_attribution.core.io import write_png

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    x = range(len(table))
    rate = table["win_rate"].fillna(0)
    err = [rate - table["win_ci_low"].fillna(0), table["win_ci_high"].fillna(0) - rate]
    left.bar(x, rate, yerr=err, capsize=4, color="tab:blue")
    left.set_xticks(list(x), [f"{s}\n(n={n})" for s, n in zip(table["set"], table["episodes"], strict=True)])
    left.set_ylim(0, 1)
    left.set_ylabel("win rate (95% Wilson)")
    scored = episodes.dropna(subset=["loss"])
    colours = {"success": "tab:green", "failure": "tab:orange", "aborted": "tab:gray"}
    for i, outcome in enumerate(OUTCOMES):
        part = scored[scored["outcome"] == outcome]
        right.scatter(part["loss"], [i] * len(part), alpha=0.7, color=colours[outcome])
    right.set_yticks(range(len(OUTCOMES)), OUTCOMES)
    right.set_xlabel("loss proxy")
    fig.suptitle(title)
    fig.tight_layout()
    write_png(fig, path, dpi=100)


def write_played_hardness(
    episodes_path,
    proxy_path,
    target_word_patterns,
    game,
    role,
    table_out,
    markdown_out,
    plot_out,
    outcomes_out,
):
    """The played_hardness rule."""
    from playpen_attribution.core.io import write_parquet, write_text

    rows = read_episodes(episodes_path)
    episodes = episode_outcomes(rows, target_word_patterns)
    unknown = episodes.loc[~episodes["outcome"].isin(OUTCOMES), "outcome"].value_counts()
    if len(unknown):
        log.warning("episodes with an unrecognised outcome (counted as not won): %s", unknown.to_dict())
    table = set_table(episodes)
    fisher = hard_vs_easy(table)
    episodes, proxy = proxy_check(episodes, pd.read_parquet(proxy_path))
    players = ", ".join(sorted(set(episodes["model"]))) or "none"
    log.info("played: %s; fisher %s; proxy %s", table.to_dict("records"), fisher, proxy)
    write_parquet(table, table_out)
    write_parquet(episodes, outcomes_out)
    write_text(markdown(table, fisher, proxy, players, game, role), markdown_out)
    plot(table, episodes, plot_out, f"Played hardness: {game} / {role}")
    return {"table": table, "fisher": fisher, "proxy": proxy}
