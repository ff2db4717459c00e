"""Objectives: per-mask scores from logits, higher is always better.

The one fitness direction of evoprune: **higher is better, NaN is the worst**. Objectives where
lower is better (cross-entropy) are negated internally; their reported values keep their natural
sign. An objective maps ``logits (P, d, C)`` and ``y (d,)`` to ``(P,)``. Objectives that decompose
over samples also give a per-chunk sum so the evaluator can stream over the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from evoprune.errors import EvopruneError

ObjectiveFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A named metric with a direction.

    `fn` maps logits ``(P, d, C)`` and labels ``(d,)`` to ``(P,)``. If `per_sample` is given
    (logits, y -> ``(P, d)``), `fn` is its mean over samples, so the evaluator can stream over
    chunks of samples and sum.
    """

    name: str
    fn: ObjectiveFn
    maximize: bool = True
    per_sample: ObjectiveFn | None = None

    @property
    def additive(self) -> bool:
        return self.per_sample is not None

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


def macro_f1(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Macro-averaged F1 per mask: ``logits (P, d, C)``, ``y (d,)`` -> ``(P,)``, averaged over
    the classes present in ``y`` or in the prediction, as scikit-learn's
    ``f1_score(average='macro')`` counts them (a class in neither is left out)."""
    n_classes = logits.shape[-1]
    pred = logits.argmax(dim=-1)  # (P, d)
    pred_1h = F.one_hot(pred, n_classes).double()  # (P, d, C)
    true_1h = F.one_hot(y, n_classes).double().unsqueeze(0)  # (1, d, C)
    tp = (pred_1h * true_1h).sum(dim=1)  # (P, C)
    pred_n = pred_1h.sum(dim=1)
    true_n = true_1h.sum(dim=1)
    denom = pred_n + true_n
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    present = denom > 0  # labels in y or in the prediction, as scikit-learn counts them
    return (f1 * present).sum(dim=-1) / present.sum(dim=-1).clamp(min=1)


OBJECTIVES: dict[str, Objective] = {
    "accuracy": Objective("accuracy", accuracy, maximize=True, per_sample=correct),
    "loss": Objective("loss", cross_entropy, maximize=False, per_sample=sample_cross_entropy),
    "f1": Objective("f1", macro_f1, maximize=True),
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
        return Objective(name, objective, maximize=maximize)
    raise EvopruneError(f"objective: expected a name or a callable, got {objective!r}")
