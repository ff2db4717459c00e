"""The genetic algorithm for strong lottery tickets (Schönberger et al., arXiv 2411.04658,
2508.08877): configuration, operators, the search loop, post-pruning, and `search`.

The names below load on first use (PEP 562): `evoprune search --help` reads `GAConfig`'s
defaults from `evoprune.ga.config` and need not wait for torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "GAConfig": "evoprune.ga.config",
    "GAState": "evoprune.ga.state",
    "GeneticSearch": "evoprune.ga.search",
    "post_prune": "evoprune.ga.prune",
}  # and `search`, below
__all__ = ["GAConfig", "GAState", "GeneticSearch", "post_prune", "search"]

if TYPE_CHECKING:
    from evoprune.ga.api import search
    from evoprune.ga.config import GAConfig
    from evoprune.ga.prune import post_prune
    from evoprune.ga.search import GeneticSearch
    from evoprune.ga.state import GAState


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evoprune.ga' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`evoprune.ga.search` is the function, as when this package imported it eagerly: loading
    the submodule of that name (the search loop) binds it here, which would hide `__getattr__`."""

    @property
    def search(self) -> Any:
        return importlib.import_module("evoprune.ga.api").search

    @search.setter
    def search(self, submodule: types.ModuleType) -> None:
        pass  # the import system's binding; `import evoprune.ga.search` still finds sys.modules


sys.modules[__name__].__class__ = _Package
