"""Sparse logits (compute.sparse_logits): the same losses, gradients, scores and adapters as
the full computation, with the output layer applied to fewer rows."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import GUESSER_ROWS, chat, with_defaults
from test_attribution import CLUE_CHATS, _tokens

from playpen_attribution.attribution.scoring import AttributionSettings, reduce_query, score_train
from playpen_attribution.data.tokens import load_token_dataset, save_token_dataset, tokenize_rows
from playpen_attribution.sft.sparse_logits import (
    IGNORE_INDEX,
    bergson_sparse_logits,
    sparse_fwd_bwd_factory,
    trained_positions,
)

# The equality tests compare two computations that are the same maths summed in another
# order: the output layer at the trained positions only, or at every position. In fp32 that
# reordering alone moved gradients by up to 4e-5 on some CPUs (issue 18), so they run the
# tiny model in float64, where it moves them by ~1e-16 relative: TOL is loose for rounding
# on any CPU and far below a real difference (test_the_equality_checks_see_a_real_difference).
DTYPE = torch.float64
TOL = 1e-9
# TRL's fused LM head computes the logits in fp32 whatever the model's dtype (its chunked
# kernel casts hidden states and weight with `.float()`), so SFT is compared up to fp32
# rounding: relative to the largest magnitude compared, 256 fp32 epsilons (3e-5). Measured:
# 4e-6 (adapter weights after two Adam steps), 1e-6 (grad_norm).
SFT_RTOL = 256 * torch.finfo(torch.float32).eps


def test_trained_positions_are_those_predicting_a_trained_label():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, -100, -100, -100]])
    assert trained_positions(labels).tolist() == [
        [False, True, True, False, False],
        [True, False, False, False, False],
    ]


class RowCounter:
    """Counts the rows the output layer (a Linear onto the vocabulary) projects."""

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size
        self.rows = 0

    def __call__(self, module, args, output):
        if isinstance(module, torch.nn.Linear) and module.out_features == self.vocab_size:
            self.rows += args[0].numel() // args[0].shape[-1]

    def __enter__(self):
        self._handle = torch.nn.modules.module.register_module_forward_hook(self)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def _peft_model(adapter_dir, softcap=None):
    """The adapter as Bergson loads it: frozen, input embeddings requiring grad; plus the
    LoRA weights requiring grad so that we can read their gradients."""
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=DTYPE)
    model.get_base_model().config.final_logit_softcapping = softcap
    model.requires_grad_(False)
    model.get_input_embeddings().requires_grad_(True)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)
    return model


def _run(fwd_bwd, model, rows):
    """Per-row losses, LoRA gradients (read before fwd_bwd's zero_grad) and output rows."""
    from bergson.data import pad_and_tensor

    grads = {}
    handles = [
        p.register_post_accumulate_grad_hook(lambda p, n=n: grads.__setitem__(n, p.grad.detach().clone()))
        for n, p in model.named_parameters()
        if "lora_" in n
    ]
    embedding_grads = []
    handles.append(
        model.get_input_embeddings().weight.register_post_accumulate_grad_hook(embedding_grads.append)
    )
    batch = {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]}
    x, y, _, _ = pad_and_tensor(batch["input_ids"], labels=batch["labels"], device=torch.device("cpu"))
    with RowCounter(model.config.vocab_size) as counter:
        losses = fwd_bwd(model, x, y, batch)
    for h in handles:
        h.remove()
    assert model.get_input_embeddings().weight.requires_grad  # as Bergson set it
    grads["embedding weight gradients"] = torch.tensor(float(len(embedding_grads)))
    return losses.detach(), grads, counter.rows, x.numel()


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _max_abs(a: dict) -> float:
    return max(float(v.abs().max()) for v in a.values())


def _one_position_fewer(rows: list[dict]) -> list[dict]:
    """The rows with the first row's last trained token untrained: a real difference."""
    first = dict(rows[0])
    last = max(i for i, label in enumerate(first["labels"]) if label != -100)
    first["labels"] = [*first["labels"][:last], -100, *first["labels"][last + 1 :]]
    return [first, *rows[1:]]


