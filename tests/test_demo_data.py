"""The offline demo data: hub schema, determinism, and the cases the workflow must handle."""

from collections import Counter

import datasets
from conftest import DEMO_DATA, prepare_at_defaults

from playpen_attribution.data.demo_data import write_demo_dataset
from playpen_attribution.data.prepare import hub_features


def _load(path):
    return datasets.load_dataset(
        "json",
        data_files={s: str(path / f"{s}.jsonl") for s in ("train", "validation")},
    )


def test_demo_data_has_hub_schema(demo_dataset_dir):
    ds = _load(demo_dataset_dir)
    for split in ("train", "validation"):
        assert ds[split].features == hub_features()


def test_demo_data_is_deterministic(tmp_path, demo_dataset_dir):
    write_demo_dataset(tmp_path / "again", **DEMO_DATA)
    for split in ("train", "validation"):
        assert (tmp_path / "again" / f"{split}.jsonl").read_bytes() == (
            demo_dataset_dir / f"{split}.jsonl"
        ).read_bytes()
    write_demo_dataset(tmp_path / "other", **(DEMO_DATA | {"seed": 1}))
    assert (tmp_path / "other" / "train.jsonl").read_bytes() != (
        demo_dataset_dir / "train.jsonl"
    ).read_bytes()


def test_demo_data_covers_required_cases(demo_dataset_dir):
    train = _load(demo_dataset_dir)["train"].to_list()
    pairs = Counter((r["meta"]["game"], r["meta"]["game_role"]) for r in train)
    assert {("taboo", "WordGuesser"), ("taboo", "WordDescriber")} <= set(pairs)
    assert len({g for g, _ in pairs}) >= 2
    assert {r["meta"]["outcome"] for r in train} >= {"success", "failure", "aborted"}
    n_assistant = [sum(m["role"] == "assistant" for m in r["messages"]) for r in train]
    assert min(n_assistant) == 1 and max(n_assistant) >= 3
    repeated = [
        r
        for r in train
        if max(Counter(m["content"] for m in r["messages"] if m["role"] == "assistant").values()) > 1
    ]
    assert repeated, "need chats that repeat an assistant string"
    for r in train:
        assert [m["role"] for m in r["messages"]][::2] == ["user"] * ((len(r["messages"]) + 1) // 2)


def test_demo_has_enough_guesser_rows_after_filtering(demo_dataset_dir):
    frames, _ = prepare_at_defaults(str(demo_dataset_dir), None, None, "taboo", "WordGuesser", ["aborted"])
    assert len(frames["train"]) >= 80 and len(frames["val"]) >= 20
    assert frames["train"]["target_word"].notna().all()
    # guesser prompts never state the word; the describer join recovered it
    for row in frames["train"].itertuples():
        assert row.target_word not in row.prompt[0]["content"].lower().split()


def test_planting_copies_changes_no_other_row_and_names_the_copies(tmp_path, demo_dataset_dir):
    import json

    write_demo_dataset(tmp_path / "planted", **(DEMO_DATA | {"planted_copies": 3}))
    plain = (demo_dataset_dir / "train.jsonl").read_text().splitlines()
    planted = (tmp_path / "planted" / "train.jsonl").read_text().splitlines()
    assert planted[: len(plain)] == plain  # every original row, unchanged and in place
    copies = [json.loads(line) for line in planted[len(plain) :]]
    assert len(copies) == 6  # 3 episodes, both roles
    sidecar = json.loads((tmp_path / "planted" / "planted.json").read_text())
    assert [(s["game_role"], s["task_id"]) for s in sidecar] == [
        (c["meta"]["game_role"], c["meta"]["task_id"]) for c in copies
    ]
    validation = [
        json.loads(line) for line in (demo_dataset_dir / "validation.jsonl").read_text().splitlines()
    ]
    train_keys = {
        (
            json.loads(r)["meta"]["experiment"],
            json.loads(r)["meta"]["task_id"],
            json.loads(r)["meta"]["model"],
        )
        for r in plain
    }
    for copy, record in zip(copies, sidecar):
        original = next(
            v
            for v in validation
            if v["meta"]["task_id"] == record["copy_of_validation_task_id"]
            and v["meta"]["experiment"] == record["experiment"]
            and v["meta"]["model"] == record["model"]
            and v["meta"]["game_role"] == record["game_role"]
        )
        assert copy["messages"] == original["messages"] and copy["meta"]["outcome"] != "aborted"
        assert (record["experiment"], record["task_id"], record["model"]) not in train_keys  # a new episode
    assert (tmp_path / "planted" / "validation.jsonl").read_bytes() == (
        demo_dataset_dir / "validation.jsonl"
    ).read_bytes()
