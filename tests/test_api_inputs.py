"""Bad input through the Python API: one `EvopruneError` naming the argument or field."""

import numpy as np
import pytest
import torch
from torch import nn

import evoprune
from evoprune.baselines import TABLE2, backprop, edge_popup, lookup
from evoprune.errors import EvopruneError
from evoprune.evaluate import Evaluator
from evoprune.ga import GAConfig
from evoprune.masks import MaskSpace
from evoprune.nets import build_mlp
from evoprune.ticket import Ticket


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"population": 10.5}, "population"),
        ({"population": "10"}, "population"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),  # bool is not an integer here
        ({"max_generations": 2.0}, "max_generations"),
        ({"post_prune": "yes"}, "post_prune"),
        ({"min_gain": "1e-3"}, "min_gain"),
        ({"mut_rate": float("nan")}, "mut_rate"),
        ({"variant": "memetic", "memetic_generations": 0}, "memetic_generations"),
        ({"memetic_generations": -1}, "memetic_generations"),
        ({"memory_mb": 0}, "memory_mb"),
        ({"memory_mb": -5.0}, "memory_mb"),
        ({"ranking": "expansoin"}, "ranking"),  # every variant, not only memetic / local
        ({"variant": "ga-adaptive", "ranking": "exact"}, "ranking"),
        ({"local_starts": 0}, "local_starts"),  # LocalConfig's "starts", named as set
        ({"local_patience": 0}, "local_patience"),
        ({"local_density": 1.5}, "local_density"),
        ({"kicks": -1}, "kicks"),
        ({"sparsity_penalty": -0.1}, "sparsity_penalty"),
        ({"min_gain": -1e-3}, "min_gain"),
        ({"variant": "local", "kick_bits": 0}, "kick_bits"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_gaconfig_rejects_bad_fields_naming_them(kwargs, field):
    with pytest.raises(EvopruneError, match=rf"^{field}: expected") as info:
        GAConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_gaconfig_takes_numpy_scalars_as_plain_values():
    cfg = GAConfig(population=np.int64(12), seed=np.int32(3), post_prune=np.bool_(False))
    assert (cfg.population, cfg.seed, cfg.post_prune) == (12, 3, False)
    assert [type(v) for v in (cfg.population, cfg.seed, cfg.post_prune)] == [int, int, bool]
    assert cfg == GAConfig(population=12, seed=3, post_prune=False)


def test_gaconfig_cap_below_min_generations_stays_allowed():
    # The published behaviour: the cap wins (quick profiles and the memetic GA phase rely on it).
    assert GAConfig(max_generations=40).generation_cap == 40


def _mlp_and_data(n=30, n_in=2, classes=2):
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(n, n_in, generator=gen)
    return build_mlp([n_in, 5, classes], seed=0), X, torch.randint(0, classes, (n,), generator=gen)


def test_evaluator_bad_inputs_are_evoprune_errors():
    net, X, y = _mlp_and_data()
    with pytest.raises(EvopruneError, match=r"^X has 30 samples but y has 10$"):
        Evaluator(net, X, y[:10])
    ev = Evaluator(net, X, y)
    with pytest.raises(EvopruneError, match=rf"^masks: expected shape \(P, {ev.n_bits}\)"):
        ev.evaluate(torch.ones(ev.n_bits, dtype=torch.bool))
    with pytest.raises(EvopruneError, match="^metrics: expected names"):
        Evaluator(net, X, y, metrics=["acc"])
    with pytest.raises(EvopruneError, match="^fast: "):
        Evaluator(nn.Sequential(nn.Linear(2, 3), nn.SiLU(), nn.Linear(3, 2)), X, y, fast=True)
    with pytest.raises(ValueError):  # EvopruneError is a ValueError: old handlers keep working
        Evaluator(net, X, y[:10])


def test_a_model_without_maskable_weights_is_an_evoprune_error():
    with pytest.raises(EvopruneError, match=r"^model: expected a module with maskable weights"):
        MaskSpace(nn.Sequential(nn.ReLU()))


def _neg_acc_per_sample(logits, y):  # (P, d, C), (d,) -> (P, d): a per-sample value, wrong
    return -(logits.argmax(-1) == y).double()


@pytest.mark.parametrize(
    ("fn", "got"),
    [
        (_neg_acc_per_sample, r"\(10, 30\)"),
        (lambda logits, y: (logits.argmax(-1) == y).double().mean(), r"\(\)"),  # a scalar
        (lambda logits, y: float((logits.argmax(-1) == y).double().mean()), "float"),
    ],
)
def test_a_custom_objective_of_the_wrong_shape_is_one_clear_error(fn, got):
    net, X, y = _mlp_and_data()
    ev = Evaluator(net, X, y, objective=fn)
    name = "custom" if fn.__name__ == "<lambda>" else fn.__name__  # a lambda has no name of its own
    masks = torch.eye(10, ev.n_bits, dtype=torch.bool)  # 10 distinct masks
    shapes = r"shape \(10,\) for logits of shape \(10, 30, 2\)"
    with pytest.raises(EvopruneError, match=rf"^objective {name}: expected a tensor of {shapes}, got {got}$"):  # fmt: skip
        ev.evaluate(masks)


def test_a_custom_objective_may_return_numpy_or_nan():
    net, X, y = _mlp_and_data()
    masks = (
        torch.rand(6, Evaluator(net, X, y).n_bits, generator=torch.Generator().manual_seed(0)) < 0.5
    )

    def acc_numpy(logits, y):
        return (logits.argmax(-1) == y).double().mean(-1).numpy()

    def nan(logits, y):
        return torch.full((logits.shape[0],), float("nan"))

    want = Evaluator(net, X, y, objective="accuracy").evaluate(masks)["accuracy"]
    got = Evaluator(net, X, y, objective=acc_numpy).evaluate(masks)["acc_numpy"]
    assert torch.equal(got, want)
    ev = Evaluator(net, X, y, objective=nan)
    assert torch.equal(
        ev.fitness(ev.evaluate(masks)), torch.full((6,), float("-inf"), dtype=torch.float64)
    )


@pytest.mark.parametrize(
    "mask",
    [
        np.array([1, 0, 1, 1, 0, 0]),
        np.array([True, False, True, True, False, False]),
        torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.uint8),
        torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]),
        [1, 0, 1, 1, 0, 0],
    ],
)
def test_ticket_coerces_0_1_masks_to_bool(mask):
    ticket = Ticket(mask=mask, layers=[1, 2, 2])
    assert ticket.mask.dtype == torch.bool and ticket.mask.shape == (6,)
    assert ticket.mask.tolist() == [True, False, True, True, False, False]


