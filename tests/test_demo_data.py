"""The offline demo data: hub schema, determinism, and the cases the workflow must handle."""

from collections import Counter

import datasets

from playpen_attribution.data import hub_features, prepare
from playpen_attribution.demo_data import write_demo_dataset


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
    write_demo_dataset(tmp_path / "again", seed=0)
    for split in ("train", "validation"):
        assert (tmp_path / "again" / f"{split}.jsonl").read_bytes() == (
            demo_dataset_dir / f"{split}.jsonl"
        ).read_bytes()
    write_demo_dataset(tmp_path / "other", seed=1)
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
    frames, _ = prepare(str(demo_dataset_dir), None, None, "taboo", "WordGuesser", ["aborted"])
    assert len(frames["train"]) >= 80 and len(frames["val"]) >= 20
    assert frames["train"]["target_word"].notna().all()
    # guesser prompts never state the word; the describer join recovered it
    for row in frames["train"].itertuples():
        assert row.target_word not in row.prompt[0]["content"].lower().split()
