"""The genetic algorithm for strong lottery tickets (Schönberger et al., arXiv 2411.04658,
2508.08877): configuration, operators, the search loop, post-pruning, and `search`.

The names below load on first use (PEP 562): `evoprune search --help` reads `GAConfig`'s
defaults from `evoprune.ga.config` and need not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "GAConfig": "evoprune.ga.config",
    "GAState": "evoprune.ga.state",
    "GeneticSearch": "evoprune.ga.genetic",
    "post_prune": "evoprune.ga.prune",
    "search": "evoprune.ga.api",
}
__all__ = ["GAConfig", "GAState", "GeneticSearch", "post_prune", "search"]

if TYPE_CHECKING:
    from evoprune.ga.api import search
    from evoprune.ga.config import GAConfig
    from evoprune.ga.genetic import GeneticSearch
    from evoprune.ga.prune import post_prune
    from evoprune.ga.state import GAState


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evoprune.ga' has no attribute {name!r}")
