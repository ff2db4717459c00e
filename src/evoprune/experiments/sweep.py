"""The sweep driver: expand specs into runs, skip finished keys, run the rest, record each one.

Crash safety (a sweep killed at any moment loses no finished run and repeats none):

1. a run's files are written by the driver into ``runs/.tmp-KEY-*`` and renamed to ``runs/KEY``
   (a rename is atomic), then
2. the run is recorded in the store in one transaction.

A kill between 1 and 2 leaves ``runs/KEY/result.json`` without a store row: on restart the driver
records it from disk instead of running it again. Leftover ``.tmp-*`` folders are deleted.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evoprune.errors import EvopruneError
from evoprune.experiments.executors import (
    EXECUTORS,
    Executor,
    JobFn,
    Payload,
    check_ray_address,
    make_executor,
)
from evoprune.experiments.spec import Run, Spec, load_spec
from evoprune.experiments.store import Store
from evoprune.io import json_text
from evoprune.progress import progress_bar

RUNS_DIR = "runs"


@dataclass(frozen=True)
class SweepSummary:
    specs: tuple[str, ...]
    profile: str
    out: Path
    total: int  # distinct runs the specs ask for
    skipped: int  # already finished before this sweep
    recovered: int  # found finished on disk but not yet in the store
    ran: int
    failed: int
    seconds: float
    errors: tuple[str, ...] = ()
    # runs of an earlier version of a spec or of another profile, no longer reported with it
    dropped: int = 0


@dataclass
class _Pending:
    spec: str
    run: Run
    position: int = 0  # the run's place in its spec's plan (grid order, then seed)


def default_job_fn(job: dict[str, Any], out: Path) -> dict[str, Any]:
    """The sweep's default task: `evoprune.jobs.run_job` (module-level, so it pickles)."""
    from evoprune.jobs import run_job

    return run_job(job, out)


def run_sweep(
    specs: Spec | str | Path | Sequence[Spec | str | Path],
    profile: str = "quick",
    out: str | Path | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    fn: JobFn | None = None,
    progress: bool = True,
) -> SweepSummary:
    """Run every run of `specs` under `profile` that `out` has not finished yet.

    `fn(job, folder) -> result dict` runs one job (default: `evoprune.jobs.run_job`); it must be
    picklable (a module-level function). Returns counts and timings.

    >>> run_sweep("fig3", "quick", "runs/fig3")  # doctest: +SKIP
    """
    started = time.perf_counter()
    if isinstance(executor, str) and executor not in EXECUTORS:
        raise EvopruneError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    spec_list = [s if isinstance(s, Spec) else load_spec(s) for s in _as_list(specs)]
    if not spec_list:
        raise EvopruneError("sweep: give at least one spec")
    check_spec_names(spec_list)
    if executor == "ray" and ray_address:  # before the store: a wrong address leaves no folder
        check_ray_address(ray_address)
    out = Path(out) if out is not None else Path("runs") / f"{spec_list[0].name}-{profile}"
    fn = fn or default_job_fn
    with _lock(out):
        return _sweep(
            spec_list, profile, out, executor, workers, ray_address, fn, progress, started
        )


def check_spec_names(specs: Sequence[Spec]) -> None:
    """Refuse two specs of one sweep with one name: their runs, arms and figure would merge."""
    seen: dict[str, Spec] = {}
    for spec in specs:
        if spec.name in seen:
            raise EvopruneError(
                f"sweep: {seen[spec.name].source} and {spec.source} both name spec "
                f"{spec.name!r}; give each its own name"
            )
        seen[spec.name] = spec


