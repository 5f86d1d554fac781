"""Ranking agreement between methods, against a hand computation on 6 rows with ties."""

import pandas as pd
import pytest

from playpen_attribution.attribution.compare import compare_methods, compare_pair, pair_matrix, ranks


def frame(scores):
    return pd.DataFrame({"row_id": [f"r{i}" for i in range(len(scores))], "score": scores})


# r0..r5. Method a has a tie (r1 = r2); method b ties r4 and r5.
A = frame([0.9, 0.5, 0.5, 0.1, -0.2, -0.4])
B = frame([0.7, 0.2, 0.6, -0.1, -0.3, -0.3])


def test_ranks_break_ties_by_row_id():
    assert ranks(A).to_dict() == {"r0": 1, "r1": 2, "r2": 3, "r3": 4, "r4": 5, "r5": 6}
    assert ranks(B).to_dict() == {"r0": 1, "r2": 2, "r1": 3, "r3": 4, "r4": 5, "r5": 6}


def test_metrics_match_a_hand_computation():
    out = compare_pair(A, B, k_report=2)
    # Spearman with average ranks: a = [6, 4.5, 4.5, 3, 2, 1], b = [6, 4, 5, 3, 1.5, 1.5]
    # (ascending); Pearson of those: cov/sd computed by hand below.
    ra = [6, 4.5, 4.5, 3, 2, 1]
    rb = [6, 4, 5, 3, 1.5, 1.5]
    ma, mb = sum(ra) / 6, sum(rb) / 6
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    sa = sum((x - ma) ** 2 for x in ra) ** 0.5
    sb = sum((y - mb) ** 2 for y in rb) ** 0.5
    assert out["spearman_rho"] == pytest.approx(cov / (sa * sb))
    # Kendall tau-b: 15 pairs. Discordant: (r1, r2) is tied in a -> neither; (r4, r5) tied in b.
    # Every other pair is concordant: C = 13, D = 0, ties only in a: 1, only in b: 1.
    assert out["kendall_tau_b"] == pytest.approx(13 / ((13 + 1) * (13 + 1)) ** 0.5)
    # k is capped at 6 rows: every k of 10, 50, 100 compares all rows
    for k in (10, 50, 100):
        assert out[f"top{k}_jaccard"] == 1.0 and out[f"bottom{k}_jaccard"] == 1.0
    # a's top-2 = {r0, r1}; in b, r1 is rank 3: moves 1, r0 moves 0
    assert out["topk_rank_change_median"] == 0.5 and out["topk_rank_change_max"] == 1


def test_top_jaccard_when_k_is_below_n():
    import playpen_attribution.attribution.compare as compare

    old = compare.K_VALUES
    compare.K_VALUES = (2,)
    try:
        out = compare_pair(A, B, k_report=2)
    finally:
        compare.K_VALUES = old
    assert out["top2_jaccard"] == pytest.approx(1 / 3)  # {r0, r1} vs {r0, r2}
    assert out["bottom2_jaccard"] == pytest.approx(1.0)  # {r4, r5} both


def test_one_row_per_pair_and_mismatched_rows_refused():
    table = compare_methods({"none": A, "kfac": B, "ekfac": A}, k_report=3)
    assert list(zip(table["method_a"], table["method_b"])) == [
        ("none", "kfac"),
        ("none", "ekfac"),
        ("kfac", "ekfac"),
    ]
    assert table.loc[1, "spearman_rho"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="different training rows"):
        compare_pair(A, B.iloc[:5], k_report=2)


def test_pair_matrix_places_every_pair_both_ways():
    table = pd.DataFrame(
        {"method_a": ["a", "a", "b"], "method_b": ["b", "c", "c"], "spearman_rho": [0.5, -0.25, 0.75]}
    )
    values = pair_matrix(["a", "b", "c"], table, "spearman_rho")
    assert values.tolist() == [[1.0, 0.5, -0.25], [0.5, 1.0, 0.75], [-0.25, 0.75, 1.0]]
