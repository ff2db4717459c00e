"""Exact single-flip local search over masks: incremental float64 state, compiled kernels, search.

`local_search` descends (and, with kicks, iterates) from random or given masks; `LocalConfig`
holds its settings; `MLPState` is the incremental state it works on for an MLP stack,
`ModuleState` the one for any other module (each flip scored by the general evaluator). They
load on first use (PEP 562): post-pruning imports `evoprune.local.rounding` alone and need not
wait for numba.

>>> import torch
>>> from evoprune.local import LocalConfig, local_search
>>> from evoprune.nets import build_mlp
>>> X = torch.randn(200, 2); y = (X[:, 0] > 0).long()
>>> r = local_search(build_mlp([2, 16, 2], seed=0), X, y, "loss", LocalConfig(max_passes=3))
>>> r.metrics["train_accuracy"] > 0.8
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "LocalConfig": "evoprune.local.config",
    "LocalResult": "evoprune.local.search",
    "MLPState": "evoprune.local.incremental",
    "ModuleState": "evoprune.local.module_state",
    "local_search": "evoprune.local.search",
}
__all__ = ["LocalConfig", "LocalResult", "MLPState", "ModuleState", "local_search"]

if TYPE_CHECKING:
    from evoprune.local.config import LocalConfig
    from evoprune.local.incremental import MLPState
    from evoprune.local.module_state import ModuleState
    from evoprune.local.search import LocalResult, local_search


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evoprune.local' has no attribute {name!r}")
