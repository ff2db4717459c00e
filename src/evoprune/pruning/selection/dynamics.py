"""Pruning as evolution: neuron populations under selection dynamics during training.

Shah & Khan, "Pruning as evolution" (arXiv 2601.10765); its predecessor "Pruning as a Game"
(arXiv 2512.22106) gives the setting (ReLU MLP 784-512-256-10, Adam, 20 epochs, batch 128).
The paper does not publish its equations; the ones below are this toolkit's specification, every
choice configurable and recorded in ``result.json``.

Each hidden unit ``i`` is a population with mass ``m_i`` (initially 1) scaling its output
(`evoprune.pruning.selection.masses`). After every optimiser step, per layer:

1. fitness from the mini-batch: ``g_i = ∂L/∂m_i = mean_b a_bi δ_bi``; ``taylor``: ``f = |g|``,
   ``signed``: ``f = -g``;
2. smoothed: ``F <- s F + (1 - s) f`` (s = 0.9);
3. normalised per layer over the living units: ``F̂ = 1 + (F - mean F) / mean |F|`` (for taylor
   this is ``F / mean F``: the layer's mean fitness is 1), or ``zscore``: ``1 + (F - mean) / std``;
4. the dynamic, with ``φ̄ = Σ m F̂ / Σ m`` (the mass-weighted mean fitness):
   ``replicator`` ``m <- max(0, m + η m (F̂ - φ̄))``;
   ``exponential`` ``m <- n m e^{η F̂} / Σ m e^{η F̂}`` (total mass n, the layer width, conserved);
   ``logistic`` ``m <- clip(m + η m (F̂ - 1), 0, 4)``;
5. extinction: ``m < 0.01 -> 0`` for good.

η per update defaults to ``rate / updates``: what matters is the total selection pressure over the
whole training (η × number of updates), so a default rate neither collapses the layer to one
survivor nor freezes it, whatever the dataset size or epoch count.

``target_fraction`` (beyond the paper): the dynamics are steered so that exactly that share of the
units is extinct by ``target_epoch``; the schedule k(t) of extinct units rises as
``1 - (1 - u)^3`` (Zhu & Gupta, arXiv 1710.01878) and the lowest-mass living units are extinguished
to follow it (natural extinctions beyond the schedule wait at the threshold); after the target
epoch the masses are frozen and the survivors keep training.

>>> import torch
>>> from evoprune.nets import MLP
>>> net = MLP([4, 8, 3]); masses = Masses(net)
>>> dyn = SelectionDynamics(masses, SelectionConfig(dynamics="exponential"), updates=10)
>>> torch.nn.functional.cross_entropy(net(torch.randn(5, 4)), torch.tensor([0, 1, 2, 0, 1])).backward()
>>> dyn.step(); round(float(masses.flat().sum()), 4)
8.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from evoprune.errors import EvopruneError
from evoprune.pruning.magnitude import allocate
from evoprune.pruning.selection.masses import Masses, lowest

DYNAMICS = ("replicator", "exponential", "logistic")
FITNESS = ("taylor", "signed")
NORMALIZATIONS = ("mean", "zscore")
RANKINGS = ("global", "layer")
ETA_SCHEDULES = ("cosine", "constant")

# Total selection pressure η × updates per dynamic (our defaults; the paper gives none). Chosen on
# mnist10k, seed 0, with the trajectories in docs/selection-trajectories.png: replicator and
# exponential at η = 0.05 per update (rate ≈ 60) collapse to one survivor per layer, at rate ≈ 1-3
# they barely move; logistic self-prunes about a third of the units at rate 25.
DEFAULT_RATE = {"replicator": 12.0, "exponential": 12.0, "logistic": 40.0}
# The competitive dynamics collapse a layer to one survivor when one update moves the masses faster
# than the weights can follow: a mean η above ~0.03 per update did so on mnist10k (η 0.05) and on
# digits (rate 12 over 220 updates, η 0.055). A rate-derived η is capped there (digits: rate 6.6).
MAX_ETA = {"replicator": 0.03, "exponential": 0.03}


@dataclass(frozen=True)
class SelectionConfig:
    """The selection dynamics' settings (defaults: this toolkit's specification, see above)."""

    dynamics: str = "logistic"
    fitness: str = "taylor"  # |∂L/∂m| (first-order Taylor), or "signed": -∂L/∂m
    smoothing: float = 0.9  # F <- s F + (1 - s) f
    normalization: str = "mean"  # per layer over the living units: "mean" or "zscore"
    eta: float | None = None  # per update; None: rate / updates (capped by MAX_ETA)
    rate: float | None = None  # η × updates; None: DEFAULT_RATE[dynamics]
    extinction: float = 0.01  # a mass below this is extinct for good
    max_mass: float = 4.0  # logistic's upper clip
    target_fraction: float | None = None  # steer so that exactly this share is extinct ...
    target_epoch: int | None = None  # ... by the end of this epoch (default: half the epochs)
    ranking: str = "global"  # target mode removes the lowest masses overall, or "layer": per layer
    eta_schedule: str = "cosine"  # η_t = η (1 + cos(π (t-1) / T)) at update t = 1..T: the
    # masses settle as the (cosine-annealed) weights do; "constant": η every update (at a
    # constant η, late mass changes that the weights can no longer follow collapse the accuracy
    # at rates above ~10)

    def __post_init__(self) -> None:
        _choice("dynamics", self.dynamics, DYNAMICS)
        _choice("fitness", self.fitness, FITNESS)
        _choice("normalization", self.normalization, NORMALIZATIONS)
        _choice("ranking", self.ranking, RANKINGS)
        _choice("eta_schedule", self.eta_schedule, ETA_SCHEDULES)
        if not 0.0 <= self.smoothing < 1.0:
            raise EvopruneError(f"smoothing: expected a number in [0, 1), got {self.smoothing}")
        for name in ("eta", "rate"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise EvopruneError(f"{name}: expected a number >= 0, got {value}")
        if not 0.0 <= self.extinction < 1.0:
            raise EvopruneError(f"extinction: expected a number in [0, 1), got {self.extinction}")
        if not self.max_mass > 1.0:
            raise EvopruneError(f"max_mass: expected a number > 1, got {self.max_mass}")
        if self.target_fraction is not None and not 0.0 < self.target_fraction < 1.0:
            raise EvopruneError(
                f"target_fraction: expected a fraction in (0, 1), got {self.target_fraction}"
            )
        if self.target_epoch is not None and self.target_epoch < 1:
            raise EvopruneError(f"target_epoch: expected an epoch >= 1, got {self.target_epoch}")

    def eta_for(self, updates: int) -> float:
        """Mean η per update: the given one, or the rate spread over `updates` updates."""
        if self.eta is not None:
            return float(self.eta)
        rate = DEFAULT_RATE[self.dynamics] if self.rate is None else self.rate
        return min(float(rate) / max(int(updates), 1), MAX_ETA.get(self.dynamics, math.inf))

    def as_dict(self) -> dict:
        return asdict(self)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise EvopruneError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")


# -- pure operators on one layer (tensors (n,)) --------------------------------------------------


def fitness(grad: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-unit fitness from ``∂L/∂m``: ``|g|`` (taylor) or ``-g`` (signed)."""
    return grad.abs() if kind == "taylor" else -grad


