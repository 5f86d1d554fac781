"""TrackStar and TRAK (Bergson's pipelines, `pipelines.py`) on the tiny model."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from test_attribution import CLUE_CHATS, SETTINGS, _tokens

from playpen_attribution.attribution.pipelines import PIPELINE_METHODS, PipelineSettings, pipeline_scores
from playpen_attribution.attribution.query_memory import check_query_budget
from playpen_attribution.core.errors import WorkflowInputError


def _pipeline(method, **overrides):
    settings = {
        "method": method,
        "seed": 7,
        "projection_dim": 16,
        "damping_factor": 0.1,
        "stats_sample_size": None,
        "target_downweight_components": 1000 if method == "trackstar" else None,
        "checkpoints": [],
    }
    return PipelineSettings.from_params(settings | overrides)


def _run(tmp_path, adapter, gemma_tokenizer, pipeline, name="out"):
    val_chats = CLUE_CHATS[:3]
    train_chats = CLUE_CHATS[3:8] + [val_chats[0]] + CLUE_CHATS[8:11] + [val_chats[2]]
    train_dir = _tokens(tmp_path, "train", train_chats, gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", val_chats, gemma_tokenizer)
    out = tmp_path / name
    pipeline_scores(
        adapter,
        train_dir,
        val_dir,
        out / "run",
        out / "scores.parquet",
        out / "matrix.npy",
        out / "ids.json",
        SETTINGS,
        pipeline,
    )
    return out, len(train_chats)


@pytest.mark.parametrize("method", PIPELINE_METHODS)
def test_pipeline_scores_every_row_and_ranks_a_copy_first(tmp_path, adapter, gemma_tokenizer, method):
    """Every training row gets a finite score per validation row, in input order; a
    planted copy of a validation row is that row's top training row, and the top row
    under `nearest` is a copy. The TrackStar scores are cosines (a copy scores ~1 against
    its row), so both copies lead `nearest`; TRAK's are not normalised, and the best
    match of val-1 (which has no copy) outscored the copy of val-0 here. The settings
    reached Bergson (its run records them)."""
    out, n_train = _run(tmp_path, adapter, gemma_tokenizer, _pipeline(method))
    copies = {"train-5": "val-0", "train-9": "val-2"}
    scores = pd.read_parquet(out / "scores.parquet")
    matrix = np.load(out / "matrix.npy")
    assert scores["row_id"].tolist() == [f"train-{i}" for i in range(n_train)]
    assert matrix.shape == (n_train, 3) and np.isfinite(matrix).all()
    assert json.loads((out / "ids.json").read_text())["columns"] == ["val-0", "val-1", "val-2"]
    for copy, val_row in copies.items():
        column = matrix[:, int(val_row.split("-")[1])]
        assert scores["row_id"][int(column.argmax())] == copy, (method, column)
    top = scores.sort_values("nearest", ascending=False)["row_id"].tolist()
    assert top[0] in copies, scores.sort_values("nearest", ascending=False)
    if method != "trak":
        assert set(top[:2]) == set(copies), scores.sort_values("nearest", ascending=False)

    run = out / "run" / "run"
    steps = {d.name for d in run.iterdir() if d.is_dir()}
    expected = {
        "trackstar": {"value_hessian", "query_hessian", "mixed_hessian", "query", "scores"},
        "trackstar_train": {"value_hessian", "query", "scores"},
        "trackstar_query": {"query_hessian", "query", "scores"},
        "trak": {"train_hessian", "query", "scores"},
    }[method]
    assert expected <= steps, steps
    score_step = yaml.safe_load((run / "scores" / "config.yaml").read_text())["steps"][0]["score"]
    assert score_step["index_cfg"]["projection_dim"] == 16
    # the memory model's R fits against the bytes Bergson wrote (torch.save adds ~1 KB a
    # file, which only TRAK's one 16 x 16 Gram cannot absorb)
    if method != "trak":
        written = sum(f.stat().st_size for f in run.rglob("hessians*.pth"))
        estimate = check_query_budget(adapter, 3, n_train, 16, None, 1e3, precision="fp32", pipeline=method)
        assert written == pytest.approx(estimate.autocorrelation_disk_bytes, rel=0.1), (
            written,
            estimate.row(),
        )
    assert score_step["index_cfg"]["projection_seed"] == 7
    grad_sizes = json.loads((run / "query" / "info.json").read_text())["grad_sizes"]
    if method == "trak":  # one global projection of the log-odds gradient
        assert score_step["index_cfg"]["loss_fn"] == "log_odds"
        assert sum(grad_sizes.values()) == 16
    else:  # per module, projection_dim x projection_dim, preconditioned by its own R
        assert set(grad_sizes.values()) == {16**2}
        hessian = {"trackstar": "mixed_hessian", "trackstar_train": "value_hessian"}.get(
            method, "query_hessian"
        )
        assert score_step["preprocess_cfg"]["hessian_path"].endswith(hessian)


def test_trak_refuses_an_undamped_gram_of_fewer_rows_than_dimensions(tmp_path, adapter, gemma_tokenizer):
    """10 training rows cannot give a 16 x 16 Gram full rank: without damping, stop."""
    with pytest.raises(WorkflowInputError, match="fewer than projection_dim=16"):
        _run(tmp_path, adapter, gemma_tokenizer, _pipeline("trak", damping_factor=0.0))
    assert not (tmp_path / "out" / "scores.parquet").exists()
