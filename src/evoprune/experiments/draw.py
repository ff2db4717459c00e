"""Thin matplotlib renderers for the tidy frames of `evoprune.experiments.figures`.

No pyplot state: each renderer builds a `matplotlib.figure.Figure` (Agg), so figures can be drawn
in any process or thread and saved as PNG and SVG.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evoprune.experiments.run_history import ACCURACY, OBJECTIVE_PANEL, SPARSITY
from evoprune.io import write_atomic

METRIC_NAMES = {
    "test_accuracy": "test accuracy",
    "sparsity": "sparsity",
    "train_accuracy": "train accuracy",
}
DPI = 100
# distinct for up to 14 arms (a spec of every method has 8 and more); beyond, they repeat
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf",
          "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#843c39", "#7b4173"]  # fmt: skip


def _err(frame: pd.DataFrame) -> np.ndarray:
    low = (frame["mean"] - frame["ci_low"]).fillna(0).clip(lower=0).to_numpy(dtype=float)
    high = (frame["ci_high"] - frame["mean"]).fillna(0).clip(lower=0).to_numpy(dtype=float)
    return np.vstack([low, high])


def hue_colors(frame: pd.DataFrame, hue: str) -> dict[object, str]:
    """A colour per value of `hue` over the whole figure (in its categories' order, else in order
    of appearance), so that a value keeps its colour in a panel that lacks another."""
    column = frame[hue]
    values = column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) else column
    return {v: COLORS[j % len(COLORS)] for j, v in enumerate(dict.fromkeys(values))}


def legend_handles(axes: Iterable) -> dict[str, Artist]:
    """Each label's first handle over `axes`: panels that show different subsets share one
    legend of them all."""
    handles: dict[str, Artist] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    return handles


def legend_below(fig: Figure, *axes: Axes, order: Iterable[object] = ()) -> None:
    """The legend of every label in `axes` (in `order` where given) below the panels, outside
    every axes (so it covers no bar, line or tick); constrained layout makes room for it."""
    handles = legend_handles(axes)
    rank = {str(v): i for i, v in enumerate(order)}
    labels = sorted(handles, key=lambda label: rank.get(label, len(rank)))
    if labels:
        fig.legend([handles[label] for label in labels], labels, loc="outside lower center",
                   ncols=min(len(labels), 4), fontsize=8, frameon=False)  # fmt: skip


def _grouped_bars(
    ax: Axes, frame: pd.DataFrame, x: str, hue: str, colors: dict[object, str]
) -> None:
    """Bars of each `hue` value side by side at each `x`, coloured by `colors` (`hue_colors` of
    the whole figure, so that every panel colours a value alike)."""
    xs = list(dict.fromkeys(frame[x]))
    present = set(frame[hue])
    hues = [h for h in colors if h in present]
    width = 0.8 / max(len(hues), 1)
    for j, h in enumerate(hues):
        part = frame[frame[hue] == h].set_index(x).reindex(xs).reset_index()
        pos = np.arange(len(xs)) + (j - (len(hues) - 1) / 2) * width
        ax.bar(
            pos,
            part["mean"].to_numpy(dtype=float),
            width,
            yerr=_err(part),
            capsize=2,
            color=colors[h],
            label=str(h),
        )
    ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])


def draw_bars(frame: pd.DataFrame, title: str, hue: str = "label") -> Figure:
    """Rows: metrics; columns: datasets; x: architecture; bars: `hue`."""
    metrics = list(dict.fromkeys(frame["metric"]))
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig = Figure(figsize=(4.2 * len(datasets), 2.8 * len(metrics) + 0.6), layout="constrained")
    axes = fig.subplots(len(metrics), len(datasets), squeeze=False)
    colors = hue_colors(frame, hue)
    for i, metric in enumerate(metrics):
        for j, dataset in enumerate(datasets):
            ax = axes[i][j]
            part = frame[(frame["metric"] == metric) & (frame["dataset"] == dataset)]
            _grouped_bars(ax, part, "arch_name", hue, colors)
            ax.set_title(f"{dataset}", fontsize=10)
            ax.set_ylabel(METRIC_NAMES.get(metric, metric))
            ax.set_xlabel("architecture")
            ax.set_ylim(0, 1.05)
            ax.grid(axis="y", alpha=0.3)
    legend_below(fig, *axes.flat, order=colors)
    fig.suptitle(title)
    return fig


def draw_init_bars(frame: pd.DataFrame, title: str) -> Figure:
    return draw_bars(frame, title, hue="init")


def draw_lines(frame: pd.DataFrame, title: str) -> Figure:
    """x: number of classes; one line per algorithm with a 95% CI band; a panel per metric."""
    metrics = list(dict.fromkeys(frame["metric"]))
    fig = Figure(figsize=(5.0 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colors = hue_colors(frame, "label")
    for ax, metric in zip(axes, metrics, strict=True):
        part = frame[frame["metric"] == metric]
        for label in [h for h in colors if h in set(part["label"])]:
            line = part[part["label"] == label].sort_values("classes")
            x = line["classes"].astype(float).to_numpy()
            color = colors[label]
            ax.plot(
                x,
                line["mean"].to_numpy(dtype=float),
                marker="o",
                ms=3,
                color=color,
                label=str(label),
            )
            ax.fill_between(
                x,
                line["ci_low"].to_numpy(dtype=float),
                line["ci_high"].to_numpy(dtype=float),
                color=color,
                alpha=0.15,
                linewidth=0,
            )
        ax.set_xlabel("classes")
        ax.set_xticks(sorted(part["classes"].astype(float).unique()))  # class counts, not 2.5
        ax.xaxis.set_major_formatter("{x:.0f}")
        ax.set_ylabel(METRIC_NAMES.get(metric, metric))
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    legend_below(fig, *axes, order=colors)
    fig.suptitle(title)
    return fig


def _history_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The report's Fig. 4 frame (generation, series, value) in the columns of
    `evoprune.experiments.run_history.prepare_run_history` (phase, step, panel, series, final)."""
    if "panel" in frame:
        return frame
    return frame.assign(
        phase="GA",
        step=frame["generation"],
        # the GA scores the training split: its accuracy is the training accuracy
        panel=[ACCURACY if "accuracy" in str(s) else SPARSITY for s in frame["series"]],
        final=False,
    )


