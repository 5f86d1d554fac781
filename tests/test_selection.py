"""The held-out split, games won, the selection arms and their statistics, and the
selection.parquet target end to end on the tiny model."""

import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_snakemake, with_defaults
from test_counterfactual import _dry_run
from test_workflow import planned_jobs

from playpen_attribution.checks.selection import (
    arm_names,
    arm_rows,
    mcnemar_exact,
    n_rows,
    parse_arm,
    verdict,
    wilson_interval,
)
from playpen_attribution.data.split import split_validation
from playpen_attribution.words.games import judge, parse_guess, summarise

OUT = "results/demo/taboo/WordGuesser"


def _val_frame(n_instances=40, models=("m1", "m2"), words=8):
    rows = []
    for task in range(n_instances):
        for model in models:
            rows.append(
                {
                    "row_id": f"val-{len(rows):07d}",
                    "game": "taboo",
                    "experiment": "e1",
                    "task_id": task,
                    "model": model,
                    "outcome": "success" if (task + len(model)) % 3 else "failure",
                    "target_word": f"word{task % words}",
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("unit", "columns"),
    [
        ("instance", ["experiment", "task_id"]),
        ("episode", ["experiment", "task_id", "model"]),
        ("word", ["target_word"]),
    ],
)
def test_the_split_keeps_each_group_on_one_side_and_follows_the_seed(unit, columns):
    frame = _val_frame()
    query, held_out, summary = split_validation(frame, unit, 0.5, seed=1)
    assert not set(query["row_id"]) & set(held_out["row_id"])
    assert sorted(query["row_id"].tolist() + held_out["row_id"].tolist()) == sorted(frame["row_id"])
    groups = lambda f: set(map(tuple, f[columns].to_numpy().tolist()))  # noqa: E731
    assert not groups(query) & groups(held_out)
    again, held_again, _ = split_validation(frame, unit, 0.5, seed=1)
    assert again["row_id"].tolist() == query["row_id"].tolist()
    _, other_seed, _ = split_validation(frame, unit, 0.5, seed=2)
    assert set(other_seed["row_id"]) != set(held_out["row_id"])
    assert summary["query_rows"] + summary["eval_rows"] == len(frame) and summary["unit"] == unit


def test_both_player_views_of_an_episode_land_on_the_same_side():
    guesser = _val_frame()
    describer = guesser.assign(row_id=[f"d-{i}" for i in range(len(guesser))]).sample(
        frac=0.7, random_state=0
    )
    for unit in ("instance", "episode", "word"):
        _, g_eval, _ = split_validation(guesser, unit, 0.5, seed=3)
        _, d_eval, _ = split_validation(describer, unit, 0.5, seed=3)
        key = ["experiment", "task_id", "model"]
        g_keys = set(map(tuple, g_eval[key].to_numpy().tolist()))
        d_keys = set(map(tuple, d_eval[key].to_numpy().tolist()))
        assert d_keys <= g_keys  # every describer eval episode is a guesser eval episode
        d_all = set(map(tuple, describer[key].to_numpy().tolist()))
        assert g_keys & d_all == d_keys


def test_query_outcomes_filter_the_query_only():
    frame = _val_frame()
    query, held_out, summary = split_validation(frame, "instance", 0.5, seed=1, query_outcomes=["success"])
    assert set(query["outcome"]) == {"success"} and set(held_out["outcome"]) == {"success", "failure"}
    assert summary["query_rows_dropped_by_outcome"] > 0


def test_an_empty_side_fails_naming_the_setting():
    from playpen_attribution.core.errors import WorkflowInputError

    with pytest.raises(WorkflowInputError, match="split.eval_fraction"):
        split_validation(_val_frame(n_instances=1, models=("m",)), "instance", 0.5, seed=0)


@pytest.mark.parametrize(
    ("reply", "guess"),
    [
        ("GUESS: Winter.", "winter"),
        ("GUESS:winter", "winter"),
        ("  GUESS: snow-man!  ", "snowman"),
        ("guess: winter", None),  # clembench's prefix is upper case
        ("winter", None),  # no prefix
        ("", None),
        ("GUESS:", None),
        ("GUESS: winter\nGUESS: snow", None),  # two lines
    ],
)
def test_the_answer_parser_follows_the_taboo_rule(reply, guess):
    assert parse_guess(reply) == guess


def _eval_frame(n):
    return pd.DataFrame(
        {
            "row_id": [f"val-{i}" for i in range(n)],
            "completion": [f"GUESS: word{i}" for i in range(n)],
            "target_word": [f"word{i}" for i in range(n)],
        }
    )


@pytest.mark.parametrize("correct", ["all", "none", "half"])
def test_wins_are_counted_from_known_replies(correct):
    frame = _eval_frame(6)
    right = {"all": range(6), "none": [], "half": [0, 2, 4]}[correct]
    replies = [f"GUESS: WORD{i}." if i in right else f"GUESS: other{i}" for i in range(6)]
    replies[5] = replies[5] if 5 in right else "I think it is other"  # format-invalid
    rows = judge(replies, frame, "taboo", "WordGuesser")
    assert rows["win"].sum() == len(right)
    assert rows["win"].tolist() == [i in right for i in range(6)]
    assert rows["format_valid"].sum() == (6 if 5 in right else 5)
    assert not rows["imitation"].any()  # upper case and a full stop: not the recorded reply
    rows["eval_loss"] = 1.0
    summary = summarise(rows, "taboo", "WordGuesser")
    assert summary["wins"] == len(right) and summary["win_rate"] == pytest.approx(len(right) / 6)
    exact = judge(frame["completion"], frame, "taboo", "WordGuesser")
    assert exact["imitation"].all() and exact["win"].all()


def test_a_role_without_a_game_check_reports_the_loss_only():
    rows = judge(["CLUE: cold"] * 3, _eval_frame(3), "taboo", "WordDescriber")
    rows["eval_loss"] = [1.0, 2.0, 3.0]
    summary = summarise(rows, "taboo", "WordDescriber")
    assert summary["wins"] is None and summary["games_judged"] is False and summary["eval_loss"] == 2.0


ROW_IDS = [f"train-{i:07d}" for i in range(40)]


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"row_id": ROW_IDS, "mean": rng.normal(size=40), "nearest": rng.normal(size=40)}
    ).sample(frac=1, random_state=1)


