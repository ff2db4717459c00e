"""Figures a reader can use: legends beside the data (not on it), tick labels that do not overlap,
units of a layer apart, titles that name the ticket. Each checks the drawn figure's geometry or
text, which is what goes wrong when the layout is wrong."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer
from matplotlib.contour import ContourSet
from matplotlib.scale import SymmetricalLogTransform

from evoprune.analysis.plots import (
    LANDSCAPE_LINES,
    MIN_GAP,
    draw_landscape,
    draw_spectrum,
    draw_ticket_graph,
    spectrum_scale,
    ticket_caption,
    unit_positions,
)
from evoprune.experiments import draw
from evoprune.experiments.sections.beyond import draw_case_bars


def _summary(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["std"] = 0.01
    frame["n"] = 3
    frame["ci_low"] = frame["mean"] - 0.02
    frame["ci_high"] = frame["mean"] + 0.02
    frame["label"] = pd.Categorical(frame["label"], categories=["GA", "EP", "backprop"])
    return frame


def _bars_frame() -> pd.DataFrame:
    # bars up to 1.0 in every panel: an in-axes legend must cover some of them
    return _summary(
        [
            {"metric": m, "dataset": d, "arch_name": a, "label": lab, "mean": v}
            for m in ("test_accuracy", "sparsity")
            for d in ("moons", "circles")
            for a in "ABCD"
            for lab, v in (("GA", 0.97), ("EP", 0.99), ("backprop", 1.0))
        ]
    )


def _lines_frame() -> pd.DataFrame:
    return _summary(
        [
            {"metric": "test_accuracy", "dataset": "blobs", "classes": c, "label": lab, "mean": v}
            for c in (2, 4, 6)
            for lab, v in (("GA", 0.2), ("EP", 0.5), ("backprop", 0.95))
        ]
    )


def _stages_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {"label": lab, "classes": c, "stage": st, "mean": 0.9}
            for lab in ("GA",)
            for c in (2, 4)
            for st in ("evolved", "post-pruned")
        ]
    )
    frame["ci_low"], frame["ci_high"] = 0.88, 0.92
    frame["label"] = pd.Categorical(frame["label"], categories=["GA"])
    return frame


def _history_frame() -> pd.DataFrame:
    steps = np.arange(1, 21)
    rows = [
        pd.DataFrame({"phase": "GA", "step": steps, "panel": panel, "series": "fittest",
                      "value": np.linspace(0.1, 0.99, 20), "final": False})
        for panel in ("training accuracy", "sparsity")
    ]  # fmt: skip
    rows.append(pd.DataFrame({"phase": "final", "step": [20], "panel": ["sparsity"],
                              "series": ["final ticket"], "value": [0.99], "final": [True]}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def _case_frame() -> pd.DataFrame:
    frame = _bars_frame()
    return frame.assign(case=frame["dataset"] + " " + frame["arch_name"])


def _pruning_frame() -> pd.DataFrame:
    from evoprune.experiments.sections.pruning import PANELS

    rows = [
        {"metric": metric, "label": label, "ec": ec, "sparsity_target": target,
         "mean": 1.0 - target / 2, "std": 0.01, "n": 5, "ci_low": 0.9, "ci_high": 1.0}
        for metric in PANELS for label in ("magnitude", "SynFlow") for ec in ("none", "lsq")
        for target in (0.5, 0.9, 0.98)
    ]  # fmt: skip
    frame = pd.DataFrame(rows)
    return frame.assign(label=pd.Categorical(frame["label"], ["magnitude", "SynFlow"]))


def _draw_pruning():
    from evoprune.experiments.sections.pruning import draw_pruning

    return draw_pruning(_pruning_frame(), "t")


FIGURES = {
    "pruning": _draw_pruning,
    "bars": lambda: draw.draw_bars(_bars_frame(), "t"),
    "lines": lambda: draw.draw_lines(_lines_frame(), "t"),
    "stages": lambda: draw.draw_stages(_stages_frame(), "t"),
    "history": lambda: draw.draw_history(_history_frame(), "t", "final"),
    "case_bars": lambda: draw_case_bars(_case_frame(), "t"),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_legends_lie_outside_every_panel(name):
    fig = FIGURES[name]()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # runs the constrained layout, as saving does
    renderer = canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends, "the figure has a legend"
    figure_box = fig.bbox
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1  # on the page
        assert figure_box.y0 - 1 <= box.y0 and box.y1 <= figure_box.y1 + 1
        for ax in fig.axes:
            # the panel with its tick labels and axis labels
            assert not box.overlaps(ax.get_tightbbox(renderer)), f"legend over {ax.get_title()}"


@pytest.mark.parametrize(
    "ev",
    [
        [3.94, 2.0, 0.5, 1e-2, 1e-4, 0.0, -1e-5, -0.15],  # the digits ticket's spectrum shape
        [120.0, 3.0, 1e-3, -2e-2],
        [0.8, 0.1, 1e-9],  # no negative side
        [5e-7, -5e-7],  # tiny
        np.r_[np.logspace(-12, 4, 50), -np.logspace(-12, 4, 50)],  # 16 decades each way
    ],
)
def test_spectrum_ticks_are_a_decade_apart_and_cover_the_spectrum(ev):
    ev = np.asarray(ev, dtype=float)
    linthresh, ticks = spectrum_scale(ev)
    assert np.log10(linthresh) == int(np.log10(linthresh))  # a power of ten
    assert linthresh >= np.abs(ev).max() * 1e-4 * (1 - 1e-12)
    assert 0.0 in ticks and ticks == sorted(ticks)
    pos = [t for t in ticks if t > 0]
    neg = [t for t in ticks if t < 0]
    assert len(pos) <= 6 and len(neg) <= 6
    # in the axis' own coordinates (the symlog transform the plot uses) neighbours are at least
    # one decade apart: labels about one line high cannot overlap
    transform = SymmetricalLogTransform(10, linthresh, 1.0)
    y = transform.transform(np.asarray(ticks, dtype=float).reshape(-1, 1)).ravel() / linthresh
    assert np.all(np.diff(y) >= 0.999)  # the transform counts decades in units of linthresh
    # the ticks reach the data: the next tick out on either side would lie beyond it
    for side, extreme in ((pos, ev.max()), (sorted(-t for t in neg), -ev.min())):
        if extreme > linthresh:
            step = side[1] / side[0] if len(side) > 1 else 10.0
            assert side[0] == linthresh and max(side) * step >= extreme


def test_the_spectrum_figure_uses_those_ticks():
    ev = [3.94, 2.0, 0.5, 1e-2, 1e-4, 0.0, -1e-5, -0.15]
    fig = draw_spectrum(ev, "title")
    ax = fig.axes[0]
    linthresh, ticks = spectrum_scale(ev)
    assert ax.get_yscale() == "symlog" and ax.yaxis.get_transform().linthresh == linthresh
    assert list(ax.get_yticks()) == ticks


@pytest.mark.parametrize(
    "layers", [[2, 75, 2], [64, 75, 10], [2, 50, 50, 2], [3, 3], [784, 20, 10]]
)
def test_units_of_a_layer_are_apart_and_on_the_axis(layers):
    ys = unit_positions(layers)
    widest = max(layers)
    for n, y in zip(layers, ys, strict=True):
        assert len(y) == n and y.min() >= 0 and y.max() <= 1
        assert abs((y.min() + y.max()) / 2 - 0.5) < 1e-12  # centred
        if n > 1:
            gap = np.diff(np.sort(y)).min()
            assert gap >= 1 / widest - 1e-12 and gap >= min(MIN_GAP, 1 / n) - 1e-12
    if 2 in layers:  # two inputs or outputs: far enough apart to tell which edge leaves which
        assert np.diff(ys[layers.index(2)])[0] >= MIN_GAP - 1e-12


def _texts(fig) -> str:
    parts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        parts += [ax.get_title(), *(t.get_text() for t in ax.texts)]
    for legend in fig.legends:
        parts += [t.get_text() for t in legend.get_texts()]
    return "\n".join(parts)


def test_ticket_graph_explains_its_colours_and_speaks_of_one_ticket_as_one():
    freq = [np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0, 1.0], [0, 1, 0]])]
    one = _texts(draw_ticket_graph([2, 3, 2], freq, None, 1, title="one"))
    assert "50%" not in one and "kept in >" not in one
    assert "a connection the ticket keeps" in one
    several = [
        np.array([[2 / 3, 0.0], [1.0, 1 / 3], [0.0, 1.0]]),
        np.array([[1.0, 0, 0.5], [0, 1, 0]]),
    ]
    example = [f > 0.5 for f in several]
    text = _texts(
        draw_ticket_graph([2, 3, 2], several, example, 3, example_name="the ticket of seed 4")
    )
    assert "kept in more than 50% of the 3 tickets" in text
    assert "kept in at most 50% of them" in text and "the ticket of seed 4" in text
    # the inputs and outputs of a small network are named
    assert "x1" in text and "x2" in text and "class 1" in text


def test_ticket_graph_counts_kept_connections_of_one_ticket():
    freq = [np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0, 1.0], [0, 1, 0]])]
    text = _texts(draw_ticket_graph([2, 3, 2], freq, None, 1))
    assert "7 of 12 connections kept" in text


def test_landscape_has_colour_bars_few_contour_lines_and_its_title():
    delta = eta = np.linspace(-1, 1, 21)
    dd, ee = np.meshgrid(delta, eta, indexing="ij")
    loss = 1 + 10 * (dd**2 + ee**2)
    acc = np.exp(-(dd**2 + ee**2))
    fig = draw_landscape(delta, eta, loss, acc, "Landscape around the GA ticket, moons")
    fig.draw_without_rendering()
    assert len(fig.axes) == 4  # two panels, two colour bars
    assert {ax.get_ylabel() for ax in fig.axes[2:]} == {"training loss", "training accuracy"}
    assert fig.get_suptitle().startswith("Landscape around the GA ticket")
    for ax in fig.axes[:2]:
        lines = [c for c in ax.collections if isinstance(c, ContourSet) and not c.filled]
        assert len(lines) == 1 and 1 <= len(lines[0].levels) <= LANDSCAPE_LINES
        assert len(ax.texts) == len(lines[0].labelTexts) > 0  # the labels are the lines' own


def test_ticket_caption_names_method_data_architecture_seed_and_sparsity():
    ticket = {"method": "ga", "layers": [64, 75, 10], "seed": 3, "sparsity": 0.6218,
              "dataset": {"name": "digits", "classes": 10}}  # fmt: skip
    text = ticket_caption(ticket, {"name": "digits", "classes": 10})
    assert text == "GA ticket, digits (10 classes), [64, 75, 10], seed 3, sparsity 0.622"
    other = ticket_caption(ticket, {"name": "digits", "classes": 5})
    assert other.endswith("; scored on digits (5 classes)")


@pytest.mark.parametrize("span", [(17.0, 176.0), (0.004, 5.0)])  # one decade, three
def test_log_axes_of_the_hpo_figure_have_labels_apart(span):
    from evoprune.experiments.sections.studies import HPO_COLUMNS, draw_hpo

    rows = [
        {"part": "summary", "space": space, "objective": "train", "sampler": sampler, "x": metric,
         "value": value, "std": 0.0, "n": 3}
        for metric in ("sampler_seconds_per_trial", "objective_seconds_per_trial", "test_f1")
        for (space, sampler), value in zip(
            [("low", "tpe"), ("low", "cmaes"), ("high", "tpe"), ("high", "cmaes")],
            np.geomspace(*span, 4), strict=True)
    ]  # fmt: skip
    fig = draw_hpo(pd.DataFrame(rows, columns=HPO_COLUMNS), "t")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes[2:4]:  # the two log panels
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        visible = [b for b in boxes if ax.bbox.x0 - 1 <= b.x0 and b.x1 <= ax.bbox.x1 + 1]
        assert len(visible) >= 2, "at least two labelled ticks"
        assert all(not a.overlaps(b) for a, b in itertools.combinations(visible, 2))


def _bar_colours(ax) -> dict[str, tuple]:
    """Each bar group's label in a panel and the colour its bars have."""
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    return {c.get_label(): c.patches[0].get_facecolor() for c in bars}


