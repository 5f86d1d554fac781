"""Counterfactual check: removal sets, the validation loss, a retrain on a subset, and the
counterfactual.parquet target end to end on the tiny model."""

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import run_snakemake, with_defaults
from test_workflow import planned_jobs

from playpen_attribution.checks.counterfactual import (
    REMOVAL_PATTERN,
    n_removed,
    parse_removal,
    per_row_losses,
    removal_names,
    removal_set,
    run_retrain,
)
from playpen_attribution.checks.counterfactual_report import counterfactual_markdown, counterfactual_table
from playpen_attribution.data.tokens import load_token_dataset
from playpen_attribution.sft.train import LoraSettings, TrainSettings

OUT = "results/demo/taboo/WordGuesser"
ROW_IDS = [f"train-{i:07d}" for i in range(40)]


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"row_id": ROW_IDS, "mean": rng.normal(size=40), "nearest": rng.normal(size=40)}
    ).sample(frac=1, random_state=1)  # not in row order


def test_removal_names_follow_the_config():
    settings = {"fractions": [0.1, 0.25], "directions": ["proponents"], "random_seeds": 2}
    assert removal_names(settings) == [
        "baseline",
        "proponents-f0.1",
        "random-f0.1-s0",
        "random-f0.1-s1",
        "proponents-f0.25",
        "random-f0.25-s0",
        "random-f0.25-s1",
    ]
    assert removal_names(settings | {"lds": {"subsets": 3, "fraction": 0.5}})[-1] == "lds-f0.5-s2"
    assert parse_removal("random-f0.25-s1") == {
        "removal": "random-f0.25-s1",
        "kind": "random",
        "fraction": 0.25,
        "seed": 1,
    }
    assert parse_removal("detractors-f0.1")["seed"] is None
    for bad in ("random-f0.1", "proponents-f0.1-s0", "everything", "baseline-f0.1"):
        assert not re.fullmatch(REMOVAL_PATTERN, bad)
        with pytest.raises(ValueError):
            parse_removal(bad)


def test_ranked_removals_are_the_top_and_bottom_scored_rows(scores):
    n = n_removed(0.2, 40)
    assert n == 8
    top = removal_set("proponents-f0.2", ROW_IDS, scores, "nearest")
    bottom = removal_set("detractors-f0.2", ROW_IDS, scores, "nearest")
    by_score = scores.set_index("row_id")["nearest"]
    assert len(top) == len(set(top)) == n and len(bottom) == n
    assert set(top) == set(by_score.nlargest(n).index)
    assert set(bottom) == set(by_score.nsmallest(n).index)
    assert min(by_score[top]) > max(by_score.drop(top))
    # the aggregation is what ranks them
    assert set(removal_set("proponents-f0.2", ROW_IDS, scores, "mean")) == set(
        scores.set_index("row_id")["mean"].nlargest(n).index
    )
    assert set(removal_set("proponents-f0.2", ROW_IDS, scores, "mean")) != set(top)
    assert removal_set("baseline", ROW_IDS) == []
    with pytest.raises(Exception, match="cover exactly"):
        removal_set("proponents-f0.2", ROW_IDS[:-1], scores, "nearest")


def test_random_removals_are_reproducible_and_differ_across_seeds():
    first = removal_set("random-f0.25-s0", ROW_IDS, base_seed=42)
    assert first == removal_set("random-f0.25-s0", list(reversed(ROW_IDS)), base_seed=42)
    assert len(first) == len(set(first)) == 10 and set(first) <= set(ROW_IDS)
    others = [removal_set(f"random-f0.25-s{s}", ROW_IDS, base_seed=42) for s in (1, 2)]
    assert all(set(other) != set(first) for other in others) and set(others[0]) != set(others[1])
    assert set(removal_set("lds-f0.25-s0", ROW_IDS, base_seed=42)) != set(first)
    assert set(removal_set("random-f0.25-s0", ROW_IDS, base_seed=7)) != set(first)


