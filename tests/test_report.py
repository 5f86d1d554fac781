"""Reports: top/bottom selection and per-word aggregation on hand-made scores."""

import pandas as pd
import pytest

from playpen_attribution.errors import WorkflowInputError
from playpen_attribution.report import join_scores, top_bottom, word_influence


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
