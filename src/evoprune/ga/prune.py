"""Post-evolutionary pruning: drop every weight the final ticket does not need.

As in the paper: walk the set bits of the best mask in order and clear each one whose removal
does not lower the training accuracy (compared with the current, already pruned mask).

The walk is sequential by definition, but most removals are rejected, so we evaluate the next
K candidates (the current mask minus one more bit each) in one batch and accept the first that
passes; everything before it was judged against the same current mask, so the outcome is
exactly that of the one-at-a-time walk. K grows while candidates fail and shrinks after an
acceptance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoprune.evaluate import Evaluator

MAX_BATCH = 256


@dataclass(frozen=True)
class PruneReport:
    bits_before: int  # set bits before pruning
    bits_after: int
    accuracy_before: float  # training accuracy
    accuracy_after: float
    evaluations: int


def post_prune(evaluator: Evaluator, mask: torch.Tensor) -> tuple[torch.Tensor, PruneReport]:
    """Prune `mask` ``(n_bits,)`` greedily on `evaluator`'s (training) data. Returns the pruned
    mask and a report. The training accuracy never goes down."""
    mask = mask.clone().to(torch.bool)
    current = float(evaluator.evaluate(mask.view(1, -1))["accuracy"][0])
    start_accuracy = current
    order = torch.nonzero(mask).flatten()  # the set bits, in bit order
    evaluations, i, k = 1, 0, 8
    while i < len(order):
        bits = order[i : i + k]  # (k,)
        candidates = mask.expand(len(bits), -1).clone()  # (k, n_bits)
        candidates[torch.arange(len(bits)), bits] = False
        acc = evaluator.evaluate(candidates)["accuracy"]  # (k,)
        evaluations += len(bits)
        passed = torch.nonzero(acc >= current).flatten()
        if len(passed) == 0:
            i += len(bits)
            k = min(2 * k, MAX_BATCH)
            continue
        j = int(passed[0])
        mask[bits[j]] = False
        current = float(acc[j])
        i += j + 1
        k = max(4, 2 * (j + 1))
    report = PruneReport(
        bits_before=len(order), bits_after=int(mask.sum()), accuracy_before=start_accuracy,
        accuracy_after=current, evaluations=evaluations,
    )
    return mask, report
