"""The report and the commands that read a sweep back, on sweeps that are not the tidy case: a
run that failed beside finished ones, one seed per arm, metrics that are NaN in some runs, runs
without a dataset, a memetic run's history (text cells, some empty) under Fig. 4, a study's
runs under `stats`."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from test_experiments import TINY_SPEC, InlineExecutor, failing_job, fake_job

from evoprune.cli import main
from evoprune.experiments import build_report, parse_spec, run_sweep
from evoprune.experiments.figures import prepare_arms, prepare_fig4
from evoprune.experiments.tables import load_history


def _own_spec(seeds: int, arch: tuple[str, ...] = ("A", "B"), **changes) -> dict:
    """TINY_SPEC as a spec of one's own (the generic figure: its arms side by side)."""
    spec = {**TINY_SPEC, "name": "mine", **changes}
    spec.pop("figure", None)
    spec["grid"] = {**TINY_SPEC["grid"], "arch": list(arch)}
    spec["profiles"] = {"quick": {"seeds": seeds}}
    return spec


def _sweep(spec: dict, out: Path, fn=fake_job) -> Path:
    run_sweep(parse_spec(spec), "quick", out, executor=InlineExecutor(), fn=fn, progress=False)
    return out


def _rows(page: str, table_id: str) -> list[list[str]]:
    """The cells of the table `table_id` of `page`, row by row (the header first)."""
    rows: list[list[str]] = []

    class Cells(HTMLParser):
        inside = False

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.inside = dict(attrs).get("id") == table_id
            elif self.inside and tag == "tr":
                rows.append([])
            elif self.inside and tag in ("td", "th"):
                rows[-1].append("")

        def handle_endtag(self, tag):
            if tag == "table":
                self.inside = False

        def handle_data(self, data):
            if self.inside and rows and rows[-1]:
                rows[-1][-1] += data.strip()

    Cells().feed(page)
    return rows


def test_a_failed_run_beside_finished_ones_is_listed_with_its_error(tmp_path):
    out = _sweep(_own_spec(seeds=2), tmp_path / "s", fn=failing_job)  # seed 1 fails
    page = build_report([out], tmp_path / "r.html").path.read_text()
    failures = _rows(page, "failures")
    assert failures[0] == ["spec", "label", "key", "seed", "error"]
    assert len(failures) > 1 and all(r[-1] == "ValueError: boom" for r in failures[1:])
    provenance = _rows(page, "provenance-table")
    failed = [r for r in provenance if "failed" in r]
    assert failed and all(r[11] == "unknown" for r in failed)  # no git revision: not a crash
    assert not any("nan" in cell for r in provenance for cell in r)


def test_one_seed_per_arm_says_why_there_is_no_mixed_model(tmp_path):
    out = _sweep(_own_spec(seeds=1, arch=("A",)), tmp_path / "s")
    page = build_report([out], tmp_path / "r.html").path.read_text()
    assert "comparison is below" not in page and "Mixed model" not in page
    assert "No mixed-model comparison: no dataset has runs of two or more algorithms" in page
    two = _sweep(_own_spec(seeds=2, arch=("A",)), tmp_path / "two")
    page = build_report([two], tmp_path / "two.html").path.read_text()
    assert "The mixed-model comparison is below." in page and "Mixed model (Fig. 6c)" in page


def nan_job(job: dict, out: Path) -> dict:
    """Arm "ok" reports every metric; "some" has no accuracy at seed 1, "none" at any seed."""
    result = fake_job(job, out)
    if job["objective"] == "loss" and (job["seed"] == 1 or job.get("normalize")):
        result["test_accuracy"] = math.nan
    return result


def test_nan_metrics_print_as_a_dash_and_are_not_counted(tmp_path):
    arms = [
        {"label": "ok", "method": "ga", "objective": "accuracy"},
        {"label": "some", "method": "ga", "objective": "loss"},
        {"label": "none", "method": "ga", "objective": "loss", "normalize": True},
    ]
    spec = _own_spec(seeds=3, arch=("A",))
    spec["grid"] = {"dataset": ["moons"], "arch": ["A"], "arm": arms}
    out = _sweep(spec, tmp_path / "s", fn=nan_job)
    page = build_report([out], tmp_path / "r.html").path.read_text()
    header, *rows = _rows(page, "summary-mine")
    cells = {r[header.index("label")]: dict(zip(header, r, strict=True)) for r in rows}
    assert cells["none"]["test accuracy: mean ± std"] == "-"
    assert cells["none"]["test accuracy: 95% CI"] == "-"
    assert not any("nan" in cell for r in rows for cell in r)
    # each metric its own count: "some" has two accuracies and three sparsities
    assert [cells[a]["test accuracy: n"] for a in ("ok", "some", "none")] == ["3", "2", "0"]
    assert [cells[a]["sparsity: n"] for a in ("ok", "some", "none")] == ["3", "3", "3"]
    assert "seeds per cell: 2-3." in page  # the cell without a value is not "0"


def test_the_summary_has_one_n_column_when_every_metric_has_as_many_runs(tmp_path):
    out = _sweep(_own_spec(seeds=2, arch=("A",)), tmp_path / "s")
    page = build_report([out], tmp_path / "r.html").path.read_text()
    header = _rows(page, "summary-mine")[0]
    assert header.count("n") == 1 and not any(h.endswith(": n") for h in header)


