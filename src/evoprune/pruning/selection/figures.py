"""A selection-pruning run's own figures: tidy frames (tested) and thin matplotlib drawings.

- ``accuracy_vs_fraction.png``: test accuracy against the share of hidden neurons removed, one line
  per method (the dynamic, each control, train-small), the dense network dashed;
- ``mass_histograms.png``: the living masses' distribution after selected epochs, per layer;
- ``mass_trajectories.png``: every neuron's mass over the epochs (a sample of 64 per layer), and
  the share extinct.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = {
    "replicator": "#d62728", "exponential": "#9467bd", "logistic": "#1f77b4",
    "frozen-fitness": "#ff7f0e", "random": "#7f7f7f", "magnitude-in": "#8c564b",
    "magnitude-out": "#e377c2", "train-small": "#2ca02c",
}  # fmt: skip


def prepare_accuracy(result: dict[str, Any]) -> pd.DataFrame:
    """method, fraction, test_accuracy: one row per entry of ``result["pruned"]``, in its order.
    The fraction is the share of hidden units the entry removed: more than its level when the
    dynamics had already made more of them extinct."""
    rows = [
        {
            "method": e["method"],
            "fraction": float(e.get("removed", e["fraction"])),
            "test_accuracy": e["test_accuracy"],
        }
        for e in result.get("pruned", [])
    ]
    return pd.DataFrame(rows, columns=["method", "fraction", "test_accuracy"])


def prepare_histograms(
    snapshots: np.ndarray, sizes: Sequence[int], epochs: Sequence[int] | None = None, bins: int = 30
) -> pd.DataFrame:
    """layer, epoch, bin_low, bin_high, count: histograms of the living (non-zero) masses."""
    last = len(snapshots) - 1
    if epochs is None:
        epochs = sorted(
            {min(e, last) for e in (0, 1, 2, last // 4, last // 2, (3 * last) // 4, last)}
        )
    top = float(snapshots.max()) if snapshots.size else 1.0
    edges = np.linspace(0.0, max(top, 1.0) * 1.0001, bins + 1)
    rows = []
    starts = np.cumsum([0, *sizes])
    for layer, (a, b) in enumerate(zip(starts[:-1], starts[1:], strict=True), start=1):
        for epoch in epochs:
            m = snapshots[epoch, a:b]
            counts, _ = np.histogram(m[m > 0], bins=edges)
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True):
                rows.append(
                    {
                        "layer": layer,
                        "epoch": int(epoch),
                        "bin_low": lo,
                        "bin_high": hi,
                        "count": int(c),
                    }
                )
    return pd.DataFrame(rows, columns=["layer", "epoch", "bin_low", "bin_high", "count"])


def draw_accuracy(frame: pd.DataFrame, dense: float | None, title: str) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for method, part in frame.groupby("method", sort=False):
        part = part.sort_values("fraction")
        ax.plot(
            part["fraction"], part["test_accuracy"], "o-", label=method, color=COLORS.get(method)
        )
    if dense is not None:
        ax.axhline(dense, color="k", ls="--", lw=1, label="dense")
    ax.set_xlabel("share of hidden neurons removed")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=10)
    return fig


def draw_histograms(frame: pd.DataFrame, title: str) -> Figure:
    from matplotlib.figure import Figure

    layers = sorted(frame["layer"].unique())
    epochs = sorted(frame["epoch"].unique())
    fig = Figure(figsize=(2.0 * len(epochs) + 0.5, 2.0 * len(layers) + 0.6), layout="constrained")
    axes = fig.subplots(len(layers), len(epochs), squeeze=False, sharex=True)
    for i, layer in enumerate(layers):
        for j, epoch in enumerate(epochs):
            part = frame[(frame["layer"] == layer) & (frame["epoch"] == epoch)]
            ax = axes[i][j]
            ax.bar(part["bin_low"], part["count"], width=part["bin_high"] - part["bin_low"],
                   align="edge", color=COLORS["logistic"])  # fmt: skip
            ax.set_title(f"layer {layer}, epoch {epoch}", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == len(layers) - 1:
                ax.set_xlabel("mass", fontsize=8)
    fig.suptitle(title + " (living neurons)", fontsize=10)
    return fig


def draw_trajectories(
    snapshots: np.ndarray, sizes: Sequence[int], title: str, sample: int = 64
) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0 * len(sizes), 3.4), layout="constrained")
    axes = fig.subplots(1, len(sizes), squeeze=False)[0]
    starts = np.cumsum([0, *sizes])
    epochs = np.arange(len(snapshots))
    for layer, ax in enumerate(axes):
        a, b = starts[layer], starts[layer + 1]
        block = snapshots[:, a:b]
        pick = np.linspace(0, block.shape[1] - 1, min(sample, block.shape[1])).astype(int)
        ax.plot(epochs, block[:, pick], lw=0.7, alpha=0.6)
        extinct = (block == 0).mean(axis=1)
        twin = ax.twinx()
        twin.plot(epochs, extinct, "k--", lw=1.5)
        twin.set_ylim(0, 1)
        twin.set_ylabel("share extinct (dashed)", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mass")
        ax.set_title(f"layer {layer + 1} ({sizes[layer]} neurons)", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def draw_run_figures(
    out: Path, result: dict[str, Any], snapshots: np.ndarray, sizes: Sequence[int]
) -> None:
    """Write the run's three PNG figures into `out`."""
    from evoprune.io import write_atomic

    name = f"{result.get('dataset')} {result.get('dynamics')} seed {result.get('seed')}"
    if result.get("target_fraction") is not None:
        name += f", target {result['target_fraction']:.0%}"
    figures = {
        "accuracy_vs_fraction.png": draw_accuracy(
            prepare_accuracy(result), result.get("test_accuracy_dense"), name
        ),
        "mass_histograms.png": draw_histograms(prepare_histograms(snapshots, sizes), name),
        "mass_trajectories.png": draw_trajectories(snapshots, sizes, name),
    }
    for filename, fig in figures.items():
        write_atomic(Path(out) / filename, partial(fig.savefig, format="png", dpi=90))