def draw_history(frame: pd.DataFrame, title: str, caption: str = "") -> Figure:
    """Fig. 4: one run's curves against the generation (then the local search's passes), a panel
    per quantity (training accuracy, sparsity, the objective), the final ticket as a star."""
    frame = _history_frame(frame)
    panels = list(dict.fromkeys(frame["panel"]))
    fig = Figure(figsize=(8.0, 0.9 + 2.1 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    curves = frame[~frame["final"].astype(bool)]
    series = list(dict.fromkeys(curves["series"]))
    color = {s: COLORS[j % len(COLORS)] for j, s in enumerate(series)}
    phases = list(dict.fromkeys(curves["phase"]))
    bounds = {p: (curves.loc[curves["phase"] == p, "step"].min(),
                  curves.loc[curves["phase"] == p, "step"].max()) for p in phases}  # fmt: skip
    span = max(float(curves["step"].max() - curves["step"].min()), 1.0)
    for ax, panel in zip(axes, panels, strict=True):
        part = frame[frame["panel"] == panel]
        for (_, name), line in part[~part["final"].astype(bool)].groupby(
            ["phase", "series"], sort=False
        ):  # a point alone is drawn as a dot
            ax.plot(line["step"], line["value"], color=color[name], lw=1.3, label=str(name),
                    marker="o" if len(line) == 1 else None, ms=4)  # fmt: skip
        for _, row in part[part["final"].astype(bool)].iterrows():
            x = float(row["step"]) + 0.02 * span
            ax.plot([x], [row["value"]], marker="*", ms=12, color="k", ls="none",
                    label=str(row["series"]), zorder=4)  # fmt: skip
            v = float(row["value"])
            ax.annotate(f"{v:.3f}" if abs(v) >= 0.1 else f"{v:.3g}", (x, v), xytext=(7, 0),
                        textcoords="offset points", va="center", fontsize=8)  # fmt: skip
        for j, phase in enumerate(phases[1:], start=1):  # shade every phase after the first
            lo, hi = bounds[phase]
            ax.axvspan(lo - 0.5, hi + 0.5, color="0.5" if j % 2 else "0.7", alpha=0.12, lw=0)
        ax.set_ylabel(panel, fontsize=9)
        if panel in (
            ACCURACY,
            SPARSITY,
            OBJECTIVE_PANEL["f1"],
            *frame.attrs.get("unit_interval", ()),
        ):
            ax.set_ylim(0, 1.05)
        elif part["value"].gt(0).all() and part["value"].max() > 20 * part["value"].min():
            ax.set_yscale("log")
        ax.set_xlim(right=float(curves["step"].max()) + 0.09 * span)
        ax.grid(alpha=0.3)
    if len(phases) > 1:  # name the phases above the first panel
        for phase in phases:
            lo, hi = bounds[phase]
            axes[0].annotate(phase, ((lo + hi) / 2, 1.0), xycoords=("data", "axes fraction"),
                             xytext=(0, 2), textcoords="offset points", ha="center",
                             va="bottom", fontsize=8, color="0.3")  # fmt: skip
    # the GA counts generations, a local search passes over all bits (other methods: epochs,
    # trials, evaluations, in `frame.attrs`)
    units = frame.attrs.get("units", {})
    axes[-1].set_xlabel(", then ".join(
        f"{p} {units.get(p, 'generation' if p == 'GA' else 'pass')}" for p in phases))  # fmt: skip
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))  # generations and passes: 1, 2
    handles = legend_handles(axes)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(title + (f"\n{caption}" if caption else ""), fontsize=10)
    return fig


def draw_stages(frame: pd.DataFrame, title: str) -> Figure:
    """Fig. 11: sparsity before/after post-pruning; a panel per GA variant, x: classes."""
    labels = (
        [h for h in frame["label"].cat.categories if h in set(frame["label"])] if len(frame) else []
    )
    fig = Figure(figsize=(4.5 * max(len(labels), 1), 3.4), layout="constrained")
    axes = fig.subplots(1, max(len(labels), 1), squeeze=False)[0]
    colors = hue_colors(frame, "stage")
    for ax, label in zip(axes, labels, strict=False):
        part = frame[frame["label"] == label].copy()
        part["arch_name"] = part["classes"].astype(str)
        _grouped_bars(ax, part, "arch_name", "stage", colors)
        ax.set_title(str(label), fontsize=10)
        ax.set_xlabel("classes")
        ax.set_ylabel("sparsity")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    legend_below(fig, *axes, order=colors)
    fig.suptitle(title)
    return fig


def save(fig: Figure, stem: str | Path) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.svg``, each atomically (an interrupt, or a report drawn
    beside another into one folder, left a truncated figure); the layout is computed once, for
    the PNG."""
    stem = Path(stem)
    png = write_atomic(stem.with_suffix(".png"), png_bytes(fig))
    fig.set_layout_engine("none")  # keep the positions just computed: the SVG needs no new layout
    svg = write_atomic(stem.with_suffix(".svg"), lambda fh: fig.savefig(fh, format="svg"))
    return png, svg


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