def test_a_fraction_that_removes_every_row_is_refused():
    assert n_removed(0.01, 40) == 1
    with pytest.raises(Exception, match="removes every row"):
        n_removed(0.99, 40)


def _independent_row_losses(model, tokens, reduction):
    """Full logits at every position, shifted labels, -100 ignored (not the module's code)."""
    out = []
    model.eval()
    with torch.no_grad():
        for row in tokens:
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1]
            target = torch.tensor(row["labels"])[1:]
            token_loss = torch.nn.functional.cross_entropy(
                logits, target, ignore_index=-100, reduction="none"
            )
            kept = target != -100
            total = token_loss[kept].sum().item()
            out.append(total / int(kept.sum()) if reduction == "mean" else total)
    return np.array(out)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_validation_loss_matches_an_independent_computation(tiny_gemma_dir, guesser_tokens, reduction):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir)
    val = load_token_dataset(guesser_tokens[0])
    ours = per_row_losses(model, val, reduction)
    assert ours == pytest.approx(_independent_row_losses(model, val, reduction), rel=1e-5)
    assert len(set(np.round(ours, 6))) > 1  # rows differ: not one number repeated


def test_a_retrain_trains_on_exactly_the_kept_rows(tiny_gemma_dir, guesser_tokens, tmp_path):
    train_dir, val_dir = guesser_tokens
    train = load_token_dataset(train_dir)
    removed = ["train-1", "train-4", "train-6"]
    removed_path = tmp_path / "removed.json"
    removed_path.write_text(
        json.dumps(
            {
                "removal": "random-f0.375-s0",
                "kind": "random",
                "fraction": 0.375,
                "seed": 0,
                "n_removed": 3,
                "removed_row_ids": removed,
            }
        )
    )
    out = tmp_path / "retrain"
    trainer = run_retrain(
        model_name_or_path=str(tiny_gemma_dir),
        revision=None,
        tokenizer_dir=tiny_gemma_dir,
        train_tokens_dir=train_dir,
        val_tokens_dir=val_dir,
        removed_path=removed_path,
        lora=with_defaults(LoraSettings, r=4, alpha=8, dropout=0.0),
        settings=with_defaults(TrainSettings, epochs=1, batch_size=2, max_steps=-1, max_length=256, seed=3),
        loss_reduction="mean",
        adapter_out=out / "adapter",
        metrics_out=out / "metrics.parquet",
        val_losses_out=out / "val_losses.parquet",
        summary_out=out / "summary.json",
    )
    # What the trainer's dataloader feeds it: the kept rows' ids, each once, nothing else.
    seen = []
    for batch in trainer.get_train_dataloader():
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist()):
            seen.append(tuple(i for i, m in zip(ids, mask) if m))
    kept_ids = [r for r in train["row_id"] if r not in removed]
    by_id = {row["row_id"]: tuple(row["input_ids"]) for row in train}
    assert sorted(seen) == sorted(by_id[r] for r in kept_ids)
    assert not {by_id[r] for r in removed} & set(seen)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trained_row_ids"] == kept_ids and summary["rows"] == 5
    assert summary["budget"] == "epochs" and summary["steps"] == 3  # one epoch of 5 rows, 2 per step
    val_losses = pd.read_parquet(out / "val_losses.parquet")
    assert summary["val_loss"] == pytest.approx(val_losses["loss"].mean())
    assert (out / "adapter/adapter_model.safetensors").exists()


def _table(deltas):
    removals, summaries = [], []
    for name, delta in deltas.items():
        spec = parse_removal(name)
        removals.append(spec | {"n_removed": 0 if name == "baseline" else 4, "removed_row_ids": []})
        summaries.append(spec | {"n_removed": removals[-1]["n_removed"], "rows": 36, "steps": 9})
        summaries[-1] |= {"budget": "epochs", "val_loss": 2.0 + delta}
    return counterfactual_table(removals, summaries, None)


