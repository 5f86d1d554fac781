"""Taboo through clemcore (issue 22): the rules checker, whole games with scripted players,
and the played episodes as a dataset that prepare_data reads."""

import json
from pathlib import Path

import pytest

from playpen_attribution.words.taboo import (
    TabooParseError,
    TabooRules,
    TabooRuleViolation,
    clue_prefix_for,
    related_text,
)

REFERENCE = Path("/work/shared/reference/playpen-sample/clembench/taboo/in/instances.json")


def winter(**kwargs):
    return TabooRules("winter", ["cold", "snow", "season"], **kwargs)


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    "clue",
    [
        "CLUE: The wintery months.",  # a part of the target (winter)
        "CLUE: Winters are dark",  # a morphological variant of the target
        "CLUE: It is very COLD then.",  # a related word, in capitals
        "CLUE: Snowing all day",  # a morphological variant of a related word
        "CLUE: a well-seasoned time",  # part of a hyphenated word
    ],
)
def test_a_clue_with_the_target_or_a_related_word_breaks_the_rule(clue):
    with pytest.raises(TabooRuleViolation):
        winter().check_clue(clue)


def test_a_clue_without_the_prefix_breaks_the_format_and_other_words_pass():
    rules = winter()
    with pytest.raises(TabooParseError):
        rules.check_clue("Time of year with frost.")
    with pytest.raises(TabooParseError):
        rules.check_clue("HINT: time of year with frost.")  # clembench's prefix is CLUE:
    with pytest.raises(TabooParseError):
        rules.check_clue("CLUE:   ")
    assert rules.check_clue("  CLUE: Time of year with frost and short days.") == (
        "Time of year with frost and short days."
    )
    # Stopwords are not compared; the demo's prompts ask for HINT:.
    assert winter(clue_prefix="HINT:").check_clue("HINT: the one after autumn") == "the one after autumn"


def test_clembench_stems_and_multiword_related_words():
    rules = TabooRules("independent", ["autarkical", "strong-minded", "separate"])
    assert rules.target_stem == "independ"
    assert rules.forbidden_in("free, on your own, independently") == "independently"
    assert rules.forbidden_in("a strong-minded person") == "strong-minded"
    assert rules.forbidden_in("someone who separates") == "separates"
    assert rules.forbidden_in("not relying on others") is None


def test_guesses_are_normalised_repeats_count_and_max_turns_end_the_game():
    rules = winter(max_turns=3)
    assert rules.check_guess("GUESS: Winter.") == "winter"
    assert rules.is_correct("winter")
    for bad in ["Winter", "GUESS:", "I guess: winter", "GUESS: winter\nbecause it is cold"]:
        with pytest.raises(TabooParseError):
            rules.check_guess(bad)
    assert rules.record_guess(rules.check_guess("GUESS: SUMMER")) == "running"
    assert rules.is_repeat(rules.check_guess("GUESS: summer!"))
    assert rules.record_guess("summer") == "running"  # a repeat is a wrong guess, not a violation
    assert rules.record_guess("autumn") == "failure"  # the third guess: max_turns


def test_clue_prefix_and_related_words_follow_the_template():
    assert clue_prefix_for("reply in the form: CLUE: <some text>.") == "CLUE:"
    assert clue_prefix_for("Answer only in the form HINT: <your hint>.") == "HINT:"
    assert clue_prefix_for("Answer only in the form HINT: <your hint>.", "CLUE:") == "CLUE:"
    assert related_text("Related words are:\n\n$REL_WORD$\n", ["a", "b"]) == "- a\n- b"
    assert related_text("of them): $REL_WORD$.", ["a", "b"]) == "a, b"


@pytest.mark.skipif(not REFERENCE.exists(), reason="clembench's instances are not on this machine")
def test_reads_clembench_instances_with_their_stems():
    data = json.loads(REFERENCE.read_text())
    for experiment in data["experiments"]:
        for instance in experiment["game_instances"]:
            rules = TabooRules.from_instance(instance, experiment)
            assert rules.clue_prefix == "CLUE:" and rules.max_turns == experiment["max_turns"]
            # clembench's listed stems are forbidden besides ours (fly: ours fli, theirs fly).
            assert instance["target_word_stem"] in rules.extra_stems | {rules.target_stem}
    assert (
        TabooRules.from_instance(
            {"target_word": "fly", "related_word": ["a", "b"], "target_word_stem": "fly"}, {}
        ).forbidden_in("they fly away")
        == "fly"
    )


# --------------------------------------------------------------------------- whole games


