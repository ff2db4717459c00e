"""Thin matplotlib drawings of the analyses (no pyplot state: ``matplotlib.figure.Figure``, Agg).

The command line and the report both draw through these; the numbers come from the analysis
modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from evoprune.io import write_atomic

DPI = 100
KEPT_COLOR = "#d62728"  # kept in most tickets (as the paper's Fig. 1: red)
REST_COLOR = "#1f77b4"  # the rest (blue)


def save_png(fig: Figure, path: str | Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return write_atomic(path, buf.getvalue())


def landscape_panels(axes, delta, eta, loss, accuracy) -> None:
    """Contours of the training loss and accuracy over (δ, η) on two axes; the ticket at 0."""
    for ax, values, name, cmap in (
        (axes[0], loss, "training loss", "viridis_r"),
        (axes[1], accuracy, "training accuracy", "viridis"),
    ):
        z = np.asarray(values, dtype=float).T  # contour wants z[eta, delta]
        finite = np.isfinite(z)
        if finite.sum() >= 4 and np.nanmax(z) > np.nanmin(z):
            cs = ax.contour(delta, eta, np.where(finite, z, np.nan), levels=15, cmap=cmap)
            ax.clabel(cs, fontsize=6, fmt="%.3g")
        ax.plot([0], [0], marker="*", color="k", ms=8)
        ax.set_xlabel("δ")
        ax.set_ylabel("η")
        ax.set_title(name, fontsize=10)
        ax.set_aspect("equal")


def draw_landscape(
    delta: np.ndarray, eta: np.ndarray, loss: np.ndarray, accuracy: np.ndarray, title: str = ""
) -> Figure:
    """Fig. 8: contour panels of the training loss and accuracy over (δ, η)."""
    fig = Figure(figsize=(9.5, 4.0), layout="constrained")
    landscape_panels(fig.subplots(1, 2), delta, eta, loss, accuracy)
    if title:
        fig.suptitle(title)
    return fig


def draw_spectrum(eigenvalues: Sequence[float], title: str = "") -> Figure:
    """The Hessian's eigenvalues in descending order (symlog scale: the spectrum has both signs)."""
    ev = np.asarray(eigenvalues, dtype=float)
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(np.arange(1, len(ev) + 1), ev, marker="o", ms=2, lw=0.8)
    ax1.set_xlabel("rank")
    ax1.set_ylabel("eigenvalue")
    ax1.set_yscale("symlog", linthresh=max(1e-6, float(np.abs(ev).max() if len(ev) else 1) * 1e-4))
    ax1.grid(alpha=0.3)
    ax2.hist(ev, bins=min(60, max(5, len(ev) // 5)), color="#1f77b4")
    ax2.set_xlabel("eigenvalue")
    ax2.set_ylabel("count")
    ax2.set_yscale("log")
    ax2.grid(alpha=0.3)
    fig.suptitle(title or f"Hessian spectrum ({len(ev)} eigenvalues)")
    return fig


def _positions(layers: Sequence[int]) -> list[np.ndarray]:
    """y positions of each layer's units, centred, the widest layer spanning [0, 1]."""
    widest = max(layers)
    out = []
    for n in layers:
        ys = (np.arange(n) + 0.5) / widest
        out.append(ys + (1 - n / widest) / 2)
    return out


def draw_network(ax, layers: Sequence[int], freq: Sequence[np.ndarray], threshold: float) -> None:
    """One network, layer by layer: an edge per connection with frequency > 0, in the kept colour
    when its frequency is above `threshold`, its width growing with the frequency."""
    ys = _positions(layers)
    for li, f in enumerate(freq):  # f: (out, in)
        segs, colors, widths = [], [], []
        outs, ins = np.nonzero(f > 0)
        for o, i in zip(outs.tolist(), ins.tolist(), strict=True):
            segs.append([(li, ys[li][i]), (li + 1, ys[li + 1][o])])
            v = float(f[o, i])
            colors.append(KEPT_COLOR if v > threshold else REST_COLOR)
            widths.append(0.2 + 1.6 * v)
        if segs:
            ax.add_collection(LineCollection(segs, colors=colors, linewidths=widths, alpha=0.55))
    for li, y in enumerate(ys):
        ax.scatter(np.full(len(y), li), y, s=max(2, 60 / np.sqrt(max(layers))), c="k", zorder=3)
    ax.set_xlim(-0.2, len(layers) - 0.8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(range(len(layers)), [f"{n}" for n in layers])
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def draw_ticket_graph(
    layers: Sequence[int],
    freq: Sequence[np.ndarray],
    example: Sequence[np.ndarray] | None,
    n_tickets: int,
    threshold: float = 0.5,
    title: str = "",
) -> Figure:
    """Fig. 1: how often each connection survives over `n_tickets` tickets, and one ticket."""
    panels = 2 if example is not None else 1
    fig = Figure(figsize=(5.2 * panels, 4.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    draw_network(axes[0], layers, freq, threshold)
    axes[0].set_title(
        f"{n_tickets} ticket{'s' if n_tickets != 1 else ''}: red = kept in > {threshold:.0%}",
        fontsize=9,
    )
    if example is not None:
        # the example's connections, coloured and sized by how often the tickets keep them
        kept = [
            np.asarray(f, dtype=float) * np.asarray(e, dtype=bool)
            for f, e in zip(freq, example, strict=True)
        ]
        draw_network(axes[1], layers, kept, threshold)
        axes[1].set_title("an example ticket", fontsize=9)
    fig.suptitle(title or "ticket graph")
    return fig