def test_the_summary_says_which_way_it_went():
    randoms = {"random-f0.1-s0": 0.01, "random-f0.1-s1": 0.03, "random-f0.1-s2": -0.01}
    good = _table({"baseline": 0, "proponents-f0.1": 0.05, "detractors-f0.1": -0.02} | randoms)
    assert good["delta"].tolist() == pytest.approx([0, 0.05, -0.02, 0.01, 0.03, -0.01])
    text = counterfactual_markdown(good, "taboo", "WordGuesser", "none", "nearest")
    assert "more than every random removal, by 0.0200" in text
    assert "**lowered** the validation loss, below every random removal" in text
    assert "spread 0.0400" in text
    assert not re.search(r"p\s*[=<]", text)
    bad = _table({"baseline": 0, "proponents-f0.1": 0.02, "detractors-f0.1": 0.02} | randoms)
    text = counterfactual_markdown(bad, "taboo", "WordGuesser", "none", "nearest")
    assert "**not** more than every random removal: 1 of 3" in text
    assert "**not** less than every random removal" in text
    assert "also holds the effect of the shorter training" not in text  # all ran 9 steps
    mixed = _table({"baseline": 0, "detractors-f0.1": -0.02, "random-f0.1-s0": -0.03})
    mixed.loc[1:, "steps"] = 8
    text = counterfactual_markdown(mixed, "taboo", "WordGuesser", "none", "nearest")
    assert "but a random removal lowered it at least as much (-0.0300)" in text
    assert "also holds the effect of the shorter training" in text


def _removal(name, removed, val_loss):
    spec = parse_removal(name)
    removal = spec | {"n_removed": len(removed), "removed_row_ids": removed}
    summary = spec | {"n_removed": len(removed), "rows": 40 - len(removed), "steps": 9, "budget": "epochs"}
    return removal, summary | {"val_loss": val_loss}


def test_score_sum_is_the_sum_of_the_removed_rows_mean_scores(scores):
    removed = {
        "baseline": [],
        "proponents-f0.1": ["train-0000007", "train-0000000", "train-0000031", "train-0000012"],
        "lds-f0.1-s0": ["train-0000039", "train-0000002", "train-0000018", "train-0000025"],
    }
    removals, summaries = zip(*(_removal(name, ids, 2.0) for name, ids in removed.items()))
    table = counterfactual_table(list(removals), list(summaries), scores).set_index("removal")
    by_id = dict(zip(scores["row_id"], scores["mean"]))  # scores are shuffled: look up by id
    for name, ids in removed.items():
        hand = 0.0
        for row_id in ids:
            hand += by_id[row_id]
        assert table.at[name, "score_sum"] == pytest.approx(hand, rel=1e-12), name
    assert table.at["proponents-f0.1", "score_sum"] != pytest.approx(table.at["lds-f0.1-s0", "score_sum"])
    assert counterfactual_table(list(removals), list(summaries), None)["score_sum"].isna().all()


def test_a_removed_row_without_a_score_is_an_error(scores):
    from playpen_attribution.core.errors import WorkflowInputError

    base = _removal("baseline", [], 2.0)
    ranked = _removal("proponents-f0.1", ["train-0000003", "train-9999999", "val-0000001"], 2.1)
    with pytest.raises(
        WorkflowInputError, match=r"proponents-f0.1: 2 removed rows .*\['train-9999999', 'val-0000001'\]"
    ):
        counterfactual_table([base[0], ranked[0]], [base[1], ranked[1]], scores)


# Random removals' deltas: +0.01, +0.03, +0.05. A ranked removal that ties one of them
# (+0.03) must count it: "at least as much" / "at most as much".
RANDOMS = {"random-f0.1-s0": 0.01, "random-f0.1-s1": 0.03, "random-f0.1-s2": 0.05}