class Scripted:
    """A clemcore model that replies from a script (a programmatic player)."""

    def __new__(cls, name, replies):
        from playpen_attribution.words.play import import_clemcore

        import_clemcore()
        from clemcore import backends
        from clemcore.backends import ModelSpec

        class _Scripted(backends.Model):
            def generate_response(self, messages):
                reply = self.replies.pop(0)
                return {"messages": messages}, {"response": reply}, reply

        model = _Scripted(ModelSpec(model_name=name))
        model.replies = list(replies)
        model.set_gen_args(temperature=0.0, max_tokens=8)
        return model


def write_instances(path: Path, words) -> Path:
    from playpen_attribution.words.generate import PROJECT_TEMPLATES

    path.write_text(
        json.dumps(
            {
                "experiments": [
                    {
                        "name": "high_en",
                        "max_turns": 3,
                        "describer_initial_prompt": PROJECT_TEMPLATES["describer"],
                        "guesser_initial_prompt": PROJECT_TEMPLATES["guesser"],
                        "game_instances": [
                            {"game_id": i, "target_word": w, "related_word": r}
                            for i, (w, r) in enumerate(words)
                        ],
                    }
                ]
            }
        )
    )
    return path


def play_one(tmp_path, describer, guesser):
    from playpen_attribution.words import play

    instances = write_instances(tmp_path / "instances.json", [("winter", ["cold", "snow", "season"])])
    models = [Scripted("describer", describer), Scripted("guesser", guesser)]
    files = play.play_set(play.game_spec(), instances, models, tmp_path / "records")
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    scores = json.loads((files[0].parent / "scores.json").read_text())["episode scores"]
    return record, scores, play.episode_rows(files[0])


def test_a_scripted_game_won_on_turn_two(tmp_path):
    record, scores, rows = play_one(
        tmp_path, ["HINT: time of frost", "HINT: after autumn"], ["GUESS: summer", "GUESS: Winter."]
    )
    assert record["outcome"] == "success" and record["guesses"] == ["summer", "winter"]
    assert (scores["Success"], scores["Lose"], scores["Aborted"], scores["Main Score"]) == (1, 0, 0, 50.0)
    describer, guesser = rows
    assert [m["role"] for m in describer["messages"]] == ["user", "assistant", "user", "assistant"]
    assert describer["messages"][2]["content"] == "GUESS: summer"  # the guess, verbatim
    assert guesser["messages"][0]["content"].endswith("\n\nHINT: time of frost")
    assert guesser["messages"][-1]["content"] == "GUESS: Winter."
    assert {r["meta"]["outcome"] for r in rows} == {"success"}


def test_a_scripted_game_lost_after_max_turns(tmp_path):
    record, scores, rows = play_one(
        tmp_path,
        ["HINT: frost", "HINT: ice", "HINT: dark"],
        ["GUESS: summer", "GUESS: summer", "GUESS: autumn"],
    )
    assert record["outcome"] == "failure" and record["repeated guesses"] == 1
    assert (scores["Success"], scores["Lose"], scores["Main Score"], scores["Repetition-Guesser"]) == (
        0,
        1,
        0,
        1,
    )
    assert len(rows[1]["messages"]) == 6


def test_a_scripted_game_aborted_by_a_related_word(tmp_path):
    import math

    record, scores, rows = play_one(tmp_path, ["HINT: lots of snow"], [])
    assert record["outcome"] == "aborted" and scores["Aborted"] == 1 and math.isnan(scores["Main Score"])
    assert [r["meta"]["game_role"] for r in rows] == ["WordDescriber"]  # the guesser never played
    assert any(e["action"]["type"] == "invalid clue" for e in record["turns"][0])


def test_a_scripted_game_aborted_by_the_guess_format(tmp_path):
    record, scores, rows = play_one(tmp_path, ["HINT: frost"], ["I think it is winter"])
    assert record["outcome"] == "aborted" and scores["Violated Request Count"] == 1
    assert {r["meta"]["outcome"] for r in rows} == {"aborted"}


def test_played_episodes_pass_prepare_data(tmp_path):
    """episodes.jsonl as a dataset: both roles, outcomes kept, target words recovered."""
    from conftest import prepare_at_defaults

    from playpen_attribution.words import play

    instances = write_instances(
        tmp_path / "instances.json",
        [("winter", ["cold", "snow", "season"]), ("river", ["water", "flow", "stream"])],
    )
    models = [
        Scripted("describer", ["HINT: frost time", "HINT: a wide creek", "HINT: big", "HINT: wet"]),
        Scripted("guesser", ["GUESS: winter", "GUESS: lake", "GUESS: lake", "GUESS: sea"]),
    ]
    files = play.play_set(play.game_spec(), instances, models, tmp_path / "records")
    rows = [row for f in files for row in play.episode_rows(f)]
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for role in ("WordGuesser", "WordDescriber"):
        frames, _ = prepare_at_defaults(str(data), None, None, "taboo", role, drop_outcomes=[])
        frame = frames["train"]
        assert set(frame["game_role"]) == {role}
        assert dict(zip(frame["task_id"], frame["outcome"])) == {0: "success", 1: "failure"}
        assert dict(zip(frame["task_id"], frame["target_word"])) == {0: "winter", 1: "river"}


