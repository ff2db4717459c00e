"""The beyond and scale specs load and validate; their figures are prepared from a runs frame
and drawn; a bad arm is one clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure

from evoprune.errors import EvopruneError
from evoprune.experiments.catalogue import FIGURES, RENDERERS
from evoprune.experiments.sections.beyond import (
    draw_case_bars,
    draw_scale,
    prepare_beyond,
    prepare_scale,
)
from evoprune.experiments.spec import load_spec, parse_spec
from evoprune.jobs import METHODS


@pytest.mark.parametrize("name", ["beyond", "scale"])
@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_specs_load_and_every_run_names_a_registered_method(name, profile):
    spec = load_spec(name)
    runs = spec.runs(profile)
    assert runs and all(r.job["method"] in METHODS for r in runs)
    assert spec.figure in FIGURES and FIGURES[spec.figure].kind in RENDERERS


def test_beyond_covers_the_problems_and_methods():
    spec = load_spec("beyond")
    assert spec.labels() == ["GA", "Memetic", "Memetic (loss first)", "Local", "EP (50%)",
                             "EP (adapted)", "Backprop"]  # fmt: skip
    first = [r for r in spec.runs("paper") if r.label == "Memetic (loss first)"]
    assert {r.job["dataset"] for r in first} == {"moons", "circles"}
    assert all(r.job["loss_first"] is True for r in first)
    cells = {(r.job["dataset"], r.job.get("classes"), r.job["arch"]) for r in spec.runs("paper")}
    expected = {(d, None, a) for d in ("moons", "circles") for a in "ABCD"}
    expected |= {("blobs", 10, "C")} | {("digits", c, "B") for c in (2, 3, 4, 5, 10)}
    assert cells == expected
    seeds = {r.job["seed"] for r in spec.runs("paper")}
    assert seeds == {0, 1, 2, 3, 4}
    adapted = [r for r in spec.runs("paper") if r.label == "EP (adapted)"]
    assert all(r.references["sparsity"]["mean_of"] == "Memetic" for r in adapted)
    assert FIGURES["beyond"].mixed_model  # the report adds the Fig. 6c comparison


def test_scale_compares_every_method_on_mnist_with_three_seeds():
    spec = load_spec("scale")
    runs = spec.runs("paper")
    assert {r.job["seed"] for r in runs} == {0, 1, 2}
    assert {r.job["arch"] for r in runs} == {"784,300,10", "784,300,100,10", "conv"}
    rankings = {r.job.get("ranking") for r in runs if r.job["method"] == "local"}
    assert rankings == {"expansion", "none"}
    assert all(r.job["normalize"] is False and r.job["dataset"] == "mnist" for r in runs)
    conv = {r.label for r in runs if r.job["arch"] == "conv"}
    assert conv == {"EP (50%)", "Local (none)"}


def test_a_bad_arm_in_a_spec_is_one_clear_error():
    data = yaml.safe_load(_spec_path("scale").read_text(encoding="utf-8"))
    data["grid"][0]["arm"][2]["rankng"] = "none"  # a typo
    with pytest.raises(EvopruneError, match="unknown field 'rankng'"):
        parse_spec(data, "scale.yaml")


def _spec_path(name):
    from importlib import resources

    return resources.files("evoprune.experiments") / "specs" / f"{name}.yaml"


def runs_frame():
    """A runs frame as `load_results` gives it, for two specs."""
    rng = np.random.default_rng(0)
    rows = []
    for label in ("GA", "Memetic", "Backprop"):
        for dataset, classes, arch in (("moons", 2, "2,75,2"), ("digits", 10, "64,75,10")):
            for seed in (0, 1):
                rows.append(dict(spec="beyond", label=label, dataset=dataset, classes=classes,
                                 arch_name=arch, seed=seed, init="uniform",
                                 test_accuracy=0.9 + 0.05 * rng.random(), sparsity=0.6,
                                 wall_seconds=1 + 10 * rng.random()))  # fmt: skip
    for label in ("EP (50%)", "Local (none)"):
        for arch in ("784,300,10", "conv"):
            for seed in (0, 1, 2):
                rows.append(dict(spec="scale", label=label, dataset="mnist", classes=10,
                                 arch_name=arch, seed=seed, init="signed-constant",
                                 test_accuracy=0.93 + 0.01 * seed, sparsity=0.5,
                                 wall_seconds=100.0 * (seed + 1)))  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["label_rank"] = frame["label"].map(
        {"GA": 0, "Memetic": 1, "Backprop": 2, "EP (50%)": 0, "Local (none)": 1}
    )
    return frame


def test_prepare_beyond_summarises_per_problem_and_method():
    frame = prepare_beyond(runs_frame())
    assert set(frame["case"]) == {"moons B", "digits-10 B"}
    assert set(frame["metric"]) == {"test_accuracy", "sparsity", "wall_seconds"}
    assert list(frame["label"].cat.categories) == ["GA", "Memetic", "Backprop"]
    runs = runs_frame()
    ga = runs[(runs.spec == "beyond") & (runs.label == "GA") & (runs.dataset == "moons")]
    row = frame[
        (frame.metric == "test_accuracy") & (frame.case == "moons B") & (frame.label == "GA")
    ]
    assert row["mean"].item() == pytest.approx(ga["test_accuracy"].mean())
    assert row["n"].item() == 2
    assert isinstance(draw_case_bars(frame, "t"), Figure)


def test_prepare_scale_gives_accuracy_and_wall_time_per_network_and_method():
    frame = prepare_scale(runs_frame())
    cell = frame[(frame.network == "conv") & (frame.label == "Local (none)")]
    wall = cell[cell.metric == "wall_seconds"]
    assert wall["mean"].item() == pytest.approx(200.0) and wall["n"].item() == 3
    acc = cell[cell.metric == "test_accuracy"]["mean"].item()
    assert acc == pytest.approx(0.94)
    assert isinstance(draw_scale(frame, "t"), Figure)
    assert prepare_scale(runs_frame().iloc[:0]).empty
