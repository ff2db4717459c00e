"""`evoprune.search` on a user's own modules where they are unusual: hooks, weights that are not
registered under their layer's name, submodules returning dicts or nothing, a forward that vmap
cannot batch, an objective of one's own. The reported scores must be those of a plain forward
pass of the masked module."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import evoprune
from evoprune.errors import EvopruneError
from evoprune.ga import GAConfig
from evoprune.masks import MaskSpace

TINY = GAConfig(population=10, min_generations=3, max_generations=3)


def _data(seed=0, n=300, features=6):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long()


def _plain_accuracy(model, ticket, X, y):
    """The accuracy of the masked module, by its own forward pass."""
    masked = ticket.apply(copy.deepcopy(model)).eval()
    with torch.no_grad():
        out = masked(X)
    return float((out.argmax(1) == y).double().mean())


def test_a_hooked_mlp_is_scored_through_its_hooks():
    X, y = _data()
    X = X * 50 + 20  # the hook standardises: without it, another network
    mu, sd = X.mean(0), X.std(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    net.register_forward_pre_hook(lambda _m, inp: ((inp[0] - mu) / sd,))
    ticket = evoprune.search(net, X, y, config=TINY)
    assert ticket.metrics["train_accuracy"] == pytest.approx(
        _plain_accuracy(net, ticket, X, y), abs=1e-9
    )


class _Tied(nn.Module):
    """An embedding-style first owner of the weight the output layer reuses."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Embedding(2, 6)  # weight (2, 6), registered first
        self.hidden = nn.Linear(6, 6)
        self.dec = nn.Linear(6, 2, bias=False)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(torch.relu(self.hidden(x)))


def test_a_weight_tied_to_another_modules_is_masked_by_its_registered_name():
    X, y = _data()
    net = _Tied()
    assert [p.name for p in MaskSpace(net).params] == ["hidden.weight", "enc.weight"]
    ticket = evoprune.search(net, X, y, config=TINY)
    assert ticket.metrics["train_accuracy"] == pytest.approx(
        _plain_accuracy(net, ticket, X, y), abs=1e-9
    )
    zeros = evoprune.Ticket(mask=torch.zeros(ticket.n_bits, dtype=torch.bool), layers=None)
    masked = zeros.apply(copy.deepcopy(net))
    assert not masked.dec.weight.any() and not masked.hidden.weight.any()


def test_every_linear_and_conv_weight_is_maskable_by_default():
    # the documented default: the weight of each Linear and Conv layer (1-, 2- and 3-d)
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Conv2d(1, 2, 3), nn.Conv3d(1, 2, 3),
                        nn.Linear(4, 2), nn.BatchNorm1d(2))  # fmt: skip
    names = [p.name for p in MaskSpace(net).params]
    assert names == ["0.weight", "1.weight", "2.weight", "3.weight"]
    assert MaskSpace(net).n_bits == 2 * 3 + 2 * 9 + 2 * 27 + 8


def test_a_computed_weight_is_one_line_naming_the_layer():
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    from torch.nn.utils import prune

    prune.identity(net[0], "weight")  # weight = weight_orig * weight_mask
    with pytest.raises(
        EvopruneError, match=r"0\.weight is computed, not a parameter .*prune\.remove"
    ):
        MaskSpace(net)
    X, y = _data()
    with pytest.raises(EvopruneError, match="is computed"):
        evoprune.search(net, X, y, config=TINY)


def test_a_ticket_over_ones_own_module_refuses_another_layout_of_the_same_bit_count(tmp_path):
    X, y = _data()

    class Net(nn.Module):
        def __init__(self, a, b, c):
            super().__init__()
            self.one, self.two = nn.Linear(a, b), nn.Linear(b, c)

        def forward(self, x):
            return self.two(torch.relu(self.one(x)))

    ticket = evoprune.search(Net(6, 32, 2), X, y, config=TINY)  # 192 + 64 bits
    loaded = evoprune.Ticket.load(ticket.save(tmp_path / "t.npz"))
    assert loaded.shapes == [[32, 6], [2, 32]]
    with pytest.raises(EvopruneError, match=r"shapes \[\[32, 6\], \[2, 32\]\], but the model's"):
        loaded.apply(Net(2, 32, 6))  # 64 + 192 bits
    loaded.apply(Net(6, 32, 2))


