"""Selection check: train on the rows the attribution ranks highest, and on as many random
rows, and count the games each adapter wins on the held-out eval rows (config `selection`).

An arm is named by the `{arm}` wildcard of the selection rules:

- `base`: the base model, no training; `full`: the whole training pool;
- `{method}-{aggregation}/top-k{size}`: the `size` highest-scored rows under that ranking;
  `.../bottom-k{size}`: the lowest;
- `{method}-{aggregation}/random-k{size}-s{seed}`: `size` random rows drawn from the pool
  without the top rows (`random_overlap: false`, the default, the prototype's "no
  overlap"); with `random_overlap: true` they do not depend on any ranking and are named
  `random-k{size}-s{seed}`, shared by every ranking.

A size below 1 is a fraction of the pool (max(1, round(size * rows)) rows), otherwise a row
count. Every arm trains with the attributed adapter's SFT settings and seed. Budget
(`selection.budget`): `steps` (default) gives every arm as many optimizer steps as the
attributed adapter ran on the whole pool, so a smaller arm sees its rows more often (the
prototype's "same budget"); `epochs` gives it the same number of epochs, so fewer steps.
Either way the arms of one size train the same number of steps.
"""

from __future__ import annotations

import logging
import re

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)

RANKED_KINDS = ("top", "bottom")
KINDS = ("base", "full", *RANKED_KINDS, "random")
# The random arms' own stream, apart from the counterfactual check's (counterfactual.py).
_RANDOM_STREAM = 2
_SIZE = r"k(?P<size>[0-9.]+)"
_ARM = re.compile(
    r"(?:(?P<method>[a-z_]+)-(?P<aggregation>[a-z_]+)/)?(?P<kind>top|bottom|random)-"
    + _SIZE
    + r"(?:-s(?P<seed>[0-9]+))?"
)


def arm_pattern(methods, aggregations) -> str:
    """The wildcard constraint of {arm}."""
    ranking = f"(?:{'|'.join(methods)})-(?:{'|'.join(aggregations)})"
    return rf"base|full|(?:{ranking}/)?(?:top|bottom)-k[0-9.]+|(?:{ranking}/)?random-k[0-9.]+-s[0-9]+"


def size_text(size) -> str:
    return f"{size:g}"


def rankings(settings: dict, report_method: str, aggregation: str) -> list[dict]:
    return settings.get("rankings") or [{"method": report_method, "aggregation": aggregation}]


def arm_names(settings: dict, report_method: str, aggregation: str) -> list[str]:
    """Every arm that config `selection` asks for: base, full, then per ranking and size."""
    names = ["base", "full"]
    for ranking in rankings(settings, report_method, aggregation):
        prefix = f"{ranking['method']}-{ranking['aggregation']}/"
        for size in settings["sizes"]:
            k = size_text(size)
            names += [f"{prefix}{kind}-k{k}" for kind in RANKED_KINDS if kind in settings["kinds"]]
            if "random" in settings["kinds"]:
                random_prefix = "" if settings["random_overlap"] else prefix
                names += [f"{random_prefix}random-k{k}-s{s}" for s in range(settings["random_seeds"])]
    return list(dict.fromkeys(names))  # shared random arms once


def parse_arm(name: str) -> dict:
    if name in ("base", "full"):
        return {"arm": name, "kind": name, "size": None, "seed": None, "method": None, "aggregation": None}
    match = _ARM.fullmatch(name)
    if not match or (match["kind"] == "random") != (match["seed"] is not None):
        raise ValueError(f"not an arm name: {name!r}")
    size = float(match["size"])
    return {
        "arm": name,
        "kind": match["kind"],
        "size": int(size) if size >= 1 else size,
        "seed": int(match["seed"]) if match["seed"] is not None else None,
        "method": match["method"],
        "aggregation": match["aggregation"],
    }


def reads_scores(name: str) -> bool:
    """Whether an arm's rows depend on a ranking (top, bottom, random without overlap)."""
    return parse_arm(name)["method"] is not None


def n_rows(size, pool: int) -> int:
    if size < 1:
        n = max(1, round(size * pool))
    elif float(size).is_integer():
        n = int(size)
    else:
        raise WorkflowInputError(f"selection size {size}: a fraction below 1 or a whole row count")
    if n >= pool:
        raise WorkflowInputError(f"selection size {size} keeps {n} of {pool} training rows: use `full`")
    return n