def normalise(F: torch.Tensor, alive: torch.Tensor, how: str) -> torch.Tensor:
    """Per-layer normalised fitness F̂ whose mean over the living units is 1 (0 where extinct)."""
    live = F[alive]
    if live.numel() == 0:
        return torch.zeros_like(F)
    mean = live.mean()
    scale = live.std(unbiased=False) if how == "zscore" else live.abs().mean()
    out = 1.0 + (F - mean) / scale.clamp_min(1e-30)
    return torch.where(alive, out, torch.zeros_like(out))


def replicator(m: torch.Tensor, Fh: torch.Tensor, eta: float) -> torch.Tensor:
    """``m <- max(0, m + η m (F̂ - φ̄))``, φ̄ the mass-weighted mean of F̂."""
    phi = (m * Fh).sum() / m.sum().clamp_min(1e-30)
    return (m + eta * m * (Fh - phi)).clamp_min(0.0)


def exponential(m: torch.Tensor, Fh: torch.Tensor, eta: float) -> torch.Tensor:
    """``m <- n m e^{η F̂} / Σ m e^{η F̂}``: total mass n (the layer width) is conserved."""
    w = m * torch.exp(eta * (Fh - Fh.max()))  # shifted for range; cancels in the ratio
    total = w.sum()
    return m.numel() * w / torch.where(total > 0, total, torch.ones_like(total))


def logistic(m: torch.Tensor, Fh: torch.Tensor, eta: float, max_mass: float = 4.0) -> torch.Tensor:
    """``m <- clip(m + η m (F̂ - 1), 0, max_mass)``."""
    return (m + eta * m * (Fh - 1.0)).clamp(0.0, max_mass)


def extinguish(m: torch.Tensor, alive: torch.Tensor, threshold: float) -> torch.Tensor:
    """Living units below `threshold` die (in place on `alive`); returns m with the dead at 0.
    The last living unit of a layer lives on (the strongest, where all would die at once: at a
    huge η the whole layer crossed the threshold in one update, leaving a constant network).

    >>> alive = torch.ones(3, dtype=torch.bool)
    >>> extinguish(torch.tensor([1e-9, 3e-9, 2e-9]), alive, 1e-6), alive
    (tensor([0.0000e+00, 3.0000e-09, 0.0000e+00]), tensor([False,  True, False]))
    """
    survives = alive & (m >= threshold)
    if alive.any() and not survives.any():
        survives[torch.where(alive, m.nan_to_num(-math.inf), -math.inf).argmax()] = True
    alive.copy_(survives)
    return torch.where(alive, m, torch.zeros_like(m))