# --------------------------------------------------------------------------- the rule

OUT = "results/demo/taboo/WordGuesser"


def test_the_play_target_end_to_end_on_the_tiny_model(workflow_dir, tmp_path):
    """played/hardness.parquet on a copy of the tiny run, offline: clemcore's programmatic
    `mock` describes, the tiny WordGuesser adapter guesses (huggingface_local + PEFT from
    the rule's model_registry.json); one instance per set, 4 new tokens."""
    import shutil

    import pandas as pd
    import yaml
    from conftest import prepare_at_defaults, run_snakemake

    from playpen_attribution.words.play import read_episodes

    work = tmp_path / "run"
    shutil.copytree(workflow_dir, work, symlinks=True)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["play"] = {
        "players": {"describer": "mock", "guesser": "adapter"},
        "max_instances": 1,
        "max_new_tokens": 4,
    }
    config["threads"] = 1
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(
        "--cores",
        "2",
        f"--configfile={work / 'config.yaml'}",
        "-d",
        str(work),
        f"{OUT}/played/hardness.parquet",
    )

    played = work / OUT / "played"
    table = pd.read_parquet(played / "hardness.parquet")
    assert table["set"].tolist() == ["hard", "easy", "eval"] and table["episodes"].tolist() == [1, 1, 1]
    assert (table[["wins", "losses", "aborts"]].sum(axis=1) == 1).all()
    assert "inconclusive" in (played / "hardness.md").read_text()
    registry = json.loads((played / "model_registry.json").read_text())
    assert [e["model_name"] for e in registry] == ["WordGuesser-adapter"]
    assert registry[0]["model_config"]["peft_model"].endswith("WordGuesser/adapter")
    for name in ("hard", "easy", "eval"):
        assert list((played / name / "records").rglob("scores.json"))
        experiments = json.loads((played / name / "instances.json").read_text())["experiments"]
        assert all(e["name"].startswith(f"{name}_") for e in experiments)

    rows = read_episodes(played / "episodes.jsonl")
    assert {r["meta"]["game_role"] for r in rows} == {"WordDescriber", "WordGuesser"}
    assert {r["meta"]["model"] for r in rows} == {"mock--WordGuesser-adapter"}
    # The episodes file is a dataset that prepare_data reads unchanged.
    data = tmp_path / "played-data"
    data.mkdir()
    for split in ("train", "validation"):
        shutil.copy(played / "episodes.jsonl", data / f"{split}.jsonl")
    words = {
        e["experiment"]: e["word"] for e in pd.read_parquet(played / "outcomes.parquet").to_dict("records")
    }
    frames, _ = prepare_at_defaults(str(data), None, None, "taboo", "WordGuesser", drop_outcomes=[])
    assert dict(zip(frames["train"]["experiment"], frames["train"]["target_word"])) == words

    # The next round as data: a second results root trains on the dataset plus these
    # episodes (dataset.extra_files); prepare_data alone, on the tiny run's data.
    config["results"] = "results/round2"
    config["dataset"]["extra_files"] = [f"{OUT}/played/episodes.jsonl"]
    config["dataset"]["drop_outcomes"] = []  # the tiny guesser's episodes are all aborted
    (work / "round2.yaml").write_text(yaml.safe_dump(config))
    target = "results/round2/taboo/WordGuesser/data/train.parquet"
    run_snakemake("--cores", "1", f"--configfile={work / 'round2.yaml'}", "-d", str(work), target)
    train = pd.read_parquet(work / target)
    mine = train[train["source"] != "dataset"]
    assert mine["row_id"].str.startswith("extra0-").all() and len(mine) == 3
    assert set(mine["model"]) == {"mock--WordGuesser-adapter"} and set(mine["target_word"]) == set(
        words.values()
    )
    assert train.loc[train["source"] == "dataset", "row_id"].str.startswith("train-").all()


