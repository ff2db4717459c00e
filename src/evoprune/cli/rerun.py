"""`evoprune rerun RUN`: run a finished run again from its result.json, and say whether the
numbers came out the same.

A run folder records the job it ran (``config``), its data (``data``: a file's absolute path and
SHA-256) and the code (``git_revision``, ``versions``). The rerun runs that job into a new
folder and compares every number of the two results except timings, and the two ticket files
byte for byte. Exit code 0: the same; 1: something differs (listed).

>>> # evoprune rerun runs/ga-moons-B-s0            (into runs/ga-moons-B-s0-rerun)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from evoprune.errors import EvopruneError

COMMANDS = {"rerun": "run a finished run again from its result.json: the same numbers?"}

# fields that describe the run, not its outcome (the code, the machine, the clock)
NOT_OUTCOMES = ("config", "data", "versions", "git_revision", "machine", "resumed_from")
MAX_LISTED = 12  # differing fields printed; the rest are counted


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rerun",
        help=COMMANDS["rerun"],
        description="Run a finished run again from the job its result.json records, into a new "
        "folder, and compare every number of the two results (timings aside) and their ticket "
        "files. Exit code 0 when they are the same, 1 when something differs.",
    )
    p.add_argument(
        "folder", type=Path, metavar="RUN", help="a finished run folder (with its result.json)"
    )
    p.add_argument("--out", type=Path, help="the rerun's folder (default: RUN-rerun)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_rerun)


def run_rerun(args: argparse.Namespace) -> int:
    from evoprune.cli.compare import load_result
    from evoprune.cli.data import check_out
    from evoprune.jobs import METHODS, check_job, run_job

    recorded = load_result(args.folder)
    job = recorded.get("config")
    if not isinstance(job, dict) or job.get("method") not in METHODS:
        raise EvopruneError(
            f"{args.folder / 'result.json'}: config: not a job evoprune can run again (the "
            "`evoprune minimize` folder of several optimizers records its command's options: "
            "run that command again)"
        )
    job = _data_found(dict(job), recorded, args.folder)
    check_job(job)
    out = check_out(args.out or args.folder.with_name(args.folder.name + "-rerun"))
    again = run_job(job, out, progress=not args.quiet)
    diffs = differences(recorded, again)
    same_ticket = _same_ticket(args.folder, out)
    if same_ticket is False:
        diffs.append("ticket.npz: the files differ")
    revision = _revisions(recorded, again)
    if not diffs:
        checked = len(outcomes(recorded))
        tickets = ", the same ticket file" if same_ticket else ""
        print(f"rerun of {args.folder}: the same {checked} numbers{tickets}{revision} -> {out}")
        return 0
    print(f"rerun of {args.folder}: {len(diffs)} differ{revision} -> {out}")
    for line in diffs[:MAX_LISTED]:
        print(f"  {line}")
    if len(diffs) > MAX_LISTED:
        print(f"  ... and {len(diffs) - MAX_LISTED} more")
    return 1


def outcomes(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers and words a run came out with: every field but the job, the data, the code,
    the machine and the timings (``*seconds``, ``*per_second``: `evoprune.ticket.is_timing`)."""
    from evoprune.ticket import is_timing

    return {k: v for k, v in result.items() if k not in NOT_OUTCOMES and not is_timing(k)}


def differences(recorded: dict[str, Any], again: dict[str, Any]) -> list[str]:
    """One line per outcome that is not the same in both results (NaN equals NaN).

    >>> differences({"test_accuracy": 0.9, "wall_seconds": 3.0}, {"test_accuracy": 0.9})
    []
    >>> differences({"test_accuracy": 0.9}, {"test_accuracy": 0.8})
    ['test_accuracy: 0.9 then, 0.8 now']
    """
    a, b = outcomes(recorded), outcomes(again)
    lines = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            lines.append(f"{key}: {_short(a[key])} then, not recorded now")
        elif key not in a:
            lines.append(f"{key}: not recorded then, {_short(b[key])} now")
        elif not _equal(a[key], b[key]):
            lines.append(f"{key}: {_short(a[key])} then, {_short(b[key])} now")
    return lines


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _data_found(job: dict[str, Any], recorded: dict[str, Any], run: Path) -> dict[str, Any]:
    """The job, its data file where the run found it: the job holds the path as typed, which
    another working folder does not find; result.json's ``data`` holds the absolute one. A file
    whose bytes changed since is said (the rerun then runs on the file as it is)."""
    data = recorded.get("data")
    if not isinstance(data, dict):
        data = {}
    if job.get("data") is not None and not Path(str(job["data"])).exists() and data.get("path"):
        job["data"] = data["path"]
    path = job.get("data")
    if path is not None and data.get("sha256") and Path(str(path)).is_file():
        from evoprune.data.files import file_digest

        now = file_digest(Path(str(path)))
        if now != data["sha256"]:
            print(f"note: {path} has changed since {run} ran (sha256 {data['sha256']} then, "
                  f"{now} now)")  # fmt: skip
    return job


def _same_ticket(run: Path, out: Path) -> bool | None:
    """Whether the two folders' ticket files are the same bytes; None where a method writes none."""
    a, b = run / "ticket.npz", out / "ticket.npz"
    if not a.is_file() or not b.is_file():
        return None
    return a.read_bytes() == b.read_bytes()


def _revisions(recorded: dict[str, Any], again: dict[str, Any]) -> str:
    """ ", code r1 then, r2 now" where the code differs, else ""."""
    then, now = recorded.get("git_revision"), again.get("git_revision")
    if then == now:
        return ""
    return f" (code {str(then)[:12]} then, {str(now)[:12]} now)"