class _Chatty(nn.Module):
    """Submodules that return a dict, a 0-dim tensor and nothing."""

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 12)

        def forward(self, x):
            return {"hidden": torch.relu(self.fc(x))}

    class Temperature(nn.Module):
        def forward(self, x):
            return torch.tensor(2.0)

    class Log(nn.Module):
        def forward(self, x):
            return None

    def __init__(self):
        super().__init__()
        self.backbone, self.temp, self.log = self.Backbone(), self.Temperature(), self.Log()
        self.head = nn.Linear(12, 2)

    def forward(self, x):
        h = self.backbone(x)["hidden"]
        self.log(h)
        return self.head(h) / self.temp(h)


def test_submodules_returning_a_dict_a_scalar_or_nothing_are_searched():
    X, y = _data()
    net = _Chatty()
    ticket = evoprune.search(net, X, y, config=TINY)
    assert ticket.metrics["train_accuracy"] == pytest.approx(
        _plain_accuracy(net, ticket, X, y), abs=1e-9
    )


class _Branchy(nn.Module):
    """A forward that branches on a tensor's value: vmap cannot batch it."""

    def __init__(self):
        super().__init__()
        self.one, self.two = nn.Linear(6, 10), nn.Linear(10, 2)

    def forward(self, x):
        h = self.one(x)
        if h.sum() > 0:
            h = torch.relu(h)
        return self.two(h)


def test_a_forward_vmap_cannot_batch_is_scored_one_mask_at_a_time():
    X, y = _data()
    net = _Branchy()
    ticket = evoprune.search(net, X, y, config=TINY)
    assert ticket.metrics["train_accuracy"] == pytest.approx(
        _plain_accuracy(net, ticket, X, y), abs=1e-9
    )


def test_a_column_of_labels_is_told_to_ravel():
    X, y = _data()
    with pytest.raises(EvopruneError, match=r"got \(300, 1\) \(a column: pass y.ravel\(\)\)"):
        evoprune.search(nn.Sequential(nn.Linear(6, 2)), X, y[:, None], config=TINY)


def test_an_objective_named_like_a_builtin_does_not_stand_in_for_it():
    X, y = _data()

    def accuracy(logits, labels):  # the share of class 1 predicted: not the accuracy
        return (logits.argmax(-1) == 1).double().mean(-1)

    net = evoprune.nets.build_mlp([6, 10, 2], seed=0)
    ticket = evoprune.search(net, X, y, objective=accuracy, config=TINY)
    assert ticket.metrics["objective"] == "custom_accuracy"
    first = ticket.history[0]
    assert first["best_accuracy"] != first["best_performance"] or first["best_performance"] in (
        0,
        1,
    )


@pytest.fixture(scope="module")
def rare():
    """About 6.5% positives: removals that keep the accuracy can cost the rare class."""
    X = torch.randn(2000, 5, generator=torch.Generator().manual_seed(0))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 1.6).long()


def _recall(logits, labels):  # of the rare class
    hit = (logits.argmax(-1) == 1) & (labels == 1)
    return hit.sum(-1).double() / (labels == 1).sum()


@pytest.mark.parametrize("objective", ["f1", _recall])
def test_post_pruning_never_worsens_an_f1_or_ones_own_objective(rare, objective):
    from evoprune.objectives import macro_f1

    X, y = rare
    fn = macro_f1 if objective == "f1" else _recall
    for seed in (0, 1, 2):  # accuracy-loss post-pruning alone: F1 0.654 -> 0.563 on seed 2
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(5, 30), nn.ReLU(), nn.Linear(30, 2))
        cfg = GAConfig(population=30, min_generations=15, max_generations=15, seed=seed)
        ticket = evoprune.search(net, X, y, objective=objective, config=cfg)
        with torch.no_grad():
            after = float(fn(ticket.apply(copy.deepcopy(net))(X)[None], y)[0])
        assert after >= ticket.metrics["best_performance"] - 1e-12, seed  # the GA's best mask's
        assert ticket.metrics["post_prune_keeps"] == getattr(objective, "__name__", objective)
        assert ticket.sparsity > ticket.metrics["sparsity_before_post_prune"]  # it still prunes