@pytest.mark.parametrize(
    ("kind", "delta", "randoms", "verdict"),
    [
        (
            "proponents",
            0.06,
            RANDOMS,
            "That is more than every random removal, by 0.0100 over the largest random rise (+0.0500).",
        ),
        (
            "proponents",
            0.03,
            RANDOMS,
            "That is **not** more than every random removal: 2 of 3 random removals raised it at least as much (largest +0.0500).",
        ),
        (
            "detractors",
            -0.01,
            RANDOMS,
            "Removing them **lowered** the validation loss, below every random removal.",
        ),
        (
            "detractors",
            -0.01,
            RANDOMS | {"random-f0.1-s0": -0.02},
            "Removing them **lowered** the validation loss, but a random removal lowered it at least as much (-0.0200).",
        ),
        (
            "detractors",
            0.005,
            RANDOMS,
            "It rose less than after every random removal (smallest random change +0.0100).",
        ),
        (
            "detractors",
            0.03,
            RANDOMS,
            "That is **not** less than every random removal: 2 of 3 random removals changed it by at most as much (smallest +0.0100).",
        ),
        ("detractors", 0.03, {}, ""),
    ],
    ids=[
        "above all",
        "tied",
        "lowered most",
        "lowered not most",
        "rose least",
        "rose not least",
        "no random",
    ],
)
def test_each_verdict_of_a_ranked_removal(kind, delta, randoms, verdict):
    table = _table({"baseline": 0, f"{kind}-f0.1": delta} | randoms)
    lines = counterfactual_markdown(table, "taboo", "WordGuesser", "none", "nearest").splitlines()
    (line,) = [line for line in lines if line.startswith(f"- **Removing the {kind}**")]
    rel = 100 * delta / 2.0
    assert (
        line
        == f"- **Removing the {kind}** changed the validation loss by {delta:+.4f} ({rel:+.2f}%). {verdict}"
    )
    assert any(line.startswith("- No random removals were run") for line in lines) == (not randoms)


def test_the_lds_is_the_rank_correlation_of_score_sums_and_loss_changes():
    from playpen_attribution.checks.counterfactual_report import lds

    deltas = {"baseline": 0} | {f"lds-f0.5-s{i}": d for i, d in enumerate([0.1, 0.3, 0.2, 0.05])}
    table = _table(deltas)
    table.loc[table["kind"] == "lds", "score_sum"] = [1.0, 3.0, 2.5, -1.0]
    assert lds(table) == pytest.approx(1.0)
    table.loc[table["kind"] == "lds", "score_sum"] = [1.0, -3.0, 2.5, 4.0]
    assert lds(table) == pytest.approx(-0.8)  # ranks 2 4 3 1 vs 2 1 3 4
    assert "Spearman correlation" in counterfactual_markdown(table, "taboo", "WordGuesser", "none", "nearest")
    assert lds(table.iloc[:3]) is None  # two subsets: no correlation


def _dry_run(work, target, **changes):
    config = yaml.safe_load((work / "config.yaml").read_text())
    for section, values in changes.items():
        config[section].update(values)
    changed = work / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    proc = run_snakemake("-n", f"--configfile={changed}", "-d", str(work), target)
    return proc.stdout + proc.stderr


def _planned_removals(output, rule):
    blocks = re.findall(rf"^(?:local)?rule {rule}:\n((?:    .*\n)+)", output, re.M)
    return {m for block in blocks for m in re.findall(r"removal=([\w.-]+)", block)}


