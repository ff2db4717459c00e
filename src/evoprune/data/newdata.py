"""New data for a trained ticket, preprocessed exactly as the ticket's training data was.

A ticket's dataset config says how its training features were made, and `load_like` repeats it
on a new file with the same numbers:

- mnist: pixels / 255 for integer images (floats in [0, 1] as they are; see
  `evoprune.data.files.unit_pixels`), then as below;
- ``normalize`` false: nothing more (raw features);
- ``scaling`` a per-feature record (a user's file): each column by its training-split range;
- otherwise (the built-in datasets, old file tickets): the paper's global min-max by the
  training split's one range, ``global_range`` (rebuilt from the training data for tickets
  that predate the record).

A CSV's columns are matched by name to those the ticket was trained on (``columns``). An
explicit `normalize` that differs from the ticket's overrides it (new data then scaled by its
own range); the returned notes say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoprune.data.builtin import DATASETS
from evoprune.data.files import load_arrays, unit_pixels
from evoprune.data.registry import (
    LOADERS,
    class_index,
    fitted_scaling,
    float32_features,
    split_arrays,
)
from evoprune.data.scaling import FeatureScaling, global_min_max, scale_global
from evoprune.errors import EvopruneError


def trained_normalize(trained: dict[str, Any]) -> bool:
    """Whether the ticket's training features were scaled (a built-in's default if unrecorded)."""
    if "normalize" in trained:
        return bool(trained["normalize"])
    info = DATASETS.get(str(trained.get("name")))
    return info.normalize if info is not None else False


def load_like(
    path: str | Path,
    target: str | None,
    trained: dict[str, Any],
    n_classes: int,
    normalize: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every row of `path` as ``(X (n, features) float32, y (n,) class numbers, notes)``, its
    classes numbered as in the ticket's training data (``labels``; 0..n_classes-1 for built-in
    data) and its features preprocessed as the training data's were (`trained`: the ticket's
    dataset config)."""
    path = Path(path)
    name = trained.get("name")
    columns = trained.get("columns")
    X, y, _ = load_arrays(path, target, min_classes=1, columns=columns, min_rows=1)
    X = unit_pixels(X, path) if name == "mnist" else np.asarray(X, dtype=np.float64)
    was = trained_normalize(trained)
    notes: list[str] = []
    if not trained and normalize is None:  # a ticket saved in Python without ticket.dataset
        notes.append(
            f"note: the ticket records no dataset (ticket.dataset), so no preprocessing: "
            f"{path.name}'s features go in as they are (--normalize scales them by their range)"
        )
    elif columns is None and path.suffix.lower() == ".csv" and X.shape[1] > 1:
        notes.append(
            f"note: the ticket's training data had no column names (an .npz): {path.name}'s "
            "feature columns are taken in their order"
        )
    if normalize is not None and normalize != was:
        notes.append(
            f"note: the ticket was trained on {'scaled' if was else 'raw'} features; "
            + (
                "--normalize scales the new data by its own range"
                if normalize
                else "--no-normalize feeds them raw"
            )  # fmt: skip
        )
        if normalize:
            X = FeatureScaling.fit(X).apply(X) if name == "file" else global_min_max(X)[0]
    elif was:
        X = _scaled_like(X, trained, path)
    labels = trained.get("labels") or list(range(n_classes))  # built-in data: classes 0..C-1
    classes = class_index(y, labels, path.name)
    return (
        float32_features(X, path, columns),
        torch.as_tensor(classes, dtype=torch.long),
        notes,
    )


def features_like(X: Any, trained: dict[str, Any], source: object = "X") -> torch.Tensor:
    """Raw feature rows `X` ``(n, features)`` (a CSV's columns in the training file's order) as
    the network's input: preprocessed as the ticket's training data were (`trained`: the
    ticket's dataset config), as `load_like` does for a file. `source` names `X` in errors."""
    X = (
        np.asarray(X, dtype=np.float64)
        if trained.get("name") != "mnist"
        else unit_pixels(X, source)
    )
    if X.ndim != 2:
        raise EvopruneError(
            f"{source}: expected rows of features, shape (n, features), got {X.shape}"
        )
    if trained_normalize(trained):
        X = _scaled_like(X, trained, source)
    return float32_features(X, source, trained.get("columns"))


def _scaled_like(X: np.ndarray, trained: dict[str, Any], source: object) -> np.ndarray:
    """`X` scaled by the training split's recorded ranges: per feature, or the paper's one."""
    fitted = trained.get("scaling")
    if isinstance(fitted, dict):
        return fitted_scaling(fitted, X, source, trained.get("columns")).apply(X)
    lo, hi = trained.get("global_range") or _training_range(trained)
    return scale_global(X, float(lo), float(hi))


def _training_range(trained: dict[str, Any]) -> tuple[float, float]:
    """The min and max of a ticket's raw training split, rebuilt from its config (tickets made
    before configs recorded ``global_range``)."""
    name = trained.get("name")
    if name == "file":
        X, y, _ = load_arrays(Path(trained["path"]), trained.get("target"), 1,
                              trained.get("columns"))  # fmt: skip
        X_train = split_arrays(X.astype(np.float64), y, state=int(trained.get("split_seed", 0)))[0]
    elif name in DATASETS:
        info = DATASETS[str(name)]
        classes = int(trained.get("classes") or info.classes[0])
        X_train = LOADERS[str(name)](classes, data_dir=trained.get("data_dir"))[0]
    else:
        raise EvopruneError("the ticket records no dataset to take its scaling from")
    return float(np.min(X_train)), float(np.max(X_train))
