"""Experiment specs: a YAML grid of runs, two budgets (`quick`, `paper`), and stable run keys.

A spec is one experiment of the paper (Schönberger et al., arXiv 2508.08877). Its grid is a
product of axes; the `arm` axis names the compared algorithms (each arm a label plus job keys),
every other axis sets one job key. A profile picks the seeds and the per-method budget::

    name: fig3
    title: GA vs GA (adaptive AB) on moons and circles
    figure: fig3                    # the report's figure (default: the arms side by side)
    grid:                           # a mapping (one product) or a list of them (their union)
      dataset: [moons, circles]
      arch: [A, B, C, D]
      arm:
        - {label: GA, method: ga, objective: accuracy}
    profiles:
      quick: {seeds: 2, budget: {ga: {max_generations: 40}}, only: {arch: [A, B]}}
      paper: {seeds: 25}

A profile's budget fills in a method's settings where the arm and the grid point leave them
unset; a value they set themselves wins (the arm's ``max_passes: 33`` runs 33 passes in every
profile, and an axis ``epochs: [1, 5]`` stays two points whatever the budget's ``epochs``).

A job value ``{mean_of: LABEL, field: sparsity}`` is filled in by the sweep once the runs of
arm LABEL with the same other axis values have finished (the paper's "EP (adapted)": edge-popup at
the GA's mean sparsity for that dataset and architecture).

A run's key is the SHA-256 of its job as canonical JSON (sorted keys), so it is the same in any
process, on any machine and any Python version, and two specs that ask for the same job share it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from evoprune.data.files import file_digest
from evoprune.errors import EvopruneError
from evoprune.experiments.spec_checks import (
    ARM_AXIS,
    FILE_KEYS,
    UNKNOWN,
    axis_value,
    check_finite,
    check_grid,
    check_known_keys,
    check_run_job,
    parse_seeds,
    spelled,
    split_values,
)
from evoprune.jobs import METHODS

PROFILES = ("quick", "paper")
SPEC_KEYS = {"name", "title", "figure", "description", "grid", "profiles"}
PROFILE_KEYS = {"seeds", "budget", "only"}


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its job (what `run_job` gets), the arm label and the grid point."""

    label: str
    job: dict[str, Any]
    axes: dict[str, Any] = field(default_factory=dict)  # axis values except arm and seed
    # the SHA-256 of each file the job names (`FILE_KEYS`), read when the spec is expanded
    file_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The job's key; with a user's data or model file also its content's (as
        ``data_sha256``, ``model_sha256``), so that a changed file runs again instead of reusing
        results from the old one."""
        digests = {f"{name}_sha256": digest for name, digest in self.file_sha256.items()}
        return job_key({**self.job, **digests})

    @property
    def references(self) -> dict[str, dict[str, str]]:
        """Job keys whose value waits for other runs (``{mean_of, field}``)."""
        return {k: v for k, v in self.job.items() if isinstance(v, dict)}


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    figure: str
    description: str
    grid: tuple[dict[str, list[Any]], ...]
    profiles: dict[str, dict[str, Any]]
    source: str = ""  # the file it came from, for error messages

    def runs(self, profile: str = "quick") -> list[Run]:
        """Every run of the grid under `profile`, in a stable order (grid order, then seed)."""
        if profile not in self.profiles:
            raise EvopruneError(
                f"{self.source}: profile {profile!r} not defined; expected one of {', '.join(self.profiles)}"
            )
        prof = self.profiles[profile]
        seeds = parse_seeds(prof.get("seeds", 1), self.source)
        budget = prof.get("budget") or {}
        only = prof.get("only") or {}
        runs: list[Run] = []
        digests: dict[str, str | None] = {}  # a file's, read once for all its runs
        for grid in self.grid:
            names = list(grid)
            axes = [[v for v in grid[n] if n not in only or v in only[n]] for n in names]
            for values in itertools.product(*axes):
                point = dict(zip(names, values, strict=True))
                arm = dict(point.pop(ARM_AXIS))
                label = str(arm.pop("label"))
                # the profile's budget fills in what the arm and the grid point leave unset: a
                # value they set is the one that runs (an axis over `epochs` stays an axis)
                base = {**point, **arm}
                settings = budget.get(base["method"], {})
                base.update({k: v for k, v in settings.items() if k not in base})
                files: dict[str, str] = {}
                for name in FILE_KEYS:
                    if isinstance(base.get(name), str):  # workers may start elsewhere (Ray)
                        path = base[name] = str(Path(base[name]).resolve())
                        if path not in digests:
                            digests[path] = (
                                file_digest(Path(path)) if Path(path).is_file() else None
                            )
                        digest = digests[path]
                        if digest is not None:
                            files[name] = digest
                for seed in seeds:
                    job = {**base, "seed": seed}
                    runs.append(Run(label=label, job=job, axes=point, file_sha256=files))
        _check_unique(runs, self.source)
        return runs

    def narrowed(
        self,
        profile: str,
        seeds: int | list[int] | None = None,
        only: dict[str, list[str]] | None = None,
        arms: list[str] | None = None,
    ) -> Spec:
        """This spec with `profile` cut down (or its seeds changed) from the command line:
        `seeds` a count or a list; `only` maps an axis to the values to keep, written as text
        (``{"arch": ["C"]}``, or comma-separated: ``["A,B"]``, where a value that holds commas
        itself, such as the arch ``784,300,10``, is kept whole; it replaces the profile's own
        `only` for that axis); `arms` the
        labels to keep. The runs keep their keys, so a narrowed sweep shares them with a full
        one. Errors name the option (``--only arch``, ``--arm``, ``--seeds``).

        >>> len(load_spec("fig3").narrowed("quick", seeds=1, only={"dataset": ["moons"]}).runs())
        8
        """
        if profile not in self.profiles:
            self.runs(profile)  # the error naming the profiles
        prof = dict(self.profiles[profile])
        grid = self.grid
        if seeds is not None:
            prof["seeds"] = parse_seeds(seeds, "command line")
        if only:
            keep = dict(prof.get("only") or {})
            for axis, texts in only.items():
                values = list(dict.fromkeys(v for g in grid if axis in g for v in g[axis]))
                if axis == ARM_AXIS or not values:
                    axes = sorted({a for g in grid for a in g} - {ARM_AXIS})
                    raise EvopruneError(
                        f"--only {axis}: not an axis of {self.name}; expected one of "
                        f"{', '.join(axes) or '(none)'}"
                    )
                by_text = {spelled(v): v for v in values}
                chosen = [axis_value(t, by_text) for x in texts for t in split_values(x, by_text)]
                unknown = [t for t, v in chosen if v is UNKNOWN]
                if unknown:
                    raise EvopruneError(
                        f"--only {axis}: expected some of {', '.join(by_text)}, got {unknown[0]!r}"
                    )
                keep[axis] = [v for _, v in chosen]
            prof["only"] = keep
        if arms:
            labels = self.labels()
            unknown = [a for a in arms if a not in labels]
            if unknown:
                raise EvopruneError(
                    f"--arm: expected some of {', '.join(map(repr, labels))}, got {unknown[0]!r}"
                )
            for g in grid:
                for arm in g[ARM_AXIS]:
                    needs = [v["mean_of"] for v in arm.values() if isinstance(v, dict)]
                    if arm["label"] in arms and any(n not in arms for n in needs):
                        raise EvopruneError(
                            f"--arm: {arm['label']!r} waits for the runs of {needs[0]!r}; "
                            f"add --arm {needs[0]!r}"
                        )
            grid = tuple(
                {**g, ARM_AXIS: [a for a in g[ARM_AXIS] if a["label"] in arms]}
                for g in grid
                if any(a["label"] in arms for a in g[ARM_AXIS])
            )
        narrowed = replace(self, grid=grid, profiles={**self.profiles, profile: prof})
        if not narrowed.runs(profile):
            raise EvopruneError(f"{self.name}: --only and --arm leave no runs")
        return narrowed

    def labels(self) -> list[str]:
        """Arm labels in spec order."""
        out: list[str] = []
        for grid in self.grid:
            for arm in grid[ARM_AXIS]:
                if arm["label"] not in out:
                    out.append(arm["label"])
        return out


def job_key(job: dict[str, Any]) -> str:
    """Stable key of a job: sha256 of canonical JSON (sorted keys, no spaces), first 16 hex digits.

    >>> job_key({"seed": 0, "method": "ga"}) == job_key({"method": "ga", "seed": 0})
    True
    """
    text = json.dumps(
        job, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def spec_names() -> list[str]:
    """Names of the specs shipped with evoprune (fig3, fig4, ...)."""
    folder = resources.files("evoprune.experiments") / "specs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_spec(name_or_path: str | Path) -> Spec:
    """A shipped spec by name (``"fig3"``) or a spec file; bad specs raise `EvopruneError`.

    >>> load_spec("fig3").name
    'fig3'
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise EvopruneError(f"spec: no such file {str(path)!r}")
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise EvopruneError(
                f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
    else:
        if str(name_or_path) not in spec_names():
            raise EvopruneError(
                f"spec: expected a YAML file or one of {', '.join(spec_names())}, got {str(name_or_path)!r}"
            )
        res = resources.files("evoprune.experiments") / "specs" / f"{name_or_path}.yaml"
        text, source = res.read_text(encoding="utf-8"), f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EvopruneError(f"{source}:{_yaml_problem(exc)}") from None
    check_finite(data, source, "")
    return parse_spec(data, source)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``LINE:COLUMN: not valid YAML (problem)``, where PyYAML knows the place."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{mark.line + 1}:{mark.column + 1}:" if mark is not None else ""
    return f"{where} not valid YAML ({problem})"


def parse_spec(data: Any, source: str = "<spec>") -> Spec:
    """Check a spec's structure (unknown keys are errors naming the file and field) and build it."""
    if not isinstance(data, dict):
        raise EvopruneError(f"{source}: expected a mapping at the top level")
    check_known_keys(data, SPEC_KEYS, source, "")
    for required in ("name", "grid", "profiles"):
        if required not in data:
            raise EvopruneError(f"{source}: missing field {required!r}")
    grids = data["grid"] if isinstance(data["grid"], list) else [data["grid"]]
    checked = tuple(check_grid(g, source, f"grid[{i}]") for i, g in enumerate(grids))
    profiles = data["profiles"]
    if not isinstance(profiles, dict) or not profiles:
        raise EvopruneError(f"{source}: profiles: expected a mapping with {' and '.join(PROFILES)}")
    for pname, prof in profiles.items():
        where = f"profiles.{pname}"
        if pname not in PROFILES:
            raise EvopruneError(
                f"{source}: unknown field {where!r}; expected one of {', '.join(PROFILES)}"
            )
        if not isinstance(prof, dict):
            raise EvopruneError(f"{source}: {where}: expected a mapping")
        check_known_keys(prof, PROFILE_KEYS, source, where)
        parse_seeds(prof.get("seeds", 1), f"{source}: {where}")
        only = prof.get("only") or {}
        if not isinstance(only, dict):
            raise EvopruneError(
                f"{source}: {where}.only: expected a mapping of axis -> values to keep"
            )
        for axis, keep in only.items():
            values = [v for g in checked if axis in g for v in g[axis]]
            if axis == ARM_AXIS or not values:
                raise EvopruneError(
                    f"{source}: unknown field '{where}.only.{axis}': not an axis of the grid"
                )
            missing = [v for v in (keep if isinstance(keep, list) else [keep]) if v not in values]
            if missing or not isinstance(keep, list):
                raise EvopruneError(
                    f"{source}: {where}.only.{axis}: expected a list of the axis' values, "
                    f"got {keep!r}"
                )
        for method, settings in (prof.get("budget") or {}).items():
            if method not in METHODS:
                raise EvopruneError(
                    f"{source}: unknown field '{where}.budget.{method}'; expected a method: {', '.join(METHODS)}"
                )
            if not isinstance(settings, dict):
                raise EvopruneError(f"{source}: {where}.budget.{method}: expected a mapping")
    from evoprune.experiments.catalogue import FIGURES, GENERIC

    if "figure" in data and data["figure"] not in FIGURES:
        raise EvopruneError(
            f"{source}: figure: expected one of {', '.join(FIGURES)} (leave it out for the "
            f"arms side by side), got {data['figure']!r}"
        )
    name = str(data["name"])
    spec = Spec(
        name=name,
        title=str(data.get("title", name)),
        figure=str(data.get("figure", GENERIC)),  # not the name's: a spec `pruning` of one's own
        description=str(data.get("description", "")).strip(),
        grid=checked,
        profiles={k: dict(v) for k, v in profiles.items()},
        source=source,
    )
    for pname in spec.profiles:
        runs = spec.runs(pname)
        _check_references(runs, spec.labels(), source)
        for run in runs:
            check_run_job(run.job, run.label, source, pname)
    return spec


def _check_references(runs: list[Run], labels: list[str], source: str) -> None:
    referenced = {ref["mean_of"] for run in runs for ref in run.references.values()}
    waiting = {run.label for run in runs if run.references}
    for label in sorted(referenced):
        if label not in labels:
            raise EvopruneError(f"{source}: mean_of: no arm labelled {label!r}")
        if label in waiting:
            raise EvopruneError(f"{source}: mean_of: arm {label!r} itself waits for other runs")


def _check_unique(runs: list[Run], source: str) -> None:
    seen: dict[str, str] = {}
    for run in runs:
        if run.references:
            continue  # its key is known only once the references are filled in
        key = run.key
        if key in seen and seen[key] != run.label:
            raise EvopruneError(
                f"{source}: arms {seen[key]!r} and {run.label!r} give the same job; make them differ"
            )
        seen[key] = run.label
