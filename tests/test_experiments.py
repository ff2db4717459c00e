"""Experiments: specs and keys, the results store, sweeps (resume, kill), statistics, figure data,
the report and the CLI. Runs use a tiny stand-in job function, so these tests need no GA."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evoprune.errors import EvopruneError
from evoprune.experiments import (
    Store,
    build_report,
    fit_mixed_model,
    job_key,
    load_results,
    load_spec,
    mixed_model_tables,
    parse_spec,
    run_sweep,
    spec_names,
)
from evoprune.experiments.executors import execute_run
from evoprune.experiments.figures import (
    HISTORY_SERIES,
    prepare_fig3,
    prepare_fig4,
    prepare_fig5,
    prepare_fig9,
    prepare_fig11,
)
from evoprune.experiments.tables import load_meta, summarise
from evoprune.jobs import METHODS

# the paper's figures and analyses (arXiv 2508.08877)
SHIPPED = [
    "fig1",
    "fig3",
    "fig4",
    "fig5",
    "fig6",
    "fig7",
    "fig8",
    "fig9",
    "fig10",
    "fig11",
    "hessian",
]
SHIPPED += ["beyond", "scale"]  # beyond the paper: memetic/local search, MNIST
SHIPPED += ["selection"]  # pruning as evolution (Shah & Khan)
SHIPPED += ["pruning"]  # CMA-ES + SynFlow pruning against magnitude, SynFlow, SoftMask
SHIPPED += ["hpo", "minimize", "weights"]  # the optimiser studies (Hirianskyi & Bulakh)


# -- a stand-in job: deterministic in the job, writes a run folder like the real ones ----------


def fake_job(job: dict, out: Path) -> dict:
    """Accuracy and sparsity are functions of the job (so same key -> same result)."""
    h = int(job_key(job), 16)
    acc = 0.6 + 0.3 * ((h % 1000) / 1000)
    sparsity = 0.3 + 0.4 * (((h // 1000) % 1000) / 1000)
    if job.get("method") == "backprop":
        sparsity = 0.0
    result = {
        "method": job["method"],
        "dataset": job["dataset"],
        "classes": job.get("classes", 2),
        "arch": [2, 20, 2],
        "variant": job["method"],
        "objective": job.get("objective"),
        "seed": job["seed"],
        "init": job.get("init", "uniform"),
        "normalize": job.get("normalize"),
        "config": job,
        "generations": 5,
        "evaluations": 500,
        "wall_seconds": 0.01,
        "train_accuracy": acc,
        "test_accuracy": acc,
        "train_loss": 1 - acc,
        "test_loss": 1 - acc,
        "sparsity": sparsity,
        "sparsity_before_post_prune": sparsity * 0.8,
        "test_accuracy_before_post_prune": acc,
        "versions": {"evoprune": "test"},
        "git_revision": "abc123",
        "machine": {"cpu": "Test CPU", "cores": 2},
        "worker_key": job_key(job),
        "worker_pid": os.getpid(),
    }
    out.mkdir(parents=True, exist_ok=True)
    if job["method"].startswith("ga"):
        lines = [
            "generation,best_performance,best_accuracy,best_sparsity,max_sparsity,"
            "best_sparsity_so_far,seconds"
        ]
        lines += [
            f"{g},{acc * g / 5:.4f},{acc * g / 5:.4f},{sparsity * g / 5:.4f},{sparsity:.4f},"
            f"{sparsity * g / 5:.4f},0.1"
            for g in range(1, 6)
        ]
        (out / "history.csv").write_text("\n".join(lines) + "\n")
    elif job["method"] == "edge-popup":  # the baselines log epochs
        (out / "history.csv").write_text("epoch,lr,train_loss\n1,0.1,0.7\n2,0.05,0.6\n")
    (out / "ticket.npz").write_bytes(b"ticket " + job_key(job).encode())
    (out / "result.json").write_text(json.dumps(result))
    return result


def failing_job(job: dict, out: Path) -> dict:
    if job["seed"] == 1:
        raise ValueError("boom\nsecond line")
    return fake_job(job, out)


TINY_SPEC = {
    "name": "tiny",
    "figure": "fig6",
    "grid": {
        "dataset": ["moons", "circles"],
        "arch": ["A", "B"],
        "init": ["uniform"],
        "arm": [
            {"label": "GA", "method": "ga", "objective": "accuracy"},
            {"label": "EP (50%)", "method": "edge-popup", "sparsity": 0.5},
            {
                "label": "EP (adapted)",
                "method": "edge-popup",
                "sparsity": {"mean_of": "GA", "field": "sparsity"},
            },
        ],
    },
    "profiles": {
        "quick": {"seeds": 2, "budget": {"ga": {"max_generations": 5}}},
        "paper": {"seeds": 3},
    },
}


class InlineExecutor:
    """Runs tasks in this process (for fast driver tests; the real pools are tested below)."""

    name = "inline"

    def run(self, fn, jobs):
        for i, job in enumerate(jobs):
            yield i, execute_run(fn, job, threads=None)

    def close(self):
        pass


# -- specs and keys -----------------------------------------------------------------------------


def test_every_shipped_spec_expands_in_both_profiles():
    assert sorted(spec_names()) == sorted(SHIPPED)
    for name in SHIPPED:
        spec = load_spec(name)
        quick, paper = spec.runs("quick"), spec.runs("paper")
        assert quick and len(paper) >= len(quick), name
        for run in quick + paper:
            assert run.job["method"] in METHODS
            assert all(k.isidentifier() for k in run.job), run.job


def test_paper_profile_has_the_papers_run_counts():
    fig3 = load_spec("fig3").runs("paper")
    assert len(fig3) == 2 * 4 * 2 * 25  # datasets x architectures x variants x R=25
    assert {r.job["seed"] for r in fig3} == set(range(25))


def test_shared_jobs_share_keys_across_specs():
    # fig11 asks for exactly the GA runs of fig10, fig4 for one run of fig3's adaptive variant
    fig10 = {r.key for r in load_spec("fig10").runs("quick")}
    assert {r.key for r in load_spec("fig11").runs("quick")} <= fig10
    assert {r.key for r in load_spec("fig4").runs("quick")} <= {
        r.key for r in load_spec("fig3").runs("quick")
    }


def test_key_is_stable_and_order_independent():
    job = {"method": "ga", "dataset": "moons", "arch": "B", "seed": 3, "objective": "accuracy"}
    # pinned: sha256 of the canonical JSON must never change, or every sweep would re-run
    assert job_key(job) == "409be491212187b1"
    assert job_key(dict(reversed(list(job.items())))) == job_key(job)
    assert job_key({**job, "seed": 4}) != job_key(job)
    assert job_key({**job, "max_generations": 50}) != job_key(job)


def test_grid_is_a_product_in_stable_order():
    spec = parse_spec(TINY_SPEC)
    runs = spec.runs("quick")
    assert len(runs) == 2 * 2 * 3 * 2
    assert [r.key for r in runs] == [r.key for r in parse_spec(TINY_SPEC).runs("quick")]
    ga = [r for r in runs if r.label == "GA"]
    assert all(r.job["max_generations"] == 5 for r in ga)
    assert all("max_generations" not in r.job for r in runs if r.label != "GA")
    assert runs[0].axes == {"dataset": "moons", "arch": "A", "init": "uniform"}
    small = parse_spec({**TINY_SPEC, "profiles": {"quick": {"seeds": 1, "only": {"arch": ["B"]}}}})
    assert {r.job["arch"] for r in small.runs("quick")} == {"B"} and len(small.runs("quick")) == 6


def test_a_value_set_by_an_arm_or_an_axis_wins_over_the_profiles_budget():
    spec = parse_spec({
        "name": "budgets",
        "grid": {"dataset": ["moons"], "epochs": [1, 5],
                 "arm": [{"label": "EP", "method": "edge-popup", "sparsity": 0.5}]},
        "profiles": {"quick": {"budget": {"edge-popup": {"epochs": 3, "lr": 0.05}}}},
    })  # fmt: skip
    runs = spec.runs("quick")  # two points, not one job twice labelled "epochs 1"
    assert [(r.axes["epochs"], r.job["epochs"], r.job["lr"]) for r in runs] == [
        (1, 1, 0.05), (5, 5, 0.05)]  # fmt: skip
    assert len({r.key for r in runs}) == 2
    arms = parse_spec({**TINY_SPEC, "grid": {**TINY_SPEC["grid"], "arm": [
        {"label": "GA", "method": "ga", "objective": "accuracy", "max_generations": 3},
        {"label": "GA (loss)", "method": "ga", "objective": "loss"}]}})  # fmt: skip
    generations = {r.label: r.job["max_generations"] for r in arms.runs("quick")}
    assert generations == {"GA": 3, "GA (loss)": 5}  # the budget fills in only the unset one


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD_YAML = """
    name: s
    grid:
      dataset: [moons]
      arm:
        - {label: GA, method: ga}
    profiles:
      quick: {seeds: 1}
