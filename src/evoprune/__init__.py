"""evoprune: strong lottery tickets by evolutionary search.

A ticket is a mask over a fixed, randomly initialised network's weights; the genetic algorithm
of Schönberger et al. (arXiv 2411.04658, 2508.08877) searches for it without training a weight.

>>> import evoprune, torch
>>> X = torch.randn(300, 2); y = (X[:, 0] * X[:, 1] > 0).long()  # XOR-like quadrants
>>> net = evoprune.build_mlp([2, 32, 2], init="uniform", seed=0)
>>> cfg = evoprune.GAConfig(population=20, min_generations=5, max_generations=5)
>>> ticket = evoprune.search(net, X, y, config=cfg)
>>> ticket.metrics["train_accuracy"] > 0.6, 0 < ticket.sparsity < 1
(True, True)
>>> sorted(evoprune.DATASETS)[:2]
['blobs', 'circles']

The names below load on first use (PEP 562), so ``import evoprune`` and ``evoprune --help`` do
not wait for PyTorch and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# each public name and the module that defines it
_EXPORTS = {
    "ARCHS": "evoprune.archs",
    "DATASETS": "evoprune.data",
    "Evaluator": "evoprune.evaluate",
    "EvopruneError": "evoprune.errors",
    "GAConfig": "evoprune.ga",
    "MaskSpace": "evoprune.masks",
    "Ticket": "evoprune.ticket",
    "build_mlp": "evoprune.nets",
    "load_dataset": "evoprune.data",
    "load_file": "evoprune.data",
    "search": "evoprune.ga",
}
__all__ = [  # the keys of _EXPORTS (a test holds them equal)
    "ARCHS",
    "DATASETS",
    "Evaluator",
    "EvopruneError",
    "GAConfig",
    "MaskSpace",
    "Ticket",
    "build_mlp",
    "load_dataset",
    "load_file",
    "search",
]

if TYPE_CHECKING:
    from evoprune.archs import ARCHS
    from evoprune.data import DATASETS, load_dataset, load_file
    from evoprune.errors import EvopruneError
    from evoprune.evaluate import Evaluator
    from evoprune.ga import GAConfig, search
    from evoprune.masks import MaskSpace
    from evoprune.nets import build_mlp
    from evoprune.ticket import Ticket


# the subpackages, which `evoprune.NAME` also loads on first use (`evoprune.baselines.lookup`)
_SUBPACKAGES = ("analysis", "baselines", "data", "experiments", "ga", "local", "pruning", "studies")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"evoprune.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evoprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