@pytest.mark.parametrize(
    ("mask", "got"),
    [
        (np.array([1, 0, 2, 1, 0, 0]), "got 2$"),
        (torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.0]), "got 0.5$"),
        (torch.ones(2, 3, dtype=torch.bool), r"got shape \(2, 3\)$"),
        (np.array(["1", "0"]), "got ndarray$"),
    ],
)
def test_ticket_refuses_other_masks(mask, got):
    with pytest.raises(EvopruneError, match=f"^mask: expected .*{got}"):
        Ticket(mask=mask, layers=[1, 2, 2])


def test_ticket_apply_checks_the_layer_shapes_not_only_the_bit_count():
    ticket = Ticket(mask=torch.ones(300, dtype=torch.bool), layers=[2, 75, 2])
    with pytest.raises(EvopruneError, match=r"^ticket: the mask is for layers \[2, 75, 2\]"):
        ticket.apply(build_mlp([2, 100, 1]))  # also 300 weights
    assert ticket.apply(build_mlp([2, 75, 2])) is not None


def test_ticket_repr_shows_bit_count_and_sparsity_not_the_mask():
    mask = torch.zeros(3000, dtype=torch.bool)
    mask[:750] = True
    text = repr(Ticket(mask=mask, layers=[2, 1000, 1]))
    assert text.startswith("Ticket(n_bits=3000, sparsity=0.75, layers=[2, 1000, 1],")
    assert "tensor" not in text and len(text) < 300


def test_ticket_save_turns_numpy_and_torch_values_into_json(tmp_path):
    mask = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
    metrics = {"a": np.float64(0.5), "b": np.int64(3), "c": torch.tensor(0.25), "d": np.arange(2)}
    Ticket(mask=mask, layers=[1, 2, 2], metrics=metrics, dataset={"n": np.int32(7)}).save(
        tmp_path / "t.npz"
    )
    back = Ticket.load(tmp_path / "t.npz")
    assert back.metrics == {"a": 0.5, "b": 3, "c": 0.25, "d": [0, 1]}
    assert back.dataset == {"n": 7}
    with pytest.raises(EvopruneError, match=r"^ticket.metrics\['bad'\]: expected a JSON value"):
        Ticket(mask=mask, layers=[1, 2, 2], metrics={"bad": object()}).save(tmp_path / "u.npz")
    assert not (tmp_path / "u.npz").exists()


def test_backprop_metrics_take_tensors():
    X = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).long()
    trained = backprop(X.numpy(), y.numpy(), [8], TABLE2[("moons", "A", 2)], max_iter=5)
    assert trained.metrics(X, y) == trained.metrics(X.numpy(), y.numpy())


def test_edge_popup_labels_outside_the_outputs_are_one_error_up_front():
    net, X, y = _mlp_and_data(classes=2)
    with pytest.raises(EvopruneError, match=r"^y: expected class labels 0\.\.1 .* got 1\.\.2$"):
        edge_popup(net, X, y + 1, epochs=1)


