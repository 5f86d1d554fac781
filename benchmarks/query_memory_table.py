"""Print the query-gradient and influence-matrix memory table for Gemma 3 1B and 270M,
LoRA r=16 on all 7 projections, without any weights.

The LoRA matrices are enumerated on a meta-device model (as in hessian_memory_table.py,
whose architectures it reuses) and the memory model (`playpen_attribution.attribution.query_memory`)
is applied to their shapes; the script checks that its stdlib-only shapes agree.

    uv run python benchmarks/query_memory_table.py [--markdown]
"""

import argparse
import json

from _common import OUT
from hessian_memory_table import ALL, MODELS, meta_shapes

from playpen_attribution.attribution.hessian_memory import GIB, lora_linear_shapes
from playpen_attribution.attribution.query_memory import estimate

R = 16
QUERY_ROWS = (300, 600)
TRAIN_ROWS = (500, 5000)
PROJECTIONS = (0, 16, 32, 128)
GLOBAL_PROJECTIONS = (16, 128, 4096, 16384)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows, global_rows = [], []
    for model_name, hparams in MODELS.items():
        shapes = meta_shapes(hparams, ALL, R)
        light = lora_linear_shapes(hparams, ALL, R)
        assert sorted(shapes, key=lambda s: s.name) == sorted(light, key=lambda s: s.name)
        for n_query in QUERY_ROWS:
            for n_train in TRAIN_ROWS:
                for target, dims, out in (
                    ("per_module", PROJECTIONS, rows),
                    ("global", GLOBAL_PROJECTIONS, global_rows),
                ):
                    for dim in dims:
                        fp32 = estimate(shapes, n_query, n_train, dim, target, precision="fp32")
                        bf16 = estimate(shapes, n_query, n_train, dim, target, precision="bf16")
                        # the pipelines' autocorrelation fits (they need a projection)
                        fits = {}
                        if dim:
                            for method in (
                                ("trackstar", "trackstar_train") if target == "per_module" else ("trak",)
                            ):
                                fit = estimate(
                                    shapes, n_query, n_train, dim, target, precision="fp32", pipeline=method
                                )
                                fits[f"{method}_fits_gb"] = round(fit.autocorrelation_memory_bytes / GIB, 3)
                        out.append(
                            {
                                **fp32.row(),
                                "model": model_name,
                                "r": R,
                                "query_disk_bf16_gb": round(bf16.query_disk_bytes / GIB, 3),
                                **fits,
                            }
                        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "query_memory.json").write_text(json.dumps(rows + global_rows, indent=2))
    if args.markdown:
        # The queries do not depend on the training rows, nor the matrix on the projection:
        # one line per (model, query rows, projection), the matrix per training-row count.
        matrix = {(r["model"], r["query_rows"], r["train_rows"]): r for r in rows if r["projection_dim"] == 0}
        print(
            "| model | query rows | projection | numbers/row | query grads RAM (GB) | query disk fp32 / bf16 (GB) "
            + "".join(f"| matrix RAM / disk, {n:,} train (GB) " for n in TRAIN_ROWS)
            + "| R fits: trackstar / _train, _query; TRAK Gram (GB) |"
        )
        print("|---|---|---|---|---|---|" + "---|" * (len(TRAIN_ROWS) + 1))
        for table in (rows, global_rows):
            for row in table:
                if row["train_rows"] != TRAIN_ROWS[0]:
                    continue
                projection = row["projection_dim"] or "none"
                if row["projection_target"] == "global":
                    projection = f"{projection} global (TRAK)"
                cells = "".join(
                    f"| {m['matrix_memory_gb']:.3f} / {m['matrix_disk_gb']:.3f} "
                    for m in (matrix[(row["model"], row["query_rows"], n)] for n in TRAIN_ROWS)
                )
                if "trak_fits_gb" in row:
                    fits = f"{row['trak_fits_gb']:.3f}"
                elif "trackstar_fits_gb" in row:
                    fits = f"{row['trackstar_fits_gb']:.3f} / {row['trackstar_train_fits_gb']:.3f}"
                else:
                    fits = "needs a projection"
                print(
                    f"| {row['model']} | {row['query_rows']} | {projection} | {row['entries_per_row']:,} "
                    f"| {row['query_memory_gb']:.3f} | {row['query_disk_gb']:.3f} / {row['query_disk_bf16_gb']:.3f} "
                    f"{cells}| {fits} |"
                )
    else:
        for row in rows + global_rows:
            print(row)
    print(f"(1 GB = {GIB} bytes; matrix disk = bergson's scores.bin + matrix.npy)")


if __name__ == "__main__":
    main()