def _uneven_arms() -> pd.DataFrame:
    # moons has GA and EP, circles EP only (a spec with a sub-grid per dataset)
    frame = _bars_frame()
    keep = (frame["label"] == "EP") | ((frame["label"] == "GA") & (frame["dataset"] == "moons"))
    return frame[keep].reset_index(drop=True)


@pytest.mark.parametrize("name", ["bars", "case_bars"])
def test_an_arm_keeps_its_colour_and_its_legend_entry_in_every_panel(name):
    frame = _uneven_arms()
    if name == "bars":
        fig = draw.draw_bars(frame, "t")
    else:  # the problems' panels: one lacks GA's sparsity, the other its accuracy
        frame = frame.assign(case=frame["dataset"] + " " + frame["arch_name"])
        drop = (frame["label"] == "GA") & (frame["metric"] == "sparsity")
        fig = draw_case_bars(frame[~drop], "t")
    colours = [_bar_colours(ax) for ax in fig.axes]
    ep = {c["EP"] for c in colours}
    assert len(ep) == 1, "EP has one colour"
    assert all(c["GA"] != c["EP"] for c in colours if "GA" in c)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["GA", "EP"]  # every arm, spec order


def test_history_ticks_are_whole_generations():
    frame = _history_frame()
    frame = frame[frame["step"] <= 2].assign(step=lambda f: f["step"].clip(upper=2))
    fig = draw.draw_history(frame, "t")
    fig.draw_without_rendering()
    ticks = [t for t in fig.axes[-1].get_xticks() if 0.5 <= t <= 2.5]
    assert ticks and all(float(t).is_integer() for t in ticks)