def draw_dynamics_trajectories(runs: Sequence[str | Path], sample: int = 48) -> Figure:
    """One row per run folder (e.g. the three dynamics with their default rates, one seed): every
    sampled neuron's mass over the epochs, per layer, and the share extinct (dashed)."""
    import json

    from matplotlib.figure import Figure

    loaded = []
    for folder in runs:
        folder = Path(folder)
        result = json.loads((folder / "result.json").read_text())
        with np.load(folder / "masses.npz") as npz:
            loaded.append((result, npz["masses"], [int(s) for s in npz["sizes"]]))
    n_layers = max(len(sizes) for _, _, sizes in loaded)
    fig = Figure(figsize=(4.2 * n_layers, 2.8 * len(loaded) + 0.5), layout="constrained")
    axes = fig.subplots(len(loaded), n_layers, squeeze=False)
    for row, (result, snaps, sizes) in enumerate(loaded):
        starts = np.cumsum([0, *sizes])
        for layer in range(len(sizes)):
            ax = axes[row][layer]
            block = snaps[:, starts[layer] : starts[layer + 1]]
            pick = np.linspace(0, block.shape[1] - 1, min(sample, block.shape[1])).astype(int)
            ax.plot(np.arange(len(snaps)), block[:, pick], lw=0.6, alpha=0.6)
            twin = ax.twinx()
            twin.plot(np.arange(len(snaps)), (block == 0).mean(axis=1), "k--", lw=1.4)
            twin.set_ylim(0, 1)
            rate = result["eta"] * result["updates"]
            ax.set_title(
                f"{result['dynamics']} (rate {rate:.0f}), layer {layer + 1}: "
                f"{int((block[-1] == 0).sum())}/{block.shape[1]} extinct",
                fontsize=8,
            )
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_ylabel("mass", fontsize=8)
    fig.suptitle("Mass trajectories (rate = mean η × updates; dashed: share extinct)", fontsize=10)
    return fig


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="mass trajectories of selection-prune runs")
    ap.add_argument("runs", nargs="+", help="run folders (each with result.json, masses.npz)")
    ap.add_argument("--out", required=True, help="PNG file")
    args = ap.parse_args()
    draw_dynamics_trajectories(args.runs).savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
