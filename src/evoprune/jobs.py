"""A job is a plain JSON-able dict naming a method and its settings; `run_job` runs it.

The CLI, the sweep runner and the executors (local, Ray) all go through `run_job`, so a job
gives the same result however it is launched. Keys common to every method::

    method    "ga" | "ga-adaptive" | "edge-popup" | "backprop"
    dataset   a name in `evoprune.data.DATASETS`, or "file" with "data" (path) and "target"
    classes   class count (datasets that have a choice), default: the dataset's default
    normalize true/false/null (null: the paper's default for the dataset)
    data_dir  folder for mnist (optional)
    arch      "A".."D" or "2,75,2" or a list of widths
    seed      run seed (network init, search and split randomness all derive from it)
    init      "uniform" | "kaiming-normal" | "signed-constant"

Method-specific keys are listed by each runner; an unknown key is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from evoprune.data.registry import Dataset, load_dataset, load_file
from evoprune.errors import EvopruneError

COMMON_KEYS = {
    "method",
    "dataset",
    "classes",
    "normalize",
    "data",
    "target",
    "data_dir",
    "arch",
    "seed",
    "init",
}

Runner = Callable[[dict[str, Any], "Path | None", bool], dict[str, Any]]


def _ga(job: dict[str, Any], out: Path | None, progress: bool) -> dict[str, Any]:
    from evoprune.ga.job import run_ga_job

    return run_ga_job(job, out, progress)


def _edge_popup(job: dict[str, Any], out: Path | None, progress: bool) -> dict[str, Any]:
    from evoprune.baselines.jobs import run_edge_popup_job

    return run_edge_popup_job(job, out, progress)


def _backprop(job: dict[str, Any], out: Path | None, progress: bool) -> dict[str, Any]:
    from evoprune.baselines.jobs import run_backprop_job

    return run_backprop_job(job, out, progress)


METHODS: dict[str, Runner] = {
    "ga": _ga,
    "ga-adaptive": _ga,
    "edge-popup": _edge_popup,
    "backprop": _backprop,
}


def run_job(
    job: dict[str, Any], out: str | Path | None = None, progress: bool = False
) -> dict[str, Any]:
    """Run one job; write its folder to `out` if given; return its result dict."""
    method = job.get("method")
    if method not in METHODS:
        raise EvopruneError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    return METHODS[method](dict(job), Path(out) if out is not None else None, progress)


def check_keys(job: dict[str, Any], allowed: set[str]) -> None:
    """Reject keys a method does not know (a typo must not silently fall back to a default)."""
    unknown = sorted(set(job) - COMMON_KEYS - allowed)
    if unknown:
        raise EvopruneError(
            f"job for {job.get('method')!r}: unknown key(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(COMMON_KEYS | allowed))}"
        )


def job_dataset(job: dict[str, Any]) -> Dataset:
    """The dataset a job names (built-in or the user's file)."""
    if job.get("data"):
        return load_file(
            job["data"],
            job.get("target"),
            int(job.get("seed", 0)),
            bool(job.get("normalize") or False),
        )
    if not job.get("dataset"):
        raise EvopruneError("dataset: give a dataset name (--dataset) or a file (--data)")
    return load_dataset(
        job["dataset"], job.get("classes"), job.get("normalize"), job.get("data_dir")
    )