@pytest.mark.parametrize("loss_reduction", ["mean", "sum"])
@pytest.mark.parametrize("softcap", [None, 30.0])
@pytest.mark.parametrize("batch_rows", [1, 3])
def test_bergson_losses_and_gradients_equal_the_full_computation(
    adapter, guesser_tokens, loss_reduction, softcap, batch_rows
):
    from bergson.collector.collector import fwd_bwd_factory
    from bergson.config.config import IndexConfig

    cfg = IndexConfig(run_path="unused", loss_reduction=loss_reduction)
    model = _peft_model(adapter, softcap)
    rows = list(load_token_dataset(guesser_tokens[0]))[:batch_rows]  # 3 rows: padded batch
    full_loss, full_grads, full_rows, all_rows = _run(fwd_bwd_factory(cfg), model, rows)
    loss, grads, kept_rows, _ = _run(sparse_fwd_bwd_factory(cfg), model, rows)

    assert loss.shape == (batch_rows,)
    assert (loss - full_loss).abs().max() <= TOL, (loss, full_loss)
    # Bergson's graph starts at the (tied) embedding weight, which gets a discarded gradient
    assert full_grads.pop("embedding weight gradients") == 1
    assert grads.pop("embedding weight gradients") == 0
    assert _max_diff(grads, full_grads) <= TOL
    assert max(float(g.abs().max()) for g in full_grads.values()) > 1e-3  # gradients are not trivially 0
    assert full_rows == all_rows
    assert kept_rows == sum(r["n_trained"] for r in rows) < all_rows / 2


@pytest.mark.parametrize("difference", ["one position fewer", "no softcap"])
def test_the_equality_checks_see_a_real_difference(adapter, guesser_tokens, difference):
    """The comparison above, with the sparse side really different: it must fail by far."""
    from bergson.collector.collector import fwd_bwd_factory
    from bergson.config.config import IndexConfig

    cfg = IndexConfig(run_path="unused")
    rows = list(load_token_dataset(guesser_tokens[0]))[:3]
    full_loss, full_grads, *_ = _run(fwd_bwd_factory(cfg), _peft_model(adapter, 30.0), rows)
    if difference == "one position fewer":
        loss, grads, *_ = _run(
            sparse_fwd_bwd_factory(cfg), _peft_model(adapter, 30.0), _one_position_fewer(rows)
        )
    else:
        loss, grads, *_ = _run(sparse_fwd_bwd_factory(cfg), _peft_model(adapter, None), rows)
    full_grads.pop("embedding weight gradients"), grads.pop("embedding weight gradients")
    assert (loss - full_loss).abs().max() > 1e3 * TOL
    assert _max_diff(grads, full_grads) > 1e3 * TOL


@pytest.mark.parametrize("loss_reduction", ["mean", "sum"])
def test_bergson_hessian_pass_equals_the_full_computation_on_dataset_labels(
    adapter, guesser_tokens, loss_reduction
):
    from bergson.collector.collector import fwd_bwd_hessian_factory
    from bergson.config.config import HessianConfig, IndexConfig

    from playpen_attribution.sft.sparse_logits import sparse_fwd_bwd_hessian_factory

    cfg = IndexConfig(run_path="unused", loss_reduction=loss_reduction)
    hessian_cfg = HessianConfig(method="kfac", use_dataset_labels=True)
    model = _peft_model(adapter)
    rows = list(load_token_dataset(guesser_tokens[0]))[:3]
    full_loss, full_grads, _, all_rows = _run(fwd_bwd_hessian_factory(cfg, hessian_cfg), model, rows)
    loss, grads, kept_rows, _ = _run(sparse_fwd_bwd_hessian_factory(cfg, hessian_cfg), model, rows)
    full_grads.pop("embedding weight gradients"), grads.pop("embedding weight gradients")
    assert (loss - full_loss).abs().max() <= TOL
    assert _max_diff(grads, full_grads) <= TOL
    assert kept_rows == sum(r["n_trained"] for r in rows) < all_rows / 2


