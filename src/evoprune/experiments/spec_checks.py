"""The checks of a spec's fields and values, each an `EvopruneError` naming the file and the field,
so that a typo fails when the spec is loaded instead of in every run of a long sweep; and the
reading of an axis's values as the command line writes them (``--only``, `Spec.narrowed`).
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from evoprune.data.files import load_arrays
from evoprune.errors import EvopruneError
from evoprune.jobs import COMMON_KEYS, METHODS, check_job, method_keys

ARM_AXIS = "arm"  # the grid's axis of compared algorithms (`spec` takes it from here)
REFERENCE_KEYS = {"mean_of", "field"}
# job keys that name a user's file (a data set, a trained model): a run's key holds its content
FILE_KEYS = ("data", "model")
_JOB_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")


def check_finite(data: Any, source: str, where: str) -> None:
    """Refuse .nan and .inf anywhere in a spec: no setting takes them, and a job's key cannot."""
    if isinstance(data, float) and not math.isfinite(data):
        raise EvopruneError(f"{source}: {where or 'spec'}: expected a finite number, got {data}")
    if isinstance(data, dict):
        for key, value in data.items():
            check_finite(value, source, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_finite(value, source, f"{where}[{i}]")


def check_grid(grid: Any, source: str, where: str) -> dict[str, list[Any]]:
    if not isinstance(grid, dict):
        raise EvopruneError(f"{source}: {where}: expected a mapping of axis -> list of values")
    if ARM_AXIS not in grid:
        raise EvopruneError(f"{source}: {where}: missing axis 'arm' (the compared algorithms)")
    out: dict[str, list[Any]] = {}
    for axis, values in grid.items():
        if not _JOB_KEY.match(str(axis)):
            raise EvopruneError(f"{source}: {where}: {axis!r} is not a job key")
        if axis == "seed":
            raise EvopruneError(f"{source}: {where}.seed: seeds belong in the profiles")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise EvopruneError(f"{source}: {where}.{axis}: expected at least one value")
        if axis != ARM_AXIS and any(isinstance(v, dict) for v in values):
            raise EvopruneError(f"{source}: {where}.{axis}: expected plain values, not mappings")
        out[str(axis)] = values
    for i, arm in enumerate(out[ARM_AXIS]):
        here = f"{where}.arm[{i}]"
        if not isinstance(arm, dict) or "label" not in arm or "method" not in arm:
            raise EvopruneError(f"{source}: {here}: expected a mapping with 'label' and 'method'")
        if arm["method"] not in METHODS:
            raise EvopruneError(
                f"{source}: {here}.method: expected one of {', '.join(METHODS)}, got {arm['method']!r}"
            )
        if any(str(other.get("label")) == str(arm["label"]) for other in out[ARM_AXIS][:i]):
            raise EvopruneError(  # their runs would pool as one algorithm's
                f"{source}: {here}.label: {arm['label']!r} labels an earlier arm of this grid "
                "too; give each arm its own label"
            )
        clash = sorted(set(arm) & (set(out) - {ARM_AXIS}))
        if clash:
            raise EvopruneError(f"{source}: {here}.{clash[0]}: also an axis of the grid")
        for key, value in arm.items():
            if not _JOB_KEY.match(str(key)):
                raise EvopruneError(
                    f"{source}: {here}: {key!r} is not a job key (quote labels with commas)"
                )
            if isinstance(value, dict):
                check_known_keys(value, REFERENCE_KEYS, source, f"{here}.{key}")
                if set(value) != REFERENCE_KEYS:
                    raise EvopruneError(
                        f"{source}: {here}.{key}: expected {{mean_of: LABEL, field: NAME}}"
                    )
                _check_field(value["field"], source, f"{here}.{key}.field")
    return out


def _check_field(name: Any, source: str, where: str) -> None:
    """A reference's result field: any name a run may write, but not a near miss of a standard
    one (``sparsty``), which would only fail once the referenced runs have finished."""
    import difflib

    from evoprune.results import RESULT_FIELDS

    near = difflib.get_close_matches(str(name), RESULT_FIELDS, n=1, cutoff=0.8)
    if near and near[0] != name:
        raise EvopruneError(
            f"{source}: {where}: no result field {name!r}; did you mean {near[0]!r}?"
        )


def check_run_job(job: dict[str, Any], label: str, source: str, profile: str) -> None:
    """A typo in a spec must fail at load time, naming the file and the field, not in every run."""
    method = job["method"]
    allowed = method_keys(method)
    unknown = sorted(set(job) - COMMON_KEYS - allowed)
    if unknown:
        raise EvopruneError(
            f"{source}: arm {label!r} (profile {profile}): unknown field {unknown[0]!r} for "
            f"method {method}; expected some of {', '.join(sorted(allowed | COMMON_KEYS))}"
        )
    try:
        _check_values(job)
    except EvopruneError as err:
        raise EvopruneError(f"{source}: arm {label!r} (profile {profile}): {err}") from None


def _check_values(job: dict[str, Any]) -> None:
    """The values a misspelling breaks (dataset, arch, init, sparsity, and each method's own:
    `evoprune.jobs.check_job`), checked before the first run instead of failing in every run
    of a long sweep."""
    from evoprune.data.builtin import check_dataset
    from evoprune.nets import ARCHS, INITS, is_conv_arch, parse_arch

    if "data" in job and not job.get("target") and not str(job["data"]).endswith(".npz"):
        raise EvopruneError("target: a CSV needs the name of its label column (target: COLUMN)")
    for name in FILE_KEYS:
        if isinstance(job.get(name), str) and not Path(job[name]).is_file():
            raise EvopruneError(f"{name}: no such file {job[name]} (a relative path is from the "
                                "folder the sweep starts in)")  # fmt: skip
    if isinstance(job.get("data"), str):  # its content: a misspelt target, a NaN cell, one class
        stat = Path(job["data"]).stat()
        _check_data_file(job["data"], job.get("target"), stat.st_mtime_ns, stat.st_size)
    if "data" not in job:  # studies name none
        check_dataset(job.get("dataset", "moons"))
    if "data" not in job and job.get("classes") is not None:
        from evoprune.data.registry import check_classes

        check_classes(job.get("dataset", "moons"), job["classes"])
    arch = job.get("arch")
    named = isinstance(arch, str) and arch.strip().upper() in ARCHS
    if arch is not None and not named and not is_conv_arch(arch):
        parse_arch(arch, *_ends(arch))  # its form only: the data's widths are not known here
    if job.get("normalize") is not None and not isinstance(job["normalize"], bool):
        raise EvopruneError(f"normalize: expected true, false or null, got {job['normalize']!r}")
    if job.get("init") is not None and job["init"] not in INITS:
        raise EvopruneError(f"init: expected one of {', '.join(INITS)}, got {job['init']!r}")
    sparsity = job.get("sparsity")  # a number, or a reference filled in later
    if sparsity is not None and not isinstance(sparsity, int | float | dict):
        raise EvopruneError(f"sparsity: expected a fraction in [0, 1), got {sparsity!r}")
    if isinstance(sparsity, int | float) and not 0 <= sparsity < 1:
        raise EvopruneError(f"sparsity: expected a fraction in [0, 1), got {sparsity}")
    check_job(job)  # the method's own keys and values


@cache
def _check_data_file(path: str, target: str | None, mtime_ns: int, size: int) -> None:
    """A data file read as every run of it will read it, once per file, target and version
    (its time and size): a problem with it fails the sweep at load, not each of its runs."""
    load_arrays(Path(path), target)


def _ends(arch: Any) -> tuple[int, int]:
    """The first and last width of an explicit arch, so `parse_arch` checks only its form."""
    widths = [p for p in str(arch).strip("[]").replace(" ", "").split(",") if p]
    try:
        return int(widths[0]), int(widths[-1])
    except (ValueError, IndexError):
        return 0, 0


def check_known_keys(data: dict[str, Any], allowed: set[str], source: str, where: str) -> None:
    for key in data:
        if key not in allowed:
            field_name = f"{where}.{key}" if where else str(key)
            raise EvopruneError(
                f"{source}: unknown field {field_name!r}; expected some of {', '.join(sorted(allowed))}"
            )


def parse_seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, bool):
        raise EvopruneError(f"{where}: seeds: expected a count or a list of integers")
    if isinstance(value, int):
        if value < 1:
            raise EvopruneError(f"{where}: seeds: expected a positive count, got {value}")
        return list(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) for s in value)
    ):
        return [int(s) for s in value]
    raise EvopruneError(f"{where}: seeds: expected a count or a list of integers, got {value!r}")


