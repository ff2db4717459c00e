"""MLPs with another nonlinearity than the paper's ReLU (`--activation`): the network built and
drawn, its ticket rebuilt, the search through the general evaluator, and the refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import evoprune
from evoprune.cli import main
from evoprune.errors import EvopruneError
from evoprune.fastmlp import is_mlp_stack
from evoprune.nets import GAINS, build_mlp, build_network, rebuild_fields

FUNCTIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
             "gelu": nn.functional.gelu}  # fmt: skip


def _cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_an_mlp_computes_its_activation_on_the_weights_relu_would_have(activation):
    net = build_mlp([3, 8, 5, 2], seed=1, activation=activation)
    relu = build_mlp([3, 8, 5, 2], seed=1)
    for a, b in zip(net.parameters(), relu.parameters(), strict=True):
        assert torch.equal(a, b)  # U[-1, 1] does not depend on the nonlinearity
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    f = FUNCTIONS[activation]
    want = net[4](f(net[2](f(net[0](x)))))
    assert torch.allclose(net(x), want, atol=1e-6)
    assert is_mlp_stack(net) == (activation == "relu")  # only ReLU takes the fast paths


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_the_scaled_inits_take_the_activations_gain(activation):
    net = build_mlp([10, 20, 3], "signed-constant", seed=0, keep=0.4, activation=activation)
    first = net[0].weight.abs()
    assert torch.allclose(first, torch.full_like(first, GAINS[activation] / math.sqrt(10 * 0.4)))
    assert GAINS[activation] == nn.init.calculate_gain(activation)


def test_a_ticket_records_rebuilds_and_reloads_its_activation(tmp_path):
    net = build_mlp([2, 6, 2], seed=3, activation="tanh")
    assert rebuild_fields(net) == {"layers": [2, 6, 2], "init": "uniform", "seed": 3,
                                   "keep": 0.5, "activation": "tanh"}  # fmt: skip
    assert "activation" not in rebuild_fields(build_mlp([2, 6, 2], seed=3))
    mask = torch.rand(24, generator=torch.Generator().manual_seed(0)) < 0.6
    ticket = evoprune.Ticket(mask=mask, layers=[2, 6, 2], seed=3, activation="tanh")
    ticket.save(tmp_path / "t.npz")
    loaded = evoprune.Ticket.load(tmp_path / "t.npz")
    assert loaded.activation == "tanh" and isinstance(loaded.build_model()[1], nn.Tanh)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.masked_model()(x), ticket.apply(net)(x))
    relu = evoprune.Ticket(mask=mask, layers=[2, 6, 2], seed=3)
    relu.save(tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz") as npz:  # a ReLU ticket's header reads as it always did
        assert "activation" not in json.loads(npz["header"].tobytes())


def test_an_unknown_activation_is_one_line_wherever_it_comes_from():
    with pytest.raises(EvopruneError, match="activation: expected one of relu, tanh, sigmoid"):
        build_mlp([2, 4, 2], activation="swish")
    with pytest.raises(EvopruneError, match="activation: the conv net uses relu, got 'tanh'"):
        build_network("conv", 784, 10, activation="tanh")
    from evoprune.jobs import check_job

    with pytest.raises(EvopruneError, match="activation: expected one of"):
        check_job({"method": "memetic", "dataset": "moons", "activation": "Tanh"})
    with pytest.raises(EvopruneError, match="activation: the conv net uses relu"):
        check_job(
            {"method": "edge-popup", "dataset": "mnist", "arch": "conv", "activation": "tanh"}
        )
    check_job({"method": "edge-popup", "dataset": "moons", "activation": "tanh"})


def test_a_tanh_search_writes_its_activation_and_its_ticket_scores_alike(tmp_path, capsys):
    args = ["search", "--dataset", "digits", "--classes", "3", "--arch", "A", "--activation",
            "tanh", "--variant", "memetic", "--objective", "loss", "--max-generations", "5",
            "--min-generations", "5", "--population", "20", "--quiet"]  # fmt: skip
    for name in ("a", "b"):
        code, _, err = _cli([*args, "--out", tmp_path / name], capsys)
        assert code == 0, err
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["activation"] == "tanh" and result["test_accuracy"] >= 0.9
    code, out, _ = _cli(["evaluate", tmp_path / "a"], capsys)  # rebuilt from the ticket alone
    assert code == 0 and f"test acc {result['test_accuracy']:.4f}" in out
    code, out, _ = _cli(["export", tmp_path / "a"], capsys)
    assert code == 0 and "tanh between the layers" in out
    a, b = (evoprune.Ticket.load(tmp_path / n / "ticket.npz") for n in ("a", "b"))
    assert a.activation == "tanh" and torch.equal(a.mask, b.mask)  # same seed, same ticket
    code, out, _ = _cli(["search", *args[1:7], "--max-generations", "5", "--min-generations",
                         "5", "--population", "20", "--quiet", "--out", tmp_path / "relu"],
                        capsys)  # fmt: skip
    assert code == 0
    code, out, _ = _cli(["compare", tmp_path / "a", tmp_path / "relu"], capsys)
    assert code == 0 and "activation" in out.splitlines()[1] and "same random network" not in out


def test_the_conv_net_with_another_activation_is_exit_2_one_line(tmp_path, capsys):
    code, _, err = _cli(["search", "--dataset", "digits", "--arch", "conv", "--activation",
                         "tanh", "--out", tmp_path / "r"], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "activation" in err
    assert not (tmp_path / "r").exists()


def test_backprop_trains_the_activation_with_hyperparameters_of_its_own(tmp_path, capsys):
    from evoprune.baselines.jobs import run_backprop_job
    from evoprune.jobs import check_job

    job = {"method": "backprop", "dataset": "digits", "classes": 3, "arch": "A", "max_iter": 30}
    with pytest.raises(EvopruneError, match="Table 2's rows were tuned for relu, not tanh"):
        check_job({**job, "activation": "tanh"})  # a spec's arm: refused when it loads
    with pytest.raises(EvopruneError, match="MLPClassifier has relu, tanh, sigmoid, got 'gelu'"):
        check_job({**job, "activation": "gelu", "solver": "adam"})
    results = {a: run_backprop_job({**job, "activation": a, "solver": "adam"}, None, False)
               for a in ("tanh", "sigmoid")}  # fmt: skip
    assert {a: r["sklearn_params"]["activation"] for a, r in results.items()} == {
        "tanh": "tanh", "sigmoid": "logistic"}  # fmt: skip
    assert results["tanh"]["activation"] == "tanh" and results["tanh"]["test_accuracy"] > 0.9
    assert results["tanh"]["test_loss"] != results["sigmoid"]["test_loss"]
    code, out, _ = _cli(["baseline", "backprop", "--dataset", "digits", "--classes", "3", "--arch",
                         "A", "--activation", "tanh", "--quiet", "--out", tmp_path / "b"], capsys)  # fmt: skip
    assert code == 2 and not (tmp_path / "b").exists()


def test_edge_popup_trains_scores_over_the_activations_network(tmp_path, capsys):
    args = ["baseline", "edge-popup", "--dataset", "digits", "--classes", "3", "--arch", "A",
            "--activation", "tanh", "--epochs", "5", "--quiet", "--out", tmp_path / "e"]  # fmt: skip
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "e" / "result.json").read_text())
    ticket = evoprune.Ticket.load(tmp_path / "e" / "ticket.npz")
    assert result["activation"] == ticket.activation == "tanh" and result["test_accuracy"] > 0.8
    code, out, _ = _cli(["evaluate", tmp_path / "e"], capsys)  # rebuilt with Tanh, scored alike
    assert code == 0 and f"test acc {result['test_accuracy']:.4f}" in out
