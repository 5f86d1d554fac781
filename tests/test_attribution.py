"""Attribution: Bergson scores vs an independent autograd computation, and planted signal."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import GUESSER_ROWS, assert_close_up_to_fp32_rounding, chat, with_defaults

from playpen_attribution.attribution.scoring import (
    AttributionSettings,
    PreconditionerSettings,
    fit_hessian,
    read_scores,
    reduce_query,
    score_train,
)
from playpen_attribution.data.tokens import load_token_dataset, save_token_dataset, tokenize_rows

SETTINGS = with_defaults(AttributionSettings, precision="fp32", token_batch_size=256, unit_normalize=True)


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
        preconditioner = with_defaults(PreconditionerSettings, method=method, use_dataset_labels=True)
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
    settings = with_defaults(
        AttributionSettings, precision="fp32", token_batch_size=256, unit_normalize=unit_normalize
    )
    scores = _attribute(tmp_path, adapter, train_dir, val_dir, settings)
    expected = autograd_scores(adapter, train_dir, val_dir, unit_normalize)
    rel = np.abs(scores["score"].to_numpy() - expected).max() / np.abs(expected).max()
    assert rel < 1e-3, (scores["score"].tolist(), expected.tolist())
    assert scores["row_id"].tolist() == [f"train-{i}" for i in range(8)]


def test_the_token_batch_size_changes_scores_only_by_float_rounding(tmp_path, adapter, gemma_tokenizer):
    """Rows are batched by `token_batch_size`; each row's gradient is its own, so a batch
    of one row and a batch of several give the same scores up to fp32 rounding (the demo
    halved its batch to hold its jobs within 3 GB, docs/benchmarks.md)."""
    train_dir = _tokens(tmp_path, "train", GUESSER_ROWS[:5] + UNRELATED[:3], gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[5:], gemma_tokenizer)
    longest = max(max(load_token_dataset(d)["n_tokens"]) for d in (train_dir, val_dir))
    scores = {}
    for size in (longest, 256):  # one row per batch; all rows of each split in one batch
        settings = with_defaults(AttributionSettings, precision="fp32", token_batch_size=size)
        scores[size] = _attribute(tmp_path / str(size), adapter, train_dir, val_dir, settings)["score"]
    assert 2 * longest <= 256  # the second batches two rows or more
    assert_close_up_to_fp32_rounding(scores[longest], scores[256])


# --------------------------------------------------------------------------- K-FAC / EK-FAC
# The preconditioned scores against an independent computation in float64, on dense
# matrices: per LoRA layer (Bergson's unit: each lora_A and lora_B Linear), over the
# positions Bergson collects (every position but each row's last), with the per-row loss
# of Bergson's Hessian pass (summed token loss / sqrt(trained tokens), dataset labels):
#   A = mean a a^T (layer inputs), G = mean g g^T (gradients at the layer output),
#   K-FAC   H = (positions / rows) G (x) A, as a dense [O*I, O*I] Kronecker product;
#   EK-FAC  H = Q diag(l) Q^T with Q = Q_G (x) Q_A (the eigenvectors of G and A) and l the
#           mean over rows of (Q^T vec(W_row))^2, W_row the row's weight gradient;
#   damped  P = H + c * mean(eig H) * I (c = damping_factor), and its power by eigh.
# Scores: s_i = u(P^-1/2 g_i) . mean_j u(P^-1/2 q_j) (unit-normalised, two-sided) or
# s_i = g_i . P^-1 mean_j q_j (one-sided), the gradients those of each row's mean loss.
def _trained_logits(model, row):
    """The logits at the positions whose next token is trained, and those tokens (the
    output layer at the 262k-token vocabulary on every position would cost most of the
    test's time and change no loss)."""
    labels = torch.tensor(row["labels"])[1:]
    predicting = (labels != -100).nonzero().squeeze(1)
    logits = model(input_ids=torch.tensor([row["input_ids"]]), logits_to_keep=predicting).logits[0]
    return logits, labels[predicting]


def _layer_statistics(model, rows, lora_layers):
    """Per layer: A, G (means over positions), the rows' weight gradients of the Hessian
    pass, and the number of positions."""
    inputs, output_grads = {}, {}

    def record(module, args, output, name):
        inputs[name] = args[0]
        output.register_hook(lambda grad: output_grads.__setitem__(name, grad))

    handles = [
        layer.register_forward_hook(lambda m, args, out, n=name: record(m, args, out, n))
        for name, layer in lora_layers.items()
    ]
    a_sum = {n: 0.0 for n in lora_layers}
    g_sum = {n: 0.0 for n in lora_layers}
    weight_grads = {n: [] for n in lora_layers}
    positions = 0
    for row in rows:
        logits, target = _trained_logits(model, row)
        (torch.nn.functional.cross_entropy(logits, target, reduction="sum") / len(target) ** 0.5).backward()
        kept = slice(0, len(row["input_ids"]) - 1)  # Bergson's collection mask
        positions += kept.stop
        for name in lora_layers:
            a, g = inputs[name][0].detach(), output_grads[name][0].detach()  # [S, I], [S, O]
            a_sum[name] = a_sum[name] + a[kept].T @ a[kept]
            g_sum[name] = g_sum[name] + g[kept].T @ g[kept]
            weight_grads[name].append(g.T @ a)  # [O, I]: every position's part
    for h in handles:
        h.remove()
    return (
        {n: a_sum[n] / positions for n in lora_layers},
        {n: g_sum[n] / positions for n in lora_layers},
        weight_grads,
        positions,
    )


def _damped_power(eigh, damping, power):
    """(H + damping * mean(eig H) * I)^power, from H's eigendecomposition."""
    eigvals, eigvecs = eigh
    eigvals = eigvals.clamp_min(0)
    return (eigvecs * (eigvals + damping * eigvals.mean()) ** power) @ eigvecs.T


def independent_preconditioned_scores(adapter, train_dir, val_dir, method, dampings):
    """{(unit_normalize, damping): scores of the training rows}, computed as described above."""
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(adapter, dtype=torch.float64).eval()
    model.requires_grad_(False)
    lora_layers = {
        name: module
        for name, module in model.named_modules()
        if name.endswith((".lora_A.default", ".lora_B.default"))
    }
    for layer in lora_layers.values():
        layer.weight.requires_grad_(True)
    train, val = list(load_token_dataset(train_dir)), list(load_token_dataset(val_dir))

    A, G, weight_grads, positions = _layer_statistics(model, train, lora_layers)
    hessian_eigh = {}
    for name in lora_layers:
        if method == "kfac":
            H = positions / len(train) * torch.kron(G[name], A[name])
        else:
            q = torch.kron(torch.linalg.eigh(G[name]).eigenvectors, torch.linalg.eigh(A[name]).eigenvectors)
            rotated = torch.stack([q.T @ w.reshape(-1) for w in weight_grads[name]])
            H = q @ torch.diag((rotated**2).mean(0)) @ q.T
        hessian_eigh[name] = torch.linalg.eigh(H)

    def grads(row):
        """Per layer, the weight gradient of the row's mean token loss (the score pass)."""
        loss = torch.nn.functional.cross_entropy(*_trained_logits(model, row))
        return [g.reshape(-1) for g in torch.autograd.grad(loss, [m.weight for m in lora_layers.values()])]

    train_grads, val_grads = [grads(r) for r in train], [grads(r) for r in val]

    def u(x):
        return x / x.norm()

    out = {}
    for damping in dampings:
        for unit_normalize in (True, False):
            power = -0.5 if unit_normalize else -1.0
            P = [_damped_power(hessian_eigh[n], damping, power) for n in lora_layers]

            def preconditioned(layer_grads, P=P):
                return torch.cat([p @ g for p, g in zip(P, layer_grads)])

            if unit_normalize:
                query = torch.stack([u(preconditioned(g)) for g in val_grads]).mean(0)
                scores = [u(preconditioned(g)) @ query for g in train_grads]
            else:
                query = torch.stack([preconditioned(g) for g in val_grads]).mean(0)  # P^-1 mean_j q_j
                scores = [torch.cat(g) @ query for g in train_grads]
            out[unit_normalize, damping] = np.array([float(s) for s in scores])
    return out


@pytest.mark.parametrize("method", ["kfac", "ekfac"])
def test_preconditioned_scores_match_an_independent_computation(tmp_path, adapter, gemma_tokenizer, method):
    """Bergson's scores (damping_factor 0.1) equal the independent ones at relative 1e-3, both
    forms; those with a damping of 0.2 differ by more than 1e-2, so the tolerance tells a
    wrong damping apart."""
    train_dir = _tokens(tmp_path, "train", GUESSER_ROWS[:5] + UNRELATED[:3], gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[5:], gemma_tokenizer)
    preconditioner = with_defaults(PreconditionerSettings, method=method, use_dataset_labels=True)
    assert preconditioner.damping_factor == 0.1
    hessian = tmp_path / "hessian"
    fit_hessian(adapter, [train_dir], hessian, SETTINGS, preconditioner)
    expected = independent_preconditioned_scores(adapter, train_dir, val_dir, method, dampings=(0.1, 0.2))
    for unit_normalize in (True, False):
        settings = with_defaults(
            AttributionSettings, precision="fp32", token_batch_size=256, unit_normalize=unit_normalize
        )
        out = tmp_path / f"unit_normalize-{unit_normalize}"
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
        scores = pd.read_parquet(out / "scores.parquet")["score"].to_numpy()
        for damping, within in ((0.1, True), (0.2, False)):
            reference = expected[unit_normalize, damping]
            rel = np.abs(scores - reference).max() / np.abs(reference).max()
            assert (rel < 1e-3) if within else (rel > 1e-2), (unit_normalize, damping, rel)


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
    from playpen_attribution.core.errors import WorkflowInputError

    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[:2], gemma_tokenizer)
    with pytest.raises(WorkflowInputError, match="token_batch_size=8"):
        reduce_query(
            adapter,
            val_dir,
            tmp_path / "query",
            with_defaults(AttributionSettings, token_batch_size=8),
            aggregation="none",
        )
    assert not (tmp_path / "query").exists()


