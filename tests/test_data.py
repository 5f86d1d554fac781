"""Data stage: filtering, prompt/completion split, target-word join, and bad input."""

import pandas as pd
import pytest
from conftest import REFERENCE, chat, make_row, write_jsonl

from playpen_attribution.data import (
    hub_features,
    load_splits,
    prepare,
    prepare_to_files,
    split_conversation,
)
from playpen_attribution.errors import WorkflowInputError

DESCRIBER_PROMPT = "Rules...\n\nThis is the target word that you need to describe and that the other player needs to guess:\n\n{word}\n\nRelated words are: ..."


def taboo_pair(word, task_id, outcome="success", experiment="high_en", model="m1"):
    describer = make_row(
        "taboo",
        "WordDescriber",
        outcome,
        chat(DESCRIBER_PROMPT.format(word=word), "CLUE: a hint"),
        experiment=experiment,
        task_id=task_id,
        model=model,
    )
    guesser = make_row(
        "taboo",
        "WordGuesser",
        outcome,
        chat("Guess!\n\nCLUE: a hint", f"GUESS: {word.upper()}"),
        experiment=experiment,
        task_id=task_id,
        model=model,
    )
    return [describer, guesser]


@pytest.fixture
def small_dataset(tmp_path):
    train = (
        taboo_pair("winter", 0)
        + taboo_pair("rifle", 1, outcome="failure")
        + taboo_pair("ugly", 2, outcome="aborted")
        + taboo_pair("feather", 0, model="m2")  # same task_id, other model: other word
        + [
            make_row("taboo", "WordGuesser", "success", chat("a", "GUESS: X", "b", "GUESS: X"), task_id=7),
            make_row("taboo", "WordGuesser", "success", [{"role": "user", "content": "no reply"}], task_id=8),
            make_row("wordle", "Guesser", "success", chat("w", "GUESS: crane")),
        ]
    )
    val = taboo_pair("winter", 0) + taboo_pair("plinth", 3, outcome="failure")
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "validation.jsonl", val)
    return tmp_path


def test_filters_game_role_and_drops_aborted(small_dataset):
    frames, summary = prepare(str(small_dataset), None, None, "taboo", "WordGuesser", ["aborted"])
    train = frames["train"]
    assert set(train["game"]) == {"taboo"} and set(train["game_role"]) == {"WordGuesser"}
    assert "aborted" not in set(train["outcome"])
    s = summary["splits"]["train"]
    assert s["rows_read"] == 11
    assert s["rows_for_game_role"] == 6
    assert s["dropped_outcome"] == {"aborted": 1}
    assert s["dropped_no_assistant_turn"] == 1
    assert s["kept"] == len(train) == 4


def test_prompt_completion_split_keeps_chat_messages(small_dataset):
    frames, _ = prepare(str(small_dataset), None, None, "taboo", "WordGuesser", ["aborted"])
    multi = frames["train"].set_index("task_id").loc[7]
    assert list(multi["prompt"]) == chat("a", "GUESS: X", "b")
    assert multi["completion"] == "GUESS: X"
    assert multi["n_turns"] == 2
    assert [m["content"] for m in multi["messages"]] == ["a", "GUESS: X", "b", "GUESS: X"]


def test_split_conversation_uses_last_assistant_turn():
    prompt, completion = split_conversation(chat("u1", "a1", "u2", "a2"))
    assert [m["content"] for m in prompt] == ["u1", "a1", "u2"]
    assert completion["content"] == "a2"
    assert split_conversation([{"role": "user", "content": "u"}]) is None


def test_guesser_target_word_join(small_dataset):
    frames, summary = prepare(str(small_dataset), None, None, "taboo", "WordGuesser", ["aborted"])
    train = frames["train"].set_index(["task_id", "model"])
    assert train.loc[(0, "m1"), "target_word"] == "winter"
    assert train.loc[(0, "m2"), "target_word"] == "feather"
    assert train.loc[(1, "m1"), "target_word"] == "rifle"
    assert pd.isna(train.loc[(7, "m"), "target_word"])  # no describer row: null, counted
    assert summary["splits"]["train"]["target_word_missing"] == 1
    val = frames["val"].set_index("task_id")
    assert val.loc[3, "target_word"] == "plinth"


def test_describer_rows_get_their_own_word(small_dataset):
    frames, _ = prepare(str(small_dataset), None, None, "taboo", "WordDescriber", [])
    assert sorted(frames["train"]["target_word"]) == ["feather", "rifle", "ugly", "winter"]


