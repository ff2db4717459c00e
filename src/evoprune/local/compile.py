"""Compile the local search's kernels ahead of the first search: ``python -m evoprune.local.compile``.

The kernels of `evoprune.local.kernels` are compiled by numba on first use and cached on disk
(``cache=True``, beside the module or in ``NUMBA_CACHE_DIR``); later processes load them in
about 0.35 s. Compiling lands inside the first search that needs them: `make demo` on a fresh
clone printed the memetic search at 12.8 s, against 5.3 s once compiled. `make` runs this
module when it installs the package (about 15 s on a 2-core machine), so that `make demo` times
the search and not the compiler.

`compile_kernels` runs a tiny local search of every kind the kernels specialise on: each
objective, with and without the tie-breaker, one or two hidden layers (the deep kernel), two
or three classes, the expansion ranking and swap moves.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from evoprune.local.config import LocalConfig
from evoprune.local.search import local_search
from evoprune.nets import build_mlp

# (layers, objective, settings): together they reach every kernel signature a search uses
CASES: list[tuple[list[int], str, dict[str, Any]]] = [
    ([2, 8, 2], "accuracy", {}),
    ([2, 8, 2], "f1", {}),
    ([2, 8, 2], "loss", {}),
    ([3, 6, 5, 3], "accuracy", {}),
    ([3, 6, 5, 3], "f1", {}),
    ([3, 6, 5, 3], "loss", {}),
    ([3, 6, 5, 3], "loss", {"ranking": "none"}),
    ([3, 6, 3], "accuracy", {"tiebreak": False}),
    ([3, 6, 3], "f1", {"tiebreak": False}),
    ([3, 6, 3], "loss", {"fixed_sparsity": 0.5}),
]


def compile_kernels() -> float:
    """Run the tiny searches of `CASES` (compiling and caching what is not cached yet);
    returns the seconds it took.

    >>> compile_kernels() < 120
    True
    """
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for layers, objective, settings in CASES:
        X = torch.as_tensor(rng.uniform(-0.7, 0.7, (64, layers[0])), dtype=torch.float32)
        y = torch.as_tensor(rng.integers(0, layers[-1], 64))
        config = LocalConfig(max_passes=2, kicks=1, kick_bits=2, **settings)
        local_search(build_mlp(layers, seed=0), X, y, objective, config)
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"evoprune: local search kernels compiled and cached ({compile_kernels():.1f} s)")
