"""`evoprune.search` from Python: what a ticket records, input checks, checkpoints, side effects."""

import copy

import numba
import pytest
import torch
from torch import nn

import evoprune
from evoprune.data import load_dataset
from evoprune.errors import EvopruneError
from evoprune.ga import GAConfig
from evoprune.local import kernels
from evoprune.nets import MLP, build_mlp, build_network
from evoprune.scores import score_splits

TINY = GAConfig(population=10, min_generations=3, max_generations=3)


@pytest.fixture(scope="module")
def moons():
    ds = load_dataset("moons")
    return ds.X_train[:600], ds.y_train[:600], ds.X_test[:400], ds.y_test[:400]


@pytest.mark.parametrize("variant", ["ga", "memetic"])
def test_ticket_rebuilds_the_network_it_was_found_on(moons, variant):
    X, y, Xt, yt = moons
    net = build_mlp([2, 20, 2], init="kaiming-normal", seed=5)
    cfg = GAConfig(variant=variant, population=10, min_generations=3, max_generations=3)
    t = evoprune.search(net, X, y, config=cfg, X_test=Xt, y_test=yt)
    assert (t.init, t.seed, t.layers) == ("kaiming-normal", 5, [2, 20, 2])
    again = score_splits(
        t.masked_model(), torch.ones(t.n_bits, dtype=torch.bool), {"test": (Xt, yt)}
    )
    assert again["test_accuracy"] == pytest.approx(t.metrics["test_accuracy"], abs=1e-9)


@pytest.mark.parametrize("variant", ["ga", "memetic"])
def test_a_ticket_over_a_space_of_ones_own_masks_those_weights_only(moons, variant, tmp_path):
    from evoprune.masks import MaskSpace
    from evoprune.ticket import Ticket

    X, y, _, _ = moons
    net = build_mlp([2, 20, 2], seed=2)
    first = MaskSpace(net, is_maskable=lambda name, _m: name == "0")  # the hidden layer's weights
    cfg = GAConfig(variant=variant, population=10, min_generations=3, max_generations=3)
    t = Ticket.load(evoprune.search(net, X, y, config=cfg, space=first).save(tmp_path / "t.npz"))
    assert t.weights == ["0.weight"] and t.n_bits == 40
    pruned = t.masked_model()
    assert torch.equal(pruned[2].weight, net[2].weight)  # the output layer is not masked
    assert torch.equal(pruned[0].weight, net[0].weight * t.mask.reshape(20, 2))
    with pytest.raises(EvopruneError, match="covers weights 0.weight, but the model has no"):
        t.apply(nn.Sequential(nn.Identity(), nn.Linear(2, 20)))
    default = evoprune.search(net, X, y, config=cfg, space=MaskSpace(net))
    assert default.weights is None and "weights" not in default.header()


def test_a_network_not_drawn_by_evoprune_is_not_rebuilt(moons):
    X, y, _, _ = moons
    net = MLP([2, 20, 2])  # torch's own init: no seed can rebuild it
    t = evoprune.search(net, X, y, config=TINY)
    assert t.layers is None
    with pytest.raises(EvopruneError, match="ticket.apply"):
        t.masked_model()
    drawn = build_mlp([2, 20, 2], seed=0)  # drawn from seed 0, then loaded with other weights
    drawn.load_state_dict(build_mlp([2, 20, 2], seed=1).state_dict())
    assert evoprune.search(drawn, X, y, config=TINY).layers is None


def test_build_mlp_leaves_torch_global_random_stream_alone():
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    build_mlp([4, 30, 3], seed=2)
    build_network("conv", 784, 10)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("layers", ["B", "2,75,2", [2], [2, 0, 2], [2, -1, 2], [2.5, 3]])
def test_build_mlp_refuses_bad_layer_lists(layers):
    with pytest.raises(EvopruneError, match="layers"):
        build_mlp(layers)