def test_played_episodes_join_the_next_rounds_training_rows(tmp_path, demo_dataset_dir):
    """dataset.extra_files: the dataset's row_ids are unchanged, the played rows follow
    with row_ids extra0-{index} and their source."""
    from conftest import prepare_at_defaults

    from playpen_attribution.words import play

    instances = write_instances(tmp_path / "instances.json", [("winter", ["cold", "snow", "season"])])
    models = [Scripted("describer", ["HINT: frost time"]), Scripted("guesser", ["GUESS: winter"])]
    files = play.play_set(play.game_spec(), instances, models, tmp_path / "records")
    episodes = tmp_path / "episodes.jsonl"
    episodes.write_text("".join(json.dumps(r) + "\n" for f in files for r in play.episode_rows(f)))

    before, _ = prepare_at_defaults(
        str(demo_dataset_dir), None, None, "taboo", "WordGuesser", drop_outcomes=["aborted"]
    )
    after, summary = prepare_at_defaults(
        str(demo_dataset_dir), None, None, "taboo", "WordGuesser", ["aborted"], extra_files=[str(episodes)]
    )
    n = len(before["train"])
    assert after["train"]["row_id"].tolist()[:n] == before["train"]["row_id"].tolist()
    extra = after["train"].iloc[n:]
    assert extra["row_id"].tolist() == ["extra0-0000001"]  # row 0 is the describer's view
    assert extra["source"].tolist() == [str(episodes)] and set(after["train"]["source"][:n]) == {"dataset"}
    assert extra["target_word"].tolist() == ["winter"] and extra["outcome"].tolist() == ["success"]
    assert after["val"].equals(before["val"]) and summary["splits"]["extra0"]["kept"] == 1


def test_the_played_statistics_equal_hand_computations():
    import pandas as pd
    from scipy.stats import binomtest, fisher_exact

    from playpen_attribution.words.play_report import hard_vs_easy, proxy_check, set_table

    episodes = pd.DataFrame(
        {
            "set": ["hard"] * 4 + ["easy"] * 4 + ["eval"] * 2,
            "word": list("abcdefghij"),
            "outcome": ["failure", "failure", "aborted", "success"]
            + ["success"] * 3
            + ["failure"]
            # eval
            + ["success", "aborted"],
        }
    )
    table = set_table(episodes).set_index("set")
    assert table.loc["hard", ["wins", "losses", "aborts"]].tolist() == [1, 2, 1]
    ci = binomtest(3, 4).proportion_ci(0.95, method="wilson")
    assert table.loc["easy", "win_ci_low"] == pytest.approx(ci.low)
    assert table.loc["easy", "win_ci_high"] == pytest.approx(ci.high)
    fisher = hard_vs_easy(table.reset_index())
    assert fisher["p"] == pytest.approx(fisher_exact([[1, 3], [3, 1]], alternative="less").pvalue)
    assert fisher["verdict"] == "inconclusive"
    # The proxy: eval words are looked up among the original words; a higher loss marks a
    # loss perfectly here (AUC 1).
    proxy = pd.DataFrame(
        {
            "set": ["hard"] * 4 + ["easy"] * 4 + ["original"] * 2,
            "word": list("abcdefghij"),
            "loss": [3.0, 3.5, 4.0, 1.0, 0.5, 0.6, 0.7, 2.0, 0.1, 5.0],
        }
    )
    scored, summary = proxy_check(episodes, proxy)
    assert scored["loss"].notna().all() and summary["auc"] == pytest.approx(1.0)
    assert summary["n_won"] == 5 and summary["n_not_won"] == 5 and summary["p"] < 0.05


def test_players_from_the_config():
    from playpen_attribution.core.errors import WorkflowInputError
    from playpen_attribution.words.play import player_models

    names, entries = player_models(
        {"describer": "adapter", "guesser": "base"}, "/m/base", "{{ chat }}", {"WordDescriber": "/a/desc"}
    )
    assert names == ["WordDescriber-adapter", "base"]
    by_name = {e["model_name"]: e for e in entries}
    assert by_name["WordDescriber-adapter"]["model_config"]["peft_model"] == "/a/desc"
    assert "peft_model" not in by_name["base"]["model_config"]
    assert {e["backend"] for e in entries} == {"huggingface_local"}
    assert {e["huggingface_id"] for e in entries} == {"/m/base"}
    assert by_name["base"]["model_config"]["custom_chat_template"] == "{{ chat }}"
    names, entries = player_models({"describer": "gpt-4o", "guesser": "mock"}, "/m/base", None, {})
    assert names == ["gpt-4o", "mock"] and entries == []  # clemcore's own registry names
    with pytest.raises(WorkflowInputError, match="WordGuesser adapter"):
        player_models({"describer": "base", "guesser": "adapter"}, "/m/base", None, {})
