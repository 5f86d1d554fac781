"""Reports: top/bottom selection and per-word aggregation on hand-made scores."""

import pandas as pd
import pytest

from playpen_attribution.attribution.report import join_scores, top_bottom, word_influence
from playpen_attribution.core.errors import WorkflowInputError


def frame(n=10):
    train = pd.DataFrame(
        {
            "row_id": [f"train-{i}" for i in range(n)],
            "experiment": "e",
            "task_id": range(n),
            "model": "m",
            "outcome": ["success" if i % 3 else "failure" for i in range(n)],
            "target_word": [["snow", "chair", "walrus"][i % 3] for i in range(n)],
            "n_turns": 1,
            "prompt": [[{"role": "user", "content": "x"}]] * n,
            "completion": "GUESS: X",
        }
    )
    scores = pd.DataFrame({"row_id": train["row_id"], "score": [0.1 * ((7 * i) % n) - 0.3 for i in range(n)]})
    return scores, train


def test_top_bottom_ranks_and_buckets():
    scores, train = frame()
    topk = top_bottom(join_scores(scores, train), 3)
    top, bottom = topk[topk.bucket == "top"], topk[topk.bucket == "bottom"]
    assert top["score"].tolist() == sorted(scores["score"], reverse=True)[:3]
    assert bottom["score"].tolist() == sorted(scores["score"])[:3]
    assert top["rank"].tolist() == [1, 2, 3] and bottom["rank"].tolist() == [1, 2, 3]
    assert not set(top.row_id) & set(bottom.row_id)


def test_top_bottom_with_few_rows_never_overlaps():
    scores, train = frame(5)
    topk = top_bottom(join_scores(scores, train), 10)
    assert len(topk) == 4 and topk["row_id"].is_unique


def test_scores_for_unknown_rows_are_rejected():
    scores, train = frame()
    scores.loc[0, "row_id"] = "train-999"
    with pytest.raises(WorkflowInputError, match="train-999"):
        join_scores(scores, train)


def test_word_influence_aggregates_per_word():
    scores, train = frame(9)
    scored = join_scores(scores, train)
    topk = top_bottom(scored, 2)
    val = pd.DataFrame(
        {"target_word": ["snow", "snow", "plinth"], "outcome": ["success", "failure", "success"]}
    )
    words = word_influence(scored, val, 2).set_index("target_word")
    for word in ("snow", "chair", "walrus"):
        rows = scored[scored.target_word == word]
        assert words.loc[word, "count"] == len(rows)
        assert words.loc[word, "sum_score"] == pytest.approx(rows["score"].sum())
        assert words.loc[word, "train_success_rate"] == pytest.approx((rows.outcome == "success").mean())
        assert words.loc[word, "n_top"] == rows.row_id.isin(topk[topk.bucket == "top"].row_id).sum()
    assert words.loc["snow", "val_success_rate"] == 0.5 and words.loc["chair", "val_count"] == 0
    assert words["sum_score"].is_monotonic_decreasing


def test_unrecognised_outcomes_are_in_no_success_rate_and_in_the_data_table():
    """Issue 21, finding 5: `Success` and `lose` counted as losses, and the Data table had no
    row for them."""
    from playpen_attribution.attribution.report import data_counts_markdown

    scores, train = frame(6)
    train["target_word"] = "snow"
    train["outcome"] = ["success", "failure", "Success", "lose", "success", "aborted"]
    val = pd.DataFrame({"target_word": ["snow", "snow"], "outcome": ["success", "won"]})
    words = word_influence(join_scores(scores, train), val, 2).set_index("target_word")
    assert words.loc["snow", "train_success_rate"] == pytest.approx(2 / 4)
    assert words.loc["snow", "val_success_rate"] == 1.0 and words.loc["snow", "val_count"] == 2
    split = {
        "rows_for_game_role": 6,
        "dropped_outcome": {},
        "dropped_no_assistant_turn": 0,
        "target_word_missing": 0,
        "unrecognised_outcome": {"Success": 1, "lose": 1},
    }
    tokens = {"dropped_too_long": 0, "rows_out": 6}
    table = data_counts_markdown(
        {"splits": {"train": split, "val": split | {"unrecognised_outcome": {}}}},
        {"train": tokens, "val": tokens},
    )
    assert "| kept: outcome not success/failure/aborted (in no success rate) | 2 | 0 |" in table


# --------------------------------------------------------------------------- per-query