def _sweep(
    spec_list: list[Spec],
    profile: str,
    out: Path,
    executor: str | Executor,
    workers: int | None,
    ray_address: str | None,
    fn: JobFn,
    progress: bool,
    started: float,
) -> SweepSummary:
    store = Store(out)
    runs_dir = out / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    for stale in runs_dir.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)

    planned = [_Pending(s.name, r, i) for s in spec_list for i, r in enumerate(s.runs(profile))]
    first = [p for p in planned if not p.run.references]
    second = [p for p in planned if p.run.references]
    counts = {"skipped": 0, "recovered": 0, "ran": 0, "failed": 0, "dropped": 0}
    for s in spec_list:
        plan = {(p.run.key, p.run.label) for p in first if p.spec == s.name}
        waiting = {_deferred_id(p) for p in second if p.spec == s.name}
        store.note_spec(s.name, profile, s.source, s.figure, s.title, s.labels(),
                        planned=len(plan) + len(waiting))  # fmt: skip
        deferred = {p.run.label for p in second if p.spec == s.name}
        counts["dropped"] += store.keep_plan(s.name, plan, deferred)
    # the arms that wait for others keep only runs their references still give: an earlier
    # plan's would count beside this one's until its second stage (if a kill stops it first)
    _add_members(store, first)
    _keep_resolved(store, second)
    errors: list[str] = []
    total = len({p.run.key for p in first}) + len({_deferred_id(p) for p in second})
    own = isinstance(executor, str)
    ex = _LazyExecutor(executor, workers, ray_address)
    desc = f"sweep {'+'.join(s.name for s in spec_list)} [{profile}]"
    bar = progress_bar(total=total, desc=desc, unit="runs", enabled=progress)
    try:
        for stage, pending in enumerate((first, second)):
            if stage == 1:
                resolved = _keep_resolved(store, pending)
                for p, why in resolved:
                    if why:
                        errors.append(f"{p.spec}/{p.run.label} seed {p.run.job.get('seed')}: {why}")
                        counts["failed"] += 1
                        bar.update(1)
                pending = [p for p, why in resolved if not why]
            _run_stage(store, ex, fn, pending, runs_dir, bar, counts, errors)
    finally:
        bar.close()
        if own:
            ex.close()
        store.close()
    return SweepSummary(
        specs=tuple(s.name for s in spec_list),
        profile=profile,
        out=out,
        total=total,
        seconds=time.perf_counter() - started,
        errors=tuple(errors),
        **counts,
    )


@contextmanager
def _lock(out: Path) -> Iterator[None]:
    """Hold ``out/.sweep.lock`` while sweeping: a second sweep into the same folder would run
    the runs the first has not recorded yet a second time. The lock goes when the file closes
    (or the process dies)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".sweep.lock", "ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EvopruneError(
                f"{out}: another sweep is writing to it; wait for it to end or choose another --out"
            ) from None
        yield


class _LazyExecutor:
    """Create the executor (a process pool, or Ray, which takes seconds) only when a run needs it."""

    def __init__(self, executor: str | Executor, workers: int | None, ray_address: str | None):
        self.spec, self.workers, self.ray_address = executor, workers, ray_address
        self.executor: Executor | None = None if isinstance(executor, str) else executor

    def run(self, fn: JobFn, jobs: list[dict[str, Any]]) -> Any:
        if self.executor is None:
            assert isinstance(self.spec, str)
            self.executor = make_executor(self.spec, self.workers, self.ray_address)
        return self.executor.run(fn, jobs)

    def drain(self) -> Iterator[tuple[int, Payload]]:
        """The runs that finish shortly after an interrupt (executors that can tell)."""
        drain = getattr(self.executor, "drain", None)
        return drain() if drain is not None else iter(())

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()


def _run_stage(
    store: Store,
    ex: _LazyExecutor,
    fn: JobFn,
    pending: list[_Pending],
    runs_dir: Path,
    bar: Any,
    counts: dict[str, int],
    errors: list[str],
) -> None:
    """Record membership, skip finished keys, recover runs finished on disk, execute the rest."""
    _add_members(store, pending)
    finished = store.finished_keys()
    todo: dict[str, _Pending] = {}
    seen: set[str] = set()
    for p in pending:
        key = p.run.key
        if key in seen:
            continue
        seen.add(key)
        if key in finished:
            counts["skipped"] += 1
            bar.update(1)
        elif (runs_dir / key / "result.json").is_file():
            # killed after the rename, before the store row: record it, do not run it again
            _record_from_disk(store, runs_dir, p, key)
            counts["recovered"] += 1
            bar.update(1)
        else:
            todo[key] = p
    if not todo:
        return
    keys = list(todo)
    submitted = time.time()

    def finish(index: int, payload: Payload) -> None:
        key = keys[index]
        p = todo[key]
        _finish(store, runs_dir, p, key, payload, submitted)
        if payload.error is None:
            counts["ran"] += 1
        else:
            counts["failed"] += 1
            errors.append(
                f"{p.spec}/{p.run.label} seed {p.run.job.get('seed')} ({key}): {payload.error}"
            )
        bar.update(1)

    try:
        for index, payload in ex.run(fn, [todo[k].run.job for k in keys]):
            finish(index, payload)
    except KeyboardInterrupt:  # keep what the running workers still finish, then stop
        for index, payload in ex.drain():
            finish(index, payload)
        raise


def _finish(
    store: Store, runs_dir: Path, p: _Pending, key: str, payload: Payload, submitted: float
) -> None:
    """Write the run's files (temp folder + rename), then its store row (one transaction)."""
    now = time.time()
    if payload.error is not None or payload.result is None:
        store.record(
            key,
            spec=p.spec,
            label=p.run.label,
            job=p.run.job,
            result=None,
            error=payload.error or "no result",
            submitted=submitted,
            finished=now,
        )
        return
    files = dict(payload.files)
    files.setdefault("result.json", json_text(payload.result).encode())
    tmp = runs_dir / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        if name == "result.json":
            continue
        (tmp / name).write_bytes(data)
    (tmp / "result.json").write_bytes(files["result.json"])  # last, as in every run folder
    final = runs_dir / key
    if final.exists():  # left by an earlier failed attempt without result.json
        shutil.rmtree(final)
    os.replace(tmp, final)
    history = _parse_history(files.get("history.csv", b""))
    store.record(
        key,
        spec=p.spec,
        label=p.run.label,
        job=p.run.job,
        result=payload.result,
        history=history,
        submitted=submitted,
        finished=now,
        run_dir=str(Path(RUNS_DIR) / key),
    )


