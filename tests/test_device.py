"""The device as a parameter: cpu always, cuda where a GPU is present (skipped otherwise); a
device that is not there is one clear error."""

from __future__ import annotations

import pytest
import torch

import evoprune
from evoprune.cli import main
from evoprune.devices import check_device, placed
from evoprune.evaluate import Evaluator
from evoprune.ga import GAConfig
from evoprune.nets import build_mlp

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no GPU"))]


def data(seed=0, n=300):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=gen)
    return X, (X[:, 0] * X[:, 1] > 0).long()


@pytest.mark.parametrize("objective", ["loss", "f1"])  # F1: confusion counts on the device
@pytest.mark.parametrize("device", DEVICES)
def test_the_ga_runs_on_the_device_and_matches_the_cpu(device, objective):
    X, y = data()
    cfg = GAConfig(population=12, min_generations=4, max_generations=4, seed=1)
    net = build_mlp([4, 16, 2], seed=1)
    on_cpu = evoprune.search(net, X, y, objective, cfg)
    there = evoprune.search(net, X, y, objective, GAConfig(**{**cfg.to_dict(), "device": device}))
    assert there.mask.device.type == "cpu"  # tickets always come back to the host
    assert abs(there.metrics["train_accuracy"] - on_cpu.metrics["train_accuracy"]) < 0.02


def test_devices_that_are_not_there_are_one_line_errors(tmp_path, capsys):
    assert check_device("cpu") == "cpu"
    with pytest.raises(evoprune.EvopruneError, match="expected cpu or cuda"):
        check_device("nosuch")
    with pytest.raises(evoprune.EvopruneError, match="device"):
        GAConfig(device="tpu")
    if not HAS_CUDA:
        with pytest.raises(evoprune.EvopruneError, match="no CUDA device"):
            check_device("cuda")
    args = ["search", "--dataset", "digits", "--classes", "2", "--device", "nosuch"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device" in err[0] and not (tmp_path / "r").exists()


@pytest.mark.parametrize("device", DEVICES)
def test_local_search_and_memetic_take_the_device(device):
    from evoprune.local.config import LocalConfig
    from evoprune.local.search import local_search

    X, y = data(2, n=200)
    net = build_mlp([4, 12, 2], seed=2)
    found = local_search(net, X, y, "loss", LocalConfig(max_passes=3, seed=2), device=device)
    on_cpu = local_search(net, X, y, "loss", LocalConfig(max_passes=3, seed=2))
    assert torch.equal(found.mask, on_cpu.mask)  # the exact float64 search is device-independent
    cfg = GAConfig(variant="memetic", population=8, memetic_generations=3, min_generations=1,
                   max_passes=2, kicks=0, seed=2, device=device)  # fmt: skip
    ticket = evoprune.search(net, X, y, "loss", cfg)
    assert ticket.mask.device.type == "cpu" and ticket.metrics["train_accuracy"] > 0.5


def test_evaluator_leaves_the_callers_network_where_and_as_it_was():
    """`nn.Module.to` and `eval` act in place: the evaluator works on a copy unless the network
    is already on its device and in eval mode (a search on cuda moved the user's network off the
    CPU). The meta device stands in for a second device where there is no GPU."""
    net = build_mlp([2, 8, 2], seed=0)
    X, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    assert Evaluator(net, X, y).model is not net and net.training
    on_meta = placed(net, torch.device("meta"))
    assert next(on_meta.parameters()).is_meta and not next(net.parameters()).is_meta
    net.eval()  # already there and in eval mode: no copy
    assert Evaluator(net, X, y).model is net


@pytest.mark.skipif(not HAS_CUDA, reason="no GPU")
def test_a_search_on_cuda_leaves_the_network_on_the_cpu():
    X, y = data()
    net = build_mlp([4, 16, 2], seed=1)
    cfg = GAConfig(population=12, min_generations=2, max_generations=2, seed=1, device="cuda")
    evoprune.search(net, X, y, objective="loss", config=cfg)
    assert next(net.parameters()).device.type == "cpu"
