"""Job runners for the optimiser studies (`evoprune.jobs.METHODS`: ``hpo``, ``minimize``,
``train-weights``): a job dict in, a results folder and result dict out.

hpo: ``sampler`` (tpe|cmaes|random), ``objective`` (train|synflow), ``space`` (low|high),
``trials`` (100), ``workers`` (1), ``storage`` (RDB URL; default a journal file in the folder),
``max_epochs`` (100), ``patience`` (10); the dataset is digits (70/15/15).

minimize: ``function``, ``dim``, ``optimizer`` (cmaes|ga|adam|sgd|random), ``budget``
(10^4 * dim); one seed per job. result.json: ``best_value``, ``success``,
``evaluations_to_success``; history.csv: the best value so far against the evaluations.

train-weights: ``optimizer`` (adam|sep-cmaes|ga), ``seconds`` (Adam: its own stop; the others
30), ``evaluations`` (a budget that gives the same weights on any machine; alone, no seconds),
``population`` (64), ``sigma`` (0.05); the dataset is digits (70/15/15).
"""

from __future__ import annotations

import math
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from evoprune.errors import EvopruneError
from evoprune.io import provenance
from evoprune.jobkeys import check_keys
from evoprune.results import write_run_dir

if TYPE_CHECKING:
    from evoprune.studies.hpo import HPOConfig
    from evoprune.studies.train_weights import WeightsOverrides

HPO_KEYS = {
    "sampler",
    "objective",
    "space",
    "trials",
    "workers",
    "storage",
    "max_epochs",
    "patience",
}
MINIMIZE_KEYS = {"function", "dim", "optimizer", "budget"}
WEIGHTS_KEYS = {"optimizer", "seconds", "evaluations", "population", "sigma"}


