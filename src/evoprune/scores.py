"""One mask's scores: a ticket's metrics on named data splits, and the fields its result carries.

`score_splits` (and `score_fit`, `score` through it) runs the population evaluator,
`evoprune.evaluate.Evaluator`, on a population of one mask, uncached; `ticket_scores` adds the
sparsity and the before-post-pruning fields. `forward_one` is the plain, unbatched forward pass of
one mask, the reference the evaluator is tested against.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from evoprune.evaluate import Evaluator
from evoprune.inputs import both_or_neither
from evoprune.masks import MaskSpace, sparsity

if TYPE_CHECKING:
    from evoprune.data.registry import Dataset

__all__ = ["forward_one", "score", "score_fit", "score_splits", "ticket_scores"]


def forward_one(
    model: nn.Module, space: MaskSpace, mask: torch.Tensor, X: torch.Tensor
) -> torch.Tensor:
    """Logits of one masked copy of `model` (the plain, unbatched reference: copy, mask, forward)."""
    clone = copy.deepcopy(model)
    per_param = space.split(mask.to(torch.bool))
    with torch.no_grad():
        for name, param in clone.named_parameters():
            if name in per_param:
                param.mul_(per_param[name].to(param.dtype))
        return clone(X)


# -- one mask's scores ------------------------------------------------------------------------


def score_splits(
    model: nn.Module,
    mask: torch.Tensor,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    space: MaskSpace | None = None,
    device: str = "cpu",
    memory_mb: float = 64.0,
    metrics: tuple[str, ...] = ("accuracy", "loss"),
) -> dict[str, float]:
    """Each metric of one mask on each named split: ``{split}_accuracy``, ``{split}_loss``
    (the mean cross-entropy) and, when asked, ``{split}_f1``."""
    out: dict[str, float] = {}
    for split, (X, y) in splits.items():
        ev = Evaluator(model, X, y, "accuracy", space=space, device=device, memory_mb=memory_mb,
                       cache=False, metrics=metrics)  # fmt: skip
        m = ev.evaluate(mask.view(1, -1))
        out |= {f"{split}_{name}": float(m[name][0]) for name in metrics}
    return out


def score_fit(
    model: nn.Module,
    mask: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    *,
    objective: str = "accuracy",
    space: MaskSpace | None = None,
    device: str = "cpu",
    memory_mb: float = 64.0,
) -> dict[str, float]:
    """A search's scores of `mask`: train (and test when given) accuracy and loss, and F1 when
    it is the objective."""
    test = both_or_neither(X_test, y_test)
    splits = {"train": (X, y)} | ({"test": test} if test is not None else {})
    metrics = ("accuracy", "loss", "f1") if objective == "f1" else ("accuracy", "loss")
    return score_splits(model, mask, splits, space, device, memory_mb, metrics)


def score(
    model: nn.Module, mask: torch.Tensor, ds: Dataset, space: MaskSpace | None = None
) -> dict[str, float]:
    """Train/test accuracy and mean cross-entropy of one mask over `model` (laid out by
    `space`, default: all of its maskable weights)."""
    splits = {"train": (ds.X_train, ds.y_train), "test": (ds.X_test, ds.y_test)}
    return score_splits(model, mask, splits, space)


def ticket_scores(
    scores: dict[str, float],
    mask: torch.Tensor,
    before: dict[str, float] | None = None,
    mask_before: torch.Tensor | None = None,
) -> dict[str, float]:
    """The score fields every search's ticket carries: `scores` (`score_fit`), the sparsity,
    and both as they were before post-pruning (the same when a search has none)."""
    before = scores if before is None else before
    mask_before = mask if mask_before is None else mask_before
    return {
        **scores,
        "sparsity": float(sparsity(mask)),
        "sparsity_before_post_prune": float(sparsity(mask_before)),
        **{f"{k}_before_post_prune": v for k, v in before.items()},
    }
