"""The local search on modules that are not MLP stacks: flips scored by the general evaluator."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import evoprune
from evoprune.data.registry import load_dataset
from evoprune.errors import EvopruneError
from evoprune.ga.config import GAConfig
from evoprune.local.config import LocalConfig
from evoprune.local.module_state import ModuleState
from evoprune.local.search import local_search
from evoprune.masks import MaskSpace
from evoprune.nets import build_convnet, build_mlp


@pytest.fixture(scope="module")
def digits3():
    return load_dataset("digits", 3, None, None)


def _tanh_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 10), nn.Tanh(), nn.Linear(10, 3))


def _plain(net: nn.Module, bits: np.ndarray, X: torch.Tensor, y: torch.Tensor) -> tuple:
    """Loss, accuracy and macro-F1 of one mask by a plain forward of a masked copy."""
    space = MaskSpace(net)
    masks = space.split(torch.from_numpy(bits))
    weights = {n: p.detach() * masks[n] if n in masks else p.detach()
               for n, p in net.named_parameters()}  # fmt: skip
    with torch.no_grad():
        logits = torch.func.functional_call(net, weights, (X,))
    pred = logits.argmax(1)
    f1s = []
    for c in range(logits.shape[1]):
        tp = int(((pred == c) & (y == c)).sum())
        denom = int((pred == c).sum()) + int((y == c).sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    loss = float(nn.functional.cross_entropy(logits.double(), y))
    return loss, float((pred == y).double().mean()), float(np.mean(f1s))


@pytest.mark.parametrize(
    "objective, tiebreak", [("loss", False), ("accuracy", True), ("f1", False)]
)
def test_flip_scores_are_the_changes_a_plain_forward_measures(digits3, objective, tiebreak):
    ds, net = digits3, _tanh_net()
    start = np.random.default_rng(0).random(64 * 10 + 10 * 3) < 0.5
    st = ModuleState(net, ds.X_train, ds.y_train, objective, start, sparsity_penalty=0.1,
                     tiebreak=tiebreak)  # fmt: skip
    primary, secondary = st.block_scores(1, np.array([0, 2]))  # layer 1: 3 units x 10 inputs
    assert primary.shape == secondary.shape == (2, 10)
    at = {"loss": 0, "accuracy": 1, "f1": 2}[objective]
    base = _plain(net, start, ds.X_train, ds.y_train)
    for u, o in enumerate((0, 2)):
        for i in range(10):
            bits = start.copy()
            bits[640 + o * 10 + i] ^= True
            flipped = _plain(net, bits, ds.X_train, ds.y_train)
            density = 0.1 * (bits.sum() - start.sum()) / bits.size
            change = flipped[at] - base[at] if objective == "loss" else base[at] - flipped[at]
            if tiebreak:  # the loss and the density break the objective's ties
                assert secondary[u, i] == pytest.approx(flipped[0] - base[0] + density, abs=1e-6)
            else:
                change += density
            assert primary[u, i] == pytest.approx(change, abs=1e-6)


def test_a_step_applied_is_scored_as_a_fresh_evaluation(digits3):
    ds = digits3
    st = ModuleState(_tanh_net(), ds.X_train, ds.y_train, "accuracy", np.ones(670, bool),
                     tiebreak=True)  # fmt: skip
    d, t = st.try_step(0, 4, np.array([1, 7, 30]))
    before = (st.value, st.secondary)
    st.apply(0, 4, np.array([1, 7, 30]))  # takes try_step's scores
    assert (st.value, st.secondary) == pytest.approx((before[0] + d, before[1] + t), abs=1e-12)
    assert (st.value, st.secondary) == (st.full_value(), st.full_secondary())
    assert st.ones == 667 and not st.mask[0][4, [1, 7, 30]].any()


def test_the_general_path_finds_the_masks_of_the_incremental_one(digits3):
    """The same network as a named Sequential (not an MLP stack: the general evaluator) and as
    an MLP stack (the incremental float64 state): the same exact decisions, the same mask."""
    ds = digits3
    mlp = build_mlp([64, 12, 3], seed=3)
    named = nn.Sequential(OrderedDict(fc1=mlp[0], act=nn.ReLU(), fc2=mlp[2]))
    cfg = LocalConfig(ranking="none", tiebreak=False, sparsity_penalty=0.05, kicks=2, seed=1)
    a = local_search(mlp, ds.X_train, ds.y_train, "accuracy", cfg)
    b = local_search(named, ds.X_train, ds.y_train, "accuracy", cfg)
    assert a.metrics["passes"] > 2 and a.metrics["flips_accepted"] > 10
    assert torch.equal(a.mask, b.mask)
    assert a.metrics["train_accuracy"] == pytest.approx(b.metrics["train_accuracy"])


def test_a_conv_layer_is_searched_channel_by_channel():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6, 2))
    X = torch.randn(200, 1, 8)
    y = (X[:, 0, :4].sum(1) > X[:, 0, 4:].sum(1)).long()
    r = local_search(net, X, y, "loss", LocalConfig(max_passes=4))
    st = ModuleState(net, X, y, "loss", np.ones(12 + 48, bool))
    assert [w.shape for w in st.W] == [(4, 3), (2, 24)]  # channels x (in * k); units x inputs
    assert r.metrics["train_accuracy"] > 0.8 and r.metrics["flips_accepted"] > 0


def test_memetic_on_a_tanh_network_improves_on_its_ga_and_repeats(digits3):
    ds = digits3
    cfg = GAConfig(variant="memetic", population=20, min_generations=5, max_generations=5)
    runs = [
        evoprune.search(
            _tanh_net(1), ds.X_train, ds.y_train, X_test=ds.X_test, y_test=ds.y_test, config=cfg
        )  # fmt: skip
        for _ in range(2)
    ]
    m = runs[0].metrics
    assert m["train_accuracy"] > m["ga_train_accuracy"] + 0.05 and m["test_accuracy"] > 0.85
    assert torch.equal(runs[0].mask, runs[1].mask)
    assert m["train_accuracy"] == runs[1].metrics["train_accuracy"]


def test_what_the_general_path_cannot_do_is_told(digits3):
    ds = digits3
    with pytest.raises(EvopruneError, match="temperature: only for an MLP stack"):
        local_search(_tanh_net(), ds.X_train, ds.y_train, "loss", LocalConfig(temperature=0.5))
    with pytest.raises(EvopruneError, match="conv net has a local search of its own"):
        X = torch.rand(8, 784)
        evoprune.search(build_convnet(seed=0), X, torch.zeros(8, dtype=torch.long),
                        config=GAConfig(variant="memetic"))  # fmt: skip


@pytest.mark.parametrize("objective", ["accuracy", "loss"])  # loss: with the removals' descent
def test_an_interrupted_memetic_search_on_a_module_resumes_to_the_same_ticket(
    digits3, tmp_path, monkeypatch, objective
):
    ds = digits3
    cfg = GAConfig(variant="memetic", population=12, min_generations=3, max_generations=3)

    def search(*args, **kwargs):
        return evoprune.search(*args, objective=objective, **kwargs)

    refresh, calls = ModuleState.refresh, []
    cut = [0]

    def counted(self):  # the local search refreshes its state after each pass with a step
        calls.append(1)
        if len(calls) == cut[0]:
            raise KeyboardInterrupt
        refresh(self)

    monkeypatch.setattr(ModuleState, "refresh", counted)
    whole = search(_tanh_net(2), ds.X_train, ds.y_train, config=cfg)
    cut[0], calls[:] = len(calls) - 1, []  # late: with the loss, in the removals' descent
    ckpt = tmp_path / "ck.npz"
    with pytest.raises(KeyboardInterrupt):
        search(_tanh_net(2), ds.X_train, ds.y_train, config=cfg, checkpoint=ckpt,
               checkpoint_every=1)  # fmt: skip
    monkeypatch.setattr(ModuleState, "refresh", refresh)
    again = search(_tanh_net(2), ds.X_train, ds.y_train, config=cfg, checkpoint=ckpt,
                   checkpoint_every=1, resume=True)  # fmt: skip
    assert torch.equal(again.mask, whole.mask)
    assert again.metrics["before_resume_seconds"] > 0


def test_the_loss_ranking_is_the_gradient_times_the_weight_a_flip_moves(digits3):
    ds, net = digits3, _tanh_net(4)
    start = np.random.default_rng(4).random(670) < 0.5
    st = ModuleState(net, ds.X_train, ds.y_train, "loss", start, sparsity_penalty=0.1)
    masked = [p.detach() * torch.from_numpy(m).view(p.shape) for p, m in
              ((net[0].weight, start[:640]), (net[2].weight, start[640:]))]  # fmt: skip
    w = [m.clone().requires_grad_(True) for m in masked]
    h = torch.tanh(ds.X_train @ w[0].T + net[0].bias.detach())
    loss = nn.functional.cross_entropy((h @ w[1].T + net[2].bias.detach()).double(), ds.y_train)
    grads = torch.autograd.grad(loss, w)
    assert np.allclose(st.loss_gradient()[640:], grads[1].reshape(-1).numpy(), atol=1e-7)
    ranked, ties = st.block_scores(1, np.array([1]), "expansion")
    exact, _ = st.block_scores(1, np.array([1]), "none")
    full = net[2].weight.detach()[1].double().numpy()
    moved = np.where(start[650:660], -full, full)  # removing a set bit, adding a clear one
    density = np.where(start[650:660], -0.1, 0.1) / 670
    assert np.allclose(ranked[0], grads[1][1].double().numpy() * moved + density, atol=1e-7)
    assert not ties.any()
    assert np.corrcoef(ranked[0], exact[0])[0, 1] > 0.9  # a first-order estimate of it


def test_every_step_taken_on_the_gradient_order_lowers_the_exact_loss(digits3):
    from evoprune.local.search import LocalSearch

    ds = digits3
    start = np.random.default_rng(5).random(670) < 0.5
    st = ModuleState(_tanh_net(5), ds.X_train, ds.y_train, "loss", start, sparsity_penalty=0.01)
    ls = LocalSearch(st, LocalConfig(ranking="expansion", max_passes=3), init_masks=[start])
    ls._trace = []
    ls.run()
    assert len(ls._trace) > 5
    assert all(v1 < v0 - 1e-13 or (rm and v1 <= v0 + 1e-12) for (v0, _), (v1, _), rm in ls._trace)


def test_a_loss_search_on_the_general_path_ends_where_no_removal_helps(digits3):
    # the gradient orders the flips; a removal that barely moves the loss ranks low under it,
    # so each start ends with a descent that scores every removal exactly
    from evoprune.local.search import LocalSearch

    ds = digits3
    start = np.random.default_rng(6).random(670) < 0.5
    st = ModuleState(_tanh_net(6), ds.X_train, ds.y_train, "loss", start, sparsity_penalty=0.1)
    cfg = LocalConfig(ranking="expansion", min_gain=0.0, kicks=1, seed=6)
    ls = LocalSearch(st, cfg, init_masks=[start])
    assert ls.prunes  # (without that descent a removal that lowers the cost is left here)
    st.set_mask_bits(ls.run())
    for li in range(st.n_layers):
        for o in range(st.W[li].shape[0]):
            kept = np.nonzero(st.mask[li][o])[0]
            if len(kept):
                removals, _ = st.block_scores(li, np.array([o]), "none", cand=kept)
                assert removals.min() > 0  # loss + 0.1 * density rises with any removal
