"""Signals as exceptions, for a while: SIGTERM as Ctrl-C in a search (a scheduler's kill still
leaves a resumable checkpoint), Ctrl-C past scikit-learn (which swallows ``KeyboardInterrupt``),
and the CLI's note that Ctrl-C came (a library may turn it into an error of its own). And a
pool worker that ignores Ctrl-C while it starts (`sigint_held`, `start_worker`).

This module imports nothing heavy: a spawned worker imports it before it can ignore Ctrl-C.

>>> import signal
>>> with raising(signal.SIGTERM, KeyboardInterrupt) as seen:
...     pass
>>> seen
[]
"""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any


@contextmanager
def raising(signum: int, error: type[BaseException]) -> Iterator[list[int]]:
    """While inside, signal `signum` raises `error` and is noted in the yielded list; the
    previous handler comes back afterwards. Off the main thread (where Python takes no signal
    handlers) it changes nothing, and an ignored signal stays ignored: a shell script starts a
    command it puts in the background (``&``) with Ctrl-C ignored, so that Ctrl-C in the script's
    terminal stops the script and not that command."""
    seen: list[int] = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signum) is signal.SIG_IGN
    ):
        yield seen
        return

    def handler(number: int, frame: Any) -> None:
        seen.append(number)
        _taken.append(number)
        raise error

    previous = signal.signal(signum, handler)
    try:
        yield seen
    finally:
        signal.signal(signum, previous)


_taken: list[int] = []  # every signal a `raising` handler has taken in this process


@contextmanager
def errors_of_interrupts() -> Iterator[None]:
    """Inside, an error that a library made of a signal `raising` took comes out as the
    ``KeyboardInterrupt`` it was: numba's dispatcher, interrupted as it calls a compiled
    kernel, reports a ``SystemError`` ("returned a result with an exception set"). Any other
    error passes as it is."""
    before = len(_taken)
    try:
        yield
    except Exception as exc:
        if len(_taken) == before:
            raise
        raise KeyboardInterrupt from exc


def sigterm_as_interrupt() -> AbstractContextManager[list[int]]:
    """Treat SIGTERM like Ctrl-C, so a killed search still leaves a resumable checkpoint."""
    return raising(signal.SIGTERM, KeyboardInterrupt)


_worker_interrupted: list[int] = []  # a Ctrl-C that came while this worker started


def start_worker(setup: str) -> None:
    """A process pool's initializer: import and call `setup` (``"module:function"``), noting
    Ctrl-C instead of dying of it, then take Ctrl-C as the worker took it before (a run in the
    worker is interrupted by it).

    Ctrl-C in a terminal reaches the whole process group: a worker still importing PyTorch
    died of it with a traceback, and broke the pool. A worker started inside `sigint_held`
    starts with Ctrl-C held back, so that one that comes before this is noted too; its runs
    then end at once (`interrupted_while_starting`). A worker that started with Ctrl-C ignored
    (its driver ignores it: ``nohup``, a script's ``&``) keeps ignoring it and notes nothing."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    previous = signal.signal(
        signal.SIGINT,
        signal.SIG_IGN if ignored else lambda signum, frame: _worker_interrupted.append(1),
    )
    release_sigint()
    try:
        module, name = setup.split(":")
        getattr(importlib.import_module(module), name)()
    finally:
        signal.signal(signal.SIGINT, previous)


def release_sigint() -> None:
    """Let through the Ctrl-C that `sigint_held` held back from this process as it started."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def interrupted_while_starting() -> bool:
    """Whether Ctrl-C came while this pool worker started (`start_worker`)."""
    return bool(_worker_interrupted)


@contextmanager
def sigint_held() -> Iterator[None]:
    """Hold Ctrl-C back from this thread while inside (it comes on leaving): a process started
    meanwhile starts with it held back too, until it lets it through (`start_worker`).
    multiprocessing's resource tracker, when it starts, lets Ctrl-C through again: it is started
    first."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
