"""What every job dict shares: its common keys, the check against unknown keys, the dataset it
names, and how a comma-separated setting is read. Runners of every method import these; the
registry (`evoprune.jobs`) sits above them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evoprune.errors import EvopruneError

if TYPE_CHECKING:
    from evoprune.data.registry import Dataset

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
    # here, not above: the job registry and the spec parser import this module, and
    # `evoprune sweep --help` need not wait for torch and scikit-learn
    from evoprune.data.registry import load_dataset, load_file

    if job.get("data"):
        return load_file(
            job["data"],
            job.get("target"),
            int(job.get("seed", 0)),
            job.get("normalize"),  # None: per-feature scaling, the default for files
        )
    if not job.get("dataset"):
        raise EvopruneError("dataset: give a dataset name (--dataset) or a file (--data)")
    return load_dataset(
        job["dataset"], job.get("classes"), job.get("normalize"), job.get("data_dir")
    )


def comma_parts(text: str, name: str) -> list[str]:
    """The parts of a comma-separated setting (``"0.5,0.9"``), stripped; an empty part
    (``"8,,8"``) is a typo, not a value to drop.

    >>> comma_parts(" 128, 64", "hidden")
    ['128', '64']
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not all(parts):
        raise EvopruneError(f"{name}: an empty item in {text!r}; expected items between commas")
    return parts


MAX_THREADS = 256  # torch's thread pool allocates per thread: 100000 is "out of memory"


def job_threads(job: dict[str, Any]) -> int:
    """A job's ``threads`` (torch threads, default 1), checked."""
    value = job.get("threads")
    if value is None:
        return 1
    n = value if isinstance(value, int) and not isinstance(value, bool) else 0
    if not 1 <= n <= MAX_THREADS:
        raise EvopruneError(
            f"threads: expected an integer in [1, {MAX_THREADS}], got {job['threads']!r}"
        )
    return n