"""


@pytest.mark.parametrize(
    "change, message",
    [
        (("name: s", "name: s\ncolour: red"), "unknown field 'colour'"),
        (
            ("quick: {seeds: 1}", "quick: {seeds: 1, seeds_per_arm: 2}"),
            "unknown field 'profiles.quick.seeds_per_arm'",
        ),
        (("quick: {seeds: 1}", "fast: {seeds: 1}"), "unknown field 'profiles.fast'"),
        (
            ("quick: {seeds: 1}", "quick: {seeds: 1, budget: {gaa: {patience: 1}}}"),
            "profiles.quick.budget.gaa",
        ),
        (("method: ga}", "method: gaa}"), "expected one of"),
        (("label: GA, method: ga", "label: GA (loss, x), method: ga"), "quote labels"),
        (("quick: {seeds: 1}", "quick: {seeds: 0}"), "seeds"),
        (("dataset: [moons]", "dataset: [moons]\n  seed: [1]"), "seeds belong in the profiles"),
        (
            ("quick: {seeds: 1}", "quick: {seeds: 1, only: {classes: [2]}}"),
            "profiles.quick.only.classes",
        ),
        (
            ("quick: {seeds: 1}", "quick: {seeds: 1, only: {dataset: [blobs]}}"),
            "only.dataset: expected a list",
        ),
        (
            ("method: ga}", "method: ga, max_generation: 5}"),
            "unknown field 'max_generation' for method ga",
        ),
        (("method: ga}", "method: backprop, init: uniform}"), "init: backprop trains sklearn's"),
        # each method's own values, without the data: refused at load, not in every run
        (("method: ga}", "method: edge-popup, epochs: 0}"), "epochs: expected a positive integer"),
        (("method: ga}", "method: backprop, solver: foo}"), "solver: expected one of adam, sgd"),
        (("method: ga}", "method: backprop, arch: conv}"), "arch: backprop trains an MLP"),
        (("method: ga}", "method: backprop, max_iter: 0}"), "max_iter: expected a positive"),
        (
            ("method: ga}", "method: backprop, solver: sgd, epsilon: 1.0e-8}"),
            "epsilon: not read by the sgd solver",
        ),
        (("method: ga}", "method: train-weights}"), "dataset: expected digits for train-weights"),
        (("method: ga}", "method: magnitude, ec: lsqq}"), "ec: expected one of"),
        (("method: ga}", "method: cmaes-synflow, population: 1}"), "population: expected an int"),
        (("method: ga}", "method: synflow, finetune_curve: '-1'}"), "finetune_curve: expected"),
        (("method: ga}", "method: selection, dynamics: foo}"), "dynamics: expected one of"),
        (("method: ga}", "method: selection, epochs: 2, target_epoch: 3}"), "target_epoch: exp"),
        # values a misspelling breaks: caught at load time, not in every run of the sweep
        (("dataset: [moons]", "dataset: [moons, circels]"), "got 'circels'"),
        (("dataset: [moons]", "dataset: [blobs-10]"), "is dataset 'blobs' with classes 10)"),
        (("method: ga}", "method: ga, arch: Q}"), "arch: expected one of"),
        (("method: ga}", "method: ga, objective: acuracy}"), "objective: expected"),
        (("method: ga}", "method: ga, population: 1}"), "population: expected at least 2"),
        (("method: ga}", "method: ga, datset: moons}"), ", data_dir, dataset, device,"),
        (("method: ga}", "method: ga, init: unifrom}"), "init: expected one of"),
        (("method: ga}", "method: ga, classes: three}"), "classes: moons supports 2 classes"),
        (("dataset: [moons]", "dataset: [digits]\n  classes: [7]"), "supports 2, 3, 4, 5, 10"),
        (("dataset: [moons]", "dataset: [digits]\n  classes: ['3']"), "got '3'"),
        (
            ("label: GA, method: ga}", "label: EP, method: edge-popup, sparsity: 1.5}"),
            "sparsity: expected a fraction in [0, 1)",
        ),
        (
            ("label: GA, method: ga}", "label: EP, method: edge-popup, sparsity: high}"),
            "sparsity: expected a fraction in [0, 1), got 'high'",
        ),
        (("dataset: [moons]", "dataset: [moons]\n  arch: [2, 8, 2]"), 'arch: ["2,75,2"]), got 2'),
        (("method: ga}", "method: ga, arch: '2,,2'}"), "got '2,,2'"),
        (("method: ga}", "method: ga, normalize: 'false'}"), "normalize: expected true, false"),
        (("method: ga}", "method: ga, mut_rate: .nan}"), "grid.arm[0].mut_rate: expected a finite"),
        (("method: ga}", "method: ga, analyze: [foo]}"), "analyze: expected a list of"),
        # settings the arm's variant does not read: refused, not recorded and ignored
        (("method: ga}", "method: ga, kicks: 5}"), "kicks: only with variant memetic or local"),
        (("method: ga}", "method: local, population: 50}"), "population: only with variant ga,"),
        (
            ("method: ga}", "method: local, objective: accuracy, exact_top: 3}"),
            "exact_top: only with objective loss",
        ),
        (
            ("method: ga}", "method: ga}\n    - {label: GA, method: local}"),
            "grid[0].arm[1].label: 'GA' labels an earlier arm of this grid too",
        ),
        (("dataset: [moons]", "data: [spec.yaml]"), "target: a CSV needs the name of its label"),
        (
            (
                "label: GA, method: ga}",
                "label: GA, method: ga}\n    - {label: EP, method: edge-popup, "
                "sparsity: {mean_of: GA, field: sparsty}}",
            ),
            "did you mean 'sparsity'",
        ),
        # a YAML syntax error names its line and column (the list's ']' is missing)
        (("dataset: [moons]", "dataset: [moons"), "spec.yaml:5:6: not valid YAML (expected ','"),
    ],
)
def test_bad_spec_is_an_error_naming_file_and_field(tmp_path, change, message):
    path = _write(tmp_path, textwrap.dedent(GOOD_YAML).replace(*change))
    with pytest.raises(EvopruneError) as err:
        load_spec(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_two_spec_files_of_one_name_in_one_sweep_are_refused(tmp_path, capsys):
    from evoprune.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(tmp_path / "a", GOOD_YAML)
    second = _write(tmp_path / "b", GOOD_YAML.replace("method: ga", "method: local"))
    out = tmp_path / "out"
    assert main(["sweep", str(first), str(second), "--dry-run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{first} and {second} both name spec 's'; give each its own name" in err
    with pytest.raises(EvopruneError, match="both name spec 's'"):
        run_sweep([load_spec(first), load_spec(second)], "quick", out, fn=fake_job,
                  executor=InlineExecutor(), progress=False)  # fmt: skip
    assert not out.exists()


def test_a_spec_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(
        textwrap.dedent(GOOD_YAML).replace("name: s", "name: s\ntitle: café").encode("latin-1")
    )
    with pytest.raises(
        EvopruneError, match=r"spec.yaml: not UTF-8 text \(byte \d+\); save it as UTF-8"
    ):
        load_spec(path)


def test_good_spec_file_loads(tmp_path):
    assert load_spec(_write(tmp_path, GOOD_YAML)).runs("quick")[0].job == {
        "dataset": "moons",
        "method": "ga",
        "seed": 0,
    }


def test_spec_errors_unknown_name_reference_and_duplicates():
    with pytest.raises(EvopruneError, match="expected a YAML file or one of"):
        load_spec("fig99")
    bad = json.loads(json.dumps(TINY_SPEC))
    bad["grid"]["arm"][2]["sparsity"]["mean_of"] = "GAA"
    with pytest.raises(EvopruneError, match="no arm labelled 'GAA'"):
        parse_spec(bad)
    dup = json.loads(json.dumps(TINY_SPEC))
    dup["grid"]["arm"].append({"label": "EP again", "method": "edge-popup", "sparsity": 0.5})
    with pytest.raises(EvopruneError, match="give the same job"):
        parse_spec(dup)
    with pytest.raises(EvopruneError, match="profile 'slow' not defined"):
        parse_spec(TINY_SPEC).runs("slow")


# -- store ----------------------------------------------------------------------------------------


def test_store_round_trips_a_run(tmp_path):
    job = {"method": "ga", "dataset": "moons", "arch": "B", "seed": 7, "init": "uniform"}
    result = fake_job(job, tmp_path / "run")
    result["new_metric"] = 0.25  # a field the store has never seen gets its own column
    history = [
        {"generation": "1", "best_performance": "0.5", "diversity": "0.25"},
        {"generation": "2", "best_performance": "0.75", "diversity": "0.125"},
    ]
    with Store(tmp_path / "sweep") as store:
        store.add_members("s", [(job_key(job), "GA", {"dataset": "moons", "arch": "B"}, 0)])
        store.record(
            job_key(job),
            spec="s",
            label="GA",
            job=job,
            result=result,
            history=history,
            submitted=100.0,
            finished=101.0,
        )
        assert store.finished_keys() == {job_key(job)}
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        hist = store.history_frame()
    df = load_results(tmp_path / "sweep")
    row = df.iloc[0]
    assert (row["key"], row["label"], row["spec"], row["seed"], row["arch_name"]) == (
        job_key(job),
        "GA",
        "s",
        7,
        "B",
    )
    for field in (
        "test_accuracy",
        "sparsity",
        "sparsity_before_post_prune",
        "generations",
        "new_metric",
    ):
        assert row[field] == pytest.approx(result[field])
    assert json.loads(row["config"]) == job
    assert json.loads(row["arch"]) == [2, 20, 2]
    assert json.loads(row["result"])["versions"] == {"evoprune": "test"}
    assert row["git_revision"] == "abc123"
    assert hist["best_performance"].tolist() == [0.5, 0.75]
    assert hist["generation"].tolist() == [1, 2] and hist["row"].tolist() == [0, 1]
    with Store(tmp_path / "sweep") as store:  # edge-popup and backprop log epochs, not generations
        store.record(
            "ep",
            spec="s",
            label="EP",
            job={"method": "edge-popup", "seed": 0},
            result=result,
            history=[{"epoch": "1", "train_loss": "0.5"}],
        )
        ep = store.history_frame(["ep"])
    assert ep["epoch"].tolist() == [1] and ep["generation"].isna().all()


def test_store_keeps_numbers_numeric_when_the_first_run_lacks_them(tmp_path):
    # edge-popup often finishes first and reports no generations; the GA's count must stay a number
    with Store(tmp_path) as store:
        store.add_members("s", [("ep", "EP", {}, 0), ("ga", "GA", {}, 1)])
        job = {"seed": 0}
        store.record("ep", spec="s", label="EP", job={**job, "method": "edge-popup"},
                     result={"test_accuracy": 0.9, "generations": None})  # fmt: skip
        store.record("ga", spec="s", label="GA", job={**job, "method": "ga"},
                     result={"test_accuracy": 1, "generations": 40})  # fmt: skip
    df = load_results(tmp_path).set_index("label")
    assert df.loc["GA", "generations"] == 40 and df["generations"].dtype.kind == "f"
    assert df["test_accuracy"].tolist() == [0.9, 1.0]


def test_a_rerecorded_run_replaces_its_history(tmp_path):
    # a run recorded again (resumed, or recovered from its folder) must not keep the rows of
    # its earlier, longer history beyond those of the new one
    job = {"method": "ga", "seed": 0}
    with Store(tmp_path) as store:
        for n in (3, 2):
            history = [{"generation": str(g), "best_performance": "0.5"} for g in range(n)]
            store.record("k", spec="s", label="GA", job=job, result={"test_accuracy": 0.9},
                         history=history)  # fmt: skip
        assert store.history_frame(["k"])["generation"].tolist() == [0, 1]


def test_history_cells_that_look_like_floats_stay_floats(tmp_path):
    # "1.0" and "1e3" are floats as written (an accuracy of 1.0 is no count), "7" an integer
    history = [{"generation": "7", "best_performance": "1.0", "budget": "1e3"}]
    with Store(tmp_path) as store:
        store.record("k", spec="s", label="GA", job={"method": "ga", "seed": 0},
                     result={"test_accuracy": 0.9}, history=history)  # fmt: skip
        row = store.history_frame(["k"]).iloc[0]
    assert isinstance(row["generation"], (int, np.integer)) and row["generation"] == 7
    assert isinstance(row["best_performance"], float) and row["best_performance"] == 1.0
    assert isinstance(row["budget"], float) and row["budget"] == 1000.0


def test_a_result_field_named_like_a_fixed_column_does_not_replace_it(tmp_path):
    # the store's status says whether the run finished, the job's seed which run it is
    with Store(tmp_path) as store:
        store.add_members("s", [("k", "GA", {}, 0)])
        store.record("k", spec="s", label="GA", job={"method": "ga", "seed": 3},
                     result={"test_accuracy": 0.9, "status": "converged", "seed": 99})  # fmt: skip
        assert store.finished_keys() == {"k"}
    assert load_results(tmp_path)["seed"].tolist() == [3]


def test_queue_seconds_are_the_wait_beside_the_runs_own_wall_time(tmp_path):
    with Store(tmp_path) as store:
        store.add_members("s", [("k", "GA", {}, 0)])
        store.record("k", spec="s", label="GA", job={"method": "ga", "seed": 0},
                     result={"wall_seconds": 4.0}, submitted=100.0, finished=110.0)  # fmt: skip
    assert load_results(tmp_path)["queue_seconds"].tolist() == [6.0]


def test_mean_of_averages_the_runs_that_report_the_field(tmp_path):
    # a finished run without the field (None) is left out, not counted as a zero
    with Store(tmp_path) as store:
        store.add_members("s", [("a", "GA", {"arch": "B"}, 0), ("b", "GA", {"arch": "B"}, 1)])
        for key, sparsity in (("a", 0.6), ("b", None)):
            store.record(key, spec="s", label="GA", job={"method": "ga", "seed": 0},
                         result={"test_accuracy": 0.9, "sparsity": sparsity})  # fmt: skip
        assert store.mean_of("s", "GA", {"arch": "B"}, "sparsity") == (0.6, "")


def test_store_records_failures_and_missing_store_is_an_error(tmp_path):
    with Store(tmp_path) as store:
        store.add_members("s", [("k1", "GA", {}, 0)])
        store.record(
            "k1", spec="s", label="GA", job={"method": "ga", "seed": 0}, result=None, error="boom"
        )
        assert store.finished_keys() == set()
    assert load_results(tmp_path).empty
    assert load_results(tmp_path, finished_only=False)["error"].tolist() == ["boom"]
    with pytest.raises(EvopruneError, match="no results store"):
        load_results(tmp_path / "nowhere")


# -- sweeps ---------------------------------------------------------------------------------------


def test_sweep_runs_everything_resolves_references_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    s = run_sweep(
        parse_spec(TINY_SPEC), "quick", out, executor=InlineExecutor(), fn=fake_job, progress=False
    )
    assert (s.total, s.ran, s.failed, s.skipped) == (24, 24, 0, 0)
    df = load_results(out)
    assert len(df) == 24
    for (dataset, arch), group in df.groupby(["dataset", "arch_name"]):
        ga_mean = group[group["label"] == "GA"]["sparsity"].mean()
        adapted = group[group["label"] == "EP (adapted)"]
        assert len(adapted) == 2
        assert all(json.loads(c)["sparsity"] == round(ga_mean, 4) for c in adapted["config"]), (
            dataset,
            arch,
        )
    for key in df["key"]:
        folder = out / "runs" / key
        assert (folder / "result.json").is_file() and (folder / "ticket.npz").is_file()
    assert not list((out / "runs").glob(".tmp-*"))
    again = run_sweep(
        parse_spec(TINY_SPEC), "quick", out, executor=InlineExecutor(), fn=fake_job, progress=False
    )
    assert (again.ran, again.skipped) == (0, 24)


def test_a_changed_spec_or_profile_replaces_its_runs_in_the_folder(tmp_path):
    import copy

    def sweep(spec, profile="quick"):
        return run_sweep(parse_spec(spec), profile, tmp_path, executor=InlineExecutor(),
                         fn=fake_job, progress=False)  # fmt: skip

    sweep(TINY_SPEC)
    changed = copy.deepcopy(TINY_SPEC)
    changed["grid"]["arm"][1]["sparsity"] = 0.6  # a new version of the EP (50%) arm
    s = sweep(changed)
    # the 8 old EP runs no longer count beside the 8 new ones (n stays 2 per cell)
    assert (s.ran, s.skipped, s.dropped) == (8, 16, 8)
    df = load_results(tmp_path)
    assert len(df) == 24 and df.groupby(["dataset", "arch_name", "label"]).size().eq(2).all()
    assert {json.loads(c)["sparsity"] for c in df[df["label"] == "EP (50%)"]["config"]} == {0.6}
    plan = [r.key for r in parse_spec(changed).runs("quick") if not r.references]
    assert [k for k in df["key"] if k in plan] == plan  # the spec's order, not the sweeps'
    assert (sweep(TINY_SPEC).ran, len(load_results(tmp_path))) == (0, 24)  # reverted: reused
    s = sweep(TINY_SPEC, "paper")  # 3 seeds: the quick runs do not pool with them
    # the quick GA runs go (their budget differs); EP (50%) seeds 0-1 are the same jobs, kept
    assert (s.dropped, s.skipped) == (8, 8)
    df = load_results(tmp_path)
    assert len(df) == 36 and set(load_meta(tmp_path)["profile"]) == {"paper"}


def interrupted_job(job: dict, out: Path) -> dict:
    if job["method"] == "ga" and job["seed"] == 1:
        raise KeyboardInterrupt  # Ctrl-C in the first stage, before any reference resolves
    return fake_job(job, out)


def test_an_interrupted_sweep_of_a_changed_spec_drops_the_old_deferred_runs(tmp_path):
    import copy

    def sweep(spec, fn):
        return run_sweep(parse_spec(spec), "quick", tmp_path, executor=InlineExecutor(), fn=fn,
                         progress=False)  # fmt: skip

    sweep(TINY_SPEC, fake_job)
    changed = copy.deepcopy(TINY_SPEC)
    changed["profiles"]["quick"]["budget"]["ga"]["max_generations"] = 7  # new GA runs
    with pytest.raises(KeyboardInterrupt):
        sweep(changed, interrupted_job)
    # the old EP (adapted) runs were matched to GA runs this plan no longer has
    assert "EP (adapted)" not in set(load_results(tmp_path)["label"])
    s = sweep(changed, fake_job)
    df = load_results(tmp_path)
    assert df.groupby(["dataset", "arch_name", "label"]).size().eq(2).all() and len(df) == 24
    assert s.ran == 8 + 7  # the EP (adapted) runs and the 7 GA runs the interrupt left
    assert sweep(changed, fake_job).ran == 0  # and a resumed sweep keeps them


def test_results_names_planned_runs_that_did_not_finish(tmp_path, capsys):
    from evoprune.cli import main

    run_sweep(parse_spec(TINY_SPEC), "quick", tmp_path, executor=InlineExecutor(),
              fn=failing_job, progress=False)  # fmt: skip
    capsys.readouterr()
    assert main(["results", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    # the 8 EP (adapted) runs are planned too: they wait for the GA runs that failed
    assert "tiny: 8 of 24 planned runs finished, 8 failed, 8 not run" in err


def test_results_counts_the_runs_that_wait_for_others_among_the_planned(tmp_path, capsys):
    from evoprune.cli import main

    with pytest.raises(KeyboardInterrupt):  # stopped in the first stage
        run_sweep(parse_spec(TINY_SPEC), "quick", tmp_path, executor=InlineExecutor(),
                  fn=interrupted_job, progress=False)  # fmt: skip
    capsys.readouterr()
    assert main(["results", str(tmp_path)]) == 0
    assert "tiny: 1 of 24 planned runs finished, 0 failed, 23 not run" in capsys.readouterr().err
    run_sweep(parse_spec(TINY_SPEC), "quick", tmp_path, executor=InlineExecutor(), fn=fake_job,
              progress=False)  # fmt: skip
    assert main(["results", str(tmp_path)]) == 0
    assert "planned" not in capsys.readouterr().err  # all 24 finished


def test_sweep_records_failed_runs_and_retries_them(tmp_path):
    s = run_sweep(
        parse_spec(TINY_SPEC),
        "quick",
        tmp_path,
        executor=InlineExecutor(),
        fn=failing_job,
        progress=False,
    )
    # seed 1 of GA and EP (50%) fail; EP (adapted) waits for every GA run of its cell
    assert s.failed == 16 and s.ran == 8
    assert "ValueError: boom" in s.errors[0] and "second line" not in s.errors[0]
    assert any(
        "waits for the mean of sparsity: 1 of 2 runs of 'GA' not finished" in e for e in s.errors
    )
    s2 = run_sweep(
        parse_spec(TINY_SPEC),
        "quick",
        tmp_path,
        executor=InlineExecutor(),
        fn=fake_job,
        progress=False,
    )
    assert (s2.ran, s2.skipped, s2.failed) == (16, 8, 0)
    assert len(load_results(tmp_path)) == 24


def test_sweep_recovers_a_run_renamed_but_not_recorded(tmp_path):
    spec = parse_spec(TINY_SPEC)
    run_sweep(spec, "quick", tmp_path, executor=InlineExecutor(), fn=fake_job, progress=False)
    key = spec.runs("quick")[0].key
    with Store(tmp_path) as store:  # as if killed between the rename and the store transaction
        store.db.execute("DELETE FROM runs WHERE key = ?", (key,))
    (tmp_path / "runs" / ".tmp-stale-1").mkdir()
    s = run_sweep(
        spec, "quick", tmp_path, executor=InlineExecutor(), fn=failing_job, progress=False
    )
    assert (s.recovered, s.ran, s.failed) == (1, 0, 0)
    assert key in set(load_results(tmp_path)["key"])
    assert not (tmp_path / "runs" / ".tmp-stale-1").exists()


def test_local_executor_runs_in_worker_processes_with_one_thread(tmp_path):
    s = run_sweep(
        parse_spec(TINY_SPEC),
        "quick",
        tmp_path / "a",
        executor="local",
        workers=2,
        fn=fake_job,
        progress=False,
    )
    assert s.ran == 24
    df = load_results(tmp_path / "a")
    assert os.getpid() not in set(df["worker_pid"]) and df["worker_pid"].nunique() <= 2
    # spawned workers have their own hash seeds: the key must not depend on them
    assert (df["worker_key"] == df["key"]).all()
    inline = tmp_path / "b"
    run_sweep(
        parse_spec(TINY_SPEC),
        "quick",
        inline,
        executor=InlineExecutor(),
        fn=fake_job,
        progress=False,
    )
    cols = ["key", "label", "test_accuracy", "sparsity"]
    a = load_results(tmp_path / "a")[cols].sort_values(["key", "label"]).reset_index(drop=True)
    b = load_results(inline)[cols].sort_values(["key", "label"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    payload = execute_run(report_threads, {"seed": 0})
    assert payload.result == {"threads": 1}


def report_threads(job: dict, out: Path) -> dict:
    import torch

    return {"threads": torch.get_num_threads()}


def test_unknown_executor_and_missing_ray_hint(tmp_path, monkeypatch):
    with pytest.raises(EvopruneError, match="executor: expected one of local, ray"):
        run_sweep(
            parse_spec(TINY_SPEC), "quick", tmp_path, executor="slurm", fn=fake_job, progress=False
        )
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    from evoprune.experiments.executors import make_executor

    with pytest.raises(EvopruneError, match=r"pip install 'evoprune\[ray\]'"):
        make_executor("ray")


def test_a_ray_address_where_nothing_listens_fails_in_seconds_and_leaves_no_folder(
    tmp_path, capsys
):
    import socket

    from evoprune.cli import main

    with socket.socket() as free:  # a port nothing listens on once the socket closes
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    out = tmp_path / "out"
    started = time.perf_counter()
    code = main(["sweep", str(_write(tmp_path, GOOD_YAML)), "--executor", "ray", "--ray-address",
                 f"127.0.0.1:{port}", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 2 and time.perf_counter() - started < 10
    assert f"--ray-address: no Ray cluster at 127.0.0.1:{port} (nothing answers" in (
        capsys.readouterr().err
    )
    assert not out.exists()


KILL_SPEC = {
    "name": "kill",
    "grid": {"dataset": ["moons"], "arm": [{"label": "GA", "method": "ga"}]},
    "profiles": {"quick": {"seeds": 16}},
}

KILL_DRIVER = f"""
import json, sys, time

