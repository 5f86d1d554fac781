"""Data stage: filtering, prompt/completion split, target-word join, and bad input."""

import pandas as pd
import pytest
from conftest import DATASET_OPTIONS, REFERENCE, chat, make_row, prepare_at_defaults, write_jsonl

from playpen_attribution.core.errors import WorkflowInputError
from playpen_attribution.data.prepare import (
    hub_features,
    load_splits,
    prepare_to_files,
    split_conversation,
)

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
    frames, summary = prepare_at_defaults(str(small_dataset), None, None, "taboo", "WordGuesser", ["aborted"])
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
    frames, _ = prepare_at_defaults(str(small_dataset), None, None, "taboo", "WordGuesser", ["aborted"])
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
    frames, summary = prepare_at_defaults(str(small_dataset), None, None, "taboo", "WordGuesser", ["aborted"])
    train = frames["train"].set_index(["task_id", "model"])
    assert train.loc[(0, "m1"), "target_word"] == "winter"
    assert train.loc[(0, "m2"), "target_word"] == "feather"
    assert train.loc[(1, "m1"), "target_word"] == "rifle"
    assert pd.isna(train.loc[(7, "m"), "target_word"])  # no describer row: null, counted
    assert summary["splits"]["train"]["target_word_missing"] == 1
    val = frames["val"].set_index("task_id")
    assert val.loc[3, "target_word"] == "plinth"


def test_describer_rows_get_their_own_word(small_dataset):
    frames, _ = prepare_at_defaults(str(small_dataset), None, None, "taboo", "WordDescriber", [])
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
            **DATASET_OPTIONS,
            strict=False,
        )
        outputs.append(pd.read_parquet(paths["train"]))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
    ids = outputs[0]["row_id"]
    assert ids.is_unique
    # split + index in the source split: the first guesser row is source row 1
    assert ids.iloc[0] == "train-0000001"


def test_unknown_game_role_lists_available_pairs(small_dataset):
    with pytest.raises(WorkflowInputError) as err:
        prepare_at_defaults(str(small_dataset), None, None, "taboo", "Referee", ["aborted"])
    message = str(err.value)
    assert "'Referee'" in message
    assert "taboo/WordGuesser (6 rows)" in message
    assert "wordle/Guesser (1 rows)" in message
    assert len(message.splitlines()) == 1