def _bad_inputs(moons):
    X, y, Xt, yt = moons
    nan = X.clone()
    nan[7, 1] = float("nan")
    return {
        "nan": ((nan, y), {}, "X: 1 rows hold NaN"),
        "labels 1..K": ((X, y + 1), {}, r"y: expected class labels 0\.\.1 .*got 1\.\.2"),
        "features": ((X[:, :1], y), {}, r"X: the model does not take rows of shape \(1,\)"),
        "float labels": (
            (X, y.float() + 0.5),
            {},
            r"y: expected integer class labels, got [01]\.5",
        ),
        "one-hot": ((X, nn.functional.one_hot(y)), {}, "one-hot"),
        "lengths": ((X, y[:-1]), {}, "X has 600 samples but y has 599"),
        "empty": ((X[:0], y[:0]), {}, "X: expected .* with samples"),
        "test alone": ((X, y), {"X_test": Xt}, "give both or neither"),
        "test labels": ((X, y), {"X_test": Xt, "y_test": yt + 2}, "y_test: expected class"),
        "test features": ((X, y), {"X_test": Xt[:, :1], "y_test": yt}, "X_test: expected rows"),
    }


@pytest.mark.parametrize(
    "case",
    ["nan", "labels 1..K", "features", "float labels", "one-hot", "lengths", "empty",
     "test alone", "test labels", "test features"],
)  # fmt: skip
def test_bad_data_is_refused_before_the_search_starts(moons, monkeypatch, case):
    from evoprune.ga.genetic import GeneticSearch

    def never(*_, **__):
        raise AssertionError("the search started")

    monkeypatch.setattr(GeneticSearch, "run", never)
    (X, y), kwargs, message = _bad_inputs(moons)[case]
    with pytest.raises(EvopruneError, match=message):
        evoprune.search(build_mlp([2, 20, 2]), X, y, config=TINY, **kwargs)


def test_numpy_data_and_inputs_that_require_grad_are_taken(moons):
    X, y, _, _ = moons
    a = evoprune.search(build_mlp([2, 20, 2]), X.numpy(), y.numpy(), config=TINY)
    b = evoprune.search(build_mlp([2, 20, 2]), X.clone().requires_grad_(True), y, config=TINY)
    assert torch.equal(a.mask, b.mask)


def test_memetic_on_the_conv_net_fails_before_the_ga(monkeypatch):
    from evoprune.ga.genetic import GeneticSearch
    from evoprune.nets import build_convnet

    monkeypatch.setattr(GeneticSearch, "run", lambda *_, **__: pytest.fail("the GA ran"))
    X, y = torch.rand(8, 784), torch.zeros(8, dtype=torch.long)
    with pytest.raises(EvopruneError, match="memetic: the conv net has a local search of its own"):
        evoprune.search(build_convnet(seed=0), X, y, config=GAConfig(variant="memetic"))


def test_resuming_on_other_data_or_another_network_is_refused(moons, tmp_path):
    X, y, _, _ = moons
    ckpt = tmp_path / "ck.npz"
    evoprune.search(build_mlp([2, 20, 2]), X, y, config=TINY, checkpoint=ckpt, checkpoint_every=1)
    with pytest.raises(EvopruneError, match="different search"):
        evoprune.search(build_mlp([2, 20, 2]), X[:300], y[:300], config=TINY, checkpoint=ckpt,
                        resume=True)  # fmt: skip
    with pytest.raises(EvopruneError, match="different search"):
        evoprune.search(build_mlp([2, 20, 2], seed=9), X, y, config=TINY, checkpoint=ckpt,
                        resume=True)  # fmt: skip
    same = evoprune.search(build_mlp([2, 20, 2]), X, y, config=TINY, checkpoint=ckpt, resume=True)
    assert same.metrics["generations"] == 3


def test_search_leaves_the_modules_train_mode_as_it_was(moons):
    X, y, _, _ = moons
    net = build_mlp([2, 20, 2]).train()
    evoprune.search(net, X, y, config=TINY)
    assert net.training


def test_f1_objective_reports_the_f1_of_the_ticket(moons):
    X, y, Xt, yt = moons
    t = evoprune.search(build_mlp([2, 20, 2]), X, y, "f1", TINY, X_test=Xt, y_test=yt)
    ev = evoprune.Evaluator(build_mlp([2, 20, 2]), Xt, yt, "f1", metrics=("f1",))
    assert t.metrics["test_f1"] == pytest.approx(float(ev.evaluate(t.mask.view(1, -1))["f1"][0]))


