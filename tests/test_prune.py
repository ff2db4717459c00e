"""Post-pruning: the incremental MLP walk and the general walk both equal the plain walk."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evoprune.data import load_dataset
from evoprune.evaluate import Evaluator
from evoprune.ga import post_prune
from evoprune.ga import prune as prune_module
from evoprune.masks import MaskSpace
from evoprune.nets import build_mlp
from evoprune.progress import progress_bar
from evoprune.scores import forward_one


def plain_walk(model: nn.Module, space: MaskSpace, mask: torch.Tensor, X, y) -> torch.Tensor:
    """The paper's walk: one candidate at a time, each a masked copy of the model."""

    def accuracy(m: torch.Tensor) -> float:
        return float((forward_one(model, space, m, X).argmax(1) == y).double().mean())

    mask, current = mask.clone(), accuracy(mask)
    for bit in torch.nonzero(mask).flatten():
        trial = mask.clone()
        trial[bit] = False
        acc = accuracy(trial)
        if acc >= current:
            mask, current = trial, acc
    return mask


def teacher_data(n_in: int, n_classes: int, n: int, seed: int, sparse: bool):
    """Inputs (with many exact zeros if `sparse`) labelled by a random linear teacher."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_in, generator=gen)
    if sparse:
        X = (X - 0.5).relu()  # ~70% zeros: the incremental walk's sparse-support path
    y = (X @ torch.randn(n_in, n_classes, generator=gen)).argmax(1)
    return X, y


def no_general_path(*_args, **_kwargs):
    raise AssertionError("the general path was used")


@pytest.mark.parametrize(
    ("layers", "sparse"),
    [
        ([6, 16, 2], False),
        ([6, 16, 2], True),
        ([10, 14, 10], True),
        ([5, 10, 8, 2], False),
        ([6, 8, 10, 10], True),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_walk_equals_the_plain_walk(monkeypatch, layers, sparse, seed):
    X, y = teacher_data(layers[0], layers[-1], 300, seed, sparse)
    net = build_mlp(layers, seed=seed)
    ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
    density = (0.5, 0.8, 1.0)[seed]
    mask = torch.rand(ev.n_bits, generator=torch.Generator().manual_seed(seed)) < density
    monkeypatch.setattr(prune_module, "_speculative_walk", no_general_path)
    pruned, report = post_prune(ev, mask)
    assert torch.equal(pruned, plain_walk(net, ev.space, mask, X, y))
    assert not (pruned & ~mask).any()  # only set bits are cleared
    assert report.bits_before == int(mask.sum()) and report.bits_after == int(pruned.sum())
    assert report.accuracy_after >= report.accuracy_before
    assert ev.n_evaluations == 2  # the first and the final mask: no near-tie needed it
    assert report.accuracy_after == float(ev.evaluate(pruned.view(1, -1))["accuracy"][0])


@pytest.mark.parametrize("classes", [2, 10])
def test_incremental_walk_on_digits_equals_the_plain_walk(monkeypatch, classes):
    ds = load_dataset("digits", classes=classes)
    X, y = ds.X_train[:300], ds.y_train[:300]
    net = build_mlp([64, 12, classes], seed=3)
    ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
    mask = torch.rand(ev.n_bits, generator=torch.Generator().manual_seed(3)) < 0.4
    monkeypatch.setattr(prune_module, "_speculative_walk", no_general_path)
    pruned, report = post_prune(ev, mask)
    assert torch.equal(pruned, plain_walk(net, ev.space, mask, X, y))
    assert report.accuracy_after >= report.accuracy_before
    assert report.bits_after < report.bits_before


def test_a_layer_outside_the_mask_space_is_left_alone():
    X, y = teacher_data(6, 2, 200, 4, sparse=True)
    net = build_mlp([6, 12, 8, 2], seed=4)
    space = MaskSpace(net, is_maskable=lambda name, m: isinstance(m, nn.Linear) and name != "2")
    ev = Evaluator(net, X, y, space=space, cache=False, metrics=("accuracy",))
    mask = torch.rand(ev.n_bits, generator=torch.Generator().manual_seed(4)) < 0.7
    pruned, _ = post_prune(ev, mask)
    assert torch.equal(pruned, plain_walk(net, space, mask, X, y))


def test_exact_ties_are_left_to_the_evaluator():
    """Two identical output units: every sample starts on a tie (argmax takes class 0)."""
    X, y = teacher_data(4, 2, 200, 5, sparse=False)
    net = build_mlp([4, 10, 2], seed=5)
    with torch.no_grad():
        net[2].weight[1] = net[2].weight[0]
        net[2].bias[1] = net[2].bias[0]
    ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
    mask = torch.ones(ev.n_bits, dtype=torch.bool)
    pruned, report = post_prune(ev, mask)
    assert ev.n_evaluations > 2  # the evaluator settled the ties
    assert torch.equal(pruned, plain_walk(net, ev.space, mask, X, y))
    assert report.accuracy_after >= report.accuracy_before


def test_a_tie_that_float64_rounding_hides_is_left_to_the_evaluator(monkeypatch):
    """Sample 0 ties exactly (logits 1 + 2^-52 each; argmax takes class 0, wrong), but float64
    sums its class-0 logit to 1 (1 + 2^-53 rounds to even): a margin of +2^-52 that only the
    rounding bound marks undecided. Taken at face value, removing weight (0, 0) costs sample 1
    and gains nothing, where exact arithmetic (and the plain walk) has it gain sample 0."""
    e = 2.0**-53
    net = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0, 2.0], [1.0, 2.0, 0.0]]))
        net[0].bias.copy_(torch.tensor([e, 0.0]))
    X, y = torch.tensor([[1.0, e, 0.0], [4.0, 0.0, 1.0]]), torch.tensor([1, 0])
    ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
    mask = torch.ones(ev.n_bits, dtype=torch.bool)
    monkeypatch.setattr(prune_module, "_speculative_walk", no_general_path)
    pruned, _ = post_prune(ev, mask)
    assert torch.equal(pruned, plain_walk(net, ev.space, mask, X, y))
    assert not pruned[0]


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_other_modules_take_the_general_path_and_equal_the_plain_walk(monkeypatch):
    gen = torch.Generator().manual_seed(6)
    X = torch.randn(120, 1, 8, 8, generator=gen)
    y = torch.randint(0, 3, (120,), generator=gen)
    torch.manual_seed(6)
    net = SmallConvNet()
    ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
    mask = torch.rand(ev.n_bits, generator=gen) < 0.6
    monkeypatch.setattr(prune_module, "IncrementalWalk", no_general_path)
    pruned, report = post_prune(ev, mask)
    assert torch.equal(pruned, plain_walk(net, ev.space, mask, X, y))
    assert not (pruned & ~mask).any()
    assert report.accuracy_after >= report.accuracy_before
    assert report.bits_after < report.bits_before


def tied_net(layers: list[int], seed: int) -> nn.Module:
    """Two identical output units: every sample starts on an exact tie, so the incremental
    walk hands many of its decisions to the evaluator."""
    net = build_mlp(layers, seed=seed)
    with torch.no_grad():
        net[-1].weight[1] = net[-1].weight[0]
        net[-1].bias[1] = net[-1].bias[0]
    return net


@pytest.mark.parametrize(
    ("layers", "sparse", "tied"),
    [
        ([6, 16, 2], True, False),
        ([5, 10, 8, 2], False, False),
        ([6, 8, 10, 10], True, False),
        ([4, 10, 2], False, True),
        ([5, 9, 7, 3], False, True),
    ],
)
@pytest.mark.parametrize("criterion", ["accuracy", "accuracy-loss"])
def test_incremental_decisions_equal_the_evaluator_walk(
    monkeypatch, layers, sparse, tied, criterion
):
    """The incremental walk (float64 state, rounding bound) against the general walk, which
    judges every candidate with the batched `Evaluator`: the same mask, bit for bit, and the
    same reported accuracies."""
    X, y = teacher_data(layers[0], layers[-1], 300, 7, sparse)
    net = tied_net(layers, 7) if tied else build_mlp(layers, seed=7)
    ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
    mask = torch.ones(ev.n_bits, dtype=torch.bool)
    if not tied:
        mask = torch.rand(ev.n_bits, generator=torch.Generator().manual_seed(7)) < 0.8
    bar = progress_bar(enabled=False)
    if criterion == "accuracy":
        expected, expected_report = prune_module._speculative_walk(ev, mask, bar)
    else:
        expected, expected_report = prune_module._GuardedWalk(ev, criterion, 0).run(mask, bar)
    with monkeypatch.context() as m:
        m.setattr(prune_module, "_speculative_walk", no_general_path)
        m.setattr(prune_module, "_GuardedWalk", no_general_path)
        pruned, report = post_prune(ev, mask, criterion)
    assert torch.equal(pruned, expected)
    assert report.bits_after == expected_report.bits_after < report.bits_before
    assert report.accuracy_before == expected_report.accuracy_before
    assert report.accuracy_after == expected_report.accuracy_after
