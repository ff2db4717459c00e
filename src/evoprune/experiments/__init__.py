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

The names below load on first use (PEP 562): `evoprune sweep --help` reads `EXECUTORS` and
`PROFILES` and need not wait for the report's pandas, matplotlib and torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "EXECUTORS": "evoprune.experiments.executors",
    "LocalExecutor": "evoprune.experiments.executors",
    "RayExecutor": "evoprune.experiments.executors",
    "make_executor": "evoprune.experiments.executors",
    "build_report": "evoprune.experiments.report",
    "PROFILES": "evoprune.experiments.spec",
    "Run": "evoprune.experiments.spec",
    "Spec": "evoprune.experiments.spec",
    "job_key": "evoprune.experiments.spec",
    "load_spec": "evoprune.experiments.spec",
    "parse_spec": "evoprune.experiments.spec",
    "spec_names": "evoprune.experiments.spec",
    "fit_mixed_model": "evoprune.experiments.stats",
    "mixed_model_tables": "evoprune.experiments.stats",
    "Store": "evoprune.experiments.store",
    "SweepSummary": "evoprune.experiments.sweep",
    "run_sweep": "evoprune.experiments.sweep",
    "load_history": "evoprune.experiments.tables",
    "load_results": "evoprune.experiments.tables",
    "summarise": "evoprune.experiments.tables",
}
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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evoprune.experiments' has no attribute {name!r}")
