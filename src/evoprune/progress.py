"""Progress on long jobs, one way for every command.

On a terminal, a tqdm bar. Where stderr is no terminal (a log file, a batch job, ``nohup``), a
bar's carriage returns make an unreadable log, so there a plain line goes to stderr at most every
30 seconds (and when a known total is reached): short jobs stay quiet, long ones show they move.
``enabled=False`` (the commands' ``--quiet``) shows nothing.

>>> bar = progress_bar(total=3, desc="demo", enabled=False)
>>> for _ in range(3):
...     bar.update(1)
>>> bar.close()
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any

EVERY_SECONDS = 30.0


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    **tqdm_options: Any,
) -> Any:
    """A tqdm bar on a terminal, `LogLines` in a log, nothing when not `enabled`. Both have
    ``update``, ``set_postfix_str``, ``close``, iteration (given `iterable`) and ``with``."""
    if not enabled:  # no tqdm: its lock is a multiprocessing semaphore, which a sweep's worker
        # stopped by SIGTERM left behind ("leaked semaphore objects" after a Ctrl-C's one line)
        return Silent(iterable, total=total, desc=desc, unit=unit)
    if not sys.stderr.isatty():
        return LogLines(iterable, total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, **tqdm_options)


class LogLines:
    """A progress report for logs: ``DESC: DONE/TOTAL UNITs, SECONDS s, POSTFIX`` on stderr."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        every: float = EVERY_SECONDS,
    ):
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit, self.every = (
            iterable, total, desc, unit, every)  # fmt: skip
        self.n: float = 0
        self.postfix = ""
        self.start = self.last = time.perf_counter()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every or (self.total is not None and self.n >= self.total):
            self.last = now
            done = f"{self.n:g}" + (f"/{self.total:g}" if self.total is not None else "")
            tail = f", {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: {done} {self.unit}, {now - self.start:.0f} s{tail}",
                  file=sys.stderr, flush=True)  # fmt: skip

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = True) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in (values or {}).items())

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def close(self) -> None:
        pass

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Silent(LogLines):
    """A bar that shows nothing (``enabled=False``); it counts, as the others do."""

    def update(self, n: float = 1) -> None:
        self.n += n
