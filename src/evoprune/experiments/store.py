"""The results store of a sweep: one SQLite file, ``runs/NAME/results.sqlite`` (stdlib sqlite3, WAL).

Tables:

- ``runs``: one row per run key — what ran (spec, label, method, dataset, classes, arch, seed,
  init, the full job as JSON), how it went (status, error, timings) and every scalar field of its
  ``result.json`` as a column (new fields add columns), plus the whole result as JSON, versions
  and git revision.
- ``members``: which spec asked for which key under which arm label (a run can serve several
  specs: fig10 and fig11 share the digits runs).
- ``history``: the rows of each run's ``history.csv`` in order (``row``): per generation for the
  GA (``generation``, ``best_performance``, ...), per epoch for edge-popup and backprop (``epoch``).
- ``meta``: the specs and profiles swept into this store.

Only the sweep driver writes, one transaction per finished run, so a killed sweep leaves every
finished run counted and nothing half-recorded. Tickets and history files live beside the file,
in ``runs/NAME/runs/KEY/``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from evoprune.errors import EvopruneError
from evoprune.io import finite

FILENAME = "results.sqlite"
FINISHED, FAILED = "finished", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    spec TEXT, label TEXT, method TEXT, dataset TEXT, classes INTEGER,
    arch TEXT, arch_name TEXT, seed INTEGER, init TEXT, normalize INTEGER,
    objective TEXT, variant TEXT,
    config TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT,
    submitted REAL, finished REAL, queue_seconds REAL,
    versions TEXT, git_revision TEXT, result TEXT, run_dir TEXT
);
CREATE TABLE IF NOT EXISTS members (
    spec TEXT NOT NULL, key TEXT NOT NULL, label TEXT NOT NULL, axes TEXT NOT NULL,
    position INTEGER,
    PRIMARY KEY (spec, key, label)
);
CREATE TABLE IF NOT EXISTS history (
    key TEXT NOT NULL, row INTEGER NOT NULL,
    PRIMARY KEY (key, row)
);
CREATE TABLE IF NOT EXISTS meta (
    spec TEXT NOT NULL, profile TEXT NOT NULL, source TEXT, figure TEXT, title TEXT,
    labels TEXT, first_swept REAL, planned INTEGER,
    PRIMARY KEY (spec, profile)
);
"""