def test_local_search_threads_follow_torch_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        kernels.set_threads(work=1e12)  # plenty of work: every core allowed
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_ga_ticket_on_the_built_in_conv_net_rebuilds_it():
    gen = torch.Generator().manual_seed(0)
    X, y = torch.rand(40, 784, generator=gen), torch.randint(0, 10, (40,), generator=gen)
    net = build_network("conv", 784, 10, seed=4)[0]
    t = evoprune.search(net, X, y, config=GAConfig(population=4, min_generations=1,
                                                   max_generations=1, post_prune=False))  # fmt: skip
    assert (t.arch, t.seed) == ("conv", 4)
    rebuilt = t.masked_model()
    assert torch.equal(rebuilt(X), t.apply(build_network("conv", 784, 10, seed=4)[0])(X))
    from evoprune.masks import MaskSpace

    y3 = y % 3  # a mask over the head alone, 3 classes
    net3 = build_network("conv", 784, 3, seed=4)[0]
    head = MaskSpace(net3, is_maskable=lambda name, _m: name == "fc")
    cfg = GAConfig(population=4, min_generations=1, max_generations=1, post_prune=False)
    t3 = evoprune.search(net3, X, y3, config=cfg, space=head)
    assert t3.weights == ["fc.weight"] and t3.masked_model().n_classes == 3


def test_memetic_with_a_callable_objective_points_to_the_ga(moons):
    X, y, _, _ = moons
    with pytest.raises(EvopruneError, match="a callable objective needs variant 'ga'"):
        evoprune.search(build_mlp([2, 20, 2]), X, y, lambda z, t: z.sum((1, 2)),
                        GAConfig(variant="memetic"))  # fmt: skip


@pytest.mark.parametrize(
    "field, value, message",
    [("start_density", 1.5, r"start_density: expected a fraction in \[0, 1\]"),
     ("val_fraction", 1.0, r"val_fraction: expected a fraction in \[0, 1\)"),
     ("min_gain", -1e-3, "min_gain: expected a number >= 0")],
)  # fmt: skip
def test_local_config_names_the_bad_field(field, value, message):
    from evoprune.local.config import LocalConfig

    with pytest.raises(EvopruneError, match=message):
        LocalConfig(**{field: value})


@pytest.mark.parametrize("objective", ["accuracy", "loss", "f1"])
def test_memetic_reports_best_performance_like_the_ga(moons, objective):
    X, y, _, _ = moons
    cfg = GAConfig(variant="local", max_passes=2)
    t = evoprune.search(build_mlp([2, 20, 2]), X, y, objective, cfg)
    assert t.metrics["best_performance"] == t.metrics[f"train_{objective}"]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"objective": "accuracy"}, "pass objective 'loss'"),
     ({"objective": "loss", "checkpoint_every": 2, "checkpoint": "ck.npz"}, "no custom space, checkpoints")],
)  # fmt: skip
def test_local_on_the_conv_net_refuses_what_it_would_ignore(kwargs, message):
    X, y = torch.rand(8, 784), torch.randint(0, 10, (8,))
    net = build_network("conv", 784, 10)[0]
    with pytest.raises(EvopruneError, match=message):
        evoprune.search(net, X, y, config=GAConfig(variant="local"), **kwargs)


def test_local_search_history_counts_right_answers_with_f1(moons):
    X, y, _, _ = moons
    t = evoprune.search(build_mlp([2, 20, 2]), X, y, "f1", GAConfig(variant="local", max_passes=2))
    last = t.history[-1]
    assert last["train_accuracy"] == pytest.approx(t.metrics["train_accuracy"], abs=2 / len(y))
    assert last["train_accuracy"] > 0.5


def test_backprop_on_the_conv_net_says_it_trains_mlps(capsys):
    from evoprune.cli import main

    assert main(["baseline", "backprop", "--dataset", "digits", "--arch", "conv", "--quiet"]) == 2
    assert "backprop trains an MLP" in capsys.readouterr().err