def test_bergson_hessian_pass_samples_labels_at_trained_positions_only(adapter, guesser_tokens):
    """True Fisher: the draws differ from Bergson's (it also draws at untrained positions),
    but are seeded, reproducible, and a function of the trained positions only."""
    from bergson.config.config import HessianConfig, IndexConfig

    from playpen_attribution.sft.sparse_logits import sparse_fwd_bwd_hessian_factory

    cfg = IndexConfig(run_path="unused")
    fwd_bwd = sparse_fwd_bwd_hessian_factory(cfg, HessianConfig(method="kfac", use_dataset_labels=False))
    model = _peft_model(adapter)
    rows = list(load_token_dataset(guesser_tokens[0]))[:3]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(_run(fwd_bwd, model, rows))
    (loss_a, grads_a, kept, _), (loss_b, grads_b, _, _) = runs
    assert torch.equal(loss_a, loss_b) and _max_diff(grads_a, grads_b) == 0.0
    assert kept == sum(r["n_trained"] for r in rows)
    assert (loss_a > 0).all()


# --------------------------------------------------------------------------- the label sampler
# The true Fisher's labels: at each trained position a draw from the model's softmax there.
# Each row below has one trained position, so its returned loss is -log p(drawn token) at
# that position, which names the token drawn (the probabilities differ by far more than
# float64 rounding). A model of 16 tokens initialised wider than the default (std 0.1, not
# 0.02) has softmaxes far from uniform and from each other, so a wrong distribution shows.
SAMPLER_VOCAB = 16
SAMPLER_IDS = [2, 5, 7, 3, 9, 11]
SAMPLER_POSITIONS = (1, 3)  # the positions that predict labels[2] and labels[4]
SAMPLER_ALPHA = 1e-3  # the chi-square level: a correct sampler fails 1 in 1000 seeds sets


def _sampler_model():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=SAMPLER_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=64,
        initializer_range=0.1,
    )
    model = Gemma3ForCausalLM(config).to(DTYPE).eval()
    model.requires_grad_(False)
    model.get_input_embeddings().requires_grad_(True)  # as Bergson sets it
    return model


def _drawn_tokens(fwd_bwd, model, rows_per_position, seeds):
    """{position: tokens drawn there} over `seeds`, each a batch with `rows_per_position`
    rows trained at each position; every row's loss must be exactly one token's -log p."""
    ids = torch.tensor([SAMPLER_IDS] * (rows_per_position * len(SAMPLER_POSITIONS)))
    labels = torch.full_like(ids, IGNORE_INDEX)
    positions = torch.tensor(SAMPLER_POSITIONS).repeat_interleave(rows_per_position)
    labels[torch.arange(len(ids)), positions + 1] = 1  # the dataset label, which must not matter
    with torch.no_grad():
        nll = -model(ids[:1]).logits[0].log_softmax(-1)  # [seq, vocab]
    drawn = {t: [] for t in SAMPLER_POSITIONS}
    for seed in seeds:
        torch.manual_seed(seed)
        losses = fwd_bwd(model, ids, labels, {}).detach()
        gaps = (nll[positions] - losses[:, None]).abs()  # [rows, vocab]
        nearest, token = gaps.min(dim=1)
        assert nearest.max() < 1e-9, "a row's loss is not the -log p of one token at its trained position"
        for position, t in zip(positions.tolist(), token.tolist()):
            drawn[position].append(t)
    return drawn, nll.neg().exp()


def _chi_square_p(tokens, probs) -> float:
    """Pearson's chi-square of the draws against `probs`: one bin per token expected at
    least 5 times, the rest pooled."""
    from scipy.stats import chisquare

    observed = np.bincount(tokens, minlength=len(probs)).astype(float)
    expected = len(tokens) * np.asarray(probs, dtype=float)
    order = np.argsort(-expected)
    kept = order[expected[order] >= 5]
    rest = order[expected[order] < 5]
    obs, exp = list(observed[kept]), list(expected[kept])
    if len(rest):
        obs.append(observed[rest].sum()), exp.append(expected[rest].sum())
    return float(chisquare(obs, exp).pvalue)


