"""Thin matplotlib drawings of the analyses (no pyplot state: ``matplotlib.figure.Figure``, Agg).

The command line and the report both draw through these; the numbers come from the analysis
modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from evoprune.io import write_atomic

if TYPE_CHECKING:
    from evoprune.analysis.boundary import Boundaries

DPI = 100
KEPT_COLOR = "#d62728"  # kept in most tickets (as the paper's Fig. 1: red)
REST_COLOR = "#1f77b4"  # the rest (blue)
SINGLE_COLOR = "#333333"  # one ticket: a kept connection (no frequency to colour by)
BOUNDARY_COLORS = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]  # per ticket
MARKED_ERRORS = 400  # test errors marked per ticket in a boundary figure


def save_png(fig: Figure, path: str | Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return write_atomic(path, buf.getvalue())


def data_name(data: dict | None) -> str:
    """``digits (10 classes)`` from a dataset config (``name``, ``classes``; a user's file by
    its file name)."""
    if not data:
        return "unknown data"
    name = Path(data["path"]).name if data.get("path") else str(data.get("name") or "data")
    classes = data.get("classes")
    return f"{name} ({int(classes)} classes)" if classes not in (None, "") else name


def ticket_caption(ticket: dict | None, data: dict | None = None) -> str:
    """What a figure says about its ticket (`evoprune.analysis.params.describe`) and data:
    ``GA ticket, digits (10 classes), [64, 75, 10], seed 0, sparsity 0.622``; the data named
    apart only when the analysis scored other data than the ticket's own."""
    ticket = ticket or {}
    method = ticket.get("method")
    parts = [f"{METHOD_NAMES.get(method, method)} ticket" if method else "ticket",
             data_name(ticket.get("dataset") or data)]  # fmt: skip
    if ticket.get("layers"):
        parts.append(str(list(ticket["layers"])))
    if ticket.get("seed") is not None:
        parts.append(f"seed {ticket['seed']}")
    if isinstance(ticket.get("sparsity"), int | float):
        parts.append(f"sparsity {ticket['sparsity']:.3f}")
    text = ", ".join(parts)
    own = ticket.get("dataset")
    if data and own and data_name(data) != data_name(own):
        text += f"; scored on {data_name(data)}"
    return text


METHOD_NAMES = {"ga": "GA", "ga-adaptive": "GA (adaptive bound)", "memetic": "memetic",
                "local": "local-search"}  # fmt: skip
LANDSCAPE_FILLS = 16  # colour bands of the filled contours
LANDSCAPE_LINES = 5  # labelled contour lines over them: few, so their labels do not crowd


def landscape_panels(
    axes: np.ndarray,
    delta: np.ndarray,
    eta: np.ndarray,
    loss: np.ndarray,
    accuracy: np.ndarray,
) -> None:
    """Filled contours of the training loss and accuracy over (δ, η) on two axes, each with its
    colour bar and a few labelled contour lines; the ticket (δ = η = 0) as a star."""
    for ax, values, name, cmap in (
        (axes[0], loss, "training loss", "viridis_r"),
        (axes[1], accuracy, "training accuracy", "viridis"),
    ):
        z = np.asarray(values, dtype=float).T  # contour wants z[eta, delta]
        finite = np.isfinite(z)
        if finite.sum() >= 4 and np.nanmax(z) > np.nanmin(z):
            z = np.where(finite, z, np.nan)
            filled = ax.contourf(delta, eta, z, levels=LANDSCAPE_FILLS, cmap=cmap)
            ax.figure.colorbar(filled, ax=ax, shrink=0.9, label=name)
            levels = filled.levels[1:-1]
            step = max(1, int(np.ceil(len(levels) / LANDSCAPE_LINES)))
            lines = ax.contour(delta, eta, z, levels=levels[::step], colors="k",
                               linewidths=0.6, alpha=0.6)  # fmt: skip
            ax.clabel(lines, fontsize=7, fmt="%.3g", inline_spacing=2)
        ax.plot([0], [0], marker="*", color="w", mec="k", ms=12, ls="none")
        ax.set_xlabel("δ (direction 1)")
        ax.set_ylabel("η (direction 2)")
        ax.set_title(name, fontsize=10)
        ax.set_aspect("equal")