def test_row_ids_stable_across_runs(small_dataset, tmp_path):
    outputs = []
    for run in range(2):
        paths = {k: tmp_path / f"run{run}" / f"{k}.out" for k in ("train", "val", "summary")}
        prepare_to_files(
            train_path=paths["train"],
            val_path=paths["val"],
            summary_path=paths["summary"],
            dataset_path=str(small_dataset),
            dataset_name=None,
            dataset_revision=None,
            game="taboo",
            role="WordGuesser",
            drop_outcomes=["aborted"],
        )
        outputs.append(pd.read_parquet(paths["train"]))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
    ids = outputs[0]["row_id"]
    assert ids.is_unique
    # split + index in the source split: the first guesser row is source row 1
    assert ids.iloc[0] == "train-0000001"


def test_unknown_game_role_lists_available_pairs(small_dataset):
    with pytest.raises(WorkflowInputError) as err:
        prepare(str(small_dataset), None, None, "taboo", "Referee", ["aborted"])
    message = str(err.value)
    assert "'Referee'" in message
    assert "taboo / WordGuesser: 6 rows" in message
    assert "wordle / Guesser: 1 rows" in message


def test_missing_column_is_named(tmp_path):
    rows = [{"messages": chat("u", "a")}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", rows)
    with pytest.raises(WorkflowInputError, match="no column 'meta'"):
        prepare(str(tmp_path), None, None, "taboo", "WordGuesser", [])


def test_missing_meta_field_is_named(tmp_path):
    row = make_row("taboo", "WordGuesser", "success", chat("u", "a"))
    del row["meta"]["outcome"]
    write_jsonl(tmp_path / "train.jsonl", [row])
    write_jsonl(tmp_path / "validation.jsonl", [row])
    with pytest.raises(WorkflowInputError, match="meta has no field 'outcome'"):
        prepare(str(tmp_path), None, None, "taboo", "WordGuesser", [])


def test_split_empty_after_filtering_names_game_role_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", taboo_pair("winter", 0))
    write_jsonl(tmp_path / "validation.jsonl", taboo_pair("winter", 0, outcome="aborted"))
    with pytest.raises(WorkflowInputError) as err:
        prepare(str(tmp_path), None, None, "taboo", "WordGuesser", ["aborted"])
    assert "split 'val' is empty" in str(err.value)
    assert "'taboo'" in str(err.value) and "'WordGuesser'" in str(err.value)


def test_failed_prepare_writes_nothing(tmp_path):
    write_jsonl(tmp_path / "d" / "train.jsonl", taboo_pair("winter", 0))
    write_jsonl(tmp_path / "d" / "validation.jsonl", taboo_pair("winter", 0, outcome="aborted"))
    out = tmp_path / "out"
    with pytest.raises(WorkflowInputError):
        prepare_to_files(
            train_path=out / "train.parquet",
            val_path=out / "val.parquet",
            summary_path=out / "summary.json",
            dataset_path=str(tmp_path / "d"),
            dataset_name=None,
            dataset_revision=None,
            game="taboo",
            role="WordGuesser",
            drop_outcomes=["aborted"],
        )
    assert not out.exists() or not any(out.iterdir())


def test_unreachable_hub_gives_short_actionable_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(WorkflowInputError) as err:
        load_splits("no-such-org/no-such-dataset-xyz", "interactions", None)
    message = str(err.value)
    assert "dataset.path" in message and "config/demo.yaml" in message
    assert "Traceback" not in message and len(message.splitlines()) <= 4


def test_missing_local_path_is_an_error():
    with pytest.raises(WorkflowInputError, match="does not exist"):
        load_splits("./no/such/dir", None, None)


def test_save_to_disk_and_parquet_directories_load(small_dataset, tmp_path):
    splits = load_splits(str(small_dataset))
    disk = tmp_path / "disk"
    import datasets

    datasets.DatasetDict(splits).save_to_disk(str(disk))
    pq = tmp_path / "pq"
    pq.mkdir()
    for name, ds in splits.items():
        ds.to_parquet(str(pq / f"{name}.parquet"))
    reference = prepare(str(small_dataset), None, None, "taboo", "WordGuesser", ["aborted"])[0]
    for path in (disk, pq):
        frames = prepare(str(path), None, None, "taboo", "WordGuesser", ["aborted"])[0]
        assert frames["train"]["row_id"].tolist() == reference["train"]["row_id"].tolist()
        assert frames["train"]["completion"].tolist() == reference["train"]["completion"].tolist()


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared reference sample not present")
def test_real_reference_sample_parses():
    """The real hub rows (read in place, never copied) go through the same code."""
    import datasets

    ref = datasets.load_dataset("json", data_files=str(REFERENCE / "taboo_hub_schema_sample.jsonl"))["train"]
    assert ref.features == hub_features()
    from playpen_attribution.data import prepare_split

    records, summary = prepare_split("train", ref, "taboo", "WordGuesser", ["aborted"])
    assert summary["dropped_outcome"] == {"aborted": 1}
    words = {r["task_id"]: r["target_word"] for r in records}
    assert words[0] == "winter" and words[3] == "feather"
