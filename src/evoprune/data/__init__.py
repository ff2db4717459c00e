"""Datasets: a registry of the paper's data plus the user's own CSV/NPZ files.

>>> from evoprune.data import load_dataset
>>> ds = load_dataset("moons")
>>> ds.X_train.shape, ds.n_classes
(torch.Size([50000, 2]), 2)

The names below load on first use (PEP 562): `evoprune datasets` reads `DATASETS` from
`evoprune.data.builtin` and need not wait for torch and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DATASETS": "evoprune.data.builtin",
    "Dataset": "evoprune.data.registry",
    "bayes_predict": "evoprune.data.bayes",
    "fresh_sample": "evoprune.data.registry",
    "load_dataset": "evoprune.data.registry",
    "load_file": "evoprune.data.registry",
}
__all__ = ["DATASETS", "Dataset", "bayes_predict", "fresh_sample", "load_dataset", "load_file"]

if TYPE_CHECKING:
    from evoprune.data.bayes import bayes_predict
    from evoprune.data.builtin import DATASETS
    from evoprune.data.registry import Dataset, fresh_sample, load_dataset, load_file


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evoprune.data' has no attribute {name!r}")
