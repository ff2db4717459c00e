"""Every method writes the same kind of run folder: a strict-JSON ``result.json`` (written last)
with the shared fields (`evoprune.results.SHARED_FIELDS`), read back as it was returned, and a
``history.csv`` of the run's course."""

from __future__ import annotations

import csv
import json
import math

import pytest

from evoprune.experiments.run_history import prepare_run_history
from evoprune.jobs import METHODS, run_job
from evoprune.results import SHARED_FIELDS

_GA = {"dataset": "moons", "arch": "A", "population": 10, "min_generations": 2,
       "max_generations": 2}  # fmt: skip
_PRUNE = {"dataset": "digits", "hidden": "16,8", "dense_max_epochs": 3, "dense_patience": 1,
          "finetune_epochs": 1, "population": 4, "generations": 2}  # fmt: skip

# one small, fast job of every registered method (a method added to the registry needs one)
JOBS = {
    "ga": _GA,
    "ga-adaptive": _GA,
    "memetic": {**_GA, "kicks": 0},
    "local": {"dataset": "moons", "arch": "A", "local_starts": 1, "kicks": 0},
    "edge-popup": {"dataset": "moons", "arch": "A", "epochs": 1},
    "backprop": {"dataset": "moons", "arch": "A", "max_iter": 5},
    "selection": {"dataset": "digits", "epochs": 1, "levels": "0.5", "controls": "none"},
    "cmaes-synflow": _PRUNE,
    "cmaes-trainfit": {**_PRUNE, "trainfit_epochs": 1},
    "magnitude": _PRUNE,
    "synflow": {**_PRUNE, "synflow_rounds": 2},
    "softmask": {**_PRUNE, "softmask_epochs": 1},
    "random": _PRUNE,
    "hpo": {"trials": 2, "space": "low", "max_epochs": 2, "patience": 1},
    "minimize": {"function": "sphere", "dim": 2, "optimizer": "cmaes", "budget": 50},
    "train-weights": {"optimizer": "adam", "seconds": 0.3},
}


def test_every_registered_method_has_a_job_here():
    assert set(JOBS) == set(METHODS)


def _refuse(constant: str) -> None:
    raise ValueError(f"not JSON: {constant}")


@pytest.mark.parametrize("method", sorted(JOBS))
def test_every_method_writes_the_shared_fields(method, tmp_path):
    job = {"method": method, "seed": 1, **JOBS[method]}
    if "hidden" in job:
        job["cache_dir"] = str(tmp_path / "cache")
    returned = run_job(job, tmp_path / "run")
    written = json.loads((tmp_path / "run" / "result.json").read_text(), parse_constant=_refuse)
    assert written == json.loads(json.dumps(returned, default=str))  # what the caller got
    missing = [f for f in SHARED_FIELDS if written.get(f) is None]
    assert not missing, f"{method}: result.json lacks {missing}"
    assert written["method"] == method and written["seed"] == 1
    assert written["config"]["method"] == method
    assert isinstance(written["variant"], str) and written["variant"]
    assert math.isfinite(written["wall_seconds"]) and written["wall_seconds"] > 0
    assert set(written["versions"]) >= {"evoprune", "torch", "numpy"}
    with open(tmp_path / "run" / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert history, f"{method}: history.csv has no rows"
    assert len(prepare_run_history(tmp_path / "run")), f"{method}: nothing for plot history"
    if method in ("cmaes-synflow", "magnitude"):  # the search's generations, the pruned net, then
        phases = [row["phase"] for row in history]  # each fine-tuning epoch
        searched = 2 if method == "cmaes-synflow" else 0
        assert phases == ["search"] * searched + ["prune", "finetune"]
        assert [row["epoch"] for row in history[searched:]] == ["0", "1"]
        assert written["generations"] == (searched or None)
