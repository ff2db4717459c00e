"""Reproduce the paper's experiments: specs, sweeps (local or Ray), results store, statistics,
figures and an HTML report.

>>> from evoprune.experiments import load_spec
>>> len(load_spec("fig3").runs("quick")) > 0
True

Typical use::

    summary = run_sweep("fig3", profile="quick", out="runs/fig3")
    df = load_results("runs/fig3")              # one row per run, every metric
    fits = mixed_model_tables(load_results("runs/fig6"))
    build_report(["runs/fig3", "runs/fig6"], "report.html")
"""

from evoprune.experiments.executors import EXECUTORS, LocalExecutor, RayExecutor, make_executor
from evoprune.experiments.report import build_report
from evoprune.experiments.spec import (
    PROFILES,
    Run,
    Spec,
    job_key,
    load_spec,
    parse_spec,
    spec_names,
)
from evoprune.experiments.stats import fit_mixed_model, mixed_model_tables
from evoprune.experiments.store import Store
from evoprune.experiments.sweep import SweepSummary, run_sweep
from evoprune.experiments.tables import load_history, load_results, summarise

__all__ = [
    "EXECUTORS",
    "PROFILES",
    "LocalExecutor",
    "RayExecutor",
    "Run",
    "Spec",
    "Store",
    "SweepSummary",
    "build_report",
    "fit_mixed_model",
    "job_key",
    "load_history",
    "load_results",
    "load_spec",
    "make_executor",
    "mixed_model_tables",
    "parse_spec",
    "run_sweep",
    "spec_names",
    "summarise",
]