def draw_landscape(
    delta: np.ndarray, eta: np.ndarray, loss: np.ndarray, accuracy: np.ndarray, title: str = ""
) -> Figure:
    """Fig. 8: contour panels of the training loss and accuracy over (δ, η)."""
    fig = Figure(figsize=(10.5, 4.4), layout="constrained")
    landscape_panels(fig.subplots(1, 2), delta, eta, loss, accuracy)
    fig.suptitle(title or "loss and accuracy around the ticket (★: δ = η = 0)", fontsize=10)
    return fig


def spectrum_scale(eigenvalues: Sequence[float] | np.ndarray) -> tuple[float, list[float]]:
    """The symlog scale of a spectrum: the linear threshold (a power of ten, 10^-4 of the
    largest magnitude or above) and the y ticks: 0 and ± powers of ten from the threshold out,
    every k-th decade so that at most 6 lie on each side. In the axis' coordinates (linscale 1)
    neighbouring ticks are at least one decade apart, so their labels never overlap."""
    ev = np.asarray(eigenvalues, dtype=float)
    ev = ev[np.isfinite(ev)]
    top = float(np.abs(ev).max()) if len(ev) and np.abs(ev).max() > 0 else 1.0
    lo = int(np.ceil(np.log10(top * 1e-4)))
    linthresh = 10.0**lo
    ticks = [0.0]
    for sign, extreme in ((1, ev.max(initial=0.0)), (-1, -ev.min(initial=0.0))):
        if extreme <= linthresh:
            continue
        hi = int(np.ceil(np.log10(extreme)))
        k = max(1, int(np.ceil((hi - lo + 1) / 6)))
        ticks += [sign * 10.0**e for e in range(lo, hi + 1, k)]
    return linthresh, sorted(ticks)