def _record_from_disk(store: Store, runs_dir: Path, p: _Pending, key: str) -> None:
    folder = runs_dir / key
    result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    history_file = folder / "history.csv"
    history = _parse_history(history_file.read_bytes() if history_file.is_file() else b"")
    store.record(
        key,
        spec=p.spec,
        label=p.run.label,
        job=p.run.job,
        result=result,
        history=history,
        run_dir=str(Path(RUNS_DIR) / key),
    )


def _parse_history(data: bytes) -> list[dict[str, Any]]:
    if not data.strip():
        return []
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def _add_members(store: Store, pending: list[_Pending]) -> None:
    for spec in dict.fromkeys(p.spec for p in pending):
        store.add_members(
            spec,
            [(p.run.key, p.run.label, p.run.axes, p.position) for p in pending if p.spec == spec],
        )


def _keep_resolved(store: Store, pending: list[_Pending]) -> list[tuple[_Pending, str]]:
    """Resolve the references of `pending` (runs of arms that wait for others) from the
    finished runs, and forget every member of those arms that is not one of the runs they
    resolve to now. Returns each run with why it does not resolve yet, if it does not."""
    resolved = [_resolve(store, p) for p in pending]
    for spec, label in dict.fromkeys((p.spec, p.run.label) for p in pending):
        keys = {
            p.run.key for p, why in resolved if not why and (p.spec, p.run.label) == (spec, label)
        }
        store.keep_members(spec, label, keys)
    return resolved


def _resolve(store: Store, p: _Pending) -> tuple[_Pending, str]:
    """Fill in ``{mean_of, field}`` values from finished runs; returns the run and why not, if not."""
    job = dict(p.run.job)
    for name, ref in p.run.references.items():
        value, why = store.mean_of(p.spec, ref["mean_of"], p.run.axes, ref["field"])
        if value is None:
            return p, f"{name} waits for the mean of {ref['field']}: {why}"
        job[name] = round(float(value), 4)
    return replace(p, run=replace(p.run, job=job)), ""


def _as_list(specs: Any) -> list[Any]:
    if isinstance(specs, (Spec, str, Path)):
        return [specs]
    return list(specs)


def _deferred_id(p: _Pending) -> str:
    return json.dumps([p.spec, p.run.label, p.run.job], sort_keys=True, default=str)