@pytest.mark.parametrize("sampler", ["sparse", "bergson"])
def test_sampled_labels_follow_the_model_softmax_at_trained_positions(sampler):
    """2000 draws per position (20 seeds x 100 rows) against the model's own softmax there,
    at level SAMPLER_ALPHA; Bergson's own sampler is held to the same test. The same draws
    against a uniform distribution and against the other position's softmax are rejected:
    the test can tell these apart."""
    from bergson.collector.collector import fwd_bwd_hessian_factory
    from bergson.config.config import HessianConfig, IndexConfig

    from playpen_attribution.sft.sparse_logits import sparse_fwd_bwd_hessian_factory

    factory = sparse_fwd_bwd_hessian_factory if sampler == "sparse" else fwd_bwd_hessian_factory
    fwd_bwd = factory(IndexConfig(run_path="unused"), HessianConfig(method="kfac", use_dataset_labels=False))
    model = _sampler_model()
    drawn, probs = _drawn_tokens(fwd_bwd, model, rows_per_position=100, seeds=range(20))
    first, second = SAMPLER_POSITIONS
    for position, other in ((first, second), (second, first)):
        tokens = drawn[position]
        assert len(tokens) == 2000
        assert _chi_square_p(tokens, probs[position]) > SAMPLER_ALPHA
        assert _chi_square_p(tokens, np.full(SAMPLER_VOCAB, 1 / SAMPLER_VOCAB)) < SAMPLER_ALPHA
        assert _chi_square_p(tokens, probs[other]) < SAMPLER_ALPHA


def test_labels_are_drawn_at_trained_positions_only():
    """One draw per trained position, from the softmax there: nothing at the other positions
    (the row losses above hold one token's loss each, so nothing drawn elsewhere is kept)."""
    from unittest import mock

    from bergson.config.config import HessianConfig, IndexConfig

    from playpen_attribution.sft.sparse_logits import sparse_fwd_bwd_hessian_factory

    fwd_bwd = sparse_fwd_bwd_hessian_factory(
        IndexConfig(run_path="unused"), HessianConfig(method="kfac", use_dataset_labels=False)
    )
    model = _sampler_model()
    with mock.patch.object(torch, "multinomial", wraps=torch.multinomial) as multinomial:
        _, probs = _drawn_tokens(fwd_bwd, model, rows_per_position=3, seeds=[0])
    drawn_from = torch.cat([call.args[0] for call in multinomial.call_args_list])
    assert drawn_from.shape == (3 * len(SAMPLER_POSITIONS), SAMPLER_VOCAB)  # 6 rows, 36 positions
    expected = probs[list(SAMPLER_POSITIONS)].repeat_interleave(3, dim=0)
    assert torch.allclose(drawn_from, expected, rtol=0, atol=TOL)


def test_bergson_kl_loss_keeps_the_full_computation(adapter, guesser_tokens):
    from bergson.config.config import IndexConfig

    model = _peft_model(adapter)
    rows = list(load_token_dataset(guesser_tokens[0]))[:2]
    *_, kept_rows, all_rows = _run(
        sparse_fwd_bwd_factory(IndexConfig(run_path="unused", loss_fn="kl")), model, rows
    )
    # the adapter pass (gradients) and the base-model reference pass, both on every position
    assert kept_rows == 2 * all_rows


def test_bergson_collector_on_the_output_layer_keeps_the_full_computation(adapter, guesser_tokens):
    """A collector hooking lm_head expects [batch, seq, hidden] activations: full path."""
    from bergson.collector.collector import HookCollectorBase
    from bergson.config.config import IndexConfig

    class OutputLayerCollector(HookCollectorBase):
        setup = teardown = forward_hook = backward_hook = process_batch = lambda self, *a, **k: None

        def record(self, module, args, output):
            self.shapes.append(tuple(args[0].shape))

    collector = object.__new__(OutputLayerCollector)  # no target discovery: only its hook matters
    collector.shapes = []
    model = _peft_model(adapter)
    handle = model.get_output_embeddings().register_forward_hook(collector.record)
    rows = list(load_token_dataset(guesser_tokens[0]))[:2]
    try:
        *_, all_rows = _run(sparse_fwd_bwd_factory(IndexConfig(run_path="unused")), model, rows)
    finally:
        handle.remove()
    (shape,) = collector.shapes
    assert len(shape) == 3 and shape[0] * shape[1] == all_rows


def test_bergson_patch_is_scoped_to_the_block():
    from bergson.collector import collector

    original = collector.fwd_bwd_factory
    with bergson_sparse_logits(False, 1):
        assert collector.fwd_bwd_factory is original
    with bergson_sparse_logits(True, 1):
        assert collector.fwd_bwd_factory is not original
    assert collector.fwd_bwd_factory is original


