"""Figures beyond the paper: the memetic and local searches against the paper's GA, edge-popup
and backprop (spec ``beyond``), and test accuracy against wall time on MNIST (spec ``scale``).

As for the paper's figures: `prepare_*` builds a tidy frame (tested), `draw_*` only draws it.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def _case(runs: pd.DataFrame) -> pd.Series:
    """One name per problem: "moons B", "digits-10 B", "blobs-10 C"."""
    multi = runs["dataset"].isin(["blobs", "digits", "mnist"])
    data = (
        runs["dataset"]
        .astype(str)
        .where(~multi, runs["dataset"].astype(str) + "-" + runs["classes"].astype(str))
    )
    return data + " " + runs["arch_name"].map(_short_arch)


def _short_arch(arch: object) -> str:
    names = {"20": "A", "75": "B", "100": "C", "50,50": "D"}
    text = str(arch)
    hidden = ",".join(text.split(",")[1:-1]) if "," in text else text
    return names.get(hidden, text)


def prepare_beyond(runs: pd.DataFrame, spec: str = "beyond") -> pd.DataFrame:
    """Test accuracy, sparsity and wall time per problem ("case") and method, 95% CIs."""
    from evoprune.experiments.figures import _runs_of, prepare_summary  # (it registers us)

    sub = _runs_of(runs, spec).copy()
    if sub.empty:
        return prepare_summary(sub, spec, ["case", "label"], ["test_accuracy"])
    sub["case"] = _case(sub)
    frame = prepare_summary(
        sub, spec, ["case", "label"], ["test_accuracy", "sparsity", "wall_seconds"]
    )
    return frame


def draw_case_bars(frame: pd.DataFrame, title: str) -> Figure:
    """Rows: metrics; x: problem; bars: method (wall time on a log scale)."""
    from evoprune.experiments.draw import METRIC_NAMES, _grouped_bars, hue_colors, legend_below

    metrics = list(dict.fromkeys(frame["metric"]))
    n_cases = frame["case"].nunique()
    fig = Figure(
        figsize=(max(8.0, 0.9 * n_cases + 2), 2.8 * len(metrics) + 0.8), layout="constrained"
    )
    axes = fig.subplots(len(metrics), 1, squeeze=False)
    colors = hue_colors(frame, "label")
    for i, metric in enumerate(metrics):
        ax = axes[i][0]
        _grouped_bars(ax, frame[frame["metric"] == metric], "case", "label", colors)
        ax.set_ylabel(METRIC_NAMES.get(metric, metric.replace("_", " ")))
        if metric == "wall_seconds":
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    legend_below(fig, *axes.flat, order=colors)
    fig.suptitle(title)
    return fig


def prepare_scale(runs: pd.DataFrame, spec: str = "scale") -> pd.DataFrame:
    """Test accuracy, wall time and sparsity per network and method, 95% CIs over seeds."""
    from evoprune.experiments.figures import _runs_of, prepare_summary

    sub = _runs_of(runs, spec).copy()
    sub["network"] = sub["arch_name"].map(str) if not sub.empty else []
    return prepare_summary(
        sub, spec, ["network", "label"], ["test_accuracy", "wall_seconds", "sparsity"]
    )


def draw_scale(frame: pd.DataFrame, title: str) -> Figure:
    """Test accuracy against wall time, every method on one plot: colour = method, marker =
    network; error bars are the 95% CIs over seeds."""
    wide = frame.pivot_table(
        index=["network", "label"], columns="metric", values=["mean", "ci_low", "ci_high"],
        observed=True, sort=False,
    )  # fmt: skip
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.subplots()
    labels = list(
        frame["label"].cat.categories
        if hasattr(frame["label"], "cat")
        else dict.fromkeys(frame["label"])
    )
    networks = list(dict.fromkeys(frame["network"]))
    for (network, label), row in wide.iterrows():
        acc, wall = row[("mean", "test_accuracy")], row[("mean", "wall_seconds")]
        color = COLORS[labels.index(label) % len(COLORS)]
        marker = MARKERS[networks.index(network) % len(MARKERS)]
        ax.errorbar(
            wall, acc, xerr=_half(row, "wall_seconds", wall), yerr=_half(row, "test_accuracy", acc),
            fmt=marker, color=color, capsize=2, markersize=7,
        )  # fmt: skip
    for i, label in enumerate(labels):
        ax.plot([], [], "o", color=COLORS[i % len(COLORS)], label=str(label))
    for j, net in enumerate(networks):
        ax.plot([], [], MARKERS[j % len(MARKERS)], color="#555", label=f"net {net}")
    ax.set_xscale("log")
    ax.set_xlabel("wall time per run (s, log scale)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    return fig


def _half(row: pd.Series, metric: str, mean: float) -> list[list[float]]:
    """Asymmetric error bar from a 95% CI (zero where a cell has one run)."""
    lo, hi = row.get(("ci_low", metric)), row.get(("ci_high", metric))
    if pd.isna(lo) or pd.isna(hi):
        return [[0.0], [0.0]]
    return [[max(0.0, mean - lo)], [max(0.0, hi - mean)]]