@overload
def _int(job: dict[str, Any], key: str, default: int) -> int: ...
@overload
def _int(job: dict[str, Any], key: str, default: None) -> int | None: ...
def _int(job: dict[str, Any], key: str, default: int | None) -> int | None:
    v = job.get(key, default)
    if v is None:
        if default is not None:  # set to None (null), which is not its default
            raise EvopruneError(f"{key}: expected an integer, got None")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise EvopruneError(f"{key}: expected an integer, got {v!r}")
    if isinstance(v, int):  # exact: a seed above 2**53 is not rounded through a float
        return v
    try:
        return int(str(v).strip())
    except ValueError:
        pass
    try:
        f = float(v)  # "1e4", 10.0
    except ValueError:
        raise EvopruneError(f"{key}: expected an integer, got {v!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise EvopruneError(f"{key}: expected an integer, got {v!r}")
    return int(f)


def _float(job: dict[str, Any], key: str, default: float | None) -> float | None:
    v = job.get(key, default)
    if v is None:
        return None
    try:
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    except (TypeError, ValueError):
        raise EvopruneError(f"{key}: expected a number, got {v!r}") from None


def _base(job: dict[str, Any], dataset: str | None, variant: str) -> dict[str, Any]:
    """The fields every method's result.json shares (`evoprune.results`); `variant` is the
    study's algorithm (its sampler or optimizer), also under the study's own key."""
    return {"method": job["method"], "variant": variant, "dataset": dataset,
            "seed": _int(job, "seed", 0), "config": job, **provenance()}  # fmt: skip


def _no_dataset_keys(job: dict[str, Any], allowed: tuple[str, ...] = ()) -> None:
    for key in ("classes", "data", "target", "data_dir", "arch", "init", "normalize"):
        if job.get(key) is not None:
            raise EvopruneError(f"job for {job['method']!r}: key {key!r} does not apply")
    if job.get("dataset") not in (None, *allowed):
        raise EvopruneError(
            f"dataset: expected {' or '.join(allowed) or 'none'} for {job['method']}, got {job['dataset']!r}"
        )


def check_hpo_job(job: dict[str, Any]) -> None:
    """An hpo job's keys and values, checked before any trial (a spec's arms at load time)."""
    _hpo_config(job)


def check_minimize_job(job: dict[str, Any]) -> None:
    """A minimize job's keys and values, checked before any evaluation."""
    from evoprune.studies.minimize import check

    check_keys(job, MINIMIZE_KEYS)
    _no_dataset_keys(job)
    for key in ("function", "dim", "optimizer"):
        if job.get(key) is None:
            raise EvopruneError(f"job for 'minimize': missing key {key!r}")
    dim = _int(job, "dim", None)
    assert dim is not None  # checked just above
    check(str(job["function"]), dim, str(job["optimizer"]), _int(job, "budget", None))


def check_weights_job(job: dict[str, Any]) -> None:
    """A train-weights job's keys and values, checked before any training."""
    _weights_overrides(job)


def _weights_overrides(job: dict[str, Any]) -> WeightsOverrides:
    """A train-weights job checked; the `WeightsConfig` fields it sets."""
    from evoprune.studies.choices import WEIGHT_METHODS
    from evoprune.studies.train_weights import WeightsConfig, check_config

    check_keys(job, WEIGHTS_KEYS)
    _no_dataset_keys(job, ("digits",))
    overrides: WeightsOverrides = {}
    sigma = _float(job, "sigma", None)
    if sigma is not None:
        if not 0 < sigma < 1e6:
            raise EvopruneError(
                f"sigma: expected a positive step size below 1e6, got {job['sigma']!r}"
            )
        overrides["sigma"] = sigma
    population = _int(job, "population", None)
    if population is not None:
        overrides["population"] = population
    evaluations = _int(job, "evaluations", None)
    if evaluations is not None:
        overrides["evaluations"] = evaluations
    seconds = _float(job, "seconds", None)
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise EvopruneError(f"seconds: expected a positive number of CPU seconds, got {seconds!r}")
    assert {f.name for f in fields(WeightsConfig)} >= set(overrides)
    optimizer = job.get("optimizer", "adam")
    if optimizer not in WEIGHT_METHODS:  # the job's name for WeightsConfig.method
        raise EvopruneError(
            f"optimizer: expected one of {', '.join(WEIGHT_METHODS)}, got {optimizer!r}"
        )
    check_config(WeightsConfig(method=optimizer, seconds=seconds, **overrides))
    return overrides


def _hpo_config(job: dict[str, Any]) -> HPOConfig:
    from evoprune.studies.hpo import HPOConfig

    check_keys(job, HPO_KEYS)
    _no_dataset_keys(job, ("digits",))
    cfg = HPOConfig(
        sampler=str(job.get("sampler", "tpe")),
        objective=str(job.get("objective", "train")),
        space=str(job.get("space", "low")),
        trials=_int(job, "trials", 100),
        seed=_int(job, "seed", 0),
        workers=_int(job, "workers", 1),
        storage=job.get("storage"),
        max_epochs=_int(job, "max_epochs", 100),
        patience=_int(job, "patience", 10),
    )
    return cfg


def run_hpo_job(job: dict[str, Any], out: Path | None, progress: bool = False) -> dict[str, Any]:
    import tempfile

    from evoprune.studies.hpo import run_study

    cfg = _hpo_config(job)
    if out is None:
        with tempfile.TemporaryDirectory() as tmp:
            summary = run_study(cfg, tmp, progress)
    else:
        summary = run_study(cfg, out, progress)
    history = summary.pop("history")
    result = {**_base(job, "digits", cfg.sampler), "sampler": cfg.sampler,
              "objective": cfg.objective, "space": cfg.space, "trials": cfg.trials,
              **summary}  # fmt: skip
    if out is not None:
        write_run_dir(out, result, history=history)
    return result


def run_minimize_job(
    job: dict[str, Any], out: Path | None, progress: bool = False
) -> dict[str, Any]:
    from evoprune.studies.minimize import minimize

    check_minimize_job(job)
    dim = _int(job, "dim", None)
    assert dim is not None  # a required key (check_minimize_job)
    r = minimize(str(job["function"]), dim, str(job["optimizer"]), _int(job, "budget", None),
                 _int(job, "seed", 0))  # fmt: skip
    result = {**_base(job, None, r.method), "function": r.function, "dim": r.dim,
              "optimizer": r.method,
              "budget": r.budget, "best_value": r.best, "success": int(r.success),
              "evaluations": r.evaluations, "evaluations_to_success": r.evaluations_to_success,
              "wall_seconds": r.seconds}  # fmt: skip
    history = [{"evaluations": e, "best_so_far": b} for e, b in r.trace]
    if out is not None:
        write_run_dir(out, result, history=history)
    return result


def run_weights_job(
    job: dict[str, Any], out: Path | None, progress: bool = False
) -> dict[str, Any]:
    from evoprune.devices import torch_threads
    from evoprune.studies.train_weights import train_weights

    overrides = _weights_overrides(job)
    start = time.perf_counter()
    # one torch thread, as in a sweep's worker: the budget counts the CPU time of every thread,
    # so on more threads the small products buy fewer evaluations (a third of them on two)
    with torch_threads(1):
        r = train_weights(str(job.get("optimizer", "adam")), "digits",
                          _float(job, "seconds", None), _int(job, "seed", 0), progress,
                          **overrides)  # fmt: skip
    result = {**_base(job, "digits", r.method), "arch": [64, 32, 10], "optimizer": r.method,
              "test_f1": r.test_f1, "test_accuracy": r.test_accuracy, "val_f1": r.val_f1,
              "seconds": r.seconds, "evaluations": r.evaluations, "recipe": r.recipe,
              "threads": 1, "wall_seconds": time.perf_counter() - start}  # fmt: skip
    if out is not None:
        write_run_dir(out, result, history=r.history)
    return result