class _SharedParameter(nn.Module):
    """A layer's weight that is a parameter of the parent, registered as "shared"."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Parameter(torch.randn(8, 6) * 0.5)
        self.l1 = nn.Linear(6, 8)
        self.l1.weight = self.shared
        self.l2 = nn.Linear(8, 2)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


def test_a_ticket_over_a_weight_registered_elsewhere_applies_to_a_fresh_module(tmp_path):
    X, y = _data()
    torch.manual_seed(0)
    net = _SharedParameter()
    space = MaskSpace(net, is_maskable=lambda name, _m: name == "l1")
    ticket = evoprune.search(net, X, y, config=TINY, space=space)
    assert ticket.weights == ["shared"]
    loaded = evoprune.Ticket.load(ticket.save(tmp_path / "t.npz"))
    fresh = _SharedParameter()
    before = fresh.l2.weight.clone()
    loaded.apply(fresh)  # said "the model has no shared"
    assert torch.equal(fresh.shared == 0, ~loaded.mask.view(8, 6) | (fresh.shared == 0))
    assert torch.equal(fresh.l2.weight, before)


def test_an_error_vmap_did_not_cause_falls_back_for_that_chunk_only(monkeypatch):
    import evoprune.evaluate as evaluate

    X, y = _data()
    calls = {"n": 0}
    real = evaluate.vmap

    def flaky(fn):  # the first batched call runs out of memory, later ones work
        def run(weights):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
            return real(fn)(weights)

        return run

    monkeypatch.setattr(evaluate, "vmap", flaky)
    ev = evaluate.Evaluator(nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2), nn.Identity()),
                            X, y, metrics=("accuracy",))  # fmt: skip
    masks = torch.rand(4, ev.n_bits) < 0.5
    first = ev.evaluate(masks)["accuracy"]
    assert not ev._one_by_one  # a memory error is no reason to give up batching for good
    assert torch.equal(ev.evaluate(masks)["accuracy"], first)


def test_edge_popup_trains_through_a_hooked_mlp():
    X, y = _data(n=400)
    net = evoprune.nets.build_mlp([6, 32, 2], seed=0)
    net.register_forward_hook(lambda _m, _i, out: -out)  # the fast path did not see this
    result = evoprune.baselines.edge_popup(net, X, y, sparsity=0.5, epochs=5, seed=0)
    accuracy = _plain_accuracy(net, result.ticket(), X, y)
    assert accuracy > 0.8, accuracy


def test_the_adaptive_bound_starts_at_chance_over_the_classes_the_labels_hold(monkeypatch):
    import evoprune.ga.api as api

    seen = []
    real = api.GeneticSearch

    def recording(ev, config, **kwargs):
        seen.append(real(ev, config, **kwargs))
        return seen[-1]

    monkeypatch.setattr(api, "GeneticSearch", recording)
    X, y = _data()
    labels = torch.where(y == 1, 7, 3)  # two classes on an 8-output network: chance is 1/2
    net = evoprune.nets.build_mlp([6, 10, 8], seed=0)
    evoprune.search(net, X, labels, config=GAConfig(variant="ga-adaptive", population=10,
                                                    min_generations=2, max_generations=2))  # fmt: skip
    assert [ga.chance for ga in seen] == [0.5]  # was 1/8 (y.max() + 1)


def test_the_landscape_of_a_forward_vmap_cannot_batch_is_scored_point_by_point():
    from evoprune.analysis.landscape import LandscapeConfig, landscape

    X, y = _data()
    net = _Branchy()
    mask = torch.rand(MaskSpace(net).n_bits, generator=torch.Generator().manual_seed(0)) < 0.6
    L = landscape(net, mask, X, y, LandscapeConfig(grid=3))  # raised torch's vmap error
    ticket = evoprune.Ticket(mask=mask, layers=None)
    centre = _plain_accuracy(net, ticket, X, y)
    assert L.accuracy[1, 1] == pytest.approx(centre, abs=1e-9)