def draw_spectrum(eigenvalues: Sequence[float] | np.ndarray, title: str = "") -> Figure:
    """The Hessian's eigenvalues in descending order (symlog scale: the spectrum has both signs)
    and their histogram."""
    ev = np.asarray(eigenvalues, dtype=float)
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(np.arange(1, len(ev) + 1), ev, marker="o", ms=2, lw=0.8)
    ax1.set_xlabel("rank")
    ax1.set_ylabel("eigenvalue")
    linthresh, ticks = spectrum_scale(ev)
    ax1.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
    ax1.set_yticks(ticks)
    ax1.yaxis.set_minor_locator(NullLocator())
    ax1.axhspan(-linthresh, linthresh, color="0.5", alpha=0.1, lw=0)
    ax1.set_title(f"descending (linear within ±{linthresh:.0e}, shaded)", fontsize=9)
    ax1.grid(alpha=0.3)
    ax2.hist(ev, bins=min(60, max(5, len(ev) // 5)), color="#1f77b4")
    ax2.set_xlabel("eigenvalue")
    ax2.set_ylabel("count")
    ax2.set_yscale("log")
    ax2.set_title("histogram", fontsize=9)
    ax2.grid(alpha=0.3)
    fig.suptitle(title or f"Hessian spectrum ({len(ev)} eigenvalues)", fontsize=10)
    return fig


MIN_GAP = 0.2  # the least distance between the units of a small layer (the axis spans 0-1)


def unit_positions(layers: Sequence[int]) -> list[np.ndarray]:
    """y positions of each layer's units, centred on 0.5, inside [0, 1]. The widest layer spans
    the axis; a narrow layer's units lie ``max(1 / widest, min(MIN_GAP, 1 / n))`` apart, so two
    inputs or two outputs are apart, not drawn on top of each other."""
    widest = max(layers)
    out = []
    for n in layers:
        gap = max(1 / widest, min(MIN_GAP, 1 / n))
        out.append(0.5 + (np.arange(n) - (n - 1) / 2) * gap)
    return out


def draw_network(
    ax: Axes,
    layers: Sequence[int],
    freq: Sequence[np.ndarray],
    threshold: float,
    kept_color: str = KEPT_COLOR,
    names: Sequence[Sequence[str] | None] = (),
) -> None:
    """One network, layer by layer: an edge per connection with frequency > 0, in `kept_color`
    when its frequency is above `threshold` (else the rest's colour), its width growing with the
    frequency. `names`: per layer, labels of its units (None: none)."""
    ys = unit_positions(layers)
    for li, f in enumerate(freq):  # f: (out, in)
        segs, colors, widths = [], [], []
        outs, ins = np.nonzero(f > 0)
        for o, i in zip(outs.tolist(), ins.tolist(), strict=True):
            segs.append([(li, ys[li][i]), (li + 1, ys[li + 1][o])])
            v = float(f[o, i])
            colors.append(kept_color if v > threshold else REST_COLOR)
            widths.append(0.2 + 1.6 * v)
        if segs:
            ax.add_collection(LineCollection(segs, colors=colors, linewidths=widths, alpha=0.55))
    for li, y in enumerate(ys):
        ax.scatter(np.full(len(y), li), y, s=max(6, 60 / np.sqrt(max(layers))), c="k", zorder=3)
    for li, labels in enumerate(names):
        if labels is None:
            continue
        side = -1 if li == 0 else 1
        for y, text in zip(ys[li], labels, strict=True):
            ax.annotate(text, (li, y), xytext=(6 * side, 0), textcoords="offset points",
                        ha="right" if side < 0 else "left", va="center", fontsize=8)  # fmt: skip
    ax.set_xlim(-0.35, len(layers) - 0.65)
    ax.set_ylim(-0.05, 1.05)
    names_of = ["inputs"] + ["hidden"] * (len(layers) - 2) + ["outputs"]
    ax.set_xticks(range(len(layers)), [f"{k}\n{n} units" for k, n in zip(names_of, layers,
                                                                          strict=True)])  # fmt: skip
    ax.tick_params(axis="x", labelsize=8, length=0)
    ax.set_yticks([])
    for spine in ("top", "right", "left", "bottom"):
        ax.spines[spine].set_visible(False)


def unit_names(layers: Sequence[int], most: int = 10) -> list[list[str] | None]:
    """Labels of the input and output units of a small network (x1, x2 / class 0, class 1);
    None for the hidden layers and for layers of more than `most` units."""
    names: list[list[str] | None] = [None] * len(layers)
    if layers[0] <= most:
        names[0] = [f"x{i + 1}" for i in range(layers[0])]
    if layers[-1] <= most:
        names[-1] = [f"class {i}" for i in range(layers[-1])]
    return names


def draw_ticket_graph(
    layers: Sequence[int],
    freq: Sequence[np.ndarray],
    example: Sequence[np.ndarray] | None,
    n_tickets: int,
    threshold: float = 0.5,
    title: str = "",
    example_name: str = "the ticket of the lowest seed",
) -> Figure:
    """Fig. 1: how often each connection survives over `n_tickets` tickets, and one example
    ticket; a single ticket: its kept connections."""
    from matplotlib.lines import Line2D

    panels = 2 if example is not None and n_tickets > 1 else 1
    fig = Figure(figsize=(5.6 * panels, 4.6), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    names = unit_names(layers)
    kept = sum(int((np.asarray(f) > 0).sum()) for f in freq)
    total = sum(np.asarray(f).size for f in freq)
    if n_tickets == 1:
        draw_network(axes[0], layers, freq, threshold, kept_color=SINGLE_COLOR, names=names)
        axes[0].set_title(f"{kept} of {total} connections kept", fontsize=9)
        handles = [Line2D([], [], color=SINGLE_COLOR, lw=1.5, label="a connection the ticket keeps"
                          " (the pruned ones are not drawn)")]  # fmt: skip
    else:
        draw_network(axes[0], layers, freq, threshold, names=names)
        axes[0].set_title(f"all {n_tickets} tickets (width: share of tickets keeping it)",
                          fontsize=9)  # fmt: skip
        handles = [
            Line2D([], [], color=KEPT_COLOR, lw=1.8,
                   label=f"kept in more than {threshold:.0%} of the {n_tickets} tickets"),
            Line2D([], [], color=REST_COLOR, lw=0.8,
                   label=f"kept in at most {threshold:.0%} of them (but at least one)"),
        ]  # fmt: skip
    if panels == 2:
        assert example is not None  # two panels: the tickets and the example
        # the example's connections, coloured and sized by how often the tickets keep them
        shown = [
            np.asarray(f, dtype=float) * np.asarray(e, dtype=bool)
            for f, e in zip(freq, example, strict=True)
        ]
        draw_network(axes[1], layers, shown, threshold, names=names)
        axes[1].set_title(f"{example_name}: its connections, coloured as on the left",
                          fontsize=9)  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8,
               frameon=False)  # fmt: skip
    fig.suptitle(title or "ticket graph", fontsize=10)
    return fig


def draw_boundaries(b: Boundaries, title: str) -> Figure:
    """`evoprune.analysis.boundary.Boundaries`: the training points (light), each ticket's
    boundary and test errors in its colour (at most `MARKED_ERRORS` of them, a fixed random
    choice, so that thousands do not hide the boundaries), the Bayes rule's boundary dashed
    black on top. Both axes on one scale, as the network sees its inputs."""
    aspect = (b.ys[-1] - b.ys[0]) / (b.xs[-1] - b.xs[0])  # height / width of the data
    fig = Figure(figsize=(8, min(max(7 * aspect + 1.2, 3.5), 9)))
    ax = fig.add_subplot()
    few = len(b.X_shown) < 1_000  # a small table: larger points
    two = b.y_shown.max() <= 1  # two classes: blue and red; more: a pale colour each
    ax.scatter(b.X_shown[:, 0], b.X_shown[:, 1], c=b.y_shown, s=10 if few else 2,
               cmap="coolwarm" if two else "Pastel1", vmin=0, vmax=1 if two else 8,
               alpha=0.45 if two else 0.9, linewidths=0)  # fmt: skip
    handles: list[Artist] = []
    for k, (pred, label, errors) in enumerate(
        zip(b.predictions, b.labels, b.test_errors, strict=True)
    ):
        color = BOUNDARY_COLORS[k % len(BOUNDARY_COLORS)]
        for cls in np.unique(pred):  # the edge of each class's region: any number of classes
            ax.contour(b.xs, b.ys, (pred == cls).astype(float), levels=[0.5], colors=color,
                       linewidths=1.4)  # fmt: skip
        text = f"{label}: {len(errors):,} test errors"
        if len(errors) > MARKED_ERRORS:
            errors = np.random.default_rng(k).choice(errors, MARKED_ERRORS, replace=False)
            text += f" ({MARKED_ERRORS} marked)"
        marker = "xo+^sv"[k % 6]
        h = ax.scatter(b.X_test[errors, 0], b.X_test[errors, 1], color=color, marker=marker, s=36,
                       linewidths=1.2, facecolors="none" if marker in "o^sv" else None, alpha=0.8,
                       zorder=3 + len(b.labels) - k, label=text)  # the first ticket's on top  # fmt: skip
        handles.append(h)
    if b.bayes is not None:
        ax.contour(b.xs, b.ys, b.bayes, levels=[0.0], colors="k", linestyles="--",
                   linewidths=1.4, zorder=10)  # fmt: skip
        assert b.bayes_test_errors is not None  # set with bayes (`decision_boundaries`)
        n = len(b.bayes_test_errors)
        handles.append(ax.plot([], [], "k--", label=f"Bayes rule: {n:,} test errors")[0])
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9).set_zorder(20)
    ax.set_aspect("equal")
    ax.set_xlabel("feature 1 (as the network sees it)")
    ax.set_ylabel("feature 2")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
