"""Executors: where a sweep's runs execute. One small protocol, two implementations.

- ``local`` (default): a process pool (``spawn`` start method: safe with torch's threads), one torch
  thread per worker, so ``--workers N`` uses N cores without oversubscription.
- ``ray``: each run is a Ray task; ``ray.init()`` starts Ray on this machine, or ``--ray-address``
  joins a cluster. Ray is optional (``pip install 'evoprune[ray]'``) and imported only here, lazily.

A task is `execute_run(fn, job)`: it runs ``fn(job, folder)`` in a private temporary folder and
returns the result dict plus the bytes of every file the run wrote. Workers never touch the sweep's
folder, so a cluster needs no shared file system; the driver writes files and the store.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evoprune.errors import EvopruneError

JobFn = Callable[[dict[str, Any], Path], dict[str, Any]]


@dataclass
class Payload:
    """What a run sends back: its result, the files it wrote, or the error that stopped it."""

    result: dict[str, Any] | None
    files: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def execute_run(fn: JobFn, job: dict[str, Any], threads: int | None = 1) -> Payload:
    """Run one job in a temporary folder; never raises for a failing job (the error is returned)."""
    if threads:
        limit_threads(threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evoprune-run-") as tmp:
        folder = Path(tmp) / "run"
        try:
            result = fn(dict(job), folder)
        except Exception as exc:  # a failed run is recorded, the sweep goes on
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return Payload(None, error=message, seconds=time.perf_counter() - start)
        files = {}
        if folder.is_dir():
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return Payload(dict(result), files, seconds=time.perf_counter() - start)


class Executor(Protocol):
    """Runs tasks and yields ``(index, Payload)`` as each finishes, in completion order."""

    name: str

    def run(self, fn: JobFn, jobs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Payload]]: ...

    def close(self) -> None: ...


def limit_threads(threads: int) -> None:
    """At most `threads` torch/OpenMP threads in this process: set now if torch is loaded, else
    through the environment, which torch reads when a job first imports it (a worker that never
    needs torch does not pay for importing it)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


STOP_SECONDS = 10.0  # how long closing waits for a worker to end by itself
KILL_SECONDS = 3.0  # then how long for it to end on SIGTERM, before SIGKILL


def _worker_init() -> None:
    limit_threads(1)
    # A worker whose sweep was killed (kill -9: no shutdown) ends by itself instead of
    # holding a core forever: it watches for its parent to go away.
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(1)

    threading.Thread(target=watch, name="evoprune-parent-watch", daemon=True).start()


class LocalExecutor:
    """A process pool on this machine (`workers` processes, default: all cores)."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Future[Payload], int] = {}  # the current `run`'s, not yet yielded
        self._drained = False

    def run(self, fn: JobFn, jobs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Payload]]:
        if not jobs:
            return
        if self._pool is None:  # spawns workers as runs wait for them (Python >= 3.9, spawn),
            # so a first stage of one run leaves the second stage all of them
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
            )
        futures = self._futures = {
            self._pool.submit(execute_run, fn, job): i for i, job in enumerate(jobs)
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                exc = fut.exception()
                payload = (
                    fut.result()
                    if exc is None
                    else Payload(None, error=f"{type(exc).__name__}: {exc}")
                )
                yield futures.pop(fut), payload

    def drain(self, seconds: float = STOP_SECONDS) -> Iterator[tuple[int, Payload]]:
        """After an interrupt: queued runs are cancelled, and the runs that finish within
        `seconds` (or had finished unread) are yielded, so that the sweep records them instead
        of throwing them away. Runs that failed or were interrupted are not yielded."""
        self._drained = True
        futures, self._futures = self._futures, {}
        for fut in futures:
            fut.cancel()
        running = [f for f in futures if not f.cancelled()]
        if not running:
            return
        done, _ = wait(running, timeout=seconds)
        for fut in done:
            if fut.exception() is None and fut.result().error is None:
                yield futures[fut], fut.result()

    def close(self) -> None:
        """Stop the pool in bounded time: queued runs are cancelled, and a worker that has not
        ended `STOP_SECONDS` later (one caught by Ctrl-C mid-way can wait forever on a lock)
        is terminated, and killed if it is still there `KILL_SECONDS` after that: a search
        turns SIGTERM into an interrupt of its own (a resumable checkpoint), which the pool's
        worker survives, waiting for work that never comes."""
        if self._pool is None:
            return
        workers = list(getattr(self._pool, "_processes", {}).values())  # the pool's own record
        self._pool.shutdown(wait=False, cancel_futures=True)
        # after `drain` has waited, a worker still busy is stopped at once
        deadline = time.monotonic() + (0.0 if self._drained else STOP_SECONDS)
        for proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(KILL_SECONDS)
            if proc.is_alive():  # a search takes SIGTERM as Ctrl-C, and its worker goes on
                proc.kill()
                proc.join()
        self._pool = None


class RayExecutor:
    """Each run a Ray task (1 CPU). Starts a local Ray unless `address` names a cluster."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, **init_kwargs: Any):
        try:
            import ray
        except ImportError:
            raise EvopruneError("the ray executor needs Ray: pip install 'evoprune[ray]'") from None
        self.ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = workers or os.cpu_count() or 1
            kwargs.update(init_kwargs)
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"at {address}" if address else "on this machine"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise EvopruneError(f"--ray-address: no Ray cluster {where} ({first})") from None
            self._started = True
        self._task = ray.remote(num_cpus=1, max_retries=0)(execute_run)

    def run(self, fn: JobFn, jobs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Payload]]:
        ray = self.ray
        fn_ref = ray.put(fn)
        refs = {self._task.remote(fn_ref, job): i for i, job in enumerate(jobs)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # the task itself died (worker lost, ...)
                    payload = Payload(
                        None, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                    )
                yield refs[ref], payload

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": LocalExecutor,
    "ray": RayExecutor,
}


def make_executor(
    name: str, workers: int | None = None, ray_address: str | None = None
) -> Executor:
    """An executor by name; `ray_address` only for ``ray``."""
    if name not in EXECUTORS:
        raise EvopruneError(f"executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "ray":
        return RayExecutor(workers=workers, address=ray_address)
    if ray_address:
        raise EvopruneError("--ray-address needs --executor ray")
    return EXECUTORS[name](workers=workers)
