"""One run's results folder: ``result.json``, ``ticket.npz``, ``history.csv``.

Every method (GA, edge-popup, backprop) writes the same layout and the same core fields, so
sweeps, the results store and `evoprune evaluate` treat them alike. ``result.json`` is written
last: a folder with it is a finished run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoprune.data.registry import Dataset
from evoprune.evaluate import Evaluator
from evoprune.io import provenance, write_atomic, write_json
from evoprune.masks import MaskSpace
from evoprune.ticket import Ticket

# The fields every method's result.json carries (the core specification's list); sweeps, the store
# and the report rely on them.
RESULT_FIELDS = (
    "dataset", "classes", "arch", "variant", "objective", "seed", "init", "generations",
    "evaluations", "wall_seconds", "train_accuracy", "test_accuracy", "train_loss", "test_loss",
    "sparsity", "sparsity_before_post_prune", "test_accuracy_before_post_prune", "versions",
    "git_revision",
)  # fmt: skip


def score_splits(
    model: nn.Module,
    mask: torch.Tensor,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    space: MaskSpace | None = None,
    device: str = "cpu",
    memory_mb: float = 64.0,
    metrics: tuple[str, ...] = ("accuracy", "loss"),
) -> dict[str, float]:
    """Each metric of one mask on each named split: ``{split}_accuracy``, ``{split}_loss``
    (the mean cross-entropy) and, when asked, ``{split}_f1``."""
    out: dict[str, float] = {}
    for split, (X, y) in splits.items():
        ev = Evaluator(model, X, y, "accuracy", space=space, device=device, memory_mb=memory_mb,
                       cache=False, metrics=metrics)  # fmt: skip
        m = ev.evaluate(mask.view(1, -1))
        out |= {f"{split}_{name}": float(m[name][0]) for name in metrics}
    return out


def score_fit(model, space, mask, X, y, X_test, y_test, config, objective: str) -> dict[str, float]:
    """A search's scores of `mask`: train (and test when given) accuracy and loss, and F1 when
    it is the objective; `config` gives the device and memory bound."""
    splits = {"train": (X, y)} | ({"test": (X_test, y_test)} if X_test is not None else {})
    metrics = ("accuracy", "loss", "f1") if objective == "f1" else ("accuracy", "loss")
    return score_splits(model, mask, splits, space, config.device, config.memory_mb, metrics)


def score(model: nn.Module, mask: torch.Tensor, ds: Dataset) -> dict[str, float]:
    """Train/test accuracy and mean cross-entropy of one mask over `model`."""
    splits = {"train": (ds.X_train, ds.y_train), "test": (ds.X_test, ds.y_test)}
    return score_splits(model, mask, splits)


def base_result(job: dict[str, Any], ds: Dataset, layers: list[int] | None) -> dict[str, Any]:
    """The fields every result.json starts with: what ran, on what, and with which code."""
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
        **provenance(),
    }


def write_history_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return write_atomic(path, buf.getvalue())


def write_run_dir(
    out: str | Path,
    result: dict[str, Any],
    ticket: Ticket | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a run's folder; each file atomically, ``result.json`` last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ticket is not None:
        ticket.save(out / "ticket.npz")
    if history is not None:
        write_history_csv(out / "history.csv", history)
    write_json(out / "result.json", result)
    return out