def test_arm_names_follow_the_config():
    settings = {"sizes": [0.25, 10], "kinds": ["top", "random"], "random_seeds": 2, "random_overlap": False}
    names = arm_names(settings, "none", "nearest")
    assert names == [
        "base",
        "full",
        "none-nearest/top-k0.25",
        "none-nearest/random-k0.25-s0",
        "none-nearest/random-k0.25-s1",
        "none-nearest/top-k10",
        "none-nearest/random-k10-s0",
        "none-nearest/random-k10-s1",
    ]
    shared = arm_names(
        settings
        | {
            "random_overlap": True,
            "rankings": [
                {"method": "none", "aggregation": "mean"},
                {"method": "ekfac", "aggregation": "mean"},
            ],
        },
        "none",
        "nearest",
    )
    assert shared.count("random-k10-s1") == 1 and "ekfac-mean/top-k10" in shared
    assert parse_arm("ekfac-mean/random-k0.25-s3") | {} == {
        "arm": "ekfac-mean/random-k0.25-s3",
        "kind": "random",
        "size": 0.25,
        "seed": 3,
        "method": "ekfac",
        "aggregation": "mean",
    }
    # a method name with an underscore (trackstar_query) parses whole
    assert parse_arm("trackstar_query-rank_mean/top-k0.4")["method"] == "trackstar_query"
    for bad in ("top-k0.25-s1", "random-k0.25", "middle-k3"):
        with pytest.raises(ValueError):
            parse_arm(bad)


def test_arms_are_the_ranked_rows_and_reproducible_random_rows(scores):
    assert n_rows(0.25, 40) == 10 and n_rows(7, 40) == 7
    top = arm_rows("none-nearest/top-k0.25", ROW_IDS, scores)
    assert set(top) == set(scores.set_index("row_id")["nearest"].nlargest(10).index)
    bottom = arm_rows("none-mean/bottom-k0.25", ROW_IDS, scores)
    assert set(bottom) == set(scores.set_index("row_id")["mean"].nsmallest(10).index)
    random_arm = arm_rows("none-nearest/random-k0.25-s0", ROW_IDS, scores)
    assert len(random_arm) == 10 and not set(random_arm) & set(top)  # no overlap by default
    assert arm_rows("none-nearest/random-k0.25-s0", ROW_IDS, scores) == random_arm
    assert set(arm_rows("none-nearest/random-k0.25-s1", ROW_IDS, scores)) != set(random_arm)
    shared = arm_rows("random-k0.25-s0", ROW_IDS)  # overlap allowed: no ranking read
    assert len(shared) == 10 and set(shared) <= set(ROW_IDS)
    assert arm_rows("full", ROW_IDS) == ROW_IDS and arm_rows("base", ROW_IDS) == []


def test_random_arms_without_overlap_need_room(scores):
    from playpen_attribution.core.errors import WorkflowInputError

    with pytest.raises(WorkflowInputError, match="random_overlap"):
        arm_rows("none-nearest/random-k0.6-s0", ROW_IDS, scores)


