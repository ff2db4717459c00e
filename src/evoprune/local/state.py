"""What the local search walks on: one masked network's state on one dataset.

`evoprune.local.search.LocalSearch` reads a network as layers of units, a unit as a row of bits
(its incoming weights), and asks the state to score flips and to take them. Lower is better:
``value`` is what the search minimises, ``secondary`` the tie-breaker compared after it. Two
states implement this: `evoprune.local.incremental.MLPState` (an MLP stack, float64 activations
updated by rank-1 terms) and `evoprune.local.module_state.ModuleState` (any module, every flip a
mask scored by the general evaluator).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class FlipState(Protocol):
    objective: str  # "loss", "accuracy" or "f1"
    W: list[np.ndarray]  # per layer, (units, candidates): the search reads only their shapes
    mask: list[np.ndarray]  # per layer, (units, candidates) bool: the current mask
    maskable: list[bool]  # per layer, whether its bits are searched
    n_maskable: int  # the genome's bits

    @property
    def n_layers(self) -> int: ...

    @property
    def value(self) -> float: ...  # what the search minimises, of the current mask

    @property
    def secondary(self) -> float: ...  # the tie-breaker (0 without one)

    @property
    def score(self) -> float: ...  # the objective in its own sign, for history and results

    @property
    def accuracy(self) -> float: ...  # the training accuracy, for history and results

    @property
    def ones(self) -> int: ...  # set bits

    def block_scores(
        self,
        li: int,
        units: np.ndarray,
        ranking: str = "none",
        cand: np.ndarray | None = None,
        cut: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The changes of (value, secondary) of flipping each candidate of each unit alone,
        ``(U, len(cand))`` each."""
        ...

    def try_step(self, li: int, o: int, inputs: np.ndarray) -> tuple[float, float]:
        """The changes of (value, secondary) of flipping bits `inputs` of unit o together."""
        ...

    def apply(self, li: int, o: int, inputs: np.ndarray) -> None: ...

    def refresh(self) -> None: ...  # rebuild the state from the mask

    def full_value(self) -> float: ...  # `value` recomputed from scratch (a reference)

    def full_secondary(self) -> float: ...

    def mask_bits(self) -> np.ndarray: ...  # the genome, (n_bits,) bool

    def set_mask_bits(self, bits: np.ndarray) -> None: ...
