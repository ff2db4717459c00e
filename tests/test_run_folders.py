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
from evoprune.studies.hpo_storage import sampler_path

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


@pytest.mark.parametrize("method", sorted(JOBS))
def test_an_interrupt_as_result_json_is_written_leaves_no_half_run_folder(
    method, tmp_path, monkeypatch
):
    """A Ctrl-C (or a search's SIGTERM) before result.json is in place removes what the run
    wrote: the GA's and edge-popup's ticket.npz, backprop's model.npz and every history.csv
    were left without a result, which `evaluate` read as a run. hpo keeps its study and its
    sampler, which a rerun resumes."""
    import evoprune.results

    write_json = evoprune.results.write_json

    def interrupted(path, data):
        if path.name == "result.json":
            raise KeyboardInterrupt
        return write_json(path, data)

    monkeypatch.setattr(evoprune.results, "write_json", interrupted)
    job = {"method": method, "seed": 1, **JOBS[method]}
    if "hidden" in job:
        job["cache_dir"] = str(tmp_path / "cache")
    if method == "ga":  # and the files of the analyses a sweep asks of a ticket (fig8)
        job["analyze"] = ["hessian"]
    with pytest.raises(KeyboardInterrupt):
        run_job(job, tmp_path / "run")
    left = sorted(p.name for p in (tmp_path / "run").iterdir())
    sampler = sampler_path(tmp_path / "run", 0).name  # sampler-HOST-0.pickle
    assert left == ([sampler, "study.journal"] if method == "hpo" else []), left


def _revision_of_a_copy(root, tracked: bool) -> str:
    """git_revision() of a copy of evoprune's io.py in a package folder inside the git repo
    `root`: tracked (a project vendoring the source) or in a git-ignored .venv (installed)."""
    import shutil
    import subprocess
    import sys

    import evoprune.errors
    import evoprune.io

    def git(*args: str) -> str:
        cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (root / ".gitignore").write_text(".venv/\n__pycache__/\n")
    pkg = root / ("vendor" if tracked else ".venv/lib") / "evoprune"
    pkg.mkdir(parents=True)
    for module in (evoprune.io, evoprune.errors):
        shutil.copy(module.__file__, pkg)
    (pkg / "__init__.py").write_text("")
    git("add", "-A")
    git("commit", "-qm", "project")
    code = "from evoprune.io import git_revision; print(git_revision())"
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(pkg.parent)},
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    clean = run()
    (pkg / "new_module.py").write_text("")  # an untracked module changes the code that runs
    return clean, run(), git("rev-parse", "HEAD").strip()


def test_git_revision_is_the_checkouts_that_holds_the_package(tmp_path):
    clean, with_new_file, head = _revision_of_a_copy(tmp_path, tracked=True)
    assert clean == head and with_new_file == head + "-dirty"


def test_git_revision_of_a_copy_in_an_ignored_venv_is_unknown(tmp_path):
    clean, _, head = _revision_of_a_copy(tmp_path, tracked=False)
    assert clean == "unknown"  # was the enclosing project's commit
