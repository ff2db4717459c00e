"""What a post-pruning walk reports (`evoprune.ga.prune`): every walk, incremental or batched,
returns one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PruneReport:
    bits_before: int  # set bits before pruning
    bits_after: int
    accuracy_before: float  # training accuracy
    accuracy_after: float
    evaluations: int  # candidates judged, plus the evaluator's scorings of whole masks
    criterion: str = "accuracy"