def arm_rows(name: str, row_ids, scores=None, base_seed: int = 0) -> list[str]:
    """The training row_ids an arm trains on."""
    import numpy as np

    from playpen_attribution.checks.counterfactual import ranked

    spec = parse_arm(name)
    row_ids = list(row_ids)
    if len(set(row_ids)) != len(row_ids):
        raise WorkflowInputError("training row_ids are not unique")
    if spec["kind"] == "base":
        return []
    if spec["kind"] == "full":
        return row_ids
    n = n_rows(spec["size"], len(row_ids))
    order = None
    if spec["method"] is not None:
        if scores is None:
            raise ValueError(f"{name} needs the scores of {spec['method']}")
        if set(scores["row_id"]) != set(row_ids) or len(scores) != len(row_ids):
            raise WorkflowInputError(
                "the attribution scores do not cover exactly the training token rows; "
                "rerun the attribution (score_train)"
            )
        order = ranked(scores, spec["aggregation"])
    if spec["kind"] == "top":
        return order[:n]
    if spec["kind"] == "bottom":
        return order[::-1][:n]
    pool = sorted(set(row_ids) - set(order[:n])) if order is not None else sorted(row_ids)
    if len(pool) < n:
        raise WorkflowInputError(
            f"{name}: {n} random rows without the top {n} need {2 * n} training rows, there are "
            f"{len(row_ids)}; use a smaller size or selection.random_overlap: true"
        )
    rng = np.random.default_rng([base_seed, _RANDOM_STREAM, len(row_ids), n, spec["seed"]])
    return [pool[i] for i in rng.permutation(len(pool))[:n]]


def write_arm_rows(arm, train_tokens_dir, scores_path, base_seed, out) -> None:
    """The selection_arm rule: selected.json for one arm."""
    import pandas as pd

    from playpen_attribution.core.io import write_json
    from playpen_attribution.data.tokens import load_token_dataset

    row_ids = list(load_token_dataset(train_tokens_dir)["row_id"])
    scores = pd.read_parquet(scores_path) if scores_path else None
    rows = arm_rows(arm, row_ids, scores, base_seed)
    write_json(parse_arm(arm) | {"pool_rows": len(row_ids), "n_rows": len(rows), "row_ids": rows}, out)
    log.info("%s: %d of %d training rows", arm, len(rows), len(row_ids))


def pool_steps(pool_rows: int, settings) -> int:
    """The optimizer steps of SFT on the whole pool: train.max_steps if set, else the steps
    of train.epochs epochs (as the HF trainer counts them)."""
    import math

    if settings.max_steps > 0:
        return settings.max_steps
    batches = math.ceil(pool_rows / settings.batch_size)
    return math.ceil(settings.epochs * math.ceil(batches / settings.gradient_accumulation_steps))


def run_arm_training(
    model_name_or_path: str,
    revision: str | None,
    tokenizer_dir,
    train_tokens_dir,
    selected_path,
    lora,
    settings,
    adapter_out,
    metrics_out,
    summary_out,
    *,
    budget: str,
):
    """The train_arm rule: train_lora's code path on the arm's rows, from the base model."""
    import dataclasses
    import json
    from pathlib import Path

    from playpen_attribution.core.io import write_json, write_parquet
    from playpen_attribution.data.tokens import load_token_dataset
    from playpen_attribution.sft.train import (
        load_and_train,
        metrics_frame,
        save_adapter,
        select_rows,
        training_summary,
    )

    arm = json.loads(Path(selected_path).read_text())
    tokens = select_rows(load_token_dataset(train_tokens_dir), arm["row_ids"])
    if budget == "steps":
        settings = dataclasses.replace(settings, max_steps=pool_steps(arm["pool_rows"], settings))
    elif budget != "epochs":
        raise ValueError(f"selection budget {budget!r} is not steps or epochs")
    log.info(
        "%s: training on %d rows (%s budget, max_steps %d)",
        arm["arm"],
        len(tokens),
        budget,
        settings.max_steps,
    )
    trainer = load_and_train(
        model_name_or_path, revision, tokenizer_dir, tokens, None, lora, settings, Path(summary_out).parent
    )
    save_adapter(trainer, tokenizer_dir, adapter_out)
    write_parquet(metrics_frame(trainer.state.log_history), metrics_out)
    summary = training_summary(trainer, settings, len(tokens))
    summary |= {key: arm[key] for key in ("arm", "kind", "size", "seed", "method", "aggregation", "n_rows")}
    summary |= {"budget": budget, "seed_sft": settings.seed, "trained_row_ids": list(tokens["row_id"])}
    write_json(summary, summary_out)