def _attribution_outputs(tmp_path, adapter, train_dir, val_dir, sparse):
    from bergson.data import load_gradients
    from transformers import AutoConfig

    settings = with_defaults(
        AttributionSettings, precision="fp64", token_batch_size=256, sparse_logits=sparse
    )
    with RowCounter(AutoConfig.from_pretrained(adapter).vocab_size) as counter:
        reduce_query(adapter, val_dir, tmp_path / "query", settings, aggregation="mean")
        score_train(
            adapter, train_dir, tmp_path / "query", tmp_path / "score", tmp_path / "scores.parquet", settings
        )
    query = np.asarray(load_gradients(tmp_path / "query" / "run"), dtype=np.float64)
    return query, pd.read_parquet(tmp_path / "scores.parquet"), counter.rows


def test_reduce_and_score_equal_the_full_path(tmp_path, adapter, gemma_tokenizer):
    train_dir = _tokens(tmp_path, "train", CLUE_CHATS[4:12], gemma_tokenizer)
    val_dir = _tokens(tmp_path, "val", CLUE_CHATS[:4], gemma_tokenizer)
    full_query, full, full_rows = _attribution_outputs(tmp_path / "full", adapter, train_dir, val_dir, False)
    query, sparse, kept_rows = _attribution_outputs(tmp_path / "sparse", adapter, train_dir, val_dir, True)

    assert np.abs(query - full_query).max() <= TOL
    assert np.abs(full_query).max() > 1e-3
    pd.testing.assert_frame_equal(
        sparse.drop(columns=["score", "loss"]), full.drop(columns=["score", "loss"])
    )
    assert np.abs(sparse["score"] - full["score"]).max() <= TOL
    assert np.abs(sparse["loss"] - full["loss"]).max() <= TOL
    assert full["score"].abs().max() > 1e-2
    assert kept_rows == sum(int(n) for d in (val_dir, train_dir) for n in load_token_dataset(d)["n_trained"])
    assert full_rows >= sum(int(n) for d in (val_dir, train_dir) for n in load_token_dataset(d)["n_tokens"])


MULTI_TURN = [
    chat(f"HINT: {hint}", f"GUESS: {first}", "Wrong. Another hint: " + more, f"GUESS: {second}")
    for hint, first, more, second in [
        ("white and cold", "RAIN", "falls in winter", "SNOW"),
        ("you sit on it", "SOFA", "it has four legs", "CHAIR"),
        ("a place for ships", "DOCK", "sheltered from the sea", "HARBOR"),
        ("it burns", "FIRE", "slowly, on a birthday cake", "CANDLE"),
        ("sea mammal", "SEAL", "with long tusks", "WALRUS"),
        ("points somewhere", "ARROW", "always north", "COMPASS"),
    ]
]


class LogitRowCounter:
    """Counts the rows TRL's fused LM head projects onto the vocabulary."""

    def __init__(self, monkeypatch):
        import trl.trainer.utils as trl_utils

        self.rows = 0
        original = trl_utils._ChunkedLogProbFunction

        class Counting:
            @staticmethod
            def apply(hidden, *args):
                self.rows += hidden.shape[0]
                return original.apply(hidden, *args)

        monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)


def _sft(tiny_gemma_dir, tokenizer, train, val, sparse, grad_acc, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from playpen_attribution.sft.train import LoraSettings, TrainSettings, train_lora

    settings = with_defaults(
        TrainSettings,
        learning_rate=3e-3,
        epochs=1,
        batch_size=2 // grad_acc,
        gradient_accumulation_steps=grad_acc,
        max_steps=2,
        warmup_ratio=0.0,
        max_length=256,
        seed=7,
        sparse_logits=sparse,
    )
    counter = LogitRowCounter(monkeypatch)
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=DTYPE)
    trainer = train_lora(
        model, tokenizer, train, val, with_defaults(LoraSettings, r=4, dropout=0.0), settings, tmp_path
    )
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    return weights, trainer.state.log_history, counter.rows


