"""Objectives: per-mask scores from logits, higher is always better.

The one fitness direction of evoprune: **higher is better, NaN is the worst**. Objectives where
lower is better (cross-entropy) are negated internally; their reported values keep their natural
sign. An objective maps ``logits (P, d, C)`` and ``y (d,)`` to ``(P,)``. Objectives that decompose
over samples also give a per-chunk sum, and those of the confusion counts alone (macro-F1) a
function of the summed counts, so the evaluator can stream over the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from evoprune.errors import EvopruneError

ObjectiveFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CountsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A named metric with a direction.

    `fn` maps logits ``(P, d, C)`` and labels ``(d,)`` to ``(P,)``. If `per_sample` is given
    (logits, y -> ``(P, d)``), `fn` is its mean over samples, so the evaluator can stream over
    chunks of samples and sum. If `from_counts` is given (true positives ``(P, C)``,
    predictions ``(P, C)``, true counts ``(C,)`` -> ``(P,)``), `fn` depends on the predictions
    only through those counts, which the evaluator sums over chunks.
    """

    name: str
    fn: ObjectiveFn
    maximize: bool = True
    per_sample: ObjectiveFn | None = None
    from_counts: CountsFn | None = None

    @property
    def additive(self) -> bool:
        return self.per_sample is not None

    @property
    def streams(self) -> bool:
        """Whether the evaluator can compute it chunk by chunk over the samples."""
        return self.additive or self.from_counts is not None

    def fitness(self, values: torch.Tensor) -> torch.Tensor:
        """Values in the one direction (higher is better), NaN mapped to -inf."""
        signed = values if self.maximize else -values
        return torch.nan_to_num(signed.double(), nan=float("-inf"))


def correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1.0 where the argmax logit is the label: ``(P, d, C), (d,) -> (P, d)``."""
    return (logits.argmax(dim=-1) == y).double()


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose argmax logit is the label: ``(P, d, C), (d,) -> (P,)``."""
    return correct(logits, y).mean(dim=-1)


def sample_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every sample: ``(P, d, C), (d,) -> (P, d)`` float64."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)  # (P, d, C)
    picked = log_probs.gather(-1, y.view(1, -1, 1).expand(log_probs.shape[0], -1, 1))
    return -picked.squeeze(-1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per mask: ``(P, d, C), (d,) -> (P,)``."""
    return sample_cross_entropy(logits, y).mean(dim=-1)


def confusion_counts(
    pred: torch.Tensor, y: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per mask and class, true positives and predictions: ``pred (P, d)``, ``y (d,)`` ->
    ``(tp, pred_n)``, both ``(P, C)`` int64."""
    offsets = torch.arange(pred.shape[0], device=pred.device).unsqueeze(1) * n_classes
    keys = pred + offsets  # (P, d): the (mask, class) cell of each prediction
    size = pred.shape[0] * n_classes
    pred_n = torch.bincount(keys.flatten(), minlength=size).view(-1, n_classes)
    tp = torch.bincount(keys[pred == y].flatten(), minlength=size).view(-1, n_classes)
    return tp, pred_n


def f1_from_counts(tp: torch.Tensor, pred_n: torch.Tensor, true_n: torch.Tensor) -> torch.Tensor:
    """Macro-averaged F1 per mask from its confusion counts: true positives and predictions
    ``(P, C)``, true counts ``(C,)`` -> ``(P,)`` float64, averaged over the classes present in
    the labels or in the prediction, as scikit-learn's ``f1_score(average='macro')`` counts them
    (a class in neither is left out)."""
    tp, denom = tp.double(), (pred_n + true_n).double()
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    present = denom > 0
    return (f1 * present).sum(dim=-1) / present.sum(dim=-1).clamp(min=1)


def macro_f1(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Macro-averaged F1 per mask: ``logits (P, d, C)``, ``y (d,)`` -> ``(P,)`` (see
    `f1_from_counts`)."""
    n_classes = logits.shape[-1]
    tp, pred_n = confusion_counts(logits.argmax(dim=-1), y, n_classes)
    return f1_from_counts(tp, pred_n, torch.bincount(y, minlength=n_classes))


OBJECTIVES: dict[str, Objective] = {
    "accuracy": Objective("accuracy", accuracy, maximize=True, per_sample=correct),
    "loss": Objective("loss", cross_entropy, maximize=False, per_sample=sample_cross_entropy),
    "f1": Objective("f1", macro_f1, maximize=True, from_counts=f1_from_counts),
}


def get_objective(objective: str | Objective | ObjectiveFn, maximize: bool = True) -> Objective:
    """Look up a registered objective by name, or wrap a user callable with its direction."""
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise EvopruneError(
                f"objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}"
            )
        return OBJECTIVES[objective]
    if callable(objective):
        name = getattr(objective, "__name__", "custom")
        # a function named like a built-in metric must not stand in for it (the GA reads the
        # accuracy for its bound, the report the loss): its own name
        name = "custom" if name == "<lambda>" else f"custom_{name}" if name in OBJECTIVES else name
        return Objective(name, objective, maximize=maximize)
    raise EvopruneError(f"objective: expected a name or a callable, got {objective!r}")