def slow_job(job, out):
    with open(sys.argv[2], "a") as fh:
        fh.write(json.dumps(job, sort_keys=True) + "\\n")
    time.sleep(0.4)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ticket.npz").write_bytes(b"x" * 100)
    return {{"method": job["method"], "dataset": job["dataset"], "seed": job["seed"],
            "test_accuracy": 0.5 + job["seed"] / 100, "sparsity": 0.5, "wall_seconds": 0.4}}

if __name__ == "__main__":
    from evoprune.experiments import parse_spec, run_sweep  # here, so spawned workers import less

    run_sweep(parse_spec({KILL_SPEC!r}), "quick", sys.argv[1], workers=2, fn=slow_job, progress=False)
"""


def _finished(out: Path) -> set[str]:
    path = out / "results.sqlite"
    if not path.exists():
        return set()
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return {r[0] for r in db.execute("SELECT key FROM runs WHERE status = 'finished'")}
    except sqlite3.OperationalError:
        return set()


CALLS: list[str] = []


def logged_job(job: dict, out: Path) -> dict:
    CALLS.append(job_key(job))
    return {
        "method": job["method"],
        "dataset": job["dataset"],
        "seed": job["seed"],
        "test_accuracy": 0.5,
    }


def test_killed_sweep_loses_no_finished_run_and_repeats_none(tmp_path):
    script, out, log = tmp_path / "driver.py", tmp_path / "sweep", tmp_path / "calls.log"
    script.write_text(KILL_DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), str(log)],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 90
    while len(_finished(out)) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, as a hard kill would
    proc.wait()
    before = _finished(out)
    assert 4 <= len(before) < 16, "the kill should land mid-sweep"
    for key in before:
        assert (out / "runs" / key / "result.json").is_file()
    started = {job_key(json.loads(line)) for line in log.read_text().splitlines()}
    assert before <= started
    CALLS.clear()
    s = run_sweep(
        parse_spec(KILL_SPEC),
        "quick",
        out,
        executor=InlineExecutor(),
        fn=logged_job,
        progress=False,
    )
    after = _finished(out)
    assert len(after) == 16 and before <= after
    assert not set(CALLS) & before, "a finished run was run again"
    assert len(CALLS) == len(set(CALLS)) == 16 - len(before) - s.recovered
    assert s.skipped == len(before)


def _sweep_with_two_runs_started(tmp_path: Path, driver: str, popen_kwargs: dict):
    """Start `driver` (a sweep of KILL_SPEC in its own session) and return (process, sweep
    folder, call log) once two of its runs have started."""
    script, out, log = tmp_path / "driver.py", tmp_path / "sweep", tmp_path / "calls.log"
    script.write_text(driver)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(log)], env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen_kwargs)  # fmt: skip
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    return proc, out, log


def test_an_interrupted_sweep_records_the_runs_its_workers_still_finish(tmp_path, ctrl_c_able):
    # Ctrl-C for the sweep alone (SIGINT to its process, as a job scheduler sends it): the runs
    # already with a worker finish and are recorded; queued runs never start
    proc, out, log = _sweep_with_two_runs_started(
        tmp_path, KILL_DRIVER.replace("time.sleep(0.4)", "time.sleep(1.5)"), ctrl_c_able
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert b"KeyboardInterrupt" in err
    started = {job_key(json.loads(line)) for line in log.read_text().splitlines()}
    assert 2 <= len(started) < 16
    assert _finished(out) == started  # none lost, none run after the interrupt
    for key in started:
        assert (out / "runs" / key / "result.json").is_file()


def test_an_interrupted_sweep_stops_workers_whose_search_takes_sigterm_as_ctrl_c(
    tmp_path, ctrl_c_able
):
    # a GA or memetic run maps SIGTERM to KeyboardInterrupt (for its checkpoint); the pool's
    # worker survives that, so closing the pool must not rely on SIGTERM alone
    driver = KILL_DRIVER.replace(
        "    time.sleep(0.4)",
        "    from evoprune.interrupts import sigterm_as_interrupt\n"
        "    with sigterm_as_interrupt():\n"
        "        time.sleep(60)",
    )
    proc, _, _ = _sweep_with_two_runs_started(tmp_path, driver, ctrl_c_able)
    interrupted = time.time()
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the interrupted sweep hung on its workers")
    assert time.time() - interrupted < 30  # STOP_SECONDS, then SIGTERM and SIGKILL
    for _ in range(50):  # multiprocessing's resource tracker ends a moment after its parent
        left = subprocess.run(["pgrep", "-a", "-s", str(proc.pid)], capture_output=True).stdout
        if not left:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL) if left else None
    assert not left, left.decode()


@pytest.mark.slow  # real runs, and a Ctrl-C timed to a worker's start (test_executors has the
# deterministic check of the worker)
def test_ctrl_c_in_a_terminal_while_workers_start_is_one_line(tmp_path, ctrl_c_able):
    # a terminal's Ctrl-C reaches the whole process group: a worker still importing PyTorch
    # died of it with a traceback, and the pool's thread then printed another (Python 3.11)
    cmd = [sys.executable, "-m", "evoprune", "sweep", "fig3", "--only", "dataset=moons",
           "--seeds", "3", "--workers", "2", "--out", str(tmp_path / "sweep")]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **ctrl_c_able)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        if len(children.stdout.split()) >= 2:  # the resource tracker, and a worker starting
            break
        time.sleep(0.01)
    time.sleep(0.5)  # the worker is importing PyTorch
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the interrupted sweep hung")
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip().splitlines() == ["evoprune sweep: interrupted"]


# -- statistics -----------------------------------------------------------------------------------


def _synthetic_runs(effects: dict[str, float], seed: int = 0, noise: float = 0.1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arch = {a: rng.normal(0, 0.4) for a in "ABCD"}
    init = {i: rng.normal(0, 0.3) for i in ("uniform", "kaiming-normal", "signed-constant")}
    rows = []
    for label, effect in effects.items():
        for a in arch:
            for i in init:
                for _s in range(5):
                    rows.append(
                        {
                            "label": label,
                            "arch_name": a,
                            "init": i,
                            "dataset": "moons",
                            "test_accuracy": 1 + effect + arch[a] + init[i] + rng.normal(0, noise),
                        }
                    )
    return pd.DataFrame(rows)


def test_mixed_model_recovers_known_effects():
    fit = fit_mixed_model(
        _synthetic_runs({"GA": 0.0, "EP": -0.5, "BP": 0.3}), "moons", standardised=False
    )
    assert fit.random_effects == ("arch_name", "init") and fit.converged
    table = fit.table.set_index(["reference", "target"])
    for (ref, tgt), truth in {("GA", "EP"): -0.5, ("GA", "BP"): 0.3, ("EP", "BP"): 0.8}.items():
        row = table.loc[(ref, tgt)]
        assert abs(row["coef"] - truth) < 3 * row["std_err"], (ref, tgt, row["coef"])
        assert row["ci_low"] < truth < row["ci_high"]
        assert row["p"] < 1e-6
        assert row["stat"] == pytest.approx(row["coef"] / row["std_err"])
    assert fit.test == "z" and (fit.table["p_holm"] >= fit.table["p"]).all()
    assert fit.variances["residual"] == pytest.approx(0.01, rel=0.3)


def test_mixed_model_finds_no_effect_where_there_is_none_and_standardises():
    fit = fit_mixed_model(_synthetic_runs({"GA": 0.0, "EP": 0.0}, seed=1), "moons")
    row = fit.table.iloc[0]
    assert (row["reference"], row["target"]) == ("GA", "EP")
    assert row["p"] > 0.01 and row["ci_low"] < 0 < row["ci_high"]
    big = fit_mixed_model(_synthetic_runs({"GA": 0.0, "EP": -0.5}, seed=1), "moons").table.iloc[0]
    assert big["coef"] < -0.5  # on the standardised scale the effect is in units of the std


def test_mixed_model_drops_constant_random_effects_and_orders_references():
    df = _synthetic_runs({"GA": 0.0, "EP": -0.5})
    df["init"] = "uniform"
    fit = fit_mixed_model(df, "x", order=["EP", "GA"])
    assert fit.random_effects == ("arch_name",)
    assert (fit.table.iloc[0]["reference"], fit.table.iloc[0]["target"]) == ("EP", "GA")
    assert fit.table.iloc[0]["coef"] > 0
    with pytest.raises(EvopruneError, match="at least two algorithms"):
        fit_mixed_model(df[df["label"] == "GA"], "x")


def test_standardise_divides_by_the_population_std():
    from evoprune.experiments.stats import standardise

    z = standardise(pd.Series([0.80, 0.90, 0.95, 1.00]))
    assert z.mean() == pytest.approx(0.0, abs=1e-12)
    assert np.std(z.to_numpy()) == pytest.approx(1.0)  # numpy's std: ddof 0, the population's
    assert standardise(pd.Series([0.5, 0.5])).tolist() == [0.0, 0.0]


def test_a_factor_constant_within_each_algorithm_is_no_random_effect():
    # backprop has no init of ours ("none"), the GA one init: init then only renames the
    # algorithm, and fitting it as a variance component would split the algorithm's effect
    df = pd.DataFrame({"label": ["GA", "GA", "GA", "BP", "BP", "BP"], "dataset": "moons",
                       "test_accuracy": [0.90, 0.92, 0.91, 0.80, 0.83, 0.82], "arch_name": "B",
                       "init": ["uniform"] * 3 + [None] * 3})  # fmt: skip
    fit = fit_mixed_model(df, "moons", standardised=False)
    assert fit.random_effects == () and fit.test == "t"


def test_least_squares_pairs_are_t_tests_on_their_degrees_of_freedom():
    from scipy import stats as sps

    # two algorithms, two runs each, nothing that varies within them: least squares, and its
    # test of the pair is the pooled two-sample t test (df 2), not a normal z
    df = pd.DataFrame({"label": ["GA", "GA", "EP", "EP"], "dataset": "moons",
                       "test_accuracy": [0.90, 0.92, 0.80, 0.83], "arch_name": "B",
                       "init": "uniform"})  # fmt: skip
    fit = fit_mixed_model(df, "moons", standardised=False)
    row = fit.table.iloc[0]
    assert fit.random_effects == () and (fit.test, fit.df) == ("t", 2.0)
    t, p = sps.ttest_ind([0.80, 0.83], [0.90, 0.92])
    assert row["stat"] == pytest.approx(t) and row["p"] == pytest.approx(p)
    half = row["ci_high"] - row["coef"]
    assert half == pytest.approx(sps.t(2).ppf(0.975) * row["std_err"])


# -- figure data ----------------------------------------------------------------------------------


def _runs_frame() -> pd.DataFrame:
    rows = []
    for label, base in (("GA", 0.9), ("GA (adaptive AB)", 0.8)):
        for arch in "AB":
            for seed, delta in enumerate((-0.02, 0.0, 0.02)):
                rows.append(
                    {
                        "spec": "fig3",
                        "label": label,
                        "dataset": "moons",
                        "arch_name": arch,
                        "seed": seed,
                        "key": f"{label}{arch}{seed}",
                        "init": "uniform",
                        "test_accuracy": base + delta,
                        "sparsity": 0.5 + delta,
                        "sparsity_before_post_prune": 0.4,
                        "classes": 2,
                        "method": "ga",
                    }
                )
    return pd.DataFrame(rows)


def test_summarise_gives_mean_std_and_t_interval():
    frame = summarise(pd.DataFrame({"g": ["a"] * 3, "v": [0.88, 0.90, 0.92]}), ["g"], "v")
    row = frame.iloc[0]
    assert (
        row["mean"] == pytest.approx(0.90) and row["std"] == pytest.approx(0.02) and row["n"] == 3
    )
    half = 4.302653 * 0.02 / np.sqrt(3)  # t(0.975, 2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.90 - half, 0.90 + half))


def test_prepare_fig3_keeps_spec_order_and_filters_the_spec():
    runs = pd.concat([_runs_frame(), _runs_frame().assign(spec="fig6", test_accuracy=0.1)])
    frame = prepare_fig3(runs)
    assert set(frame["metric"]) == {"test_accuracy", "sparsity"}
    assert list(frame["label"].cat.categories) == ["GA", "GA (adaptive AB)"]
    ranked = runs.assign(label_rank=runs["label"].map({"GA": 1, "GA (adaptive AB)": 0}))
    assert list(prepare_fig3(ranked)["label"].cat.categories) == ["GA (adaptive AB)", "GA"]
    acc = frame[(frame["metric"] == "test_accuracy") & (frame["arch_name"] == "A")].set_index(
        "label"
    )
    assert acc.loc["GA", "mean"] == pytest.approx(0.9) and acc.loc[
        "GA (adaptive AB)", "mean"
    ] == pytest.approx(0.8)
    assert (acc["n"] == 3).all()
    assert len(frame) == 2 * 2 * 2  # metrics x archs x labels


def test_prepare_fig4_picks_the_lowest_seed_and_names_the_curves():
    runs = pd.DataFrame(
        [
            {"spec": "fig4", "key": "k1", "seed": 1, "label": "x"},
            {"spec": "fig4", "key": "k0", "seed": 0, "label": "x"},
        ]
    )
    history = pd.DataFrame(
        {
            "key": ["k0", "k0", "k1"],
            "generation": [1, 2, 1],
            "best_performance": [14.0, 6.9, 9.0],  # the loss objective's cross-entropy
            "best_accuracy": [0.5, 0.7, 0.1],
            "best_sparsity": [0.2, 0.3, 0.1],
            "max_sparsity": [0.4, 0.5, 0.1],
            "best_sparsity_so_far": [0.2, 0.3, 0.1],
            "diversity": [0.1, 0.1, 0.1],
        }
    )
    frame = prepare_fig4(runs, history)
    assert set(frame["key"]) == {"k0"}
    assert set(frame["series"]) == set(HISTORY_SERIES.values())
    acc = frame[frame["series"] == "accuracy of the fittest"]
    assert acc["value"].tolist() == [0.5, 0.7]  # the accuracy, not the loss


def test_prepare_fig5_fig9_fig11():
    runs = _runs_frame().assign(spec="fig5")
    runs.loc[runs["arch_name"] == "B", "init"] = "kaiming-normal"
    f5 = prepare_fig5(runs)
    assert set(f5["init"]) == {"uniform", "kaiming-normal"} and set(f5["metric"]) == {
        "test_accuracy"
    }
    blobs = pd.DataFrame(
        [
            {
                "spec": "fig9",
                "label": lab,
                "dataset": "blobs",
                "classes": c,
                "seed": s,
                "test_accuracy": 1 - c / 20 - (0.1 if lab == "EP (50%)" else 0),
            }
            for lab in ("GA (loss)", "EP (50%)")
            for c in (2, 5, 10)
            for s in range(2)
        ]
    )
    f9 = prepare_fig9(blobs).set_index(["label", "classes"])
    assert f9.loc[("EP (50%)", 10), "mean"] == pytest.approx(0.4)
    assert f9.loc[("GA (loss)", 2), "std"] == pytest.approx(0.0)
    f11 = prepare_fig11(_runs_frame().assign(spec="fig11"))
    assert list(f11["stage"].cat.categories) == ["before", "after"]
    before = f11[f11["stage"] == "before"]["mean"]
    after = f11[f11["stage"] == "after"]["mean"]
    assert np.allclose(before, 0.4) and np.allclose(after, 0.5)


# -- report and CLI -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep folder with fig3-, fig4-, fig5- and fig6-shaped specs run by the stand-in job."""
    out = tmp_path_factory.mktemp("swept")
    specs = []
    for name in ("fig3", "fig4", "fig5", "fig6", "fig9", "fig11"):
        spec = load_spec(name)
        specs.append(spec)
    run_sweep(specs, "quick", out, executor=InlineExecutor(), fn=fake_job, progress=False)
    return out


