"""The GA's whole state after a generation: what a checkpoint saves and a resume restores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class GAState:
    population: torch.Tensor  # (N, n_bits) bool, ranked best first
    scores: torch.Tensor  # (N, n_metrics) float64, columns = evaluator.metric_names
    fitness: torch.Tensor  # (N,) float64, higher is better
    rng_state: torch.Tensor  # state of the search generator after this generation
    generation: int = 0
    best_fitness: float = float("-inf")
    last_improvement: int = 0  # generation at which best_fitness was last raised
    best_sparsity_so_far: float = 0.0
    evaluations: int = 0
    seconds: float = 0.0  # wall time spent, summed over resumed sessions
    history: tuple[dict[str, Any], ...] = ()
    init_info: dict[str, Any] = field(default_factory=dict)