def test_token_batch_size_beyond_the_model_is_a_clear_error(tmp_path, adapter, gemma_tokenizer):
    from playpen_attribution.core.errors import WorkflowInputError

    val_dir = _tokens(tmp_path, "val", GUESSER_ROWS[:2], gemma_tokenizer)
    # the tiny model has max_position_embeddings=512
    with pytest.raises(WorkflowInputError, match="exceeds the model's maximum length 512"):
        reduce_query(
            adapter,
            val_dir,
            tmp_path / "query",
            with_defaults(AttributionSettings, token_batch_size=1024),
            aggregation="none",
        )
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


# Settings and methods no other test runs, one Bergson run each (a preconditioner adds its
# fit). Unit-normalised, so a copy of a validation row scores ~1 against that row.
UNEXERCISED = {
    # a random projection of the gradients, the summed loss, and the MLP LoRA left out
    "projection-sum-filter": (
        with_defaults(
            AttributionSettings,
            precision="fp32",
            token_batch_size=256,
            projection_dim=16,
            loss_reduction="sum",
            filter_modules="*.mlp.*",
        ),
        "none",
    ),
    "tkfac": (SETTINGS, "tkfac"),
    "shampoo": (SETTINGS, "shampoo"),
}


@pytest.mark.parametrize("case", list(UNEXERCISED))
def test_unexercised_settings_score_every_row_and_rank_a_copy_first(tmp_path, adapter, gemma_tokenizer, case):
    """Each setting scores every training row (finite, in input order), and under the
    workflow's per-validation-row queries a planted copy of a validation row is that
    row's top training row, and the top row under `nearest`."""
    import json

    settings, method = UNEXERCISED[case]
    val_chats = CLUE_CHATS[:3]
    train_chats = CLUE_CHATS[3:8] + [val_chats[0]] + CLUE_CHATS[8:11] + [val_chats[2]]
    copies = {"train-5": "val-0", "train-9": "val-2"}
    train_dir = _tokens(tmp_path, "train", train_chats, gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", val_chats, gemma_tokenizer)
    preconditioner, hessian = None, None
    if method != "none":
        preconditioner = with_defaults(PreconditionerSettings, method=method, use_dataset_labels=True)
        hessian = tmp_path / "hessian"
        fit_hessian(adapter, [train_dir], hessian, settings, preconditioner)
    reduce_query(adapter, val_dir, tmp_path / "query", settings, preconditioner, hessian, aggregation="none")
    score_train(
        adapter,
        train_dir,
        tmp_path / "query",
        tmp_path / "score",
        tmp_path / "scores.parquet",
        settings,
        preconditioner,
        hessian,
        val_tokens_dir=val_dir,
        matrix_path=tmp_path / "matrix.npy",
        matrix_ids_path=tmp_path / "ids.json",
    )
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    matrix = np.load(tmp_path / "matrix.npy")
    assert scores["row_id"].tolist() == [f"train-{i}" for i in range(len(train_chats))]
    assert matrix.shape == (len(train_chats), 3) and np.isfinite(matrix).all()
    assert np.isfinite(scores[["mean", "nearest", "rank_mean"]].to_numpy()).all()
    assert json.loads((tmp_path / "ids.json").read_text())["columns"] == ["val-0", "val-1", "val-2"]
    for copy, val_row in copies.items():
        assert scores.set_index("row_id").at[copy, "best_val_row_id"] == val_row
        column = matrix[:, int(val_row.split("-")[1])]
        assert scores["row_id"][int(column.argmax())] == copy, column
    top = scores.sort_values("nearest", ascending=False)["row_id"].tolist()
    assert set(top[:2]) == set(copies), scores.sort_values("nearest", ascending=False)
    # the settings reached bergson: its query run records them
    # The settings reached bergson: its query run records them and the gradients it kept.
    import yaml

    run = tmp_path / "query" / "run"
    step = yaml.safe_load((run / "config.yaml").read_text())["steps"][0]["reduce"]
    grad_sizes = json.loads((run / "info.json").read_text())["grad_sizes"]
    assert step["index_cfg"]["projection_dim"] == settings.projection_dim
    assert step["index_cfg"]["loss_reduction"] == settings.loss_reduction
    assert (step["preprocess_cfg"]["hessian_path"] is None) == (method == "none")
    if settings.filter_modules:  # 16 of the 28 LoRA matrices: attention only
        assert len(grad_sizes) == 16 and not any(".mlp." in name for name in grad_sizes)
    else:
        assert len(grad_sizes) == 28
    if settings.projection_dim:  # per module, projection_dim x projection_dim
        assert set(grad_sizes.values()) == {settings.projection_dim**2}
