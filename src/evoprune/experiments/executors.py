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

import itertools
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, InvalidStateError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evoprune.errors import EvopruneError
from evoprune.interrupts import interrupted_while_starting, sigint_held, start_worker

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
    # holding a core forever: it watches for its parent to go away. The sweep's pid as it
    # spawned this worker, not os.getppid() now: a sweep killed while this worker imported had
    # gone already (the parent was then init, and the worker waited for work forever).
    spawner = multiprocessing.parent_process()
    assert spawner is not None  # a worker: the sweep spawned it
    parent = spawner.pid

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(1)

    threading.Thread(target=watch, name="evoprune-parent-watch", daemon=True).start()


class LocalExecutor:
    """A process pool on this machine (`workers` processes, default: all cores).

    A worker that dies (the OOM killer, a crash in native code) breaks the whole pool: it fails
    every run it holds. The run that was in the dead worker is recorded as failed, and the
    others go to a fresh pool; a run in a worker leaves a mark that names it (`_run_marked`)."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Future[Payload], int] = {}  # the current `run`'s, not yet yielded
        self._marks: dict[Future[Payload], Path] = {}  # each one's mark (the pid running it)
        self._mark_dir: tempfile.TemporaryDirectory[str] | None = None
        self._count = itertools.count()
        self._drained = False

    def run(self, fn: JobFn, jobs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Payload]]:
        left = dict(enumerate(jobs))  # the runs not yet yielded
        idle_death = False  # the last pool broke with no run in a worker
        while left:
            futures = self._futures = self._submit(fn, left)
            broken = False
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    exc = fut.exception()
                    if isinstance(exc, BrokenProcessPool):
                        broken = True  # it fails every run it held: sorted out below
                        continue
                    payload = (
                        fut.result()
                        if exc is None
                        else Payload(None, error=f"{type(exc).__name__}: {exc}")
                    )
                    index = futures.pop(fut)
                    del left[index], self._marks[fut]
                    yield index, payload
            if broken:
                failed = self._after_a_worker_died(futures, idle_death)
                idle_death = not failed
                for index, payload in failed:
                    del left[index]
                    yield index, payload

    def _start(self) -> ProcessPoolExecutor:
        _quiet_cancelled_futures()
        if self._pool is None:  # spawns workers as runs wait for them (Python >= 3.9, spawn),
            # so a first stage of one run leaves the second stage all of them
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_worker,  # `_worker_init`, Ctrl-C ignored while it loads
                initargs=(f"{__name__}:_worker_init",),
            )
        if self._mark_dir is None:
            self._mark_dir = tempfile.TemporaryDirectory(prefix="evoprune-running-")
        return self._pool

    def _submit(self, fn: JobFn, jobs: dict[int, dict[str, Any]]) -> dict[Future[Payload], int]:
        """Submit `jobs` (index -> job). A pool that broke while idle is replaced first; one that
        breaks while they are submitted takes no more: the runs it has learn it from their
        futures, and the rest wait for the next pool."""
        futures: dict[Future[Payload], int] = {}
        with sigint_held():  # a worker a submit starts must not die of Ctrl-C as it loads
            for index, job in jobs.items():
                pool = self._start()
                assert self._mark_dir is not None
                mark = Path(self._mark_dir.name) / str(next(self._count))
                try:
                    fut = pool.submit(_run_marked, fn, job, str(mark))
                except BrokenProcessPool:
                    if futures:
                        break
                    self._stop(0.0)  # broken since the last run: a fresh pool
                    fut = self._start().submit(_run_marked, fn, job, str(mark))
                futures[fut] = index
                self._marks[fut] = mark
        return futures

    def _after_a_worker_died(
        self, futures: dict[Future[Payload], int], again: bool
    ) -> list[tuple[int, Payload]]:
        """After a worker died and the pool failed `futures`: the failed runs to record, and a
        fresh pool for the others. A run fails when it was in the worker that died; if no such
        worker is known (all of them were ended by the pool, or by SIGTERM), every run then in
        a worker. If none was (a worker died between runs), none fails, unless that happened
        `again` (a worker that cannot start): then every run fails."""
        assert self._pool is not None
        workers = dict(getattr(self._pool, "_processes", None) or {})  # the pool's own record
        marked = {i: _pid_in(self._marks.pop(f)) for f, i in futures.items()}
        in_worker = {i: pid for i, pid in marked.items() if pid in workers}  # index -> its pid
        codes = {}
        deadline = time.monotonic() + KILL_SECONDS
        for pid in set(in_worker.values()):  # the pool ends the other workers by SIGTERM
            codes[pid] = _exit_code(workers[pid], deadline)
        dead = {
            i: code
            for i, pid in in_worker.items()
            if (code := codes[pid]) is not None and code != -signal.SIGTERM
        }
        self._stop(0.0)
        if dead:
            errors = {i: f"its worker died ({_exit(code)})" for i, code in dead.items()}
        elif in_worker:
            errors = dict.fromkeys(
                in_worker, "a worker died while this run was in one (this run's or another's)"
            )
        elif again:
            errors = dict.fromkeys(futures.values(), "the pool's workers die before a run starts")
        else:
            errors = {}
        return [(i, Payload(None, error=error)) for i, error in errors.items()]

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
        """Stop the pool in bounded time (after `drain` has waited, a worker still busy is
        stopped at once)."""
        self._stop(0.0 if self._drained else STOP_SECONDS)
        if self._mark_dir is not None:
            self._mark_dir.cleanup()
            self._mark_dir = None

    def _stop(self, seconds: float) -> None:
        """Queued runs are cancelled, and a worker that has not ended `seconds` later (one caught
        by Ctrl-C mid-way can wait forever on a lock) is terminated, and killed if it is still
        there `KILL_SECONDS` after that: a search turns SIGTERM into an interrupt of its own (a
        resumable checkpoint), which the pool's worker survives, waiting for work that never
        comes."""
        if self._pool is None:
            return
        pool = self._pool
        workers = list((getattr(pool, "_processes", None) or {}).values())
        # what shutdown(wait=False) lets go of: the pool's thread and its two queues
        thread = getattr(pool, "_executor_manager_thread", None)
        queues = [getattr(pool, name, None) for name in ("_call_queue", "_result_queue")]
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + seconds
        for proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(KILL_SECONDS)
            if proc.is_alive():  # a search takes SIGTERM as Ctrl-C, and its worker goes on
                proc.kill()
                proc.join()
        # the workers are gone: the pool's thread ends at once; its queues are closed here too,
        # as a thread that died of Python 3.11's InvalidStateError did not (else multiprocessing
        # warns at exit of "leaked semaphore objects")
        if thread is not None:
            thread.join(KILL_SECONDS)
        for queue in queues:
            if queue is not None:
                queue.close()
        self._pool = None
        self._marks.clear()


def _quiet_cancelled_futures() -> None:
    """Keep the pool's thread from printing a traceback when a worker dies after runs were
    cancelled (a Ctrl-C while a worker starts, then the pool stopped): Python 3.11's pool sets
    the cancelled futures' exception and fails (CPython gh-107219, fixed in 3.12)."""
    previous = threading.excepthook
    if getattr(previous, "quiet_cancelled", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (
            isinstance(args.exc_value, InvalidStateError)
            and str(args.exc_value).startswith("CANCELLED")
            and type(args.thread).__name__ == "_ExecutorManagerThread"
        ):
            previous(args)

    hook.quiet_cancelled = True  # type: ignore[attr-defined]  # a marker mypy's function type lacks
    threading.excepthook = hook


def _run_marked(fn: JobFn, job: dict[str, Any], mark: str) -> Payload:
    """`execute_run` in a pool's worker, with a file at `mark` that holds the worker's pid
    while the run is in it: if the worker dies, the driver can tell which run it had."""
    if interrupted_while_starting():  # the sweep is stopping: take no run
        return Payload(None, error="KeyboardInterrupt: Ctrl-C while its worker started")
    Path(mark).write_text(str(os.getpid()))
    try:
        return execute_run(fn, job)
    finally:
        Path(mark).unlink(missing_ok=True)


def _pid_in(mark: Path) -> int | None:
    """The pid a run's mark holds: None if the run was not in a worker (not started, or ended)."""
    try:
        text = mark.read_text()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _exit_code(proc: multiprocessing.process.BaseProcess, deadline: float) -> int | None:
    """`proc`'s exit code, waiting for it until `deadline` (None: still there; a search survives
    SIGTERM). Not one join: a process that died has closed its sentinel a moment before the
    kernel lets it be reaped, and a join that wakes in between reads no exit code (under load,
    the worker that died was then taken for one still running: seen twice in CI-like runs)."""
    while True:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.exitcode is not None or time.monotonic() >= deadline:
            return proc.exitcode
        time.sleep(0.01)


def _exit(code: int) -> str:
    """A dead worker's exit code in words: "exit code 1", "killed by SIGKILL: out of memory?"."""
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}" + (": out of memory?" if -code == signal.SIGKILL else "")


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds where nothing answers at `address` (``HOST:PORT`` or
    ``ray://HOST:PORT``): `ray.init` would wait minutes for a cluster there. Addresses without a
    port (``auto``) are left to Ray.

    >>> check_ray_address("auto")
    """
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__  # "Connection refused", "timed out"
        raise EvopruneError(
            f"--ray-address: no Ray cluster at {address} (nothing answers at {host}:{port}: {why})"
        ) from None


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
                check_ray_address(address)
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