def test_a_resume_with_a_changed_setting_names_it(moons, tmp_path):
    X, y, _, _ = moons
    ckpt = tmp_path / "ck.npz"
    evoprune.search(build_mlp([2, 20, 2]), X, y, config=TINY, checkpoint=ckpt, checkpoint_every=1)
    other = GAConfig(population=12, min_generations=3, max_generations=3)
    with pytest.raises(EvopruneError, match=r"differs in: config\.population\)"):
        evoprune.search(build_mlp([2, 20, 2]), X, y, config=other, checkpoint=ckpt, resume=True)


def test_a_resumed_search_reports_the_seconds_of_the_run_it_resumes(moons, tmp_path):
    X, y, _, _ = moons
    stop = {"at": 3, "calls": 0}

    def accuracy(logits, labels):  # a kill during the third generation's evaluation
        stop["calls"] += 1
        if stop["calls"] == stop["at"]:
            raise KeyboardInterrupt
        return (logits.argmax(-1) == labels).double().mean(-1)

    cfg = GAConfig(population=10, min_generations=5, max_generations=5, post_prune=False)
    ckpt = tmp_path / "ck.npz"
    with pytest.raises(KeyboardInterrupt):
        evoprune.search(build_mlp([2, 20, 2]), X, y, accuracy, cfg, checkpoint=ckpt,
                        checkpoint_every=1)  # fmt: skip
    stop["at"] = -1
    resumed = evoprune.search(build_mlp([2, 20, 2]), X, y, accuracy, cfg, checkpoint=ckpt,
                              resume=True)  # fmt: skip
    fresh = evoprune.search(build_mlp([2, 20, 2]), X, y, accuracy, cfg)
    assert resumed.metrics["before_resume_seconds"] > 0
    assert "before_resume_seconds" not in fresh.metrics
    assert torch.equal(resumed.mask, fresh.mask)


def test_the_same_seed_writes_the_same_memetic_ticket_file(tmp_path):
    from evoprune.cli import main

    args = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", "--variant",
            "memetic", "--population", "10", "--min-generations", "3", "--max-generations", "3",
            "--quiet"]  # fmt: skip
    for name in ("a", "b"):
        assert main([*args, "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "ticket.npz").read_bytes() == (
        tmp_path / "b" / "ticket.npz"
    ).read_bytes()


def test_a_weight_tied_between_two_layers_is_masked_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.c(torch.relu(self.b(torch.relu(self.a(x)))))

    torch.manual_seed(0)
    net, X = Tied(), torch.randn(100, 4)
    y = (X[:, 0] > 0).long()
    t = evoprune.search(net, X, y, config=TINY)
    assert t.n_bits == 16 + 8  # a's (b's) weights once, and c's
    masked = t.apply(copy.deepcopy(net))  # the copy keeps the tie
    accuracy = int((masked(X).argmax(1) == y).sum()) / len(y)
    assert accuracy == pytest.approx(t.metrics["train_accuracy"], abs=1e-9)


def test_a_space_of_another_model_and_a_negative_checkpoint_every_are_refused(moons):
    from evoprune.masks import MaskSpace

    X, y, _, _ = moons
    net = build_mlp([2, 20, 2], seed=0)
    other = MaskSpace(build_mlp([2, 30, 2], seed=0))
    with pytest.raises(EvopruneError, match=r"space: 0.weight \[30, 2\] is not a weight of this"):
        evoprune.search(net, X, y, config=TINY, space=other)
    with pytest.raises(EvopruneError, match="checkpoint_every: expected generations >= 0"):
        evoprune.search(net, X, y, config=TINY, checkpoint_every=-1)


def test_maximize_against_a_named_objectives_direction_is_refused(moons):
    X, y, _, _ = moons
    net = build_mlp([2, 20, 2], seed=0)
    with pytest.raises(EvopruneError, match="maximize: loss is minimised by definition"):
        evoprune.search(net, X, y, "loss", config=TINY, maximize=True)
    assert evoprune.search(net, X, y, "loss", config=TINY, maximize=False).metrics