def small_matrix():
    import numpy as np

    # 4 training rows x 3 validation rows
    matrix = np.array(
        [
            [0.9, 0.1, 0.0],
            [0.2, 0.3, 0.4],
            [0.1, 0.2, -0.5],
            [0.3, 0.25, 0.5],
        ]
    )
    rows = pd.DataFrame({"row_id": ["t0", "t1", "t2", "t3"], "n_tokens": 5, "n_trained": 2, "loss": 1.0})
    return matrix, rows, ["v0", "v1", "v2"]


def test_aggregations_of_the_matrix():
    from playpen_attribution.attribution.scoring import aggregate

    matrix, rows, val_ids = small_matrix()
    out = aggregate(matrix, rows, val_ids).set_index("row_id")
    assert out["mean"].tolist() == pytest.approx(matrix.mean(axis=1).tolist())
    assert out["score"].tolist() == out["mean"].tolist()
    assert out["nearest"].tolist() == pytest.approx([0.9, 0.4, 0.2, 0.5])
    assert out["best_val_row_id"].tolist() == ["v0", "v2", "v1", "v2"]
    # percentile ranks per column (0 = lowest, 1 = highest), then averaged:
    # v0: t0 1, t1 1/3, t2 0, t3 2/3; v1: t0 0, t1 1, t2 1/3, t3 2/3; v2: t0 1/3, t1 2/3, t2 0, t3 1
    assert out["rank_mean"].tolist() == pytest.approx([4 / 9, 2 / 3, 1 / 9, 7 / 9])


def test_helped_val_rows_and_proponents():
    from playpen_attribution.attribution.report import helped_val_rows, val_proponents

    matrix, rows, val_ids = small_matrix()
    frame_ = pd.DataFrame(matrix, index=rows["row_id"], columns=val_ids)
    val = pd.DataFrame({"row_id": val_ids, "target_word": ["snow", "chair", None], "outcome": "success"})
    helped = helped_val_rows(frame_, ["t1"], val.set_index("row_id")["target_word"], n=2).iloc[0]
    assert helped["helped_val_row_ids"] == ["v2", "v1"]
    assert helped["helped_val_words"] == [None, "chair"]
    assert helped["helped_val_scores"] == pytest.approx([0.4, 0.3])
    train = pd.DataFrame({"row_id": ["t0", "t1", "t2", "t3"], "target_word": ["snow", "snow", "chair", None]})
    props = val_proponents(frame_, train, val, k=2)
    v0 = props[props["val_row_id"] == "v0"]
    assert v0[v0.kind == "proponent"]["train_row_id"].tolist() == ["t0", "t3"]
    assert v0[v0.kind == "opponent"]["train_row_id"].tolist() == ["t2", "t1"]
    assert v0[v0.kind == "proponent"]["same_word"].tolist() == [True, False]
    assert len(props) == 3 * 2 * 2


def test_planted_ranks_under_every_method_and_aggregation():
    from playpen_attribution.attribution.report import planted_ranks

    train = pd.DataFrame(
        {"row_id": ["t0", "t1", "t2", "t3"], "experiment": "e", "task_id": [0, 1, 2, 9], "model": "m"}
    )
    scores = pd.DataFrame(
        {
            "row_id": ["t0", "t1", "t2", "t3"],
            "mean": [0.4, 0.3, 0.2, 0.1],
            "nearest": [0.1, 0.2, 0.3, 0.9],
            "rank_mean": [0.5, 0.5, 0.5, 0.5],
        }
    )
    planted = [
        {"game": "taboo", "game_role": "WordGuesser", "experiment": "e", "task_id": 9, "model": "m"},
        {"game": "taboo", "game_role": "WordDescriber", "experiment": "e", "task_id": 9, "model": "m"},
    ]
    table = planted_ranks(planted, train, {"none": scores}, "taboo", "WordGuesser").set_index("aggregation")
    assert table.loc["mean", "rank"] == 4 and not table.loc["mean", "in_top_2n"]
    assert table.loc["nearest", "rank"] == 1 and table.loc["nearest", "in_top_2n"]
    assert table.loc["rank_mean", "rank"] == 4  # ties broken by row_id
    assert set(table["n_planted"]) == {1} and set(table["source"]) == {"query"}
    # a copy of a held-out eval row is marked as such
    planted[0]["copy_of_validation_task_id"] = 5
    held_out = pd.DataFrame({"experiment": ["e"], "task_id": [5], "model": ["m"]})
    marked = planted_ranks(planted, train, {"none": scores}, "taboo", "WordGuesser", held_out)
    assert set(marked["source"]) == {"eval"}