def _wilson_by_hand(wins, n, z=1.959963984540054):
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize(("wins", "n"), [(0, 13), (4, 13), (62, 152), (13, 13)])
def test_the_wilson_interval_is_the_closed_form(wins, n):
    assert wilson_interval(wins, n) == pytest.approx(_wilson_by_hand(wins, n), abs=1e-12)


def test_the_exact_mcnemar_test_counts_the_discordant_pairs():
    a = [1] * 8 + [0] * 1 + [1] * 5 + [0] * 6
    b = [0] * 8 + [1] * 1 + [1] * 5 + [0] * 6
    result = mcnemar_exact(a, b)
    assert (result["a_only"], result["b_only"]) == (8, 1)
    assert result["p_value"] == pytest.approx(2 * (1 + 9) / 2**9)  # two-sided binomial, 9 pairs
    assert mcnemar_exact([1, 0], [1, 0])["p_value"] == 1.0


def test_the_verdict_says_inconclusive_unless_every_random_arm_is_beaten():
    strong = [{"wins": 2, "p_value": 0.01}, {"wins": 3, "p_value": 0.02}]
    assert verdict(10, strong).startswith("top beats every random arm (p ≤ 0.02)")
    assert verdict(1, [{"wins": 8, "p_value": 0.01}]).startswith("worse than random")
    mixed = [{"wins": 2, "p_value": 0.01}, {"wins": 9, "p_value": 0.5}]
    assert verdict(5, mixed).startswith("inconclusive: top wins more than 1 of 2")
    assert verdict(10, [{"wins": 2, "p_value": 0.2}]).startswith("inconclusive")


def _planned_arms(output, rule):
    blocks = re.findall(rf"^(?:local)?rule {rule}:\n((?:    .*\n)+)", output, re.M)
    return {m for block in blocks for m in re.findall(r"arm=([\w./-]+)", block)}


