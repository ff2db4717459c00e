"""The local search's settings: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from evoprune.errors import EvopruneError

RANKINGS = ("expansion", "none")
# the objectives whose change by one flip the local search computes exactly (incremental.py)
LOCAL_OBJECTIVES = ("loss", "accuracy", "f1")


@dataclass(frozen=True)
class LocalConfig:
    """Settings of `evoprune.local.search.local_search`; the defaults are a plain descent from
    one random 50% mask (the memetic variant sets its own, `GAConfig.local_config`)."""

    # "expansion" (softmax expansion ranks, exact acceptance; on a module that is not an MLP
    # stack, its first term: the loss gradient) | "none" (every candidate scored exactly)
    ranking: str = "expansion"
    sparsity_penalty: float = 0.0  # objective + penalty * density
    start_density: float = 0.5  # P(bit = 1) of random starts (the paper's and edge-popup's 50%)
    starts: int = 1  # random starts (multi-start)
    kicks: int = 0  # iterated local search kicks after each descent
    kick_bits: int = 16  # random bits flipped by one kick
    max_passes: int = 50  # passes per descent
    batch: int = 64  # most flips of one unit tried together
    block: int = 8  # units scored by one compiled call (a ranking may be that many steps old)
    # expansion ranking: re-score each unit's best `exact_top` candidates exactly, on the
    # current mask, before choosing (0: the expansion's order alone)
    exact_top: int = 0
    # a descent ends after a pass that lowers the objective by less; None: 1e-3 for the loss
    # (its tail of tiny gains is long), 0 for accuracy and F1 (their steps are single samples)
    min_gain: float | None = None
    val_fraction: float = 0.0  # held-out slice of the training data for early stopping
    patience: int = 2  # passes without a better validation accuracy before stopping
    fixed_sparsity: float | None = None  # swap moves at exactly this sparsity per layer
    # accuracy and F1: break ties by the cross-entropy (+ penalty * density), see MLPState
    tiebreak: bool = True
    # the cross-entropy (objective or tie-breaker) of logits / temperature; below 1 it weighs
    # the samples near the boundary more. At 0.25 on mnist10k (seeds 0-2): 784-300-10 95.5%
    # test in 17-18 passes against 94.4% at 1; 784-300-100-10 the same 95.3% in 18 passes
    # instead of 31. On digits-10 (1,347 images) it overfits: 95.2% against 97.9% (memetic)
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ranking not in RANKINGS:
            raise EvopruneError(
                f"ranking: expected one of {', '.join(RANKINGS)}, got {self.ranking!r}"
            )
        if not 0.0 <= self.start_density <= 1.0:
            raise EvopruneError(f"start_density: expected a fraction in [0, 1], got {self.start_density}")  # fmt: skip
        if not 0.0 <= self.val_fraction < 1.0:
            raise EvopruneError(f"val_fraction: expected a fraction in [0, 1), got {self.val_fraction}")  # fmt: skip
        if self.fixed_sparsity is not None and not 0.0 < self.fixed_sparsity < 1.0:
            raise EvopruneError(
                f"fixed_sparsity: expected a fraction in (0, 1), got {self.fixed_sparsity}"
            )
        for name in ("starts", "max_passes", "batch", "block", "patience", "kick_bits"):
            if getattr(self, name) < 1:
                raise EvopruneError(
                    f"{name}: expected a positive integer, got {getattr(self, name)}"
                )
        if not self.temperature > 0:
            raise EvopruneError(f"temperature: expected a positive number, got {self.temperature}")
        if self.exact_top < 0:
            raise EvopruneError(
                f"exact_top: expected 0 or a positive integer, got {self.exact_top}"
            )
        for name in ("kicks", "sparsity_penalty", "min_gain"):
            if (getattr(self, name) or 0) < 0:
                raise EvopruneError(f"{name}: expected a number >= 0, got {getattr(self, name)}")
