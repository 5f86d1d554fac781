"""What a random projection does to the demo's `none` ranking: Spearman against the
unprojected scores, and where the planted copies rank.

Reads a finished demo tree (the adapter, the token rows, none/scores.parquet, the planted
copies) and reruns reduce + score for `none` with each projection_dim into
benchmarks/out/projection/, leaving the results tree alone.

    uv run python benchmarks/projection_effect.py [--dims 16 32 128] [--target results/demo/taboo/WordGuesser]
"""

import argparse
import json
import time

import pandas as pd
from _common import OUT, REPO
from scipy.stats import spearmanr

from playpen_attribution.attribution.report import planted_ranks
from playpen_attribution.attribution.scoring import (
    AGGREGATIONS,
    AttributionSettings,
    reduce_query,
    score_train,
)
from playpen_attribution.core.settings import from_config, schema_defaults


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 32, 128])
    parser.add_argument("--target", default="results/demo/taboo/WordGuesser")
    parser.add_argument("--planted", default="results/demo/playpen-data/planted.json")
    args = parser.parse_args()
    target = REPO / args.target
    game, role = target.parts[-2:]
    train = pd.read_parquet(target / "data/train.parquet")
    eval_rows = pd.read_parquet(target / "data/eval.parquet")
    planted = json.loads((REPO / args.planted).read_text())
    reference = pd.read_parquet(target / "attribution/none/scores.parquet").set_index("row_id")
    rows = []
    for dim in [0, *args.dims]:
        if dim == 0:
            scores = reference.reset_index()
            seconds = None
        else:
            out = OUT / "projection" / str(dim)
            settings = from_config(
                AttributionSettings,
                schema_defaults(),
                precision="fp32",
                token_batch_size=512,
                projection_dim=dim,
            )
            start = time.perf_counter()
            reduce_query(
                target / "adapter", target / "tokens/val", out / "query", settings, aggregation="none"
            )
            score_train(
                target / "adapter",
                target / "tokens/train",
                out / "query",
                out / "score",
                out / "scores.parquet",
                settings,
                val_tokens_dir=target / "tokens/val",
                matrix_path=out / "matrix.npy",
                matrix_ids_path=out / "matrix_ids.json",
            )
            seconds = round(time.perf_counter() - start, 1)
            scores = pd.read_parquet(out / "scores.parquet")
        aligned = scores.set_index("row_id").loc[reference.index]
        ranks = planted_ranks(planted, train, {"none": scores}, game, role, eval_rows)
        ranks = ranks[ranks["source"] == "query"]
        for aggregation in AGGREGATIONS:
            of_aggregation = ranks[ranks["aggregation"] == aggregation]
            rows.append(
                {
                    "projection_dim": dim,
                    "aggregation": aggregation,
                    "spearman_vs_unprojected": round(
                        spearmanr(aligned[aggregation], reference[aggregation]).statistic, 3
                    ),
                    "planted_ranks": sorted(of_aggregation["rank"].tolist()),
                    "n_rows": len(scores),
                    "seconds": seconds,
                }
            )
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "projection_effect.json").write_text(json.dumps(rows, indent=2))
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