# result.json fields kept as JSON text (not scalar) or mapped to a fixed column above
_STRUCTURED = {"arch", "config", "versions", "git_revision"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def store_path(folder: str | Path) -> Path:
    return Path(folder) / FILENAME


class Store:
    """A sweep's SQLite file. ``Store(folder)`` opens (and creates) ``folder/results.sqlite``.

    >>> import tempfile
    >>> s = Store(tempfile.mkdtemp())
    >>> s.finished_keys()
    set()
    """

    def __init__(self, folder: str | Path, create: bool = True):
        self.folder = Path(folder)
        path = store_path(self.folder)
        if not create and not path.is_file():
            runs = (
                ""
                if not any(self.folder.glob("*/result.json"))
                else (f"; for single runs: evoprune compare {self.folder}")
            )  # a folder of `search` runs has no store
            raise EvopruneError(f"{self.folder}: no results store here (expected {path}){runs}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:  # a truncated or foreign file
            self.db.close()
            raise EvopruneError(
                f"{path}: not a readable results store ({exc}); move it away and run the sweep "
                "again: it rebuilds the store from the finished run folders"
            ) from None
        self.db.executescript(_SCHEMA)
        for name in ("figure", "title", "labels"):  # stores written before these columns existed
            if name not in self.columns("meta"):
                self.db.execute(f"ALTER TABLE meta ADD COLUMN {name} TEXT")
        if "position" not in self.columns("members"):
            self.db.execute("ALTER TABLE members ADD COLUMN position INTEGER")
        if "planned" not in self.columns("meta"):
            self.db.execute("ALTER TABLE meta ADD COLUMN planned INTEGER")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------

    def finished_keys(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT key FROM runs WHERE status = ?", (FINISHED,))}

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.db.execute(f"PRAGMA table_info({table})")]

    def runs_frame(self, spec: str | None = None) -> pd.DataFrame:
        """Runs joined with their spec membership: one row per (spec, label, key)."""
        sql = (
            "SELECT m.spec AS member_spec, m.label AS member_label, m.axes AS axes, r.* "
            "FROM members m JOIN runs r ON r.key = m.key"
        )
        params: tuple[Any, ...] = ()
        if spec is not None:
            sql += " WHERE m.spec = ?"
            params = (spec,)
        # in plan order: a spec as swept last, each in its grid order (members of stores
        # written before positions were kept, without one, in the order they were added)
        order = (
            " ORDER BY (SELECT MIN(first_swept) FROM meta WHERE meta.spec = m.spec), m.spec, "
            "m.position IS NULL, m.position, m.rowid"
        )
        frame = pd.read_sql_query(sql + order, self.db, params=params)
        frame = frame.drop(columns=["spec", "label"]).rename(
            columns={"member_spec": "spec", "member_label": "label"}
        )
        return frame

    def history_frame(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        frame = pd.read_sql_query("SELECT * FROM history ORDER BY key, row", self.db)
        if keys is not None:
            frame = frame[frame["key"].isin(set(keys))]
        return frame.reset_index(drop=True)

    def plan_status(self) -> pd.DataFrame:
        """Per spec: the runs it asks for, and how many finished and failed (the rest never ran,
        e.g. an interrupted sweep). The runs of arms that wait for others count as planned
        before they are members (stores written before the count was kept: once they are)."""
        return pd.read_sql_query(
            "SELECT m.spec AS spec, COALESCE((SELECT MAX(planned) FROM meta "
            "WHERE meta.spec = m.spec), COUNT(*)) AS planned, "
            "SUM(r.status = ?) AS finished, SUM(r.status = ?) AS failed "
            "FROM members m LEFT JOIN runs r ON r.key = m.key GROUP BY m.spec ORDER BY m.spec",
            self.db,
            params=(FINISHED, FAILED),
        ).fillna(0)

    def specs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM meta ORDER BY first_swept", self.db)

    def mean_of(
        self, spec: str, label: str, axes: dict[str, Any], field: str
    ) -> tuple[float | None, str]:
        """Mean of result field `field` over the runs of arm `label` at grid point `axes`, once
        all of them have finished; else ``(None, why)``."""
        _check_name(field)
        if field not in self.columns("runs"):
            return None, f"no run has a field {field!r}"
        rows = self.db.execute(
            f"SELECT r.{field}, r.status, m.axes FROM members m LEFT JOIN runs r ON r.key = m.key "
            "WHERE m.spec = ? AND m.label = ?",
            (spec, label),
        ).fetchall()
        rows = [(v, status) for v, status, a in rows if json.loads(a) == axes]
        waiting = sum(status != FINISHED for _, status in rows)
        values = [v for v, status in rows if status == FINISHED and v is not None]
        if not rows or waiting or not values:
            return None, f"{waiting} of {len(rows)} runs of {label!r} not finished"
        return sum(values) / len(values), ""

    # -- writing (the sweep driver only) ---------------------------------------------------

    def note_spec(
        self,
        spec: str,
        profile: str,
        source: str,
        figure: str = "",
        title: str = "",
        labels: list[str] | None = None,
        planned: int | None = None,
    ) -> None:
        """Remember a swept spec: where it came from, its figure, its arms in spec order and how
        many runs it plans (those that wait for others included). The folder holds one profile
        of a spec: the last one swept."""
        with self.transaction() as db:
            db.execute("DELETE FROM meta WHERE spec = ? AND profile != ?", (spec, profile))
            db.execute(
                "INSERT INTO meta (spec, profile, source, figure, title, labels, first_swept, "
                "planned) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (spec, profile) DO UPDATE "
                "SET source = excluded.source, figure = excluded.figure, title = excluded.title, "
                "labels = excluded.labels, planned = excluded.planned",
                (
                    spec,
                    profile,
                    source,
                    figure or spec,
                    title or spec,
                    json.dumps(labels or []),
                    time.time(),
                    planned,
                ),
            )

    def keep_plan(self, spec: str, planned: set[tuple[str, str]], deferred: set[str]) -> int:
        """Forget the members of `spec` its current plan does not ask for: the runs of an
        earlier version of the spec or of another profile, which must not pool with this one's.
        `planned`: its (key, label) pairs; arms in `deferred` wait for their references and are
        settled by `keep_members`. The runs themselves stay (a key names its job: revert the
        spec and they count again). Returns how many members went."""
        with self.transaction() as db:
            rows = db.execute("SELECT key, label FROM members WHERE spec = ?", (spec,)).fetchall()
            gone = [(k, lab) for k, lab in rows if (k, lab) not in planned and lab not in deferred]
            db.executemany(
                "DELETE FROM members WHERE spec = ? AND key = ? AND label = ?",
                [(spec, k, lab) for k, lab in gone],
            )
        return len(gone)

    def add_members(self, spec: str, runs: Iterable[tuple[str, str, dict[str, Any], int]]) -> None:
        """Record that `spec` asks for these (key, label, axes, position in its plan)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO members (spec, key, label, axes, position) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (spec, key, label) DO UPDATE SET position = excluded.position",
                [
                    (spec, key, label, json.dumps(axes, sort_keys=True), position)
                    for key, label, axes, position in runs
                ],
            )

    def keep_members(self, spec: str, label: str, keys: set[str]) -> None:
        """Forget runs of arm `label` that `spec` no longer asks for (a re-resolved reference)."""
        with self.transaction() as db:
            for (key,) in db.execute(
                "SELECT key FROM members WHERE spec = ? AND label = ?", (spec, label)
            ).fetchall():
                if key not in keys:
                    db.execute(
                        "DELETE FROM members WHERE spec = ? AND label = ? AND key = ?",
                        (spec, label, key),
                    )

    def record(
        self,
        key: str,
        *,
        spec: str,
        label: str,
        job: dict[str, Any],
        result: dict[str, Any] | None,
        history: list[dict[str, Any]] | None = None,
        error: str | None = None,
        submitted: float | None = None,
        finished: float | None = None,
        run_dir: str | None = None,
    ) -> None:
        """Write one run (finished when `result` is given, else failed) in one transaction."""
        result = result or {}
        scalars = {k: v for k, v in result.items() if k not in _STRUCTURED and _scalar(v)}
        for name in scalars:
            _check_name(name)
        row: dict[str, Any] = {
            "key": key,
            "spec": spec,
            "label": label,
            "method": job.get("method"),
            "dataset": result.get("dataset", job.get("dataset")),
            "classes": result.get("classes", job.get("classes")),
            "arch": json.dumps(result.get("arch", job.get("arch"))),
            "arch_name": _arch_name(job.get("arch")),
            "seed": job.get("seed"),
            "init": result.get("init", job.get("init", "uniform")),
            "normalize": _bool_or_none(result.get("normalize", job.get("normalize"))),
            "objective": result.get("objective", job.get("objective")),
            "variant": result.get("variant", job.get("method")),
            "config": json.dumps(job, sort_keys=True),
            "status": FINISHED if error is None else FAILED,
            "error": error,
            "submitted": submitted,
            "finished": finished,
            "queue_seconds": None,
            "versions": json.dumps(result.get("versions")) if result.get("versions") else None,
            "git_revision": result.get("git_revision"),
            # strict JSON, as in result.json (a run recovered from its folder reads the same)
            "result": json.dumps(finite(result), allow_nan=False, default=str) if result else None,
            "run_dir": run_dir,
        }
        if submitted is not None and finished is not None and "wall_seconds" in scalars:
            row["queue_seconds"] = max(
                0.0, finished - submitted - float(scalars["wall_seconds"] or 0)
            )
        for name, value in scalars.items():
            row.setdefault(name, value)  # fixed columns (dataset, seed, ...) keep their meaning
        with self.transaction() as db:
            self._add_columns(db, "runs", row)
            names = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            db.execute(
                f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})",
                [_sql(v) for v in row.values()],
            )
            db.execute("DELETE FROM history WHERE key = ?", (key,))
            for i, hrow in enumerate(history or []):
                hrow = {
                    "key": key,
                    "row": i,
                    **{k: _number(v) for k, v in hrow.items() if k not in ("key", "row")},
                }
                self._add_columns(db, "history", hrow)
                names = ", ".join(hrow)
                marks = ", ".join("?" for _ in hrow)
                db.execute(
                    f"INSERT OR REPLACE INTO history ({names}) VALUES ({marks})",
                    list(hrow.values()),
                )

    def _add_columns(self, db: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        """Add a column for each new field, without a declared type: SQLite then keeps every
        value as it comes. (A type taken from the first value went wrong when that value was
        None: a TEXT column stored the next runs' numbers as text.)"""
        have = set(self.columns(table))
        for name in row:
            if name not in have:
                _check_name(name)
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name}")
                have.add(name)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _sql(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _bool_or_none(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _number(value: Any) -> Any:
    """history.csv cells arrive as text; store numbers as numbers, and an empty cell (a
    column that a row's phase does not fill, as `generation` in a local search's passes) as
    NULL, not as the text ''."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        as_float = float(value)
    except ValueError:
        return value
    return (
        int(as_float)
        if as_float.is_integer() and "." not in value and "e" not in value.lower()
        else as_float
    )


def _arch_name(arch: Any) -> str | None:
    if arch is None:
        return None
    if isinstance(arch, (list, tuple)):
        return ",".join(str(w) for w in arch)
    return str(arch)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise EvopruneError(f"results store: field name {name!r} is not a plain identifier")
