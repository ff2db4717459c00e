"""Signals as exceptions, for a while: SIGTERM as Ctrl-C in a search (a scheduler's kill still
leaves a resumable checkpoint), Ctrl-C past scikit-learn (which swallows ``KeyboardInterrupt``),
and the CLI's note that Ctrl-C came (a library may turn it into an error of its own).

>>> import signal
>>> with raising(signal.SIGTERM, KeyboardInterrupt) as seen:
...     pass
>>> seen
[]
"""

from __future__ import annotations

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
        raise error

    previous = signal.signal(signum, handler)
    try:
        yield seen
    finally:
        signal.signal(signum, previous)


def sigterm_as_interrupt() -> AbstractContextManager[list[int]]:
    """Treat SIGTERM like Ctrl-C, so a killed search still leaves a resumable checkpoint."""
    return raising(signal.SIGTERM, KeyboardInterrupt)
