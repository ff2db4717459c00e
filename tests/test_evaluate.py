"""The batched evaluator against the plain per-mask forward, its cache, metrics and errors."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import f1_score
from torch import nn

from evoprune.archs import ACTIVATIONS
from evoprune.evaluate import Evaluator, genome_key
from evoprune.fastmlp import _zero_on
from evoprune.masks import MaskSpace, pack_rows, sparsity
from evoprune.nets import build_mlp
from evoprune.objectives import accuracy, cross_entropy, macro_f1
from evoprune.scores import forward_one

TINY_MB = 0.02  # ~20 KB: population chunks of a few masks, sample chunks of a few rows


def _data(n: int, n_in: int, n_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, n_in, generator=gen) * 1.4 - 0.7
    y = torch.randint(0, n_classes, (n,), generator=gen)
    return X, y


def _masks(P: int, n_bits: int, seed: int = 1, keep: float = 0.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    masks = torch.rand(P, n_bits, generator=gen) < keep
    masks[0] = True  # the dense net
    masks[1] = False  # the empty net: every logit is the output bias, a tie-free constant
    return masks


def _reference(model: nn.Module, space: MaskSpace, masks: torch.Tensor, X: torch.Tensor):
    return torch.stack([forward_one(model, space, m, X) for m in masks])  # (P, n, C)


ARCHS = [[2, 9, 2], [2, 6, 5, 2], [5, 8, 10], [64, 7, 6, 10], [3, 6, 4], [4, 3]]


@pytest.mark.parametrize("layers", ARCHS, ids=lambda a: "-".join(map(str, a)))
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
@pytest.mark.parametrize("memory_mb", [64.0, TINY_MB], ids=["one-chunk", "tiny-chunks"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_batched_equals_per_mask_forward(layers, fast, memory_mb, activation):
    net = build_mlp(layers, seed=3, activation=activation)
    X, y = _data(97, layers[0], layers[-1])
    ev = Evaluator(net, X, y, objective="loss", fast=fast, memory_mb=memory_mb)
    masks = _masks(11, ev.n_bits)
    ref = _reference(net, ev.space, masks, X)
    got = ev.evaluate(masks)
    assert set(got) == {"loss", "accuracy"}
    assert torch.equal(got["accuracy"], accuracy(ref, y).double())
    torch.testing.assert_close(got["loss"], cross_entropy(ref, y), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ev.logits(masks), ref, rtol=1e-5, atol=1e-5)


class _Shifted(nn.Sequential):
    """An MLP stack by its children, with a forward of its own (the input shifted)."""

    def forward(self, x):
        return super().forward((x - 5) / 2)


def _named_stack():
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(fc1=nn.Linear(4, 16), act=nn.ReLU(), fc2=nn.Linear(16, 3)))


@pytest.mark.parametrize("make", [_named_stack, lambda: _Shifted(nn.Linear(4, 16), nn.ReLU(),
                                                                 nn.Linear(16, 3))],
                         ids=["named-children", "own-forward"])  # fmt: skip
def test_a_sequential_the_fast_path_would_misread_is_scored_as_it_runs(make):
    torch.manual_seed(0)
    net = make()
    X, y = _data(200, 4, 3)
    ev = Evaluator(net, X * 4 + 5, y, objective="loss")
    masks = _masks(5, ev.n_bits)
    ref = _reference(net, ev.space, masks, X * 4 + 5)
    torch.testing.assert_close(ev.evaluate(masks)["loss"], cross_entropy(ref, y), rtol=1e-5,
                               atol=1e-7)  # fmt: skip


@pytest.mark.parametrize("layers", [[2, 9, 2], [2, 6, 5, 2], [5, 8, 10]])
@pytest.mark.parametrize("memory_mb", [64.0, TINY_MB])
def test_accuracy_only_matches(layers, memory_mb):
    # The default metrics of the accuracy objective: the fast path's two-class margins.
    net = build_mlp(layers, seed=4)
    X, y = _data(203, layers[0], layers[-1], seed=2)
    ev = Evaluator(net, X, y, memory_mb=memory_mb)
    assert ev.metric_names == ("accuracy",)
    masks = _masks(13, ev.n_bits, keep=0.7)
    expected = accuracy(_reference(net, ev.space, masks, X), y).double()
    assert torch.equal(ev.evaluate(masks)["accuracy"], expected)


@pytest.mark.parametrize("layers", [[2, 9, 2], [2, 6, 5, 2], [5, 8, 10], [3, 6, 4]])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
@pytest.mark.parametrize("memory_mb", [64.0, TINY_MB], ids=["one-chunk", "tiny-chunks"])
@pytest.mark.parametrize("metrics", [("f1",), ("f1", "loss", "accuracy")])
def test_streamed_f1_equals_f1_of_all_logits(layers, fast, memory_mb, metrics):
    # Macro-F1 from confusion counts summed chunk by chunk (alone: from two-class margins on
    # the fast path) is the F1 of the whole data's logits, bit for bit.
    net = build_mlp(layers, seed=5)
    X, y = _data(211, layers[0], layers[-1], seed=4)
    ev = Evaluator(net, X, y, objective="f1", fast=fast, memory_mb=memory_mb, metrics=metrics)
    masks = _masks(12, ev.n_bits, keep=0.6)
    ref = _reference(net, ev.space, masks, X)
    got = ev.evaluate(masks)
    assert torch.equal(got["f1"], macro_f1(ref, y).double())
    if "accuracy" in metrics:
        assert torch.equal(got["accuracy"], accuracy(ref, y).double())


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    return net.requires_grad_(False)


@pytest.mark.parametrize("memory_mb", [64.0, 0.05])
def test_general_path_conv(memory_mb):
    net = _conv_net()
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(40, 1, 8, 8, generator=gen)
    y = torch.randint(0, 3, (40,), generator=gen)
    ev = Evaluator(net, X, y, metrics=("accuracy", "loss", "f1"), memory_mb=memory_mb)
    assert not ev.fast
    masks = _masks(7, ev.n_bits)
    ref = _reference(net, ev.space, masks, X)
    got = ev.evaluate(masks)
    assert torch.equal(got["accuracy"], accuracy(ref, y).double())
    torch.testing.assert_close(got["loss"], cross_entropy(ref, y), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ev.logits(masks), ref, rtol=1e-5, atol=1e-5)


def test_cache_skips_known_and_duplicate_masks():
    net = build_mlp([2, 9, 2], seed=0)
    X, y = _data(50, 2, 2)
    ev = Evaluator(net, X, y, objective="loss")
    masks = _masks(6, ev.n_bits)
    first = ev.evaluate(masks)
    assert ev.n_evaluations == 6
    again = ev.evaluate(masks)
    assert ev.n_evaluations == 6
    for name in first:
        assert torch.equal(first[name], again[name])
    dupes = torch.cat([masks[:1], _masks(3, ev.n_bits, seed=9)[2:], masks[2:3].repeat(2, 1)])
    ev.evaluate(dupes)  # 1 new genome (seed 9, row 2), the rest cached or repeated
    assert ev.n_evaluations == 7
    fresh = Evaluator(net, X, y, objective="loss")
    twice = torch.cat([masks[2:4], masks[2:4], masks[3:4]])
    out = fresh.evaluate(twice)
    assert fresh.n_evaluations == 2
    assert torch.equal(out["loss"][:2], out["loss"][2:4])


@pytest.mark.parametrize("fast", [True, False])
def test_macro_f1_matches_sklearn(fast):
    net = build_mlp([5, 8, 4], seed=2)
    X, y = _data(120, 5, 4, seed=3)
    ev = Evaluator(net, X, y, objective="f1", fast=fast, memory_mb=TINY_MB)
    masks = _masks(9, ev.n_bits)
    got = ev.evaluate(masks)["f1"]
    preds = _reference(net, ev.space, masks, X).argmax(dim=-1)
    for p in range(len(masks)):
        expected = f1_score(y.numpy(), preds[p].numpy(), average="macro")
        assert got[p].item() == pytest.approx(expected, abs=1e-12)


def test_custom_objective():
    def margin_of_truth(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        picked = logits.gather(-1, y.view(1, -1, 1).expand(len(logits), -1, 1))[..., 0]
        return (picked - logits.mean(dim=-1)).mean(dim=-1)  # (P,)

    net = build_mlp([3, 6, 3], seed=1)
    X, y = _data(64, 3, 3)
    ev = Evaluator(net, X, y, objective=margin_of_truth, memory_mb=TINY_MB)
    assert ev.metric_names == ("margin_of_truth", "accuracy")
    masks = _masks(5, ev.n_bits)
    ref = _reference(net, ev.space, masks, X)
    got = ev.evaluate(masks)
    torch.testing.assert_close(
        got["margin_of_truth"], margin_of_truth(ref, y).double(), rtol=1e-5, atol=1e-6
    )
    assert torch.equal(ev.fitness(got), got["margin_of_truth"])


def test_metrics_argument():
    net = build_mlp([2, 5, 2], seed=0)
    X, y = _data(30, 2, 2)
    assert Evaluator(net, X, y, objective="loss").metric_names == ("loss", "accuracy")
    ev = Evaluator(net, X, y, metrics=("f1", "loss"))
    assert set(ev.evaluate(_masks(3, ev.n_bits))) == {"f1", "loss"}
    with pytest.raises(ValueError, match="metrics"):
        Evaluator(net, X, y, metrics=("precision",))


def test_wrong_mask_shape_raises():
    net = build_mlp([2, 5, 2], seed=0)
    X, y = _data(10, 2, 2)
    ev = Evaluator(net, X, y)
    with pytest.raises(ValueError, match="expected shape"):
        ev.evaluate(torch.ones(3, ev.n_bits + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected shape"):
        ev.evaluate(torch.ones(ev.n_bits, dtype=torch.bool))


@pytest.mark.parametrize("layers", [[2, 12, 9, 2], [2, 8, 7, 6, 3], [3, 10, 8, 4], [6, 9, 8, 2]])
@pytest.mark.parametrize("keep", [0.2, 0.5])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_compacted_deep_nets_match(layers, keep, activation):
    # Sparse masks leave many constant, unread or (on this data, for ReLU) always-zero hidden
    # units, which the fast path drops per mask; the result must not change. (A constant unit
    # outputs f(bias), not 0, unless f is ReLU with a negative bias.)
    net = build_mlp(layers, seed=6, activation=activation)
    X, y = _data(151, layers[0], layers[-1], seed=4)
    X[:, 0] = X[:, 0].abs()  # one-signed inputs: some first-layer units are zero on all of X
    ev = Evaluator(net, X, y, objective="loss", memory_mb=TINY_MB)
    masks = _masks(17, ev.n_bits, keep=keep)
    ref = _reference(net, ev.space, masks, X)
    got = ev.evaluate(masks)
    assert torch.equal(got["accuracy"], accuracy(ref, y).double())
    torch.testing.assert_close(ev.logits(masks), ref, rtol=1e-5, atol=1e-5)
    margins = Evaluator(net, X, y, memory_mb=TINY_MB).evaluate(masks)["accuracy"]
    assert torch.equal(margins, got["accuracy"])


def test_compaction_drops_units():
    net = build_mlp([2, 40, 30, 2], seed=0)
    X, y = _data(300, 2, 2)
    ev = Evaluator(net, X, y)
    pop = ev._mlp.prepare(_masks(8, ev.n_bits, keep=0.3)[2:], margin=True)
    w0, w1 = pop.weights[1].shape[2], pop.weights[1].shape[1]
    assert w0 < 40 and w1 < 30


def test_sparsity_is_exact():
    """210 zeros of 300 bits are 0.7 exactly (float32 would give 0.69999999 and fail a
    ">= 0.70" check); per-row for a population."""
    mask = torch.ones(300, dtype=torch.bool)
    mask[:210] = False
    assert float(sparsity(mask)) == 0.7
    pop = torch.stack([mask, torch.ones(300, dtype=torch.bool)])
    assert sparsity(pop).tolist() == [0.7, 0.0]


def test_zero_on_finds_exactly_the_rows_zero_on_the_support():
    # The rows a tabulated first layer skips: relu(w x + b) is 0 on every support sample,
    # decided in float64 with a margin; over several 8192-sample chunks, as one float64 max.
    gen = torch.Generator().manual_seed(3)
    support = torch.rand(2, 20_000, generator=gen) * 1.4 - 0.7  # (in, n), the moons scale
    w = torch.rand(400, 2, generator=gen) * 2 - 1
    w[::3, 0] = 0.0  # rows with an input masked away, as in the table
    b = torch.rand(400, generator=gen) * 2 - 1.2
    got = _zero_on(w, b, support)
    w64, b64, x64 = w.double(), b.double()[:, None], support.double()
    highest = (w64 @ x64 + b64 + 1e-5 * (b64.abs() + w64.abs() @ x64.abs())).amax(1)
    assert torch.equal(got, highest < 0)
    assert 50 < int(got.sum()) < 350  # both kinds of row occur
    assert torch.all(torch.relu(w[got] @ support + b[got, None]) == 0)  # float32: truly zero
    assert not _zero_on(w, b, None).any()


def test_zero_on_leaves_out_rows_that_reach_just_above_zero():
    # rows whose highest pre-activation lies within float32 rounding of 0, on either side: one
    # that is positive anywhere in float32 must not be called zero (the margin is conservative)
    gen = torch.Generator().manual_seed(4)
    support = torch.rand(2, 500, generator=gen) * 1.4 - 0.7
    w = torch.rand(40, 2, generator=gen) * 2 - 1
    offsets = torch.logspace(-7, -2, 20)
    b = -(w.double() @ support.double()).amax(1) + torch.cat([offsets, -offsets]).double()
    b = b.float()
    got = _zero_on(w, b, support)
    positive = (torch.relu(w @ support + b[:, None]) > 0).any(1)  # the float32 forward
    assert not (got & positive).any()
    assert got[20:].any() and positive[:20].any()  # both sides of the boundary occur


@pytest.mark.parametrize("hidden", [[2, 4], [1, 4, 3]])
def test_a_first_layer_dead_on_every_sample_is_scored_as_a_plain_forward(hidden):
    """Two inputs tabulate the first layer; with every unit zero on the data (biases far below
    the inputs' reach) the table has no row, which crashed the fast path's row selection."""
    torch.manual_seed(0)
    model = build_mlp([2, *hidden, 2], seed=1)
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    X, y = torch.rand(50, 2) * 2 - 1, torch.randint(0, 2, (50,))
    ev = Evaluator(model, X, y, "loss", metrics=("loss", "accuracy"))
    assert ev.fast
    masks = torch.rand(6, ev.n_bits) < 0.5
    logits = _reference(model, ev.space, masks, X)
    got = ev.evaluate(masks)
    torch.testing.assert_close(got["loss"], cross_entropy(logits, y), rtol=1e-5, atol=1e-6)
    assert torch.equal(got["accuracy"], accuracy(logits, y))


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_a_bias_free_net_and_its_exact_ties_are_scored_as_argmax_does(classes, fast):
    # without biases an emptied net's logits are all 0: an exact tie, which argmax gives to
    # class 0; the fast path must neither invent a bias nor break ties another way
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, classes, bias=False))
    X, y = _data(120, 4, classes)
    ev = Evaluator(net, X, y, objective="loss", fast=fast, metrics=("loss", "accuracy", "f1"))
    masks = _masks(9, ev.n_bits)
    masks[0] = False
    ref = _reference(net, ev.space, masks, X)
    got = ev.evaluate(masks)
    assert torch.equal(got["accuracy"], accuracy(ref, y).double())
    assert got["accuracy"][0] == (y == 0).double().mean()
    torch.testing.assert_close(got["f1"], macro_f1(ref, y).double())
    # accuracy alone: two classes are scored by their logits' margin, a tie is class 0's too
    alone = Evaluator(net, X, y, objective="accuracy", fast=fast, metrics=("accuracy",))
    assert torch.equal(alone.evaluate(masks)["accuracy"], got["accuracy"])


def _cached(widths: list[int], n: int) -> tuple[Evaluator, torch.Tensor]:
    """An evaluator of an MLP of `widths` (on 50 samples) that has evaluated `n` random masks."""
    net = build_mlp(widths, seed=0)
    X, y = _data(50, widths[0], widths[-1])
    ev = Evaluator(net, X, y, objective="loss")
    masks = _masks(n, ev.n_bits)
    ev.evaluate(masks)
    return ev, masks


def test_cache_arrays_hold_the_first_n_genomes_in_evaluation_order():
    # a checkpoint keeps the cache as it was at `state.evaluations`: entries evaluated after
    # it (an interrupt mid-generation) must stay out
    ev, masks = _cached([2, 9, 2], 6)
    keys, values = ev.cache_arrays(4)
    assert keys.shape[0] == values.shape[0] == 4
    assert [k.tobytes() for k in keys] == [genome_key(row) for row in pack_rows(masks[:4])]


def test_the_cache_keeps_16_bytes_a_genome_however_large_the_network():
    # before, the packed genome itself: 30 KB an evaluation on 784-300-10
    ev, masks = _cached([40, 300, 10], 5)
    keys, _ = ev.cache_arrays(5)
    assert keys.shape == (5, 16) and ev.n_bits // 8 > 1000
    assert len({k.tobytes() for k in keys}) == 5
    flipped = masks[:1].clone()
    flipped[0, -1] = ~flipped[0, -1]  # one bit apart: another genome, another key
    ev.evaluate(flipped)
    assert ev.n_evaluations == 6


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_f1_counts_a_class_the_labels_lack_as_scikit_learn_does(fast):
    # the labels hold no class 2: its true count must still be 0 (not missing), and a mask
    # predicting it gets an F1 of 0 for that class in the macro average
    net = build_mlp([5, 8, 3], seed=0)
    X, y = _data(90, 5, 2, seed=3)  # labels 0 and 1 only
    ev = Evaluator(net, X, y, objective="f1", fast=fast, metrics=("f1",))
    masks = _masks(9, ev.n_bits)
    got = ev.evaluate(masks)["f1"]
    preds = _reference(net, ev.space, masks, X).argmax(dim=-1)
    assert (preds == 2).any()  # some mask predicts the absent class
    for p in range(len(masks)):
        expected = f1_score(y.numpy(), preds[p].numpy(), average="macro")
        assert got[p].item() == pytest.approx(expected, abs=1e-12)