def test_selection_target_end_to_end(workflow_dir, tmp_path):
    """selection.parquet on a copy of the tiny run: base, full, top and one random arm."""
    work = tmp_path / "run"
    shutil.copytree(workflow_dir, work, symlinks=True)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["selection"] = {
        "sizes": [0.25],
        "kinds": ["top", "random"],
        "random_seeds": 1,
        "max_new_tokens": 4,
    }
    config["threads"] = 1
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    target = f"{OUT}/selection.parquet"
    run_snakemake("--cores", "2", f"--configfile={work / 'config.yaml'}", "-d", str(work), target)

    out = work / OUT
    table = pd.read_parquet(out / "selection.parquet")
    assert table["arm"].tolist() == ["base", "full", "none-nearest/top-k0.25", "none-nearest/random-k0.25-s0"]
    for column in (
        "k",
        "kind",
        "seed",
        "n_rows",
        "steps",
        "wins",
        "n_eval",
        "win_rate",
        "ci_low",
        "ci_high",
        "eval_loss",
        "method",
        "aggregation",
    ):
        assert column in table.columns
    held_out = pd.read_parquet(out / "data/eval.parquet")
    assert (table["n_eval"] == len(held_out)).all() and len(held_out) > 0
    pool = len(pd.read_parquet(out / "data/train.parquet"))
    sized = table[table["k"].notna()]
    assert (sized["n_rows"] == round(0.25 * pool)).all() and sized["steps"].nunique() == 1
    assert table.loc[table["arm"] == "base", "steps"].item() == 0
    assert table["eval_loss"].nunique() == 4  # four different models
    assert ((table["ci_low"] <= table["win_rate"]) & (table["win_rate"] <= table["ci_high"])).all()
    top = json.loads((out / "selection/none-nearest/top-k0.25/selected.json").read_text())["row_ids"]
    scores = pd.read_parquet(out / "attribution/none/scores.parquet")
    assert set(top) == set(scores.set_index("row_id")["nearest"].nlargest(len(top)).index)
    random_rows = json.loads((out / "selection/none-nearest/random-k0.25-s0/summary.json").read_text())
    assert not set(random_rows["trained_row_ids"]) & set(top)
    assert not (out / "selection/full/adapter").exists()  # temp() by default
    assert (out / "selection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "selection.md").read_text()
    assert "Split unit: **instance**" in text and "| none | nearest | 0.25 |" in text
    assert "Selection check" in (out / "selection.html").read_text()

    # report.k reruns no arm; a new random seed adds one arm and keeps the others.
    assert "Nothing to be done" in _dry_run(work, target, report={"k": 5})
    output = _dry_run(work, target, selection={"random_seeds": 2})
    assert set(planned_jobs(output)) == {"selection_arm", "train_arm", "evaluate_arm", "selection"}
    assert _planned_arms(output, "train_arm") == {"none-nearest/random-k0.25-s1"}
    # a new decoding length re-evaluates every arm; their adapters are temp(), so it retrains
    # them too, on the same rows (no selection_arm job)
    output = _dry_run(work, target, selection={"max_new_tokens": 5})
    assert set(planned_jobs(output)) == {"train_arm", "evaluate_arm", "selection"}
    assert planned_jobs(output)["evaluate_arm"] == 4


def test_eval_rows_reach_only_the_evaluations(workflow_dir):
    """Through Snakemake: which rules read the held-out rows, and that none of the query,
    the scores or a selection holds one of them."""
    proc = run_snakemake(
        "-n",
        "--forceall",
        f"--configfile={workflow_dir / 'config.yaml'}",
        "-d",
        str(workflow_dir),
        f"{OUT}/selection.parquet",
        f"{OUT}/counterfactual.parquet",
        f"{OUT}/attribution/planted.parquet",
        f"{OUT}/topk.parquet",
        f"{OUT}/generated/hardness.parquet",
    )
    output = proc.stdout + proc.stderr
    readers = {
        rule
        for rule, block in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", output, re.M)
        if re.search(r"data/eval\.parquet|tokens/eval", block.split("output:")[0])
    }
    # tokenize writes tokens/eval; report_planted only marks copies of held-out rows
    assert readers == {"tokenize", "evaluate_arm", "retrain", "report_planted"}

    from playpen_attribution.data.tokens import load_token_dataset

    out = workflow_dir / OUT
    held_out = set(pd.read_parquet(out / "data/eval.parquet")["row_id"])
    assert held_out and not held_out & set(load_token_dataset(out / "tokens/val")["row_id"])
    assert not held_out & set(load_token_dataset(out / "tokens/train")["row_id"])
    columns = json.loads((out / "attribution/none/matrix_ids.json").read_text())["columns"]
    assert not held_out & set(columns)
    assert set(columns) == set(pd.read_parquet(out / "data/val.parquet")["row_id"])


def test_the_demo_preset_plans_eleven_trainings(tmp_path):
    from conftest import REPO

    proc = run_snakemake(
        "-n", f"--configfile={REPO / 'config/demo.yaml'}", "-d", str(tmp_path), f"{OUT}/selection.parquet"
    )
    jobs = planned_jobs(proc.stdout)
    assert jobs["train_arm"] == 11 and jobs["evaluate_arm"] == 12 and jobs["train_lora"] == 1


def test_batched_greedy_replies_equal_one_at_a_time(tiny_gemma_dir, gemma_tokenizer, tmp_path):
    """Left padding must not change a greedy reply: batches of 3 against batches of 1, on
    prompts of different lengths rendered by the project's tokenization path."""
    from conftest import GUESSER_ROWS
    from transformers import AutoModelForCausalLM

    from playpen_attribution.data.tokens import load_token_dataset, save_token_dataset, tokenize_rows
    from playpen_attribution.words.games import greedy_replies, prompt_ids

    chats = GUESSER_ROWS[:2] + [
        [
            {"role": "user", "content": "HINT: a long clue about something white and cold that falls"},
            {"role": "assistant", "content": "GUESS: RAIN"},
            {"role": "user", "content": "Wrong. HINT: in winter"},
            {"role": "assistant", "content": "GUESS: SNOW"},
        ]
    ]
    rows = [{"row_id": f"val-{i}", "messages": m} for i, m in enumerate(chats)]
    token_rows, _ = tokenize_rows(rows, gemma_tokenizer, "completion", 256)
    save_token_dataset(token_rows, tmp_path / "eval")
    frame = pd.DataFrame({"row_id": [r["row_id"] for r in rows], "prompt": [m[:-1] for m in chats]})
    prompts = prompt_ids(gemma_tokenizer, frame, load_token_dataset(tmp_path / "eval"))
    assert len({len(p) for p in prompts}) == 3
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir)
    batched = greedy_replies(model, gemma_tokenizer, prompts, max_new_tokens=6, batch_size=3)
    single = greedy_replies(model, gemma_tokenizer, prompts, max_new_tokens=6, batch_size=1)
    assert batched == single and all(batched)


def test_the_steps_budget_is_that_of_sft_on_the_whole_pool():
    from playpen_attribution.checks.selection import pool_steps
    from playpen_attribution.sft.train import TrainSettings

    assert (
        pool_steps(111, with_defaults(TrainSettings, epochs=1, batch_size=4)) == 28
    )  # the demo's train_lora
    assert (
        pool_steps(111, with_defaults(TrainSettings, epochs=3, batch_size=8, gradient_accumulation_steps=2))
        == 21
    )
    assert pool_steps(111, with_defaults(TrainSettings, epochs=1, batch_size=4, max_steps=5)) == 5
