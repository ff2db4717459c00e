"""One run's results folder: ``result.json``, ``ticket.npz``, ``history.csv``.

Every method (GA, edge-popup, backprop) writes the same layout and the same core fields, so
sweeps, the results store and `evoprune evaluate` treat them alike. ``result.json`` is written
last: a folder with it is a finished run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evoprune.data.registry import Dataset
from evoprune.io import provenance, write_atomic, write_json
from evoprune.ticket import Ticket

# The fields every method's result.json carries, whatever it runs: `compare`, the store and the
# report read these. ``variant`` names the algorithm within the method (the GA's variant, the
# pruning method, the selection dynamics, a study's sampler or optimizer).
SHARED_FIELDS = ("method", "variant", "seed", "config", "wall_seconds", "versions",
                 "git_revision", "machine")  # fmt: skip

# The fields every strong-ticket search's result.json carries (GA family, edge-popup, backprop:
# the core specification's list); sweeps, the store and the report rely on them.
RESULT_FIELDS = (
    "dataset", "classes", "arch", "variant", "objective", "seed", "init", "generations",
    "evaluations", "wall_seconds", "train_accuracy", "test_accuracy", "train_loss", "test_loss",
    "sparsity", "sparsity_before_post_prune", "test_accuracy_before_post_prune", "versions",
    "git_revision",
)  # fmt: skip


def base_result(job: dict[str, Any], ds: Dataset, layers: list[int] | str | None) -> dict[str, Any]:
    """The fields every result.json starts with: what ran, on what, and with which code
    (`layers`: the layer list, a conv net's name, or None)."""
    return {
        "method": job["method"],
        # a user's file by its name (two files must not share the label "file")
        "dataset": Path(ds.config["path"]).name
        if "path" in ds.config
        else ds.config.get("name", ds.name),
        "classes": ds.n_classes,
        "arch": layers,
        "seed": job.get("seed", 0),
        "init": job.get("init", "uniform"),
        "normalize": ds.config.get("normalize"),
        # "global" (the paper's one range), a per-feature record with the fitted ranges, or None
        "scaling": ds.config.get("scaling") or ("global" if ds.config.get("normalize") else None),
        "config": job,
        # which data, exactly: a file's or MNIST folder's absolute path and SHA-256 (the job
        # holds the path as typed), a generated set's sizes and noise
        "data": {k: v for k, v in ds.config.items() if k not in ("scaling", "columns")},
        **provenance(),
    }


def write_history_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    if rows:  # the columns of every row, in order of appearance; a row without one leaves it empty
        columns = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return write_atomic(path, buf.getvalue())


@contextmanager
def writing_run_dir(out: str | Path) -> Iterator[Path]:
    """Write a run's folder inside: `out` is made, and the files made inside are removed again
    if it ends by an exception or an interrupt (no half a run folder is left behind)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    try:
        yield out
    except BaseException:
        for path in set(out.iterdir()) - before:
            if path.is_file():
                path.unlink()
        raise


def write_run_dir(
    out: str | Path,
    result: dict[str, Any],
    ticket: Ticket | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a run's folder; each file atomically, ``result.json`` last (an interrupt before it
    removes the files written: no ticket without its result)."""
    with writing_run_dir(out) as out:
        if ticket is not None:
            ticket.save(out / "ticket.npz")
        if history is not None:
            write_history_csv(out / "history.csv", history)
        write_json(out / "result.json", result)
    return out
