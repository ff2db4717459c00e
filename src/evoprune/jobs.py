"""A job is a plain JSON-able dict naming a method and its settings; `run_job` runs it.

The CLI, the sweep runner and the executors (local, Ray) all go through `run_job`, so a job
gives the same result however it is launched. Keys common to every method
(`evoprune.jobkeys.COMMON_KEYS`)::

    method    a name in `METHODS`
    dataset   a name in `evoprune.data.DATASETS`, or "file" with "data" (path) and "target"
    classes   class count (datasets that have a choice), default: the dataset's default
    normalize true/false/null (null: the paper's default for the dataset)
    data_dir  folder for mnist (optional)
    arch      "A".."D" or "2,75,2" or a list of widths
    seed      run seed (network init, search and split randomness all derive from it)
    init      "uniform" | "kaiming-normal" | "signed-constant"

Method-specific keys are listed by each runner; an unknown key is an error.

The registry names each runner by module and attribute and imports it on first use: arrows
point one way (jobs -> runners -> jobkeys), and `import evoprune.jobs` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoprune.errors import EvopruneError
from evoprune.io import git_revision
from evoprune.jobkeys import COMMON_KEYS

Runner = Callable[[dict[str, Any], "Path | None", bool], dict[str, Any]]


@dataclass(frozen=True)
class Method:
    module: str  # where the runner lives, imported on first use
    runner: str  # run(job, out, progress) -> result dict; writes the run folder when out is set
    keys: str  # the module's set of method-specific job keys
    # check(job): its keys and values without its data, before any run (a spec at load time)
    check: str


_GA = Method("evoprune.ga.job", "run_ga_job", "GA_KEYS", "check_ga_job")
_PRUNE = Method("evoprune.pruning.job", "run_prune_job", "PRUNE_KEYS", "check_prune_job")

METHODS: dict[str, Method] = {
    # strong lottery tickets: the paper's GA, and the exact local search beyond it
    "ga": _GA,
    "ga-adaptive": _GA,
    "memetic": _GA,
    "local": _GA,
    # the paper's baselines
    "edge-popup": Method(
        "evoprune.baselines.jobs", "run_edge_popup_job", "EDGE_POPUP_KEYS", "check_edge_popup_job"
    ),
    "backprop": Method(
        "evoprune.baselines.jobs", "run_backprop_job", "BACKPROP_KEYS", "check_backprop_job"
    ),
    # pruning a network while or after training it
    "selection": Method(
        "evoprune.pruning.selection.job",
        "run_selection_job",
        "SELECTION_KEYS",
        "check_selection_job",
    ),
    "cmaes-synflow": _PRUNE,
    "cmaes-trainfit": _PRUNE,
    "magnitude": _PRUNE,
    "synflow": _PRUNE,
    "softmask": _PRUNE,
    "random": _PRUNE,
    # the optimiser studies
    "hpo": Method("evoprune.studies.jobs", "run_hpo_job", "HPO_KEYS", "check_hpo_job"),
    "minimize": Method(
        "evoprune.studies.jobs", "run_minimize_job", "MINIMIZE_KEYS", "check_minimize_job"
    ),
    "train-weights": Method(
        "evoprune.studies.jobs", "run_weights_job", "WEIGHTS_KEYS", "check_weights_job"
    ),
}


def _method(name: Any) -> Method:
    if name not in METHODS:
        raise EvopruneError(f"method: expected one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]


def runner(name: str | None) -> Runner:
    """The function that runs jobs of method `name`."""
    m = _method(name)
    return getattr(importlib.import_module(m.module), m.runner)


def method_keys(name: str) -> set[str]:
    """The job keys method `name` accepts besides `COMMON_KEYS`."""
    m = _method(name)
    return set(getattr(importlib.import_module(m.module), m.keys))


def check_job(job: dict[str, Any]) -> None:
    """What can be checked of a job without its data or a run: its method's keys and values
    (every method registers one)."""
    m = _method(job.get("method"))
    getattr(importlib.import_module(m.module), m.check)(job)


def run_job(
    job: dict[str, Any], out: str | Path | None = None, progress: bool = False
) -> dict[str, Any]:
    """Run one job; write its folder to `out` if given; return its result dict."""
    run = runner(job.get("method"))
    git_revision()  # read before the work: the code this process imported, not a later commit
    return run(dict(job), Path(out) if out is not None else None, progress)


__all__ = ["COMMON_KEYS", "METHODS", "Method", "check_job", "method_keys", "run_job", "runner"]
