"""Attribution: Bergson scores vs an independent autograd computation, and planted signal."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import GUESSER_ROWS, assert_close_up_to_fp32_rounding, chat

from playpen_attribution.attribution import (
    AttributionSettings,
    PreconditionerSettings,
    fit_hessian,
    read_scores,
    reduce_query,
    score_train,
)
from playpen_attribution.tokens import load_token_dataset, save_token_dataset, tokenize_rows

SETTINGS = AttributionSettings(precision="fp32", token_batch_size=256, unit_normalize=True)


UNRELATED = [
    chat(f"Feedback: {w[0]}=X {w[1]}=Y", f"GUESS: {w}")
    for w in [
        "crane",
        "plant",
        "stone",
        "light",
        "sweet",
        "grass",
        "flame",
        "arise",
        "slate",
        "audio",
        "stare",
        "brick",
    ]
] + [
    chat(f"Tell me about {t}.", f"{t.title()} is a topic with many facets and a long history.")
    for t in ["trains", "music", "soil", "glass"]
]


def _tokens(tmp_path, name, chats, tokenizer):
    rows = [{"row_id": f"{name}-{i}", "messages": m} for i, m in enumerate(chats)]
    token_rows, _ = tokenize_rows(rows, tokenizer, "completion", 256)
    save_token_dataset(token_rows, tmp_path / name)
    return tmp_path / name


def _attribute(tmp_path, adapter, train_dir, val_dir, settings=SETTINGS, method="none"):
    """reduce + score, after fitting the method's Hessian on the training rows."""
    preconditioner, hessian = None, None
    if method != "none":
        preconditioner = PreconditionerSettings(method=method, use_dataset_labels=True)
        hessian = tmp_path / f"{method}-hessian"
        fit_hessian(adapter, [train_dir], hessian, settings, preconditioner)
    out = tmp_path / method
    reduce_query(adapter, val_dir, out / "query", settings, preconditioner, hessian, aggregation="mean")
    score_train(
        adapter,
        train_dir,
        out / "query",
        out / "score",
        out / "scores.parquet",
        settings,
        preconditioner,
        hessian,
    )
    return pd.read_parquet(out / "scores.parquet")


def autograd_scores(adapter, train_dir, val_dir, unit_normalize=True):
    """The formula, computed independently: s_i = u(g_i) . mean_j u(q_j), grads of mean token loss."""
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(adapter, dtype=torch.float32).eval()
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)

    def grad(row):
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
        logits = model(input_ids=ids).logits[:, :-1].float()
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100
        )
        return torch.cat([g.reshape(-1).double() for g in torch.autograd.grad(loss, params)])

    def u(g):
        return g / g.norm() if unit_normalize else g

    query = torch.stack([u(grad(r)) for r in load_token_dataset(val_dir)]).mean(0)
    return np.array([float(u(grad(r)) @ query) for r in load_token_dataset(train_dir)])


@pytest.mark.parametrize("unit_normalize", [True, False])
def test_scores_match_independent_autograd(tmp_path, adapter, gemma_tokenizer, unit_normalize):
    train_dir = _tokens(tmp_path, "train", GUESSER_ROWS[:5] + UNRELATED[:3], gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[5:], gemma_tokenizer)
    settings = AttributionSettings(precision="fp32", token_batch_size=256, unit_normalize=unit_normalize)
    scores = _attribute(tmp_path, adapter, train_dir, val_dir, settings)
    expected = autograd_scores(adapter, train_dir, val_dir, unit_normalize)
    rel = np.abs(scores["score"].to_numpy() - expected).max() / np.abs(expected).max()
    assert rel < 1e-3, (scores["score"].tolist(), expected.tolist())
    assert scores["row_id"].tolist() == [f"train-{i}" for i in range(8)]


CLUE_CHATS = [
    chat(f"Describe the word '{w}' without saying it.", clue)
    for w, clue in [
        ("lantern", "HINT: Portable light with a handle that campers hang from a hook at night."),
        ("thimble", "HINT: Tiny metal cap protecting a fingertip while sewing with needle and thread."),
        ("walrus", "HINT: Huge arctic sea mammal with long ivory tusks, whiskers and thick blubber."),
        ("compass", "HINT: Hikers carry this magnetised needle instrument to find north on a map."),
        ("quarry", "HINT: Deep open pit where workers cut marble and granite blocks from rock."),
        ("gutter", "HINT: Metal channel along a roof edge that carries rainwater down to the drain."),
        ("bellows", "HINT: Squeezed leather bag a blacksmith pumps to blow air onto the coals."),
        ("trowel", "HINT: Small pointed hand spade for planting bulbs or spreading mortar on bricks."),
        ("sextant", "HINT: Brass navigation instrument with mirrors measuring the sun's angle at sea."),
        ("plinth", "HINT: Heavy stone block on which a museum statue or column stands."),
        ("saddle", "HINT: Leather seat strapped onto a horse's back for the rider."),
        ("anchor", "HINT: Heavy hooked iron weight dropped from a ship to hold it in place."),
        ("harbor", "HINT: Sheltered coastal water where ferries and fishing boats tie up safely."),
        ("ladder", "HINT: Rungs between two rails, leaned against a wall to climb up to the roof."),
        ("whistle", "HINT: Referees blow this shrill little instrument to stop a football match."),
        ("pepper", "HINT: Black peppercorns ground from a mill over pasta make you sneeze."),
    ]
]


