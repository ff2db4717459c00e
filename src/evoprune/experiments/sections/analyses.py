"""The analyses in sweeps and reports: the ticket graph (Fig. 1), landscapes (Fig. 8) and Hessian
spectra (the digits analysis) of Schönberger et al., arXiv 2508.08877.

As for the other figures: `prepare_*` turns a sweep's runs into a tidy frame (tested), `draw_*`
draws it (thin), `table_*` gives the report's table, and `CLAIM_ROWS` checks the paper's
findings. The frames read the run folders (``ticket.npz``, ``landscape.npz``) and the result
fields the analyses add (``hessian_eigenvalues``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from evoprune.analysis.graph import TicketGraph, ticket_graph
from evoprune.analysis.plots import draw_ticket_graph, landscape_panels
from evoprune.errors import EvopruneError
from evoprune.ticket import Ticket

CELL = ["dataset", "classes", "arch_name", "label"]


def _run_path(row: Any, name: str) -> Path | None:
    """`name` inside a run's folder (``<sweep>/runs/KEY/name``) when it exists."""
    run_dir = getattr(row, "run_dir", None) if not isinstance(row, dict) else row.get("run_dir")
    folder = getattr(row, "folder", None) if not isinstance(row, dict) else row.get("folder")
    if not run_dir or not isinstance(run_dir, str):
        return None
    path = Path(folder or ".") / run_dir / name
    return path if path.is_file() else None


# -- the ticket graph (Fig. 1) -------------------------------------------------------------------


def cell_tickets(
    runs: pd.DataFrame,
    dataset: str | None = None,
    arch: str | None = None,
    label: str | None = None,
    classes: int | None = None,
) -> tuple[list[Ticket], dict[str, Any]]:
    """The tickets of one cell (dataset, classes, architecture, arm) of a sweep, lowest seed first.

    Unset fields must be unambiguous among the runs with tickets; otherwise an error lists the
    choices.
    """
    if runs.empty:
        raise EvopruneError("ticket graph: the sweep has no finished runs")
    rows = runs.copy()
    rows["_ticket"] = [_run_path(r, "ticket.npz") for r in rows.to_dict("records")]
    rows = rows[rows["_ticket"].notna()]
    if rows.empty:
        raise EvopruneError("ticket graph: no run of the sweep has a ticket.npz")
    wanted = {"dataset": dataset, "classes": classes, "arch_name": arch, "label": label}
    flags = {
        "dataset": "--dataset",
        "classes": "--classes",
        "arch_name": "--arch",
        "label": "--label",
    }
    for col, value in wanted.items():
        if value is not None:
            if col == "arch_name":
                match = rows[col].astype(str).str.upper() == str(value).upper()
                match |= rows["arch"].astype(str).str.replace(" ", "").str.strip("[]") == str(value)
            elif col == "classes":
                match = pd.to_numeric(rows[col], errors="coerce") == int(value)
            else:
                match = rows[col].astype(str) == str(value)
            if not match.any():
                have = ", ".join(sorted(map(str, dict.fromkeys(rows[col]))))
                raise EvopruneError(
                    f"{flags[col]}: no tickets with {value!r}; the sweep has {have}"
                )
            rows = rows[match]
    for col in CELL:
        values = list(dict.fromkeys(rows[col].astype(str)))
        if len(values) > 1:
            raise EvopruneError(
                f"ticket graph: the runs differ in {col} ({', '.join(values)}); choose one with "
                f"{flags[col]}"
            )
    rows = rows.drop_duplicates("key").sort_values("seed", kind="stable")
    tickets = [Ticket.load(p) for p in rows["_ticket"]]
    first = rows.iloc[0]
    cell = {c: first[c] for c in CELL} | {"seeds": [int(s) for s in rows["seed"]]}
    return tickets, cell