def _sft_tokens(tmp_path, tokenizer, chats, name, mask, one_position_fewer=False):
    rows, _ = tokenize_rows(
        [{"row_id": f"{name}-{i}", "messages": m} for i, m in enumerate(chats)], tokenizer, mask, 256
    )
    if one_position_fewer:  # TRL trains on completion_mask
        last = max(i for i, m in enumerate(rows[0]["completion_mask"]) if m)
        rows[0]["completion_mask"][last] = 0
    save_token_dataset(rows, tmp_path / name)
    return load_token_dataset(tmp_path / name)


def _sft_rtol_diff(a: dict, b: dict) -> float:
    """The largest difference, relative to the largest magnitude compared."""
    return _max_diff(a, b) / _max_abs(b)


@pytest.mark.parametrize(
    ("mask", "grad_acc"), [("completion", 1), ("assistant", 1), ("all", 1), ("completion", 2)]
)
def test_sft_step_gives_the_same_adapter(
    tmp_path, tiny_gemma_dir, gemma_tokenizer, monkeypatch, mask, grad_acc
):
    """Two optimizer steps (every train row once) and two evaluations, sparse vs full."""
    train = _sft_tokens(tmp_path, gemma_tokenizer, MULTI_TURN[:4], "train", mask)
    val = _sft_tokens(tmp_path, gemma_tokenizer, MULTI_TURN[4:] + GUESSER_ROWS[:1], "val", mask)
    assert len(set(train["n_tokens"])) > 1  # padded batches
    full_weights, full_log, full_rows = _sft(
        tiny_gemma_dir, gemma_tokenizer, train, val, False, grad_acc, tmp_path / "full", monkeypatch
    )
    weights, log, kept_rows = _sft(
        tiny_gemma_dir, gemma_tokenizer, train, val, True, grad_acc, tmp_path / "sparse", monkeypatch
    )

    assert _sft_rtol_diff(weights, full_weights) <= SFT_RTOL
    assert all(
        float(w.abs().max()) > 1e-3 for n, w in weights.items() if "lora_B" in n
    )  # trained (B starts at 0)
    keys = ("loss", "grad_norm", "mean_token_accuracy", "entropy", "eval_loss", "eval_entropy")
    compared = 0
    for sparse_entry, full_entry in zip(log, full_log, strict=True):
        for key in keys:
            if key in full_entry:
                assert abs(sparse_entry[key] - full_entry[key]) <= SFT_RTOL * max(
                    1.0, abs(full_entry[key])
                ), key
                compared += 1
    assert compared >= 10
    # every row seen once in training, the val rows in two evaluations (on start, after the epoch)
    predicted = [sum(r["completion_mask"][1:]) for r in train] + 2 * [
        sum(r["completion_mask"][1:]) for r in val
    ]
    assert kept_rows == sum(predicted) < full_rows
    if mask != "all":
        assert kept_rows < full_rows / 2


def test_the_sft_equality_check_sees_one_position_fewer(
    tmp_path, tiny_gemma_dir, gemma_tokenizer, monkeypatch
):
    """The comparison above with one trained token fewer on the sparse side: it must fail by far."""
    val = _sft_tokens(tmp_path, gemma_tokenizer, MULTI_TURN[4:], "val", "completion")
    full_weights, full_log, _ = _sft(
        tiny_gemma_dir,
        gemma_tokenizer,
        _sft_tokens(tmp_path, gemma_tokenizer, MULTI_TURN[:4], "train", "completion"),
        val,
        False,
        1,
        tmp_path / "full",
        monkeypatch,
    )
    weights, log, _ = _sft(
        tiny_gemma_dir,
        gemma_tokenizer,
        _sft_tokens(
            tmp_path, gemma_tokenizer, MULTI_TURN[:4], "fewer", "completion", one_position_fewer=True
        ),
        val,
        True,
        1,
        tmp_path / "sparse",
        monkeypatch,
    )
    assert _sft_rtol_diff(weights, full_weights) > 10 * SFT_RTOL
    train_losses = [(a["loss"], b["loss"]) for a, b in zip(log, full_log, strict=True) if "loss" in a]
    assert max(abs(a - b) for a, b in train_losses) > 10 * SFT_RTOL * max(abs(b) for _, b in train_losses)