def target_schedule(step: int, start: int, end: int, count: int) -> int:
    """Extinct units wanted after `step` updates: 0 before `start`, `count` from `end`, cubic
    in between (fast early, gentle late)."""
    if step >= end:  # first: a schedule of no length (target epoch 1) is all at its end
        return count
    if step <= start:
        return 0
    u = (step - start) / (end - start)
    return int(round(count * (1.0 - (1.0 - u) ** 3)))


class SelectionDynamics:
    """Runs the dynamics on `masses`, one `step()` after each optimiser step.

    `updates`: how many steps training will take (sets η from the rate); `steps_per_epoch` is
    needed for the target mode (the schedule runs from the end of epoch 1 to `target_epoch`).
    `frozen=True` keeps the masses at 1 and only tracks the smoothed fitness (the control).
    """

    def __init__(
        self,
        masses: Masses,
        config: SelectionConfig,
        updates: int,
        steps_per_epoch: int | None = None,
        frozen: bool = False,
    ):
        self.masses, self.config, self.frozen = masses, config, frozen
        self.updates = int(updates)
        self.eta = config.eta_for(updates)  # the mean over training
        self.F = [torch.zeros_like(m.detach()) for m in masses.values]  # smoothed fitness
        self.t = 0
        self.target = None
        if config.target_fraction is not None and not frozen:
            spe = steps_per_epoch or updates
            epochs = max(1, round(updates / spe))
            end_epoch = config.target_epoch or max(1, epochs // 2)
            self.target = (
                min(spe, updates),
                min(end_epoch * spe, updates),
                int(round(config.target_fraction * masses.n)),
            )

    @property
    def steering_done(self) -> bool:
        return self.target is not None and self.t >= self.target[1]

    def normalised_fitness(self) -> list[torch.Tensor]:
        how = self.config.normalization
        return [normalise(F, a, how) for F, a in zip(self.F, self.masses.alive, strict=True)]

    @torch.no_grad()
    def step(self) -> None:
        """Read ``∂L/∂m`` from the last backward pass, update fitness and masses, clear the grads."""
        cfg, s = self.config, self.config.smoothing
        for F, g, alive in zip(self.F, self.masses.grads(), self.masses.alive, strict=True):
            F.mul_(s).add_((1.0 - s) * fitness(g, cfg.fitness))
            F.mul_(alive)
        self.masses.zero_grad()
        self.t += 1
        if self.frozen:
            return
        if self.steering_done:  # the masses stay; the schedule's last step takes its full count
            assert self.target is not None  # steering has one
            if self.t == self.target[1]:
                self._steer()
            return
        eta = self.eta
        if cfg.eta_schedule == "cosine":  # t-1 in [0, T): factors of mean 1 + 1/T, none 0
            eta = self.eta * (1.0 + math.cos(math.pi * (self.t - 1) / max(self.updates, 1)))
        new = []
        for m, Fh, alive in zip(
            self.masses.values, self.normalised_fitness(), self.masses.alive, strict=True
        ):
            m = m.detach()
            if cfg.dynamics == "replicator":
                m = replicator(m, Fh, eta)
            elif cfg.dynamics == "exponential":
                m = exponential(m, Fh, eta)
            else:
                m = logistic(m, Fh, eta, cfg.max_mass)
            if self.target is None:
                m = extinguish(m, alive, cfg.extinction)
                if cfg.dynamics == "exponential" and alive.any():
                    m = m.numel() * m / m.sum()
            new.append(m)
        self.masses.set(new)
        if self.target is not None:
            self._steer()

    def _steer(self) -> None:
        """Follow the target schedule: extinguish the lowest-mass units up to k(t); units that
        fell below the threshold beyond it wait there."""
        assert self.target is not None  # steered only with one
        start, end, count = self.target
        want = target_schedule(self.t, start, end, count)
        masses = self.masses
        flat, alive = masses.flat(), masses.flat_alive()
        if self.config.ranking == "layer":  # each layer its share, summing to `want`
            quotas = allocate([want / masses.n] * len(masses.sizes), masses.sizes, want)
            keep = torch.cat(
                [
                    lowest(m, quota, a, [len(m)], f)
                    for m, a, f, quota in zip(
                        masses.split(flat),
                        masses.split(alive),
                        self.normalised_fitness(),
                        quotas,
                        strict=True,
                    )
                ]
            )
        else:
            keep = lowest(flat, want, alive, masses.sizes, torch.cat(self.normalised_fitness()))
        masses.keep(keep)
        floor = torch.cat(masses.alive).float() * self.config.extinction
        masses.set(masses.split(torch.maximum(masses.flat(), floor)))

    def state(self) -> dict[str, float]:
        return {"eta": self.eta, "t": self.t}


__all__ = [
    "DEFAULT_RATE",
    "DYNAMICS",
    "FITNESS",
    "Masses",
    "SelectionConfig",
    "SelectionDynamics",
    "exponential",
    "extinguish",
    "fitness",
    "logistic",
    "normalise",
    "replicator",
    "target_schedule",
]