# --------------------------------------------------------------------------- statistics


def wilson_interval(wins: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(wins), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact(wins_a, wins_b) -> dict:
    """Exact McNemar test on paired wins (same eval rows): a binomial test of the discordant
    pairs, two-sided. `a_only`: rows a wins and b loses."""
    from scipy.stats import binomtest

    a_only = int(sum(bool(a) and not bool(b) for a, b in zip(wins_a, wins_b, strict=True)))
    b_only = int(sum(bool(b) and not bool(a) for a, b in zip(wins_a, wins_b, strict=True)))
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(binomtest(a_only, discordant, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


ALPHA = 0.05


def verdict(top_wins: int, comparisons: list[dict]) -> str:
    """A plain verdict for one top arm against its random arms (each a McNemar result with
    the random arm's wins)."""
    if not comparisons:
        return "no random arm to compare with"
    beats = [c for c in comparisons if top_wins > c["wins"]]
    if len(beats) == len(comparisons) and all(c["p_value"] < ALPHA for c in comparisons):
        return f"top beats every random arm (p ≤ {max(c['p_value'] for c in comparisons):.3g})"
    worse = [c for c in comparisons if top_wins < c["wins"]]
    if len(worse) == len(comparisons) and all(c["p_value"] < ALPHA for c in comparisons):
        return f"worse than random (p ≤ {max(c['p_value'] for c in comparisons):.3g})"
    return (
        f"inconclusive: top wins more than {len(beats)} of {len(comparisons)} random arms, "
        f"smallest p = {min(c['p_value'] for c in comparisons):.3g}"
    )


def selection_table(arms: list[dict]):
    """One row per arm (each: its summary, eval summary and per-row eval frame)."""
    import pandas as pd

    records = []
    for arm in arms:
        spec = parse_arm(arm["arm"])
        ev = arm["eval"]
        wins, n = ev["wins"], ev["n_eval"]
        low, high = wilson_interval(wins, n) if wins is not None else (float("nan"), float("nan"))
        records.append(
            {
                "arm": arm["arm"],
                "k": spec["size"],
                "kind": spec["kind"],
                "seed": spec["seed"],
                "n_rows": arm["train"]["rows"] if arm.get("train") else 0,
                "steps": arm["train"]["steps"] if arm.get("train") else 0,
                "wins": wins,
                "n_eval": n,
                "win_rate": ev["win_rate"],
                "ci_low": low,
                "ci_high": high,
                "format_valid_rate": ev["format_valid_rate"],
                "imitation_rate": ev["imitation_rate"],
                "eval_loss": ev["eval_loss"],
                "method": spec["method"],
                "aggregation": spec["aggregation"],
            }
        )
    return pd.DataFrame.from_records(records)


def comparisons(table, rows_by_arm: dict, settings: dict):
    """Top against each random arm of its ranking and size: McNemar, margin, verdict.
    `settings["rankings"]` is the resolved list (common.smk's SELECTION_RANKINGS)."""
    import numpy as np
    import pandas as pd

    out = []
    for ranking in settings["rankings"]:
        prefix = f"{ranking['method']}-{ranking['aggregation']}/"
        for size in settings["sizes"]:
            k = size_text(size)
            top = f"{prefix}top-k{k}"
            if top not in rows_by_arm:
                continue
            random_prefix = "" if settings["random_overlap"] else prefix
            randoms = [f"{random_prefix}random-k{k}-s{s}" for s in range(settings["random_seeds"])]
            top_wins = rows_by_arm[top]["win"].astype(bool).to_numpy()
            tests = []
            for name in randoms:
                test = mcnemar_exact(top_wins, rows_by_arm[name]["win"].astype(bool).to_numpy())
                tests.append(test | {"random_arm": name, "wins": int(rows_by_arm[name]["win"].sum())})
            random_rates = [float(rows_by_arm[name]["win"].mean()) for name in randoms]
            out.append(
                {
                    "method": ranking["method"],
                    "aggregation": ranking["aggregation"],
                    "k": size,
                    "top_wins": int(top_wins.sum()),
                    "n_eval": len(top_wins),
                    "random_wins": [t["wins"] for t in tests],
                    "margin": float(top_wins.mean() - np.mean(random_rates)) if randoms else float("nan"),
                    "beats": sum(int(top_wins.sum()) > t["wins"] for t in tests),
                    "n_random": len(tests),
                    "p_values": [t["p_value"] for t in tests],
                    "verdict": verdict(int(top_wins.sum()), tests),
                }
            )
    return pd.DataFrame.from_records(out)


# --------------------------------------------------------------------------- report


def _pct(x) -> str:
    return "–" if x is None or x != x else f"{100 * x:.1f}%"


def selection_markdown(table, tests, game: str, role: str, split: dict, judged: bool) -> str:
    lines = [
        f"# Selection check: {game} / {role}",
        "",
        "Does training on the rows the attribution ranks highest win more games on held-out "
        "episodes than training on as many random rows? Each arm is one LoRA adapter trained "
        "from the base model with the attributed adapter's SFT settings and seed; arms of one "
        "size train the same number of steps. The eval rows are held out by group and never "
        "reach the query, the scores or the selection.",
        "",
        f"- Split unit: **{split.get('unit')}** (eval fraction {split.get('eval_fraction')}, "
        f"seed {split.get('seed')}): {split.get('query_rows')} query rows, "
        f"{split.get('eval_rows')} eval rows.",
    ]
    if split.get("query_outcomes"):
        lines.append(f"- The query uses only episodes with outcome {split['query_outcomes']}.")
    if not judged:
        lines += [
            "",
            f"**{game} / {role} has no game check here: the table reports the eval loss on "
            "trained tokens only, not games won.**",
        ]
    lines += ["", "## Verdicts", ""]
    if judged and len(tests):
        lines += [
            "| method | aggregation | k | top wins | random wins | margin | beats | McNemar p | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in tests.itertuples():
            lines.append(
                f"| {t.method} | {t.aggregation} | {size_text(t.k)} | {t.top_wins}/{t.n_eval} | "
                f"{', '.join(map(str, t.random_wins))} | {100 * t.margin:+.1f} pts | {t.beats}/{t.n_random} | "
                f"{', '.join(f'{p:.3g}' for p in t.p_values)} | {t.verdict} |"
            )
    else:
        lines.append("No games judged, so no verdict.")
    lines += [
        "",
        "Margin: top's win rate minus the random arms' mean. McNemar: exact, two-sided, on the "
        'paired eval rows, top against each random arm. "Beats every random arm" needs a '
        "larger win count than each and p < 0.05 against each.",
        "",
        "## Arms",
        "",
        "| arm | rows | steps | wins | win rate (95% Wilson) | format valid | imitation | eval loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        wins = "–" if r.wins is None or r.wins != r.wins else f"{int(r.wins)}/{r.n_eval}"
        interval = (
            "–" if r.ci_low != r.ci_low else f"{_pct(r.win_rate)} [{_pct(r.ci_low)}, {_pct(r.ci_high)}]"
        )
        lines.append(
            f"| {r.arm} | {r.n_rows} | {r.steps} | {wins} | {interval} | {_pct(r.format_valid_rate)} | "
            f"{_pct(r.imitation_rate)} | {r.eval_loss:.4f} |"
        )
    return "\n".join(lines) + "\n"


def plot_selection(table, path, title: str, judged: bool) -> None:
    """Win rate (or eval loss) per arm with 95% intervals, one panel per ranking, by size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from playpen_attribution.core.io import write_png

    value = "win_rate" if judged else "eval_loss"
    ranked = table[table["method"].notna()]
    panels = sorted({(m, a) for m, a in zip(ranked["method"], ranked["aggregation"])}) or [(None, None)]
    shared_random = table[(table["kind"] == "random") & table["method"].isna()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False, sharey=True)
    colours = {"top": "tab:green", "bottom": "tab:red", "random": "tab:grey"}
    sizes = sorted({k for k in table["k"].dropna()})
    for ax, (method, aggregation) in zip(axes[0], panels):
        part = table[(table["method"] == method) & (table["aggregation"] == aggregation)]
        part = part if method is not None else table.iloc[0:0]
        for offset, kind in ((-0.2, "top"), (0.0, "random"), (0.2, "bottom")):
            rows = part[part["kind"] == kind]
            if kind == "random":
                rows = rows if len(rows) else shared_random
            for i, size in enumerate(sizes):
                at = rows[rows["k"] == size]
                if at.empty:
                    continue
                x = np.full(len(at), i + offset) + np.linspace(-0.05, 0.05, len(at)) * (len(at) > 1)
                y = at[value].to_numpy(dtype=float)
                if judged:
                    err = np.vstack([y - at["ci_low"].to_numpy(float), at["ci_high"].to_numpy(float) - y])
                    ax.errorbar(
                        x,
                        y,
                        yerr=err,
                        fmt="o",
                        color=colours[kind],
                        capsize=3,
                        label=kind if i == 0 else None,
                    )
                else:
                    ax.plot(x, y, "o", color=colours[kind], label=kind if i == 0 else None)
        for kind, style in (("base", ":"), ("full", "--")):
            ref = table[table["kind"] == kind]
            if len(ref):
                ax.axhline(float(ref[value].iloc[0]), color="black", linestyle=style, label=kind)
        ax.set_xticks(range(len(sizes)), [f"k={size_text(s)}" for s in sizes])
        ax.set_title(f"{method} / {aggregation}" if method else "")
        ax.set_ylabel("eval win rate (95% Wilson)" if judged else "eval loss (trained tokens)")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    write_png(fig, path)


def write_selection_report(
    arm_names_,
    summary_paths,
    eval_summary_paths,
    eval_rows_paths,
    data_summary_path,
    settings,
    game,
    role,
    table_out,
    markdown_out,
    html_out,
    plot_out,
):
    """The selection rule: selection.parquet, .md, .html and .png from every arm's files.
    `settings["rankings"]` holds the rankings resolved at parse time."""
    import json
    from pathlib import Path

    import pandas as pd

    from playpen_attribution.core.io import write_parquet, write_text
    from playpen_attribution.core.render import markdown_html

    trains = {json.loads(Path(p).read_text())["arm"]: json.loads(Path(p).read_text()) for p in summary_paths}
    arms, rows_by_arm = [], {}
    for name, ev_path, rows_path in zip(arm_names_, eval_summary_paths, eval_rows_paths, strict=True):
        ev = json.loads(Path(ev_path).read_text())
        if ev["arm"] != name:
            raise WorkflowInputError(f"{ev_path} is the evaluation of {ev['arm']}, not of {name}")
        arms.append({"arm": name, "train": trains.get(name), "eval": ev})
        rows_by_arm[name] = pd.read_parquet(rows_path)
    ids = {name: rows["row_id"].tolist() for name, rows in rows_by_arm.items()}
    if len({tuple(v) for v in ids.values()}) != 1:
        raise WorkflowInputError("the arms were evaluated on different eval rows; rerun the evaluations")
    table = selection_table(arms)
    judged = bool(arms[0]["eval"]["games_judged"])
    tests = comparisons(table, rows_by_arm, settings) if judged else pd.DataFrame()
    if judged and len(tests):
        verdicts = {(t.method, t.aggregation, t.k): t.verdict for t in tests.itertuples()}
        table["verdict"] = [
            verdicts.get((r.method, r.aggregation, r.k)) if r.kind == "top" else None
            for r in table.itertuples()
        ]
    split = json.loads(Path(data_summary_path).read_text()).get("split", {})
    markdown = selection_markdown(table, tests, game, role, split, judged)
    write_parquet(table, table_out)
    write_text(markdown, markdown_out)
    write_text(markdown_html(markdown, f"Selection check: {game} / {role}"), html_out)
    plot_selection(table, plot_out, f"Selection check: {game} / {role} ({split.get('unit')} split)", judged)
    return table, tests
