"""Where an hpo study lives, and how it outlives a killed worker.

The study lives in Optuna storage (a `JournalStorage` file in the run folder by default, or an RDB
URL), so several worker processes, or machines sharing the folder or database, work on one study,
and a killed study resumes with the same command. Every RUNNING trial carries its owner (host, pid)
and a heartbeat; a trial whose owner process is gone (same host) or whose heartbeat is older than
`grace` seconds is marked FAIL, and a new trial takes its place. (Optuna's own heartbeat covers RDB
storage only.)

Each worker also saves its sampler once a trial's parameters are drawn (`save_sampler`; pickling
is Optuna's own way to resume a sampler), so that a resumed worker draws on from where it stopped
instead of from a fresh seed, and finishes the trial the kill cut short with the parameters it
had drawn (`cut_trial`): on one worker a killed study resumes to the uninterrupted one.

Optuna is imported on first use (`load_optuna`, which hpo shares), with a hint how to install it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from evoprune.errors import EvopruneError

JOURNAL = "study.journal"


def load_optuna() -> ModuleType:
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - a dependency, but say how to get it
        raise EvopruneError("hpo needs optuna: pip install optuna cmaes") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(out: Path, url: str | None = None) -> Any:
    """The study's storage: the database at `url` (sqlite:///..., postgresql://...), or else the
    journal file in `out`."""
    optuna = load_optuna()
    if url:
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many kinds
            raise EvopruneError(f"storage: cannot open {url!r} ({type(exc).__name__})") from None
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    # absolute: the lock is a symlink to this path, which a relative one would make dangle
    # (after a kill, a resume then waited on it forever)
    path = str((out / JOURNAL).absolute())
    backend = JournalFileBackend(path, lock_obj=JournalFileSymlinkLock(path, grace_period=10))
    return optuna.storages.JournalStorage(backend)


# --- liveness ---------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owned_here_by_the_dead(t: Any) -> bool:
    """Whether RUNNING trial `t` belongs to a process of this host that is gone (or to this
    process, which is not running it)."""
    owner = t.system_attrs.get("evoprune:owner")
    if not owner or owner.get("host") != socket.gethostname():
        return False
    return not _alive(int(owner["pid"])) or (owner["pid"] == os.getpid() and t.number not in _OWN)


def fail_stale_trials(study: Any, grace: float) -> int:
    """Mark FAIL every RUNNING trial whose worker is gone; returns how many."""
    optuna = load_optuna()
    host, now, failed = socket.gethostname(), time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.system_attrs.get("evoprune:owner")
        beat = t.system_attrs.get("evoprune:heartbeat")
        if beat is None:
            beat = t.datetime_start.timestamp() if t.datetime_start else now
        if owner and owner.get("host") == host:
            dead = _owned_here_by_the_dead(t)
        else:
            dead = now - float(beat) > grace
        if dead:
            try:
                study._storage.set_trial_system_attr(t._trial_id, "evoprune:stale", True)
                study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
                failed += 1
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker got there first, or it just finished
    return failed


_OWN: set[int] = set()  # trial numbers this process is running now


class Heartbeat:
    """Beats for the trial this worker runs, from a thread, every `interval` seconds."""

    def __init__(self, storage: Any, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_id: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self.trial_id is not None:
                    # the trial may have just finished: a failed beat is harmless
                    with contextlib.suppress(Exception):
                        self.storage.set_trial_system_attr(
                            self.trial_id, "evoprune:heartbeat", time.time()
                        )

    @contextlib.contextmanager
    def owning(self, trial: Any) -> Iterator[None]:
        """While inside, `trial` is this process's: its owner (host, pid) is in storage, its
        number in `_OWN`, and it beats."""
        _OWN.add(trial.number)
        owner = {"host": socket.gethostname(), "pid": os.getpid()}
        self.storage.set_trial_system_attr(trial._trial_id, "evoprune:owner", owner)
        self.watch(trial._trial_id)
        try:
            yield
        finally:
            self.watch(None)
            _OWN.discard(trial.number)

    def watch(self, trial_id: int | None) -> None:
        with self._lock:
            self.trial_id = trial_id

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def stale_before(trials: list[Any], number: int) -> int:
    """How many trials numbered below `number` were failed as stale: a trial that replaces one
    cut short takes its place in the seeds (`hpo.evaluate_trial`)."""
    return sum(t.number < number and bool(t.system_attrs.get("evoprune:stale")) for t in trials)


# --- a worker's sampler, saved after each draw ------------------------------------------------


def sampler_path(out: Path, worker: int) -> Path:
    """Where worker `worker` of this host saves its sampler: machines sharing the folder (and
    its journal) each number their workers from 0."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
    return out / f"sampler-{host}-{worker}.pickle"


def save_sampler(out: Path, worker: int, trial: Any, sampler: Any, seconds: float) -> None:
    """Worker `worker`'s `sampler` just after it drew `trial`'s parameters (and the `seconds` the
    drawing took), replacing the one saved before it (written aside, then renamed into place)."""
    state = {"trial": trial.number, "params": dict(trial.params), "sampler": sampler,
             "sampler_seconds": seconds}  # fmt: skip
    path = sampler_path(out, worker)
    out.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_bytes(pickle.dumps(state))
    os.replace(scratch, path)


def load_sampler(out: Path, worker: int, trials: list[Any]) -> dict[str, Any] | None:
    """What `save_sampler` left for worker `worker`, if it was saved in this study: its trial is
    in `trials` with the parameters it had drawn; None otherwise."""
    path = sampler_path(out, worker)
    if not path.is_file():
        return None
    try:
        state = pickle.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - another version's sampler, a truncated file: start afresh
        return None
    drawn = {t.number: t.params for t in trials}
    return state if drawn.get(state.get("trial")) == state.get("params") else None


def cut_trial(trials: list[Any], saved: dict[str, Any] | None) -> Any | None:
    """The trial whose parameters `saved` followed, if a kill cut it short on this host: it is
    still RUNNING and its process is gone. Its worker finishes it instead of replacing it."""
    if saved is None:
        return None
    optuna = load_optuna()
    for t in trials:
        if t.number == saved["trial"] and t.state == optuna.trial.TrialState.RUNNING:
            return t if _owned_here_by_the_dead(t) else None
    return None