def test_missing_column_is_named(tmp_path):
    rows = [{"messages": chat("u", "a")}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", rows)
    with pytest.raises(WorkflowInputError, match=r"train.jsonl line 1: no column 'meta'"):
        prepare_at_defaults(str(tmp_path), None, None, "taboo", "WordGuesser", [])


def test_missing_meta_field_is_named(tmp_path):
    row = make_row("taboo", "WordGuesser", "success", chat("u", "a"))
    del row["meta"]["outcome"]
    write_jsonl(tmp_path / "train.jsonl", [row])
    write_jsonl(tmp_path / "validation.jsonl", [row])
    with pytest.raises(WorkflowInputError, match=r"train.jsonl line 1: meta has no field 'outcome'"):
        prepare_at_defaults(str(tmp_path), None, None, "taboo", "WordGuesser", [])


def test_split_empty_after_filtering_names_game_role_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", taboo_pair("winter", 0))
    write_jsonl(tmp_path / "validation.jsonl", taboo_pair("winter", 0, outcome="aborted"))
    with pytest.raises(WorkflowInputError) as err:
        prepare_at_defaults(str(tmp_path), None, None, "taboo", "WordGuesser", ["aborted"])
    assert "split 'val' is empty" in str(err.value)
    assert "'taboo'" in str(err.value) and "'WordGuesser'" in str(err.value)


def _prepare_to(out, data_dir):
    """prepare_to_files for taboo x WordGuesser from `data_dir` into `out`."""
    return prepare_to_files(
        train_path=out / "train.parquet",
        val_path=out / "val.parquet",
        summary_path=out / "summary.json",
        dataset_path=str(data_dir),
        dataset_name=None,
        dataset_revision=None,
        game="taboo",
        role="WordGuesser",
        drop_outcomes=["aborted"],
        **DATASET_OPTIONS,
        strict=False,
    )


def test_failed_prepare_writes_nothing(tmp_path):
    write_jsonl(tmp_path / "d" / "train.jsonl", taboo_pair("winter", 0))
    write_jsonl(tmp_path / "d" / "validation.jsonl", taboo_pair("winter", 0, outcome="aborted"))
    out = tmp_path / "out"
    with pytest.raises(WorkflowInputError):
        _prepare_to(out, tmp_path / "d")
    assert not out.exists() or not any(out.iterdir())


def test_unreachable_hub_gives_short_actionable_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(WorkflowInputError) as err:
        load_splits("no-such-org/no-such-dataset-xyz", "interactions", None)
    message = str(err.value)
    assert "dataset.path" in message and "config/demo.yaml" in message
    assert "Traceback" not in message and len(message.splitlines()) <= 4


@pytest.mark.parametrize("path", ["./no-such-dir", "../no-such-dir", "no/such/dir", "/no/such/dir"])
def test_missing_local_path_is_an_error_not_a_hub_lookup(path):
    with pytest.raises(WorkflowInputError) as err:
        load_splits(path, None, None)
    assert "does not exist" in str(err.value) and "hub" not in str(err.value).lower()


def test_existing_relative_directory_without_slash_is_a_path(small_dataset, monkeypatch):
    monkeypatch.chdir(small_dataset.parent)
    splits = load_splits(small_dataset.name)
    assert len(splits["train"]) == 11


def test_save_to_disk_and_parquet_directories_load(small_dataset, tmp_path):
    splits = load_splits(str(small_dataset))
    disk = tmp_path / "disk"
    import datasets

    datasets.DatasetDict(splits).save_to_disk(str(disk))
    pq = tmp_path / "pq"
    pq.mkdir()
    for name, ds in splits.items():
        ds.to_parquet(str(pq / f"{name}.parquet"))
    reference = prepare_at_defaults(str(small_dataset), None, None, "taboo", "WordGuesser", ["aborted"])[0]
    for path in (disk, pq):
        frames = prepare_at_defaults(str(path), None, None, "taboo", "WordGuesser", ["aborted"])[0]
        assert frames["train"]["row_id"].tolist() == reference["train"]["row_id"].tolist()
        assert frames["train"]["completion"].tolist() == reference["train"]["completion"].tolist()


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared reference sample not present")
def test_real_reference_sample_parses():
    """The real hub rows (read in place, never copied) go through the same code."""
    import datasets

    ref = datasets.load_dataset("json", data_files=str(REFERENCE / "taboo_hub_schema_sample.jsonl"))["train"]
    assert ref.features == hub_features()
    from playpen_attribution.data.prepare import prepare_split

    records, summary = prepare_split("train", ref, "taboo", "WordGuesser", ["aborted"], **DATASET_OPTIONS)
    assert summary["dropped_outcome"] == {"aborted": 1}
    words = {r["task_id"]: r["target_word"] for r in records}
    assert words[0] == "winter" and words[3] == "feather"


# --------------------------------------------------------------------------- bad rows
# Each error names the file, the row (line number for JSON lines) and the field.


def _write_split_text(directory, train_text: bytes, val_rows=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.jsonl").write_bytes(train_text)
    write_jsonl(directory / "validation.jsonl", val_rows or taboo_pair("winter", 0))


def _jsonl(rows) -> bytes:
    import json

    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _prepare_error(directory) -> str:
    with pytest.raises(WorkflowInputError) as err:
        prepare_at_defaults(str(directory), None, None, "taboo", "WordGuesser", ["aborted"])
    message = str(err.value)
    assert len(message.splitlines()) == 1
    return message


def test_messages_as_a_string_names_line_and_field(tmp_path):
    rows = taboo_pair("winter", 0)
    rows[1]["messages"] = "GUESS: winter"
    _write_split_text(tmp_path, _jsonl(rows))
    message = _prepare_error(tmp_path)
    assert "train.jsonl line 2" in message and "'messages' must be a list" in message and "str" in message


def test_non_utf8_bytes_name_file_line_and_byte(tmp_path):
    text = _jsonl(taboo_pair("winter", 0) + taboo_pair("rifle", 1))
    lines = text.split(b"\n")
    lines[2] = lines[2].replace(b"CLUE", b"CL\xffUE", 1)
    _write_split_text(tmp_path, b"\n".join(lines))
    message = _prepare_error(tmp_path)
    assert "train.jsonl line 3" in message and "not valid UTF-8" in message and "0xff" in message


def test_bad_json_names_file_and_line(tmp_path):
    text = _jsonl(taboo_pair("winter", 0)) + b'{"messages": [\n'
    _write_split_text(tmp_path, text)
    message = _prepare_error(tmp_path)
    assert "train.jsonl line 3: invalid JSON" in message


def test_empty_validation_file_is_named(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", taboo_pair("winter", 0))
    (tmp_path / "validation.jsonl").write_text("")
    message = _prepare_error(tmp_path)
    assert "validation.jsonl: the file has no rows" in message


def test_outcome_missing_in_every_row_is_named(tmp_path):
    rows = taboo_pair("winter", 0) + taboo_pair("rifle", 1)
    for row in rows:
        del row["meta"]["outcome"]
    _write_split_text(tmp_path, _jsonl(rows))
    message = _prepare_error(tmp_path)
    assert "train.jsonl line 1: meta has no field 'outcome'" in message


def test_outcome_missing_in_one_row_names_that_row_and_field(tmp_path):
    """datasets would read `meta` as a JSON column here and blame 'experiment'."""
    rows = taboo_pair("winter", 0) + taboo_pair("rifle", 1)
    del rows[3]["meta"]["outcome"]
    _write_split_text(tmp_path, _jsonl(rows))
    message = _prepare_error(tmp_path)
    assert "train.jsonl line 4: meta has no field 'outcome'" in message
    assert "experiment" not in message.split("fields:")[0]


def test_wrong_meta_type_is_named(tmp_path):
    rows = taboo_pair("winter", 0)
    rows[0]["meta"]["task_id"] = "zero"
    _write_split_text(tmp_path, _jsonl(rows))
    assert "train.jsonl line 1: meta.task_id must be an integer, got str" in _prepare_error(tmp_path)


def test_bad_row_in_parquet_names_file_and_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = taboo_pair("winter", 0) + taboo_pair("rifle", 1)
    rows[2]["meta"]["outcome"] = None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    write_jsonl(tmp_path / "validation.jsonl", taboo_pair("winter", 0))
    assert "train.parquet row 2: meta.outcome must be a string, got null" in _prepare_error(tmp_path)


# --------------------------------------------------------------------------- counted


def test_empty_completions_duplicates_and_trailing_turns_are_counted(tmp_path):
    rows = taboo_pair("winter", 0) + taboo_pair("rifle", 1) + taboo_pair("plinth", 2)
    empty = make_row("taboo", "WordGuesser", "failure", chat("Guess!", "   "), task_id=5)
    trailing = make_row("taboo", "WordGuesser", "success", chat("Guess!", "GUESS: X", "thanks"), task_id=6)
    rows += [empty, rows[1], rows[1], trailing]  # rows[1]: the winter guesser row, twice more
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", taboo_pair("winter", 0))

    frames, summary = prepare_at_defaults(str(tmp_path), None, None, "taboo", "WordGuesser", ["aborted"])
    train = summary["splits"]["train"]
    assert train["dropped_empty_completion"] == 1
    assert train["exact_duplicates"] == 2
    assert train["trailing_turns_removed"] == 1
    assert train["kept"] == len(frames["train"]) == 6  # 3 guessers + 2 duplicates + trailing
    assert "" not in set(frames["train"]["completion"].str.strip())

    frames, summary = prepare_at_defaults(
        str(tmp_path), None, None, "taboo", "WordGuesser", ["aborted"], keep_empty_completions=True
    )
    assert summary["splits"]["train"]["kept_empty_completion"] == 1
    assert summary["splits"]["train"]["dropped_empty_completion"] == 0
    assert len(frames["train"]) == 7


def test_counts_are_logged_as_warnings(tmp_path, caplog):
    rows = taboo_pair("winter", 0)
    rows.append(rows[1])
    write_jsonl(tmp_path / "d" / "train.jsonl", rows)
    write_jsonl(tmp_path / "d" / "validation.jsonl", taboo_pair("winter", 0))
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        _prepare_to(out, tmp_path / "d")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("train" in w and "exactly repeat an earlier row" in w and ": 1" in w for w in warnings)


def _terminal_warnings(caplog) -> list[str]:
    """The WARNINGs that run_step also prints on the terminal (errors.warn_user)."""
    return [r.getMessage() for r in caplog.records if getattr(r, "terminal", False)]


def test_unrecognised_outcomes_are_a_terminal_warning_or_with_strict_an_error(tmp_path, caplog):
    """Issue 21, finding 5: `Success` and `lose` were kept and said only in the log."""
    train = (
        taboo_pair("winter", 0)
        + taboo_pair("rifle", 1, outcome="Success")
        + taboo_pair("ugly", 2, outcome="lose")
    )
    write_jsonl(tmp_path / "d/train.jsonl", train)
    write_jsonl(tmp_path / "d/validation.jsonl", taboo_pair("winter", 0))
    with caplog.at_level("WARNING"):
        summary = _prepare_to(tmp_path / "out", tmp_path / "d")
    assert summary["splits"]["train"]["unrecognised_outcome"] == {"Success": 1, "lose": 1}
    [warning] = _terminal_warnings(caplog)
    assert warning.startswith("train: 2 rows kept with an outcome outside ['success', 'failure', 'aborted']")
    assert "1 'Success', 1 'lose'" in warning and "dataset.strict" in warning
    out = tmp_path / "strict"
    with pytest.raises(
        WorkflowInputError, match=r"train: 2 rows kept with an outcome outside .*\(dataset.strict: true\)"
    ):
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
            **DATASET_OPTIONS,
            strict=True,
        )
    assert not out.exists()


def test_describer_rows_that_disagree_on_the_word_are_named(tmp_path, caplog):
    """Issue 21, finding 6: two episodes with one (experiment, task_id, model) and two words
    gave a null word without a word on the terminal."""
    train = taboo_pair("winter", 0) + taboo_pair("rifle", 0) + taboo_pair("ugly", 2)
    write_jsonl(tmp_path / "d/train.jsonl", train)
    write_jsonl(tmp_path / "d/validation.jsonl", taboo_pair("ugly", 2))
    with caplog.at_level("WARNING"):
        summary = _prepare_to(tmp_path / "out", tmp_path / "d")
    assert summary["splits"]["train"]["target_word_conflict"] == 2
    frame = pd.read_parquet(tmp_path / "out/train.parquet")
    assert frame["target_word"].isna().sum() == 2  # better no word than a wrong one
    [warning] = _terminal_warnings(caplog)
    assert warning.startswith("train: 2 rows kept without a target word")
    assert "experiment 'high_en' task_id 0 model 'm1': rifle / winter" in warning


@pytest.mark.parametrize("role", ["system", "Assistant", "model"])
def test_a_role_other_than_user_or_assistant_is_refused_naming_the_row(tmp_path, role):
    """Issue 21, finding 7: such a turn passed prepare_data; tokenize then failed naming no
    row (system, Assistant) or rendered a `model` turn that it never trained."""
    rows = taboo_pair("winter", 0)
    rows[1]["messages"].insert(1, {"role": role, "content": "x"})
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", taboo_pair("winter", 0))
    with pytest.raises(WorkflowInputError) as err:
        prepare_at_defaults(str(tmp_path), None, None, "taboo", "WordGuesser", [])
    assert str(err.value).startswith(
        f"{tmp_path}/train.jsonl line 2: messages[1].role is {role!r}; a role must be"
    )