def test_runs_without_a_dataset_are_left_out_of_the_arms_figure():
    runs = pd.DataFrame({
        "spec": "mix", "label": ["GA", "GA", "min-GA"], "dataset": ["moons", "moons", None],
        "classes": [2, 2, None], "arch_name": ["A", "A", None], "seed": [0, 1, 0],
        "test_accuracy": [0.9, 0.8, None], "sparsity": [0.5, 0.6, None],
    })  # fmt: skip
    frame = prepare_arms(runs, "mix")
    assert set(frame["dataset"]) == {"moons (2 classes)"} and set(frame["label"]) == {"GA"}


def memetic_job(job: dict, out: Path) -> dict:
    """A memetic run's history: GA generations, then local-search passes with no generation."""
    result = fake_job(job, out)
    lines = ["phase,generation,pass,best_accuracy,best_sparsity"]
    lines += [f"ga,{g},,0.{5 + g},0.{g}" for g in (1, 2, 3)]
    lines += [f"local,,{p},0.9,0.{3 + p}" for p in (1, 2)]
    (out / "history.csv").write_text("\n".join(lines) + "\n")
    return result


def test_fig4_draws_a_memetic_runs_generations(tmp_path):
    spec = {"name": "f4", "figure": "fig4",
            "grid": {"dataset": ["moons"], "arch": ["A"],
                     "arm": [{"label": "Memetic", "method": "memetic", "objective": "loss"}]},
            "profiles": {"quick": {"seeds": 2}}}  # fmt: skip
    out = _sweep(spec, tmp_path / "s", fn=memetic_job)
    history = load_history(out)
    assert history["generation"].isna().sum() == 4  # the passes' empty cells: NULL, not ''
    summary = build_report([out], tmp_path / "r.html")
    assert summary.figures == ("f4",)


def test_fig4_takes_the_first_arms_lowest_seed_and_reads_old_stores_text():
    runs = pd.DataFrame({
        "spec": "f4", "key": ["ga0", "loc0", "mem1", "mem0"], "seed": [0, 0, 1, 0],
        "label": ["GA", "Local", "Memetic", "Memetic"], "label_rank": [2, 0, 1, 1],
    })  # fmt: skip
    # as a store written before empty cells were NULL holds them: '' beside the numbers
    history = pd.DataFrame({
        "key": ["loc0", "mem0", "mem0", "mem0", "mem1", "ga0"],
        "generation": ["", 1, 2, "", 1, 1],
        "best_accuracy": [0.9, 0.6, 0.7, 0.8, 0.1, 0.2],
    })  # fmt: skip
    frame = prepare_fig4(runs, history, "f4")  # Local has no generations: the next arm's
    assert set(frame["key"]) == {"mem0"} and frame["generation"].tolist() == [1, 2]


def study_job(job: dict, out: Path) -> dict:
    """A minimize run: no dataset and no accuracy, only its best value."""
    best = float(job["seed"]) + (1.0 if job["optimizer"] == "adam" else 0.0)
    result = {"method": job["method"], "seed": job["seed"], "config": job, "best_value": best,
              "wall_seconds": 0.01}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result))
    return result


def test_stats_of_a_study_compares_its_own_metric_and_names_the_ones_there(tmp_path, capsys):
    arms = [{"label": "GA", "method": "minimize", "optimizer": "ga"},
            {"label": "Adam", "method": "minimize", "optimizer": "adam"}]  # fmt: skip
    spec = {"name": "study", "grid": {"function": ["sphere"], "dim": [2], "arm": arms},
            "profiles": {"quick": {"seeds": 3}}}  # fmt: skip
    out = _sweep(spec, tmp_path / "s", fn=study_job)
    assert main(["stats", str(out)]) == 0
    assert "standardised best_value ~ algorithm" in capsys.readouterr().out
    assert main(["stats", str(out), "--metric", "test_accuracy"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.endswith("e.g. best_value, wall_seconds")  # what these runs report


def test_the_arms_figure_keeps_each_point_of_the_spec_grid_apart(tmp_path):
    # normalize on and off are two cells of two seeds each, not one of four
    spec = _own_spec(2, arch=("A",))
    spec["grid"] = {**spec["grid"], "dataset": ["moons"], "normalize": [True, False]}
    summary = build_report([_sweep(spec, tmp_path / "s")], tmp_path / "r.html")
    page = summary.path.read_text()
    assert "seeds per cell: 2." in page
    rows = _rows(page, "summary-mine")
    cells = {(row[0], row[2]) for row in rows[1:]}
    assert cells == {(f"moons (2 classes, normalize={v})", label) for v in (True, False)
                     for label in ("GA", "EP (50%)", "EP (adapted)")}  # fmt: skip
    assert all(row[rows[0].index("n")] == "2" for row in rows[1:])


def test_an_interrupt_while_a_figure_is_written_leaves_no_truncated_file(tmp_path, monkeypatch):
    """The report's PNG and SVG were drawn straight into their files: a Ctrl-C (or a second
    report into the same folder) mid-way left half a figure."""
    from matplotlib.figure import Figure

    out = _sweep(_own_spec(seeds=2), tmp_path / "s")

    def interrupted(self, target, *args, **kwargs):  # half the bytes, then Ctrl-C
        if isinstance(target, str | Path):
            Path(target).write_bytes(b"\x89PNG half")
        else:
            target.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_report([out], tmp_path / "r.html")
    assert not [p.name for p in tmp_path.glob("r_figures/*")]
