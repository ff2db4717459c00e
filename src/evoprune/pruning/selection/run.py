"""One selection-pruning experiment: the dynamics, the controls on the same trained network, and
networks trained small, all from one seed.

1. **dense**: the MLP trained with its masses frozen at 1 while the smoothed fitness is tracked;
   its test accuracy is ``test_accuracy_dense``, and the post-hoc controls prune it:
   ``frozen-fitness`` (lowest normalised smoothed fitness F̂ first), ``random`` (mean of 5 draws),
   ``magnitude-in`` / ``magnitude-out`` (norm of the unit's incoming / outgoing weights × its
   mass, divided by the layer's mean: raw global norms wipe out the narrower layer).
2. **dynamics**: the same initial network and batches, trained with the selection dynamics; at
   each level p the lowest-mass units are hard-pruned (global ranking, extinct units first, no
   fine-tuning).
3. **train-small**: the MLP with share p of every hidden layer removed at initialisation, trained
   with the same budget.

Levels are fractions of all hidden units removed. No layer ever loses its last unit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from evoprune.data.registry import Dataset
from evoprune.nets import MLP
from evoprune.pruning.selection.dynamics import SelectionConfig, SelectionDynamics
from evoprune.pruning.selection.masses import Masses, lowest
from evoprune.pruning.selection.training import (
    TrainConfig,
    accuracy,
    init_default,
    loss_and_accuracy,
    steps_per_epoch,
    train,
)
from evoprune.seeding import torch_generator

CONTROLS = ("frozen-fitness", "random", "magnitude-in", "magnitude-out", "train-small")
RANDOM_DRAWS = 5


@dataclass
class SelectionRun:
    """Everything one experiment produced (the job runner turns it into files)."""

    dense_test_accuracy: float | None  # None when no post-hoc control needs the dense network
    dense_train_accuracy: float | None
    model: MLP  # the network trained with the dynamics, masses attached
    masses: Masses
    eta: float
    updates: int
    pruned: list[dict[str, Any]]  # {method, fraction, test_accuracy, removed}
    history: list[dict[str, Any]]  # one row per epoch
    snapshots: np.ndarray  # (epochs + 1, n) masses after each epoch (row 0: the start)
    fitness: torch.Tensor  # (n,) the dynamics' final normalised smoothed fitness (tie-breaks)
    metrics: dict[str, float] = field(default_factory=dict)  # the dynamics net as trained


def mass_entropy(m: torch.Tensor) -> float:
    """Entropy of the layer's mass distribution, divided by log(width): 1 = all equal, 0 = one
    survivor."""
    total = float(m.sum())
    if total <= 0 or m.numel() < 2:
        return 0.0
    p = m[m > 0] / total
    return float(-(p * p.log()).sum()) / math.log(m.numel())


@torch.no_grad()
def masked_accuracy(
    model: nn.Module, masses: Masses, keep: torch.Tensor, X: torch.Tensor, y: torch.Tensor
) -> float:
    """Test accuracy with the units outside the flat bool `keep` silenced; masses restored."""
    saved = [m.detach().clone() for m in masses.values]
    masses.set(masses.split(masses.flat() * keep.to(torch.float32)))
    acc = accuracy(model, X, y)
    masses.set(saved)
    return acc


def layer_normalised(scores: list[torch.Tensor]) -> torch.Tensor:
    """Each layer's scores divided by that layer's mean, concatenated."""
    return torch.cat([s / s.mean().clamp_min(1e-30) for s in scores])


def magnitude_scores(model: MLP, masses: Masses, direction: str) -> torch.Tensor:
    """‖incoming‖ or ‖outgoing‖ weight norm × mass per unit, layer-normalised, flat."""
    linears = model.linears
    out = []
    for i, m in enumerate(masses.values):
        if direction == "in":
            norm = linears[i].weight.detach().norm(dim=1)
        else:
            norm = linears[i + 1].weight.detach().norm(dim=0)
        out.append(norm * m.detach())
    return layer_normalised(out)


def small_widths(layers: Sequence[int], fraction: float) -> list[int]:
    """The layer list with share `fraction` of each hidden layer removed (at least 1 unit)."""
    hidden = [max(1, int(round(w * (1.0 - fraction)))) for w in layers[1:-1]]
    return [layers[0], *hidden, layers[-1]]


def run_selection(
    ds: Dataset,
    layers: Sequence[int],
    config: SelectionConfig,
    train_config: TrainConfig,
    levels: Sequence[float],
    seed: int,
    controls: Sequence[str] = CONTROLS,
    progress: Any = None,
) -> SelectionRun:
    """Run the experiment; `progress(n_epochs)` is called after each training epoch if given."""
    X, y = ds.X_train.view(len(ds.X_train), -1), ds.y_train
    Xt, yt = ds.X_test.view(len(ds.X_test), -1), ds.y_test
    spe = steps_per_epoch(len(X), train_config.batch_size)
    updates = spe * train_config.epochs
    tick = progress or (lambda n=1: None)

    # 1. dense: masses frozen at 1, fitness tracked (only when a post-hoc control prunes it)
    dense = init_default(MLP(layers), seed)
    dense_masses = Masses(dense)
    frozen = SelectionDynamics(dense_masses, config, updates, spe, frozen=True)
    dense_rows: list[dict[str, Any]] = []

    def dense_epoch(epoch: int, loss: float) -> None:
        dense_rows.append(
            {"dense_train_loss": loss, "dense_test_accuracy": accuracy(dense, Xt, yt)}
        )
        tick()

    with_dense = needs_dense(controls)
    if with_dense:
        train(dense, X, y, train_config, seed, frozen.step, dense_epoch)

    # 2. the dynamics, same start and batches
    model = init_default(MLP(layers), seed)
    masses = Masses(model)
    dyn = SelectionDynamics(masses, config, updates, spe)
    snapshots = [masses.flat().numpy().copy()]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()

    def dyn_epoch(epoch: int, loss: float) -> None:
        snapshots.append(masses.flat().numpy().copy())
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss,
            "test_accuracy": accuracy(model, Xt, yt),
            "extinct": int(sum(int((~a).sum()) for a in masses.alive)),
        }
        for i, (m, a) in enumerate(zip(masses.values, masses.alive, strict=True)):
            row[f"extinct_{i + 1}"] = int((~a).sum())
            row[f"entropy_{i + 1}"] = round(mass_entropy(m.detach()), 6)
            row[f"mass_max_{i + 1}"] = round(float(m.detach().max()), 6)
        if with_dense:
            row.update(dense_rows[epoch - 1])
        row["seconds"] = round(time.perf_counter() - started, 3)
        rows.append(row)
        tick()

    train(model, X, y, train_config, seed, dyn.step, dyn_epoch)

    n = masses.n
    pruned: list[dict[str, Any]] = []

    def add(method: str, fraction: float, acc: float, keep: torch.Tensor | None = None) -> None:
        entry = {"method": method, "fraction": fraction, "test_accuracy": acc}
        if keep is not None:
            entry["removed"] = round(1.0 - float(keep.float().mean()), 6)
        pruned.append(entry)

    alive = masses.flat_alive()
    dense_alive = dense_masses.flat_alive()
    rand_gen = torch_generator(seed, "random-control")
    fitness_scores = torch.cat(frozen.normalised_fitness())
    run_fitness = torch.cat(dyn.normalised_fitness())  # breaks ties between equal masses
    for p in levels:
        count = int(round(p * n))
        keep = lowest(masses.flat(), count, alive, masses.sizes, run_fitness)
        add(config.dynamics, p, masked_accuracy(model, masses, keep, Xt, yt), keep)
        if "frozen-fitness" in controls:
            keep = lowest(fitness_scores, count, dense_alive, dense_masses.sizes)
            add("frozen-fitness", p, masked_accuracy(dense, dense_masses, keep, Xt, yt), keep)
        if "random" in controls:
            accs = []
            for _ in range(RANDOM_DRAWS):
                keep = lowest(
                    torch.rand(n, generator=rand_gen), count, dense_alive, dense_masses.sizes
                )
                accs.append(masked_accuracy(dense, dense_masses, keep, Xt, yt))
            add("random", p, float(np.mean(accs)), keep)
        for direction in ("in", "out"):
            if f"magnitude-{direction}" in controls:
                scores = magnitude_scores(dense, dense_masses, direction)
                keep = lowest(scores, count, dense_alive, dense_masses.sizes)
                acc = masked_accuracy(dense, dense_masses, keep, Xt, yt)
                add(f"magnitude-{direction}", p, acc, keep)
    if "train-small" in controls:
        for p in levels:
            widths = small_widths(layers, p)
            small = init_default(MLP(widths), seed, f"init-small-{p}")
            train(small, X, y, train_config, seed, after_epoch=lambda e, loss: tick())
            removed = 1.0 - sum(widths[1:-1]) / n
            pruned.append(
                {
                    "method": "train-small",
                    "fraction": p,
                    "test_accuracy": accuracy(small, Xt, yt),
                    "removed": round(removed, 6),
                    "widths": widths,
                }
            )
    order = {name: i for i, name in enumerate((config.dynamics, *CONTROLS))}
    pruned.sort(key=lambda e: (order[e["method"]], e["fraction"]))

    train_loss, train_acc = loss_and_accuracy(model, X, y)
    test_loss, test_acc = loss_and_accuracy(model, Xt, yt)
    return SelectionRun(
        dense_test_accuracy=accuracy(dense, Xt, yt) if with_dense else None,
        dense_train_accuracy=accuracy(dense, X, y) if with_dense else None,
        model=model,
        masses=masses,
        eta=dyn.eta,
        updates=updates,
        pruned=pruned,
        history=rows,
        snapshots=np.stack(snapshots),
        fitness=run_fitness,
        metrics={
            "train_accuracy": train_acc,
            "test_accuracy": test_acc,
            "train_loss": train_loss,
            "test_loss": test_loss,
        },
    )


def needs_dense(controls: Sequence[str]) -> bool:
    """The dense network is trained when a post-hoc control prunes it."""
    return any(c != "train-small" for c in controls)


def n_epochs_total(
    train_config: TrainConfig, levels: Sequence[float], controls: Sequence[str]
) -> int:
    """How many training epochs `run_selection` will run (for a progress bar)."""
    small = len(levels) if "train-small" in controls else 0
    return train_config.epochs * (1 + needs_dense(controls) + small)