def test_counterfactual_target_end_to_end(workflow_dir, tmp_path):
    """counterfactual.parquet on a copy of the tiny run: 3 retrains of 2 steps, two at a
    time (threads: 1 changes no output). Several random seeds: the unit tests above."""
    work = tmp_path / "run"
    shutil.copytree(workflow_dir, work, symlinks=True)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["counterfactual"] = {"fractions": [0.5], "directions": ["proponents"], "random_seeds": 1}
    config["threads"] = 1
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    target = f"{OUT}/counterfactual.parquet"
    run_snakemake("--cores", "2", f"--configfile={work / 'config.yaml'}", "-d", str(work), target)

    out = work / OUT
    table = pd.read_parquet(out / "counterfactual.parquet")
    assert table["removal"].tolist() == ["baseline", "proponents-f0.5", "random-f0.5-s0"]
    n_rows = int(table.loc[0, "n_train_rows"])
    assert table["n_removed"].tolist() == [0] + [round(0.5 * n_rows)] * 2
    assert (table["n_train_rows"] + table["n_removed"] == n_rows).all()
    assert (table["steps"] == 2).all() and (table["budget"] == "steps").all()  # tiny config: max_steps 2
    assert table["delta"].tolist() == pytest.approx((table["val_loss"] - table.loc[0, "val_loss"]).tolist())
    assert table["val_loss"].nunique() == 3  # three different retrains, not one copied
    # The rules pass the retrain train_lora's settings: the baseline retraces its curve.
    baseline_losses = _train_losses(out / "counterfactual/baseline/metrics.parquet")
    assert len(baseline_losses) == 2 and baseline_losses == _train_losses(out / "sft/metrics.parquet")

    scores = pd.read_parquet(out / "attribution/none/scores.parquet")
    mean_by_id = dict(zip(scores["row_id"], scores["mean"]))
    for removal, score_sum in zip(table["removal"], table["score_sum"]):
        removed = json.loads((out / f"counterfactual/{removal}/removed.json").read_text())["removed_row_ids"]
        assert score_sum == pytest.approx(sum(mean_by_id[r] for r in removed), rel=1e-9, abs=1e-12)
        trained = json.loads((out / f"counterfactual/{removal}/summary.json").read_text())["trained_row_ids"]
        assert not set(removed) & set(trained) and sorted(set(removed) | set(trained)) == sorted(
            scores["row_id"]
        )
        assert not (out / f"counterfactual/{removal}/adapter").exists()  # temp() by default
    top = json.loads((out / "counterfactual/proponents-f0.5/removed.json").read_text())["removed_row_ids"]
    assert set(top) == set(scores.set_index("row_id")["nearest"].nlargest(len(top)).index)
    assert (out / "counterfactual.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Removing the proponents" in (out / "counterfactual.md").read_text()
    assert "Removing the proponents" in (out / "counterfactual.html").read_text()  # for --report

    # report.k changes no removal and no retrain; report.aggregation reranks the ranked ones only.
    assert "Nothing to be done" in _dry_run(work, target, report={"k": 5})
    output = _dry_run(work, target, report={"aggregation": "mean"})
    assert set(planned_jobs(output)) == {"counterfactual_removal", "retrain", "counterfactual"}
    assert _planned_removals(output, "retrain") == {"proponents-f0.5"}
    # Another method's scores (the test config runs none and kfac) rerank the ranked ones only.
    output = _dry_run(work, target, counterfactual={"method": "kfac"})
    assert _planned_removals(output, "counterfactual_removal") == {"proponents-f0.5"}
    assert "attribution/kfac/scores.parquet" in output

    # Code edits (no rule of the tiny run runs these modules, test_workflow_e2e): the
    # removal and retrain code reruns every removal and retrain, then the table; the
    # report code only the table.
    from test_workflow_e2e import code_change_summary, copy_code, edit_module

    for module, changed, planned in (
        (
            "checks/counterfactual.py",
            {"counterfactual_removal", "retrain"},
            {"counterfactual_removal", "retrain"},
        ),
        ("checks/counterfactual_report.py", {"counterfactual"}, set()),
    ):
        code = copy_code(tmp_path / f"code-{module.replace('/', '-')}")
        edit_module(code, module)
        assert code_change_summary(work, code, [target]) == (changed, planned | {"counterfactual"})


@pytest.mark.parametrize(
    ("section", "messages"),
    [
        (
            {"fractions": [1.0], "directions": ["top"], "lds": {"subsets": 10}},
            [
                "counterfactual.fractions.0: 1.0 is greater than or equal to the maximum of 1",
                "counterfactual.directions.0: 'top' is not one of",
                "counterfactual.lds: 'fraction' is a required property",
            ],
        ),
        ({"method": "kfac"}, ["counterfactual.method: 'kfac' is not in attribution.methods"]),
    ],
)
def test_a_bad_counterfactual_config_fails_at_parse_time(tmp_path, section, messages):
    from conftest import REPO

    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["counterfactual"] = section
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = run_snakemake("-n", f"--configfile={path}", "-d", str(tmp_path), check=False)
    assert proc.returncode != 0
    for message in messages:
        assert message in proc.stdout + proc.stderr


def test_the_demo_preset_plans_one_baseline_and_five_removals(tmp_path):
    from conftest import REPO

    proc = run_snakemake(
        "-n",
        f"--configfile={REPO / 'config/demo.yaml'}",
        "-d",
        str(tmp_path),
        "results/demo/taboo/WordGuesser/counterfactual.parquet",
    )
    jobs = planned_jobs(proc.stdout)
    assert jobs["retrain"] == jobs["counterfactual_removal"] == 6 and jobs["train_lora"] == 1
    assert _planned_removals(proc.stdout, "retrain") == {
        "baseline",
        "proponents-f0.1",
        "detractors-f0.1",
        "random-f0.1-s0",
        "random-f0.1-s1",
        "random-f0.1-s2",
    }


def _train_losses(metrics_path) -> list[float]:
    metrics = pd.read_parquet(metrics_path)
    return metrics.loc[metrics["split"] == "train", "loss"].tolist()


def _baseline_retrain(tiny_gemma_dir, guesser_tokens, lora, settings, out):
    removed_path = out / "removed.json"
    out.mkdir(parents=True)
    removed_path.write_text(json.dumps(parse_removal("baseline") | {"n_removed": 0, "removed_row_ids": []}))
    run_retrain(
        model_name_or_path=str(tiny_gemma_dir),
        revision=None,
        tokenizer_dir=tiny_gemma_dir,
        train_tokens_dir=guesser_tokens[0],
        val_tokens_dir=guesser_tokens[1],
        removed_path=removed_path,
        lora=lora,
        settings=settings,
        loss_reduction="mean",
        adapter_out=out / "adapter",
        metrics_out=out / "metrics.parquet",
        val_losses_out=out / "val_losses.parquet",
        summary_out=out / "summary.json",
    )
    return _train_losses(out / "metrics.parquet")


def test_the_baseline_retrain_reproduces_train_lora_step_for_step(tiny_gemma_dir, guesser_tokens, tmp_path):
    """run_retrain claims exactly the attributed adapter's SFT settings and seed: its
    baseline (nothing removed) must then retrace train_lora's loss curve step for step,
    although train_lora evaluates during training (eval_on_start) and the retrain does
    not. Dropout > 0 and 4 shuffled batches of 2: the losses depend on the RNG stream
    (LoRA init, batch order, dropout masks), so a retrain that drew from it differently
    would show. Power control: the same retrain with another seed gives another curve."""
    from playpen_attribution.sft.train import run_training

    lora = with_defaults(LoraSettings, r=4, alpha=8, dropout=0.1)
    settings = with_defaults(
        TrainSettings, epochs=1, batch_size=2, max_steps=4, learning_rate=1e-2, max_length=256, seed=5
    )
    sft = tmp_path / "sft"
    run_training(
        model_name_or_path=str(tiny_gemma_dir),
        revision=None,
        tokenizer_dir=tiny_gemma_dir,
        train_tokens_dir=guesser_tokens[0],
        val_tokens_dir=guesser_tokens[1],
        lora=lora,
        settings=settings,
        adapter_out=sft / "adapter",
        metrics_out=sft / "metrics.parquet",
        plot_out=sft / "loss.png",
        summary_out=sft / "summary.json",
        title="t",
    )
    sft_losses = _train_losses(sft / "metrics.parquet")
    assert len(sft_losses) == 4
    baseline = _baseline_retrain(tiny_gemma_dir, guesser_tokens, lora, settings, tmp_path / "baseline")
    # Same process, same kernels, same order of operations: equal to the last bit.
    assert baseline == sft_losses
    other_seed = _baseline_retrain(
        tiny_gemma_dir, guesser_tokens, lora, replace(settings, seed=6), tmp_path / "other-seed"
    )
    assert len(other_seed) == 4 and other_seed != sft_losses