UNKNOWN = object()  # what `axis_value` gives for a text that names no value of the axis


def spelled(value: Any) -> str:
    """An axis value as the command line writes it: ``true``, ``false``, ``null`` (as in the
    spec's YAML), anything else as text."""
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def axis_value(text: str, known: dict[str, Any]) -> tuple[str, Any]:
    """`text` and the value of `known` it names: as `spelled` writes it, or as YAML reads it
    (``True``, ``0.50``); `UNKNOWN` where it names none.

    >>> axis_value("True", {"true": True, "false": False})[1], axis_value("0.50", {"0.5": 0.5})
    (True, ('0.50', 0.5))
    """
    if text in known:
        return text, known[text]
    try:
        read = None if text == "None" else yaml.safe_load(text)  # "None": Python's spelling
    except yaml.YAMLError:
        return text, UNKNOWN
    same = (
        v for v in known.values() if v == read and isinstance(v, bool) == isinstance(read, bool)
    )
    return text, next(same, UNKNOWN)


def split_values(text: str, known: dict[str, Any]) -> list[str]:
    """`text` split at its commas into values of `known`, the longest first, so that
    ``"784,300,10,conv"`` gives ``["784,300,10", "conv"]``; from a part that matches none on,
    the rest stays one value (for the caller's error).

    >>> split_values("A,784,300,10", {"A": 0, "784,300,10": 1, "784,300,100,10": 2})
    ['A', '784,300,10']
    >>> split_values("True,None", {"true": True, "null": None})
    ['True', 'None']
    """

    def names(piece: str) -> bool:
        return axis_value(piece, known)[1] is not UNKNOWN

    parts, values = [p.strip() for p in text.split(",")], []
    while parts:
        n = next((n for n in range(len(parts), 0, -1) if names(",".join(parts[:n]))), len(parts))
        values.append(",".join(parts[:n]))
        parts = parts[n:]
    return values