def test_report_is_self_contained_with_figures_tables_and_provenance(swept, tmp_path):
    summary = build_report([swept], tmp_path / "report.html")
    page = summary.path.read_text()
    assert summary.figures == ("fig3", "fig4", "fig5", "fig6", "fig9", "fig11")
    assert page.count("<img") == 6 and page.count("data:image/png;base64,") == 6
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "id='stats-fig6-moons'" in page.replace('"', "'") and "91.6%" in page
    fig6 = page.split('id="summary-fig6"')[1].split("</table>")[0]
    assert (
        fig6.index("EP (50%)") < fig6.index("EP (adapted)") < fig6.index("Backprop")
    )  # spec order
    assert page.count("<table") == summary.tables
    assert "table[id='summary-fig6'] td:nth-child(1)" in page  # text columns left-aligned
    assert "abc123" in page and "&quot;seed&quot;" in page  # provenance: git revision, config
    assert "machines: Test CPU, 2 cores" in page
    # the ceiling of test accuracy on the generated datasets, under each figure of them
    ceiling = "classifier there is, scores 100.00% on moons and 92.37% on circles, on the test sets"
    assert ceiling in page and page.count(ceiling) < summary.tables
    assert re.search(r"Runs: \d+ \(moons, circles; [A-D, ]+\), seeds per cell", page)
    # quick-profile sweeps: the paper's findings are hints, marked so, not verdicts
    claims = page.split('id="claims-fig6"')[1].split("</table>")[0]
    assert "(quick)" in claims and "<td>yes</td>" not in claims and "<td>no</td>" not in claims
    assert "Quick profile: fewer seeds" in page
    # fig3's quick profile does not post-prune: its sparsity is not judged against the paper's
    fig3 = page.split('id="paper-fig3"')[1].split("</table>")[0]
    sparsity_rows = [r for r in fig3.split("<tr>") if "<td>sparsity</td>" in r]
    assert sparsity_rows and all("no post-pruning in these runs" in r for r in sparsity_rows)
    assert all("(quick)" not in r for r in sparsity_rows)
    with Store(tmp_path / "other") as other:  # the same spec swept elsewhere (another profile)
        other.note_spec("fig3", "paper", "fig3.yaml")
    with pytest.raises(EvopruneError, match="pass them to report separately"):
        build_report([swept, tmp_path / "other"], tmp_path / "mixed.html")
    for name in summary.figures:
        assert (tmp_path / "report_figures" / f"{name}.png").stat().st_size > 1000
        assert (
            (tmp_path / "report_figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
        )


def test_a_spec_of_ones_own_gets_its_arms_side_by_side(tmp_path):
    own = {**TINY_SPEC, "name": "mine", "title": "My comparison"}
    own.pop("figure")
    run_sweep(parse_spec(own), "quick", tmp_path / "s", executor=InlineExecutor(), fn=fake_job,
              progress=False)  # fmt: skip
    summary = build_report([tmp_path / "s"], tmp_path / "r.html")
    page = summary.path.read_text()
    assert summary.figures == ("mine",) and "<h1>My comparison</h1>" in page
    assert "Reproducing Schönberger" not in page  # not one of the paper's figures
    table = page.split('id="summary-mine"')[1].split("</table>")[0]
    assert table.index(">GA<") < table.index(">EP (50%)<") < table.index(">EP (adapted)<")
    assert "moons (2 classes)" in table and "Mixed model" in page
    with pytest.raises(EvopruneError, match="figure: expected one of fig3,"):
        parse_spec({**own, "figure": "mine"})


def test_a_spec_named_as_a_figure_gets_the_arms_unless_it_names_one_that_cannot_draw_it(
    tmp_path, capsys
):
    from evoprune.cli import main

    own = {**TINY_SPEC, "name": "fig11"}  # a name of the catalogue, no `figure:`
    own.pop("figure")
    assert parse_spec(own).figure == "arms"
    run_sweep(parse_spec(own), "quick", tmp_path / "s", executor=InlineExecutor(), fn=fake_job,
              progress=False)  # fmt: skip
    page = build_report([tmp_path / "s"], tmp_path / "r.html").path.read_text()
    assert "moons (2 classes)" in page and "Fig. 11" not in page  # the arms, not Fig. 11
    run_sweep(parse_spec({**own, "name": "mine", "figure": "fig11"}), "quick", tmp_path / "t",
              executor=InlineExecutor(), fn=fake_job, progress=False)  # fmt: skip
    capsys.readouterr()
    assert main(["report", str(tmp_path / "t"), "--out", str(tmp_path / "t.html")]) == 2
    err = capsys.readouterr().err
    assert "report: mine: figure fig11 cannot draw these runs (ValueError: " in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_spec_name_with_quotes_ampersands_and_slashes_makes_plain_ids_and_files(tmp_path):
    from html.parser import HTMLParser

    own = {**TINY_SPEC, "name": 'mine "v2" & co/b'}
    own.pop("figure")
    run_sweep(parse_spec(own), "quick", tmp_path / "s", executor=InlineExecutor(), fn=fake_job,
              progress=False)  # fmt: skip
    summary = build_report([tmp_path / "s"], tmp_path / "r.html")
    ids = []

    class Tables(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "table":
                ids.append(dict(attrs).get("id"))

    page = summary.path.read_text()
    Tables().feed(page)
    assert "summary-mine-v2-co-b" in ids
    assert "table[id='summary-mine-v2-co-b'] td:nth-child(1)" in page  # its rule matches it
    assert (tmp_path / "r_figures" / "mine-v2-co-b.png").is_file()


def test_cli_results_stats_report(swept, tmp_path, capsys):
    from evoprune.cli import main

    assert main(["results", str(swept), "--csv", str(tmp_path / "r.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "r.csv")) == len(load_results(swept))
    capsys.readouterr()
    assert main(["results", str(swept)]) == 0
    lines = capsys.readouterr().out.splitlines()
    label, acc = lines[0].index("label"), lines[0].index("test_acc") + len("test_acc")
    assert any(line[label:].startswith("GA (adaptive AB)") for line in lines[1:])  # left-aligned
    assert all(line[acc - 1].isdigit() for line in lines[1:])  # numbers end under their header
    assert main(["results", str(swept), "--metric", "train_loss"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert (
        header.split()[-4:] == ["train_loss", "std", "sparsity", "n"]
        and len(rows) == len(lines) - 1
    )
    assert main(["results", str(swept), "--metric", "nope"]) == 2
    assert "--metric: no numeric column 'nope'" in capsys.readouterr().err
    assert main(["stats", str(swept)]) == 0
    out = capsys.readouterr().out
    assert "moons" in out and "circles" in out and "EP (adapted)" in out and "ci_high" in out
    assert main(["stats", str(swept), "--metric", "test_acc"]) == 0  # the name results prints
    assert capsys.readouterr().out == out
    assert main(["stats", str(swept), "--metric", "acc"]) == 2
    assert "e.g. test_accuracy, train_accuracy" in capsys.readouterr().err  # the headline first
    assert main(["stats", str(swept), "--metric", "dataset"]) == 2  # a text column
    assert "--metric: no numeric column 'dataset'" in capsys.readouterr().err
    assert main(["report", str(swept), "--out", str(tmp_path / "r.html")]) == 0
    assert "6 figures" in capsys.readouterr().out


def study_job(job: dict, out: Path) -> dict:
    """A run of a study: no dataset, no accuracy, only its own value."""
    result = {"method": job["method"], "seed": job["seed"], "config": job,
              "best_value": float(job["dim"] + job["seed"]), "wall_seconds": 0.01}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result))
    return result


def test_results_and_stats_refuse_one_spec_from_two_folders_as_the_report_does(tmp_path, capsys):
    from evoprune.cli import main

    for profile in ("quick", "paper"):  # two budgets of one spec
        run_sweep(parse_spec(TINY_SPEC), profile, tmp_path / profile, executor=InlineExecutor(),
                  fn=fake_job, progress=False)  # fmt: skip
    folders = [str(tmp_path / "quick"), str(tmp_path / "paper")]
    for command in ("results", "stats", "report"):
        capsys.readouterr()
        assert main([command, *folders]) == 2
        err = capsys.readouterr().err
        assert f"{command}: spec tiny is in both {folders[0]} and {folders[1]}; pass them" in err
    assert main(["results", folders[0], folders[0]]) == 0  # the same folder twice is one


def test_results_of_a_study_group_by_its_own_axes(tmp_path, capsys):
    from evoprune.cli import main

    spec = {"name": "study", "grid": {"dim": [10, 2], "function": ["sphere"],
                                      "arm": [{"label": "CMA-ES", "method": "minimize",
                                               "optimizer": "cmaes"}]},
            "profiles": {"quick": {"seeds": 2}}}  # fmt: skip
    run_sweep(parse_spec(spec), "quick", tmp_path, executor=InlineExecutor(), fn=study_job,
              progress=False)  # fmt: skip
    assert main(["results", str(tmp_path)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["spec", "label", "dim", "function", "best_value", "std", "n"]
    assert [row.split()[2:5] for row in rows] == [["10", "sphere", "10.5"], ["2", "sphere", "2.5"]]


def test_a_spec_narrowed_from_the_command_line_keeps_its_runs_keys():
    spec = parse_spec(TINY_SPEC)
    full = {r.key: r for r in spec.runs("quick")}
    small = spec.narrowed("quick", seeds=[1], only={"arch": ["B"]}, arms=["GA", "EP (50%)"])
    runs = small.runs("quick")
    assert {r.key for r in runs} <= set(full)
    assert {(r.label, r.job["arch"], r.job["seed"]) for r in runs} == {
        (label, "B", 1) for label in ("GA", "EP (50%)")
    } and len(runs) == 2 * 2  # two datasets
    assert small.labels() == ["GA", "EP (50%)"] and spec.labels()[-1] == "EP (adapted)"
    # a command-line choice replaces the profile's own `only` for that axis
    profiles = {"quick": {"seeds": 1, "only": {"arch": ["B"]}}}
    wider = parse_spec({**TINY_SPEC, "profiles": profiles}).narrowed("quick", only={"arch": ["A"]})
    assert {r.job["arch"] for r in wider.runs("quick")} == {"A"}
    assert len(spec.narrowed("quick", seeds=4).runs("quick")) == 2 * len(full)


def test_an_arm_may_not_wait_for_an_arm_that_waits_itself():
    """References resolve in one second stage: a chain would never fill in."""
    arms = [*TINY_SPEC["grid"]["arm"], {"label": "EP (chained)", "method": "edge-popup",
            "sparsity": {"mean_of": "EP (adapted)", "field": "sparsity"}}]  # fmt: skip
    with pytest.raises(EvopruneError, match="arm 'EP \\(adapted\\)' itself waits"):
        parse_spec({**TINY_SPEC, "grid": {**TINY_SPEC["grid"], "arm": arms}})


def test_narrowing_one_axis_keeps_the_profiles_only_for_the_others():
    """`--only dataset` replaces the profile's `only` for dataset alone: its arch stays cut."""
    profiles = {"quick": {"seeds": 1, "only": {"arch": ["B"]}}}
    spec = parse_spec({**TINY_SPEC, "profiles": profiles}).narrowed(
        "quick", only={"dataset": ["moons"]}
    )
    assert {(r.job["dataset"], r.job["arch"]) for r in spec.runs("quick")} == {("moons", "B")}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"only": {"arch": ["E"]}}, "--only arch: expected some of A, B, got 'E'"),
        ({"only": {"arc": ["A"]}}, "--only arc: not an axis of tiny; expected one of arch,"),
        ({"arms": ["GB"]}, "--arm: expected some of 'GA', 'EP (50%)', 'EP (adapted)', got 'GB'"),
        ({"arms": ["EP (adapted)"]}, "--arm: 'EP (adapted)' waits for the runs of 'GA'"),
        ({"seeds": -1}, "seeds: expected a positive count, got -1"),
    ],
)
def test_a_bad_narrowing_names_the_option(options, message):
    with pytest.raises(EvopruneError, match=re.escape(message)):
        parse_spec(TINY_SPEC).narrowed("quick", **options)


def test_only_takes_a_boolean_as_yaml_spells_it_and_metric_names_no_bookkeeping(tmp_path, capsys):
    from evoprune.cli import main

    spec = parse_spec({**TINY_SPEC, "grid": {**TINY_SPEC["grid"], "normalize": [True, False]}})
    for text in ("true", "True", "yes"):
        runs = spec.narrowed("quick", only={"normalize": [text]}).runs("quick")
        assert {r.job["normalize"] for r in runs} == {True}, text
    for text in ("True,False", "true,false", "False,true"):  # a comma list, in either spelling
        runs = spec.narrowed("quick", only={"normalize": [text]}).runs("quick")
        assert {r.job["normalize"] for r in runs} == {True, False}, text
    nulls = parse_spec({**TINY_SPEC, "grid": {**TINY_SPEC["grid"], "classes": [None, 2]}})
    for text in ("None,2", "null"):
        assert nulls.narrowed("quick", only={"classes": [text]}).runs("quick"), text
    with pytest.raises(EvopruneError, match="--only normalize: expected some of true, false, got "
                       "'maybe'"):  # fmt: skip
        spec.narrowed("quick", only={"normalize": ["maybe"]})
    narrowed = spec.narrowed("quick", only={"normalize": ["false"], "dataset": ["moons"]})
    run_sweep(narrowed, "quick", tmp_path, executor=InlineExecutor(), fn=fake_job, progress=False)
    capsys.readouterr()
    assert main(["stats", str(tmp_path), "--metric", "nope"]) == 2
    err = capsys.readouterr().err
    assert "e.g. " in err and "normalize" not in err


def test_cli_sweep_narrows_a_shipped_spec(capsys):
    from evoprune.cli import main

    args = ["sweep", "fig3", "--dry-run", "--seeds", "2,5", "--only", "dataset=moons"]
    assert main([*args, "--only", "arch=A,C", "--arm", "GA"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("\t") for line in lines]
    assert len(rows) == 4 and {r[1] for r in rows} == {"GA"}
    assert all("'dataset': 'moons'" in r[3] for r in rows)
    assert sorted(r[3].count("'seed': 2") + 2 * r[3].count("'seed': 5") for r in rows) == [
        1,
        1,
        2,
        2,
    ]
    for bad in (["--seeds", "x"], ["--seeds", "0"], ["--only", "arch"], ["--only", "arch=E"]):
        assert main(["sweep", "fig3", "--dry-run", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("evoprune sweep: error: --") and "\n" not in err, bad


def test_cli_sweep_only_keeps_a_value_with_commas_whole(capsys):
    from evoprune.cli import main

    assert main(["sweep", "scale", "--dry-run", "--only", "arch=784,300,10,conv"]) == 0
    archs = set(re.findall(r"'arch': '([^']*)'", capsys.readouterr().out))
    assert archs == {"784,300,10", "conv"}  # not 784,300,100,10
    assert main(["sweep", "scale", "--dry-run", "--only", "arch=784,30"]) == 2
    assert (
        "expected some of 784,300,10, 784,300,100,10, conv, got '784,30'" in capsys.readouterr().err
    )


def test_cli_sweep_quiet_drops_the_progress_not_the_summary(tmp_path, capsys):
    from evoprune.cli import main

    spec = _write(tmp_path, """
        name: mini
        grid:
          function: [sphere]
          dim: [2]
          arm:
            - {label: random, method: minimize, optimizer: random, budget: 50}
        profiles:
          quick: {seeds: 1}
    """)  # fmt: skip
    for flags in ([], ["--quiet"]):
        out = tmp_path / f"s{len(flags)}"
        assert main(["sweep", str(spec), "--out", str(out), "--workers", "1", *flags]) == 0
        captured = capsys.readouterr()
        assert f"sweep mini [quick] -> {out}: 1 runs" in captured.out
        assert ("sweep mini [quick]: 1/1 runs" in captured.err) == (not flags)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from evoprune.cli import main

    assert main(["sweep", "fig99", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evoprune sweep: error: spec:") and "\n" not in err
    assert main(["results", str(tmp_path / "missing")]) == 2
    assert main(["sweep", "fig3", "--workers", "0"]) == 2
    assert main(["sweep", "fig4", "--dry-run"]) == 0
    assert "circles" in capsys.readouterr().out


# -- the report in a real browser -----------------------------------------------------------------


def _chromium() -> str:
    """Debian's chromium; installed with apt-get when missing (skip with the reason if impossible)."""
    import shutil

    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=600
        )
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip(
        "headless Chromium is not installed and `apt-get install -y chromium` was not possible"
    )


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

COUNT_IMAGES = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var tables = document.querySelectorAll('table').length;
  document.body.setAttribute('data-check', 'images=' + imgs.length + ';loaded=' + ok + ';tables=' + tables);
});
</script>"""


def test_report_opens_in_headless_chromium(swept, tmp_path):
    browser = _chromium()
    summary = build_report([swept], tmp_path / "report.html")
    checked = tmp_path / "checked.html"  # the report itself has no script; the check adds one
    checked.write_text(summary.path.read_text().replace("</body>", COUNT_IMAGES + "</body>"))
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*common, "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = dict(
        kv.split("=") for kv in dom.stdout.split('data-check="')[1].split('"')[0].split(";")
    )
    assert int(found["images"]) == len(summary.figures) == 6
    assert found["loaded"] == found["images"], "a figure did not load"
    assert int(found["tables"]) == summary.tables
    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,2400", summary.path.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000  # a page with figures, not a blank one


def test_a_second_sweep_into_the_same_folder_is_refused_while_one_runs(tmp_path):
    from evoprune.experiments.sweep import _lock

    refused = pytest.raises(EvopruneError, match="another sweep is writing to it")
    with _lock(tmp_path), refused:  # as a sweep running in another process holds the lock
        run_sweep(parse_spec(TINY_SPEC), "quick", tmp_path, executor=InlineExecutor(),
                  fn=fake_job, progress=False)  # fmt: skip
    s = run_sweep(parse_spec(TINY_SPEC), "quick", tmp_path, executor=InlineExecutor(),
                  fn=fake_job, progress=False)  # fmt: skip
    assert s.ran == 24  # free again once the first has ended


def test_a_sweep_logged_to_a_file_prints_lines_not_a_bar(tmp_path, capsys):
    run_sweep(parse_spec(TINY_SPEC), "quick", tmp_path, executor=InlineExecutor(), fn=fake_job)
    err = capsys.readouterr().err  # pytest's stderr is no terminal
    assert "sweep tiny [quick]: 24/24 runs, 0 s" in err and "\r" not in err


def test_a_sweep_over_a_data_file_runs_again_when_the_file_changes(tmp_path, monkeypatch):
    from evoprune.experiments.spec import load_spec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text(
        "a,b,label\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(40))
    )
    spec = {"name": "own", "grid": {"data": ["d.csv"], "target": ["label"], "arch": ["A"],
            "arm": [{"label": "GA", "method": "ga"}]}, "profiles": {"quick": {"seeds": 1}}}  # fmt: skip
    (tmp_path / "own.yaml").write_text(json.dumps(spec))
    before = load_spec(str(tmp_path / "own.yaml")).runs("quick")[0]
    assert before.job["data"] == str(tmp_path / "d.csv")  # absolute: workers may start elsewhere
    (tmp_path / "d.csv").write_text(
        "a,b,label\n" + "\n".join(f"{i},{i % 5},{i % 2}" for i in range(40))
    )
    after = load_spec(str(tmp_path / "own.yaml")).runs("quick")[0]
    assert before.key != after.key
    (tmp_path / "d.csv").unlink()
    with pytest.raises(EvopruneError, match="data: no such file"):
        load_spec(str(tmp_path / "own.yaml")).runs("quick")


@pytest.mark.parametrize(
    "target, rows, message",
    [
        ("lable", "1,2,0\n3,4,1\n5,6,0\n7,8,1\n", "d.csv: no target column 'lable'"),
        ("label", "1,,0\n3,4,1\n5,6,0\n7,8,1\n", "column 'b' has empty (NaN) values on line 2"),
        ("label", "1,2,0\n3,4,0\n5,6,0\n7,8,0\n", "the target has only one class"),
    ],
)
def test_a_data_file_a_sweep_cannot_read_is_refused_at_load(tmp_path, target, rows, message):
    """Before, each run of the sweep failed on it (exit 1), after the sweep folder was made."""
    from evoprune.experiments.spec import load_spec

    (tmp_path / "d.csv").write_text("a,b,label\n" + rows)
    spec = {"name": "own", "grid": {"data": [str(tmp_path / "d.csv")], "target": [target],
            "arch": ["A"], "arm": [{"label": "GA", "method": "ga"}]},
            "profiles": {"quick": {"seeds": 2}}}  # fmt: skip
    (tmp_path / "own.yaml").write_text(json.dumps(spec))
    with pytest.raises(
        EvopruneError, match=rf"own.yaml: arm 'GA' \(profile quick\): .*{re.escape(message)}"
    ):
        load_spec(str(tmp_path / "own.yaml"))


def test_a_sweep_over_a_model_file_runs_again_when_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.pt").write_bytes(b"first model")
    spec = {"name": "own", "grid": {"dataset": ["digits"], "arm": [
        {"label": "magnitude", "method": "magnitude", "model": "m.pt", "sparsity": 0.5}]},
        "profiles": {"quick": {"seeds": 1}}}  # fmt: skip
    (tmp_path / "own.yaml").write_text(json.dumps(spec))
    before = load_spec(str(tmp_path / "own.yaml")).runs("quick")[0]
    assert before.job["model"] == str(tmp_path / "m.pt")  # absolute, as a data file's
    (tmp_path / "m.pt").write_bytes(b"retrained model")
    assert load_spec(str(tmp_path / "own.yaml")).runs("quick")[0].key != before.key
    (tmp_path / "m.pt").unlink()
    with pytest.raises(EvopruneError, match="model: no such file"):
        load_spec(str(tmp_path / "own.yaml"))


def test_confidence_intervals_of_a_fraction_stay_in_0_1():
    from evoprune.experiments.tables import summarise

    d = pd.DataFrame({"g": ["a", "a"], "test_accuracy": [0.8, 1.0], "wall_seconds": [0.1, 5.0],
                      "coef": [0.1, 5.0]})  # fmt: skip
    acc = summarise(d, ["g"], "test_accuracy").iloc[0]
    assert acc["ci_high"] == 1.0 and 0.0 <= acc["ci_low"] < 0.8
    seconds = summarise(d, ["g"], "wall_seconds").iloc[0]  # a time: not below 0
    assert seconds["ci_low"] == 0.0 and seconds["ci_high"] > 5.0
    assert summarise(d, ["g"], "coef").iloc[0]["ci_low"] < 0  # anything else: as is


def test_results_of_an_emptied_store_points_to_its_run_folders(tmp_path, capsys):
    from evoprune.cli import main

    (tmp_path / "results.sqlite").write_bytes(b"")
    (tmp_path / "runs" / "abc").mkdir(parents=True)
    (tmp_path / "runs" / "abc" / "result.json").write_text("{}")
    assert main(["results", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "no finished runs" in captured.out
    assert "1 finished run folders are not in its store" in captured.err


def test_stats_fits_each_grid_point_apart_from_the_random_effects():
    # B beats A at a 50% pruning target and loses at 98%: pooled, the two cancel out
    rng = np.random.default_rng(0)
    rows = []
    for target, means in ((0.5, (0.8, 0.9)), (0.98, (0.6, 0.5))):
        for label, mean in zip("AB", means, strict=True):
            for arch in "ABCD":
                rows.append({"dataset": "digits", "label": label, "arch_name": arch,
                             "init": "uniform", "axes": json.dumps({"arch": arch, "sparsity": target}),
                             "test_accuracy": mean + rng.normal(0, 0.01)})  # fmt: skip
    fits = mixed_model_tables(pd.DataFrame(rows), order=["A", "B"])
    assert [f.dataset for f in fits] == ["digits (sparsity=0.5)", "digits (sparsity=0.98)"]
    assert fits[0].table["coef"].iloc[0] > 0 > fits[1].table["coef"].iloc[0]
    assert all(f.random_effects == ("arch_name",) for f in fits)  # arch stays pooled


def test_stats_takes_each_specs_own_first_arm_as_the_reference():
    """Ranks count within a spec: one order over two specs put the other spec's first arm
    ("magnitude", rank 0 there, rank 2 here) before this spec's GA."""
    rng = np.random.default_rng(1)
    rows = []
    for spec, labels in (
        ("pruning", ["magnitude", "CMA"]),
        ("mixed", ["GA", "Local", "magnitude"]),
    ):
        for rank, label in reversed(list(enumerate(labels))):  # rows not in rank order
            for seed in range(3):
                rows.append({"spec": spec, "dataset": spec, "label": label, "label_rank": rank,
                             "seed": seed, "test_accuracy": 0.8 + rng.normal(0, 0.01)})  # fmt: skip
    fits = {f.dataset: f for f in mixed_model_tables(pd.DataFrame(rows))}
    first = {
        name: (f.table["reference"].iloc[0], f.table["target"].iloc[0]) for name, f in fits.items()
    }
    assert first == {"mixed": ("GA", "Local"), "pruning": ("magnitude", "CMA")}


def test_colours_stay_distinct_for_a_spec_of_every_method():
    from evoprune.experiments.draw import hue_colors

    arms = pd.DataFrame({"label": [f"arm {i}" for i in range(12)]})
    assert len(set(hue_colors(arms, "label").values())) == 12  # 7 colours repeated from the 8th


def test_a_pruning_runs_history_caption_says_its_accuracy_is_before_fine_tuning():
    from evoprune.experiments.run_history import final_caption

    text = final_caption({"test_accuracy": 0.679, "test_accuracy_finetuned": 0.99,
                          "train_accuracy": 0.7, "sparsity": 0.98}, "result")  # fmt: skip
    assert text == (
        "result: test accuracy before fine-tuning 0.679, after 0.990, training "
        "accuracy before 0.700, sparsity 0.980"
    )
    assert (
        final_caption({"test_accuracy": 0.9}, "final ticket") == "final ticket: test accuracy 0.900"
    )


def test_a_fits_name_leaves_out_an_axis_its_runs_lack():
    rng = np.random.default_rng(3)
    runs = pd.DataFrame({"dataset": "digits", "label": ["A", "B"] * 4,
                         "axes": ['{"classes": 3}'] * 4 + ["{}"] * 4,  # a grid without classes
                         "test_accuracy": rng.normal(0.9, 0.01, 8)})  # fmt: skip
    assert [f.dataset for f in mixed_model_tables(runs)] == ["digits (classes=3)", "digits"]


def test_stats_skips_grid_points_with_one_run_of_each_algorithm():
    one_each = pd.DataFrame({"dataset": "moons", "label": ["A", "B"], "test_accuracy": [0.9, 0.8]})
    assert mixed_model_tables(one_each) == []  # no noise to test against: no NaN table
    two_each = pd.concat([one_each, one_each.assign(test_accuracy=[0.91, 0.79])])
    assert len(mixed_model_tables(two_each)) == 1


def test_stats_fits_each_spec_apart_counts_a_run_once_and_skips_runs_without_the_metric():
    rng = np.random.default_rng(1)
    runs = pd.DataFrame({"dataset": "moons", "label": ["A", "B"] * 3, "key": list("abcdef"),
                         "generations": [40, None] * 3,
                         "test_accuracy": 0.9 + rng.normal(0, 0.01, 6)})  # fmt: skip
    shared = pd.concat([runs.assign(spec="fig10"), runs.assign(spec="fig11")])  # one run, 2 specs
    fits = mixed_model_tables(pd.concat([shared, shared]))  # each run listed twice
    assert [(f.dataset, f.n) for f in fits] == [("fig10: moons", 6), ("fig11: moons", 6)]
    # the metric only one arm reports: that grid point is skipped, not an error
    assert mixed_model_tables(shared, value="generations") == []
    assert mixed_model_tables(shared, value="no_such_metric") == []


def test_cli_stats_fits_two_specs_whose_arms_share_labels_apart(tmp_path, capsys):
    from evoprune.cli import main

    for name, objective in (("a", "accuracy"), ("b", "loss")):  # "GA" is another GA in each
        spec = {"name": name, "grid": {"dataset": ["moons"], "arch": ["A", "B"], "arm": [
            {"label": "GA", "method": "ga", "objective": objective},
            {"label": "EP", "method": "edge-popup", "sparsity": 0.5}]},
            "profiles": {"quick": {"seeds": 2}}}  # fmt: skip
        run_sweep(parse_spec(spec), "quick", tmp_path, executor=InlineExecutor(), fn=fake_job,
                  progress=False)  # fmt: skip
    capsys.readouterr()
    assert main(["stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a: moons: standardised test_accuracy ~ algorithm, n = 8" in out
    assert "b: moons: standardised test_accuracy ~ algorithm, n = 8" in out
    assert main(["stats", str(tmp_path), "--spec", "a"]) == 0
    assert "\nmoons: standardised test_accuracy ~ algorithm, n = 8" in capsys.readouterr().out


def test_stats_fits_runs_without_a_dataset_by_their_spec():
    rng = np.random.default_rng(2)
    runs = pd.DataFrame({"dataset": None, "spec": "minimize", "label": ["GA", "random"] * 3,
                         "key": list("abcdef"), "best_value": rng.normal(1, 0.1, 6)})  # fmt: skip
    (fit,) = mixed_model_tables(runs, value="best_value")
    assert fit.dataset == "minimize" and fit.n == 6


def test_results_all_lists_the_errors_when_every_run_failed(tmp_path, capsys):
    from evoprune.cli import main

    def failing(job, out):
        raise ValueError("no such thing")

    run_sweep(load_spec(_write(tmp_path, GOOD_YAML)), "quick", tmp_path / "s", fn=failing,
              executor=InlineExecutor(), progress=False)  # fmt: skip
    assert main(["results", str(tmp_path / "s"), "--all"]) == 0
    out = capsys.readouterr().out
    assert "no finished runs; 1 failed" in out and "ValueError: no such thing" in out


def test_the_store_keeps_a_result_as_strict_json(tmp_path):
    # a run recorded live held NaN in its result column, one recovered from its folder null
    store = Store(tmp_path / "results.sqlite")
    store.record("k", spec="s", label="L", job={"method": "ga", "seed": 0},
                 result={"test_loss": float("nan"), "test_accuracy": 0.5})  # fmt: skip

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    text = store.db.execute("SELECT result FROM runs WHERE key = 'k'").fetchone()[0]
    assert json.loads(text, parse_constant=refuse) == {"test_loss": None, "test_accuracy": 0.5}
    store.close()