def test_edge_popup_result_gives_a_ticket_like_the_ga(tmp_path):
    net, X, y = _mlp_and_data()
    found = edge_popup(net, X, y, sparsity=0.6, epochs=2, seed=1)
    ticket = found.ticket(metrics={"note": np.float64(1.5)})
    assert ticket.method == "edge-popup" and torch.equal(ticket.mask, found.mask)
    back = Ticket.load(ticket.save(tmp_path / "ep.npz"))
    rebuilt = back.masked_model()  # the network rebuilt from (layers, init, seed) alone
    masked = back.apply(build_mlp([2, 5, 2], seed=0))
    for a, b in zip(rebuilt.parameters(), masked.parameters(), strict=True):
        assert torch.equal(a, b)
    assert back.metrics == {"note": 1.5}
    assert found.ticket().metrics == {"sparsity": found.sparsity}


def test_table2_lookup_takes_the_architecture_letter():
    assert lookup("digits", "B", 3) is TABLE2[("digits", "B", 3)]
    assert lookup("digits", "B", 3) is lookup("digits", [75], 3)
    with pytest.raises(EvopruneError, match=r"^hidden: expected hidden widths like \[75\]"):
        lookup("digits", "Q", 3)


def test_pandas_frames_are_taken_as_their_values():
    """torch.as_tensor indexes a DataFrame by its column labels: a raw KeyError before."""
    import pandas as pd

    from evoprune.inputs import check_data

    X = np.random.default_rng(0).normal(size=(20, 2))
    y = np.arange(20) % 2
    got = check_data(build_mlp([2, 4, 2]), pd.DataFrame(X, columns=[5, 7]), pd.Series(y))
    assert torch.equal(got[0], torch.as_tensor(X, dtype=torch.float32))
    assert torch.equal(got[1], torch.as_tensor(y))


def test_the_other_entry_points_check_their_inputs_as_search_does():
    """Evaluator, edge_popup, Ticket.predict and the analyses took labels the network cannot
    output or fractional ones without a word (a 2-class net scored labels {0, 3} as {0, 1};
    edge_popup trained on y * 0.5 as all zeros), or raised from deep inside torch."""
    from evoprune.analysis.hessian import hessian_spectrum
    from evoprune.analysis.landscape import LandscapeConfig, landscape

    net = build_mlp([2, 8, 2], seed=0)
    X = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).long()
    mask = torch.ones(MaskSpace(net).n_bits, dtype=torch.bool)
    with pytest.raises(EvopruneError, match=r"y: expected class labels 0..1 .* got 0..3"):
        Evaluator(net, X, y * 3)
    with pytest.raises(EvopruneError, match="y: expected integer class labels, got 0.5"):
        edge_popup(net, X, y * 0.5)
    with pytest.raises(EvopruneError, match=r"X: the model does not take rows of shape \(3,\)"):
        Ticket(mask, [2, 8, 2]).predict(torch.zeros(4, 3))
    with pytest.raises(EvopruneError, match="y: expected class labels"):
        landscape(net, mask, X, y + 1, LandscapeConfig(grid=3))
    with pytest.raises(EvopruneError, match="y: expected class labels"):
        hessian_spectrum(net, mask, X, y + 1)
    with pytest.raises(EvopruneError, match="model: its parameters are float64"):
        Evaluator(build_mlp([2, 8, 2]).double(), X, y)
    with pytest.raises(EvopruneError, match="config: expected a GAConfig, got a dict"):
        evoprune.search(net, X, y, config={"population": 20})
    with pytest.raises(EvopruneError, match="X: 40 rows hold values beyond float32's range"):
        evoprune.search(net, X.double() * 1e300, y)  # finite, but inf in float32


def test_edge_popup_and_the_analyses_leave_the_callers_module_as_it_was():
    """A module in train mode: its BatchNorm statistics were updated by edge-popup and its
    mode set to eval by the analyses (`nn.Module.eval` acts in place)."""
    from evoprune.analysis.landscape import LandscapeConfig, landscape

    net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    X = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    y = (X[:, 0] > 0).long()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    edge_popup(net, X, y, epochs=2)
    landscape(
        net, torch.ones(MaskSpace(net).n_bits, dtype=torch.bool), X, y, LandscapeConfig(grid=3)
    )
    assert net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_text_labels_are_one_line_that_says_how_to_number_them():
    """Before: torch's "can't convert np.ndarray of type numpy.str_. The only supported types
    are: float64, ..." (every dtype listed), for a list of strings, a numpy array or a Series."""
    import pandas as pd

    X = np.random.default_rng(0).normal(size=(20, 2))
    y = np.where(np.arange(20) % 2, "cat", "dog")
    for labels in (y, pd.Series(y), y.tolist()):
        with pytest.raises(EvopruneError, match=r"y: expected integer class labels 0, 1, \.\.\., "
                           r"got text \(number the classes"):  # fmt: skip
            evoprune.search(build_mlp([2, 4, 2]), X, labels)