# K-FAC's factors are EK-FAC's without the corrections; the end-to-end test runs K-FAC.
@pytest.mark.parametrize("method", ["none", "ekfac"])
def test_planted_copies_of_validation_rows_rank_on_top(tmp_path, adapter, gemma_tokenizer, method):
    """Training rows that are exact copies of validation rows must rank in the top 2 x copies,
    with and without a preconditioner."""
    val_chats = CLUE_CHATS[:4]
    copies = [val_chats[0], val_chats[2], val_chats[3]]
    unrelated = CLUE_CHATS[4:]
    train_chats = unrelated[:5] + [copies[0]] + unrelated[5:9] + copies[1:] + unrelated[9:]
    copy_ids = {f"train-{i}" for i, m in enumerate(train_chats) if m in copies}
    assert len(copy_ids) == len(copies)
    train_dir = _tokens(tmp_path, "train", train_chats, gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", val_chats, gemma_tokenizer)
    scores = _attribute(tmp_path, adapter, train_dir, val_dir, method=method)
    k = 2 * len(copies)
    top = set(scores.nlargest(k, "score")["row_id"])
    assert copy_ids <= top, scores.sort_values("score", ascending=False).head(k + 3)
    # and the row order maps back: row i is input row i
    assert scores["row_id"].tolist() == [f"train-{i}" for i in range(len(train_chats))]
    assert (scores["n_tokens"] > 0).all() and scores["loss"].notna().all()
    if method != "none":
        # preconditioning reweights directions; it must not scramble the ranking
        from scipy.stats import spearmanr

        plain = _attribute(tmp_path, adapter, train_dir, val_dir, method="none")
        assert not np.allclose(plain["score"], scores["score"])
        assert spearmanr(plain["score"], scores["score"]).statistic > 0.5


def test_read_scores_rejects_unwritten_rows(tmp_path, adapter, gemma_tokenizer):
    import numpy as np
    from bergson.data import load_scores

    train_dir = _tokens(tmp_path, "train", GUESSER_ROWS[:3], gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[3:5], gemma_tokenizer)
    _attribute(tmp_path, adapter, train_dir, val_dir)
    run = tmp_path / "none" / "score" / "run"
    stored = load_scores(run)
    mm = np.memmap(stored.mmap.filename, dtype=stored.mmap.dtype, mode="r+", shape=stored.mmap.shape)
    mm["written_0"][1] = False
    mm.flush()
    with pytest.raises(RuntimeError, match="did not write scores for 1 rows, e.g. \\['train-1'\\]"):
        read_scores(run, load_token_dataset(train_dir))


def test_token_batch_size_smaller_than_a_row_is_a_clear_error(tmp_path, adapter, gemma_tokenizer):
    from playpen_attribution.errors import WorkflowInputError

    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[:2], gemma_tokenizer)
    with pytest.raises(WorkflowInputError, match="token_batch_size=8"):
        reduce_query(adapter, val_dir, tmp_path / "query", AttributionSettings(token_batch_size=8))
    assert not (tmp_path / "query").exists()


def test_token_batch_size_beyond_the_model_is_a_clear_error(tmp_path, adapter, gemma_tokenizer):
    from playpen_attribution.errors import WorkflowInputError

    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[:2], gemma_tokenizer)
    # the tiny model has max_position_embeddings=512
    with pytest.raises(WorkflowInputError, match="exceeds the model's maximum length 512"):
        reduce_query(adapter, val_dir, tmp_path / "query", AttributionSettings(token_batch_size=1024))
    assert not (tmp_path / "query").exists()


def test_matrix_row_means_equal_the_mean_query_scores(tmp_path, adapter, gemma_tokenizer):
    """One query per validation row (the workflow's path) vs the mean query: same scores."""
    import json

    train_dir = _tokens(tmp_path, "train", GUESSER_ROWS[:5] + UNRELATED[:3], gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[5:], gemma_tokenizer)
    mean_query = _attribute(tmp_path, adapter, train_dir, val_dir)
    reduce_query(adapter, val_dir, tmp_path / "rows" / "query", SETTINGS, aggregation="none")
    score_train(
        adapter,
        train_dir,
        tmp_path / "rows" / "query",
        tmp_path / "rows" / "score",
        tmp_path / "rows" / "scores.parquet",
        SETTINGS,
        val_tokens_dir=val_dir,
        matrix_path=tmp_path / "rows" / "matrix.npy",
        matrix_ids_path=tmp_path / "rows" / "ids.json",
    )
    matrix = np.load(tmp_path / "rows" / "matrix.npy", mmap_mode="r")
    ids = json.loads((tmp_path / "rows" / "ids.json").read_text())
    assert matrix.shape == (8, 3) and ids["rows"] == mean_query["row_id"].tolist()
    assert ids["columns"] == ["val-0", "val-1", "val-2"]
    assert_close_up_to_fp32_rounding(matrix.mean(axis=1), mean_query["score"])
    scores = pd.read_parquet(tmp_path / "rows" / "scores.parquet")
    assert_close_up_to_fp32_rounding(scores["mean"], mean_query["score"])
    assert_close_up_to_fp32_rounding(scores["nearest"], matrix.max(axis=1))