def prepare_fig1(runs: pd.DataFrame, spec: str = "fig1") -> pd.DataFrame:
    """Connection survival frequencies over the tickets of the spec's first cell that has
    tickets (one row per connection; a backprop arm has none), with the example ticket (the
    lowest seed) in column ``example``."""
    sub = runs[runs["spec"] == spec]
    columns = ["dataset", "classes", "arch_name", "label", "layer", "source", "target",
               "frequency", "kept_in", "n_tickets", "example", "n"]  # fmt: skip
    for _, cell in sub.groupby(sub[CELL].astype(str).agg("|".join, axis=1), sort=False):
        try:
            tickets, _ = cell_tickets(cell)
        except EvopruneError:
            continue
        first = cell.iloc[0]
        break
    else:
        return pd.DataFrame(columns=columns)
    g = ticket_graph(tickets)
    frame = g.frame()
    frame["example"] = np.concatenate([e.ravel() for e in g.example]) if g.example else False
    for c in CELL:
        frame[c] = first[c]
    frame["n"] = g.n_tickets
    return frame[columns]


def graph_from_frame(frame: pd.DataFrame) -> TicketGraph:
    """Inverse of `TicketGraph.frame` (plus the ``example`` column)."""
    freq: list[np.ndarray] = []
    example: list[np.ndarray] = []
    layers: list[int] = []
    for _, part in frame.groupby("layer", sort=True):
        n_out, n_in = int(part["target"].max()) + 1, int(part["source"].max()) + 1
        if not layers:
            layers.append(n_in)
        layers.append(n_out)
        f = np.zeros((n_out, n_in))
        e = np.zeros((n_out, n_in), dtype=bool)
        f[part["target"], part["source"]] = part["frequency"]
        if "example" in part:
            e[part["target"], part["source"]] = part["example"].astype(bool)
        freq.append(f)
        example.append(e)
    return TicketGraph(layers, freq, int(frame["n_tickets"].iloc[0]), example)


def draw_fig1(frame: pd.DataFrame, title: str) -> Figure:
    g = graph_from_frame(frame)
    first = frame.iloc[0]
    where = f"{first['dataset']} {first['arch_name']}, {first['label']}"
    return draw_ticket_graph(
        g.layers, g.frequency, g.example if g.n_tickets > 1 else None, g.n_tickets,
        title=f"{title}: {where}",
    )  # fmt: skip


