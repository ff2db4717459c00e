"""The classic benchmark functions, batched: ``f(X (P, d)) -> (P,)``, minimum value 0.

Each works on a torch tensor (differentiable, for Adam/SGD) or a NumPy array (for CMA-ES, the GA
and random search) and is defined on its usual search domain, the box the starts are drawn from.
Definitions as in Jamil & Yang, "A literature survey of benchmark functions for global
optimisation problems" (2013, arXiv 1308.4008): Sphere, Rosenbrock, Rastrigin, Ackley, Griewank,
Schwefel (2.26, shifted so that its minimum is 0).

>>> import numpy as np
>>> float(FUNCTIONS["rastrigin"].f(np.zeros((1, 10)))[0])
0.0
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # np.ndarray or torch.Tensor, shape (P, d)


def _ops(x: Array) -> Any:
    # torch is looked up, not imported: a tensor means it is loaded, and listing the functions
    # (`evoprune minimize --help`) need not wait for it
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else np


def sphere(x: Array) -> Array:
    return (x**2).sum(-1)


def rosenbrock(x: Array) -> Array:
    return (100.0 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1.0 - x[..., :-1]) ** 2).sum(-1)


def rastrigin(x: Array) -> Array:
    m = _ops(x)
    return 10.0 * x.shape[-1] + (x**2 - 10.0 * m.cos(2.0 * math.pi * x)).sum(-1)


def ackley(x: Array) -> Array:
    m = _ops(x)
    d = x.shape[-1]
    a = -20.0 * m.exp(-0.2 * m.sqrt((x**2).sum(-1) / d))
    b = -m.exp(m.cos(2.0 * math.pi * x).sum(-1) / d)
    return a + b + 20.0 + math.e  # 4e-16 at the optimum (rounding), far below the 1e-6 target


def griewank(x: Array) -> Array:
    m = _ops(x)
    d = x.shape[-1]
    i = m.arange(1, d + 1, dtype=x.dtype)
    return 1.0 + (x**2).sum(-1) / 4000.0 - m.cos(x / m.sqrt(i)).prod(-1)


SCHWEFEL_OPT = 420.968746  # the minimiser in every coordinate
_SCHWEFEL_C = 418.98288727243374  # -min of x sin(sqrt|x|) on [-500, 500]


def schwefel(x: Array) -> Array:
    m = _ops(x)
    return _SCHWEFEL_C * x.shape[-1] - (x * m.sin(m.sqrt(m.abs(x)))).sum(-1)


@dataclass(frozen=True)
class TestFunction:
    """A benchmark function, its usual domain [low, high]^d and its minimiser."""

    name: str
    f: Callable[[Array], Array]
    low: float
    high: float
    optimum: float  # every coordinate of the minimiser; f(optimum) = 0
    multimodal: bool

    def minimiser(self, dim: int) -> np.ndarray:
        return np.full(dim, self.optimum)


FUNCTIONS: dict[str, TestFunction] = {
    "sphere": TestFunction("sphere", sphere, -5.12, 5.12, 0.0, False),
    "rosenbrock": TestFunction("rosenbrock", rosenbrock, -5.0, 10.0, 1.0, False),
    "rastrigin": TestFunction("rastrigin", rastrigin, -5.12, 5.12, 0.0, True),
    "ackley": TestFunction("ackley", ackley, -32.768, 32.768, 0.0, True),
    "griewank": TestFunction("griewank", griewank, -600.0, 600.0, 0.0, True),
    "schwefel": TestFunction("schwefel", schwefel, -500.0, 500.0, SCHWEFEL_OPT, True),
}