def table_fig1(frame: pd.DataFrame) -> pd.DataFrame:
    """Per layer: connections, kept in at least one ticket, in more than half, mean frequency."""
    rows = []
    for li, part in frame.groupby("layer", sort=True):
        rows.append(
            {
                "layer": int(li),
                "connections": len(part),
                "kept in any ticket": int((part["frequency"] > 0).sum()),
                "kept in > 50%": int((part["frequency"] > 0.5).sum()),
                "kept in all": int((part["frequency"] >= 1).sum()),
                "mean frequency": f"{part['frequency'].mean():.3f}",
                "tickets": int(part["n_tickets"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


# -- landscapes (Fig. 8) -------------------------------------------------------------------------


def prepare_fig8(runs: pd.DataFrame, spec: str = "fig8") -> pd.DataFrame:
    """Every landscape grid point of the spec's runs: label, seed, key, delta, eta, loss, accuracy,
    and the run's own train_loss / train_accuracy (the centre must equal them)."""
    columns = ["label", "seed", "key", "delta", "eta", "loss", "accuracy", "train_loss",
               "train_accuracy", "n"]  # fmt: skip
    sub = runs[runs["spec"] == spec].drop_duplicates(["label", "key"])
    parts = []
    for row in sub.sort_values(["label_rank", "seed"] if "label_rank" in sub else ["seed"]).to_dict(
        "records"
    ):
        path = _run_path(row, "landscape.npz")
        if path is None:
            continue
        with np.load(path) as z:
            dd, ee = np.meshgrid(z["delta"], z["eta"], indexing="ij")
            part = pd.DataFrame(
                {"delta": dd.ravel(), "eta": ee.ravel(), "loss": z["loss"].ravel(),
                 "accuracy": z["accuracy"].ravel()}
            )  # fmt: skip
        part.insert(0, "key", row["key"])
        part.insert(0, "seed", row["seed"])
        part.insert(0, "label", row["label"])
        part["train_loss"] = row.get("train_loss")
        part["train_accuracy"] = row.get("train_accuracy")
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    out["n"] = out.groupby("label")["key"].transform("nunique")
    return out[columns]


def draw_fig8(frame: pd.DataFrame, title: str) -> Figure:
    """The landscape of the first run of each arm (lowest seed), one row of two panels per arm."""
    firsts = frame.drop_duplicates("label")[["label", "key"]].to_records(index=False)
    fig = Figure(figsize=(9.5, 0.6 + 3.8 * len(firsts)), layout="constrained")
    axes = fig.subplots(len(firsts), 2, squeeze=False)
    for row, (label, key) in zip(axes, firsts, strict=True):
        part = frame[frame["key"] == key].sort_values(["delta", "eta"])
        delta, eta = np.unique(part["delta"]), np.unique(part["eta"])
        shape = (len(delta), len(eta))
        loss = part["loss"].to_numpy(dtype=float).reshape(shape)
        acc = part["accuracy"].to_numpy(dtype=float).reshape(shape)
        landscape_panels(row, delta, eta, loss, acc)
        row[0].set_title(f"{label}: training loss", fontsize=10)
        row[1].set_title(f"{label}: training accuracy", fontsize=10)
    fig.suptitle(title)
    return fig


def table_fig8(frame: pd.DataFrame) -> pd.DataFrame:
    """Per landscape: the centre against the run's own training metrics, and the grid's range."""
    rows = []
    for _, part in frame.groupby("key", sort=False):
        centre = part[(part["delta"] == 0) & (part["eta"] == 0)].iloc[0]
        rows.append(
            {
                "label": part["label"].iloc[0],
                "seed": int(part["seed"].iloc[0]),
                "grid": f"{part['delta'].nunique()} x {part['eta'].nunique()}",
                "centre loss": f"{centre['loss']:.6f}",
                "train_loss (result.json)": f"{centre['train_loss']:.6f}",
                "centre accuracy": f"{centre['accuracy']:.4f}",
                "train_accuracy (result.json)": f"{centre['train_accuracy']:.4f}",
                "loss range": f"{part['loss'].min():.3g} – {part['loss'].max():.3g}",
                "accuracy range": f"{part['accuracy'].min():.3f} – {part['accuracy'].max():.3f}",
            }
        )
    return pd.DataFrame(rows)


# -- Hessian spectra (digits analysis) -----------------------------------------------------------


def _normalised(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "default"
    return "normalised" if bool(value) else "raw"


def prepare_hessian(runs: pd.DataFrame, spec: str = "hessian") -> pd.DataFrame:
    """The top Hessian eigenvalues of every ticket of the spec: one row per (run, rank)."""
    columns = ["dataset", "classes", "label", "inputs", "seed", "key", "rank", "eigenvalue",
               "n_params", "n"]  # fmt: skip
    sub = runs[runs["spec"] == spec].drop_duplicates(["label", "key"])
    rows = []
    for row in sub.to_dict("records"):
        result = json.loads(row["result"]) if isinstance(row.get("result"), str) else {}
        ev = result.get("hessian_eigenvalues")
        if not ev:
            continue
        for rank, value in enumerate(ev, start=1):
            rows.append(
                {
                    "dataset": row["dataset"],
                    "classes": row["classes"],
                    "label": row["label"],
                    "inputs": _normalised(result.get("normalize")),
                    "seed": row["seed"],
                    "key": row["key"],
                    "rank": rank,
                    "eigenvalue": float(value),
                    "n_params": result.get("hessian_n_params"),
                }
            )
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows)
    out["n"] = out.groupby(["classes", "label"])["key"].transform("nunique")
    order = (
        list(dict.fromkeys(sub.sort_values("label_rank", kind="stable")["label"]))
        if ("label_rank" in sub)
        else list(dict.fromkeys(out["label"]))
    )
    out["label"] = pd.Categorical(out["label"], categories=order, ordered=True)
    return out.sort_values(["classes", "label", "seed", "rank"]).reset_index(drop=True)[columns]


def draw_hessian(frame: pd.DataFrame, title: str) -> Figure:
    """Side by side per class count: the largest eigenvalue of each ticket (left) and all top
    eigenvalues pooled over the tickets (right), one box per arm; log scale."""
    from evoprune.experiments.draw import COLORS, legend_below

    classes = sorted(frame["classes"].dropna().unique())
    labels = [c for c in frame["label"].cat.categories if c in set(frame["label"])]
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / max(len(labels), 1)
    for ax, part_of, name in (
        (axes[0], frame[frame["rank"] == 1], "largest eigenvalue per ticket"),
        (axes[1], frame, f"top {int(frame['rank'].max())} eigenvalues, all tickets"),
    ):
        for j, label in enumerate(labels):
            data, pos = [], []
            for i, c in enumerate(classes):
                v = part_of[(part_of["classes"] == c) & (part_of["label"] == label)]["eigenvalue"]
                v = v[v > 0].to_numpy()
                if len(v):
                    data.append(v)
                    pos.append(i + (j - (len(labels) - 1) / 2) * width)
            if data:
                bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True,
                                showfliers=True, flierprops={"ms": 2})  # fmt: skip
                for box in bp["boxes"]:
                    box.set_facecolor(COLORS[j % len(COLORS)])
                    box.set_alpha(0.6)
                ax.plot([], [], color=COLORS[j % len(COLORS)], lw=6, alpha=0.6, label=str(label))
        ax.set_yscale("log")
        ax.set_xticks(range(len(classes)), [str(c) for c in classes])
        ax.set_xlabel("classes")
        ax.set_ylabel("eigenvalue")
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    legend_below(fig, axes[0])
    fig.suptitle(title)
    return fig


def table_hessian(frame: pd.DataFrame) -> pd.DataFrame:
    """Per class count and arm: tickets, median and largest λ1, median λ2 and λ5."""
    rows = []
    for (c, label), part in frame.groupby(["classes", "label"], sort=True, observed=True):
        by_rank = part.groupby("rank")["eigenvalue"]
        med = by_rank.median()
        rows.append(
            {
                "classes": int(c),
                "label": str(label),
                "inputs": part["inputs"].iloc[0],
                "tickets": part["key"].nunique(),
                "parameters (median)": int(part.drop_duplicates("key")["n_params"].median()),
                "λ1 median": f"{med.get(1, np.nan):.4g}",
                "λ1 max": f"{by_rank.max().get(1, np.nan):.4g}",
                "λ2 median": f"{med.get(2, np.nan):.4g}",
                "λ5 median": f"{med.get(5, np.nan):.4g}",
            }
        )
    return pd.DataFrame(rows)


def _raw_sharper(runs: pd.DataFrame) -> tuple[str, bool | None]:
    frame = prepare_hessian(runs.assign(spec="_"), "_")
    if frame.empty:
        return "no Hessian spectra in these runs", None
    top = frame[frame["rank"] == 1]
    med = top.groupby(["classes", "inputs"])["eigenvalue"].median().unstack()
    if not {"raw", "normalised"} <= set(med.columns):
        return "needs tickets on raw and on normalised inputs", None
    med = med.dropna(subset=["raw", "normalised"])
    text = "; ".join(
        f"{int(c)} classes: {r.raw:.3g} vs {r.normalised:.3g}" for c, r in med.iterrows()
    )
    return f"median λ1 raw vs normalised — {text}", bool((med["raw"] > med["normalised"]).all())


def _centre_matches(runs: pd.DataFrame) -> tuple[str, bool | None]:
    frame = prepare_fig8(runs.assign(spec="_"), "_")
    if frame.empty:
        return "no landscapes in these runs", None
    centre = frame[(frame["delta"] == 0) & (frame["eta"] == 0)]
    dl = (centre["loss"] - centre["train_loss"]).abs().max()
    da = (centre["accuracy"] - centre["train_accuracy"]).abs().max()
    return f"max |Δloss| {dl:.2g}, max |Δacc| {da:.2g}", bool(dl < 1e-4 and da < 1e-6)


# (figure, the paper's finding, check) for `evoprune.experiments.paper.CLAIMS`
CLAIM_ROWS = (
    (
        "hessian",
        "Tickets on raw (unnormalised) digits sit in sharper minima: a few much larger Hessian "
        "eigenvalues than on normalised inputs (arXiv 2508.08877, digits analysis)",
        _raw_sharper,
    ),
    (
        "fig8",
        "The landscape's centre is the ticket: its loss and accuracy equal the ticket's training "
        "metrics (our check of the construction of Fig. 8)",
        _centre_matches,
    ),
)
