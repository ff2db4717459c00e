"""Training the weights of an MLP 64-32-10 (2,410 weights) on digits three ways, with the same
budget of CPU seconds (`evoprune.studies.training.cpu_seconds`): Adam (lr 1e-3, weight decay 1e-3, batch 64, 200 epochs, early stopping on the
validation loss with the best epoch restored, inputs standardised on the training split), sep-CMA-ES over the
weights on the full-batch training cross-entropy (population 64; Ros & Hansen, PPSN 2008, from the
``cmaes`` package), and a real-coded GA over the weights (population 64, binary tournaments,
blend crossover, Gaussian mutation, two elites).

The clock counts training only; scoring the current model for the F1-vs-time curve is paused out.
A budget of CPU seconds depends on the machine's speed; a budget of `evaluations` (loss
evaluations of one weight vector for sep-CMA-ES and the GA, mini-batch gradient steps for Adam,
counted as in the minimisation study) gives the same weights for the same seed on any machine.

>>> r = train_weights("adam", seconds=1.0)                          # doctest: +SKIP
>>> r.test_f1 > 0.9                                                 # doctest: +SKIP
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from evoprune.errors import EvopruneError
from evoprune.progress import progress_bar
from evoprune.seeding import numpy_generator, torch_generator
from evoprune.studies.choices import WEIGHT_METHODS
from evoprune.studies.training import (
    Splits,
    accuracy,
    cpu_seconds,
    load_splits,
    make_mlp,
    model_macro_f1,
    train_adam,
)

HIDDEN = 32  # MLP 64-32-10
DEFAULT_SECONDS = 30.0  # the budget of the population methods (and Adam's cap, if reached)
POPULATION = 64


@dataclass(frozen=True)
class WeightsConfig:
    method: str = "adam"
    seconds: float | None = None  # None: Adam runs to its own stop; the others DEFAULT_SECONDS
    seed: int = 0
    lr: float = 1e-3  # Adam, our specification's setting
    # L2 weight decay in Adam (torch.optim.Adam's weight_decay, as in the HPO space). Chosen by the
    # mean validation loss over seeds 0-4 among 0, 1e-4, 3e-4, 1e-3, 3e-3 (and AdamW 0.1, 0.3)
    weight_decay: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 20
    population: int = POPULATION
    sigma: float = 0.05  # sep-CMA-ES step size / GA mutation std, in weight units
    record_every: float = 0.5  # seconds of training between two points of the F1-vs-time curve
    # a budget of evaluations, alone (no CPU-second budget then) or beside `seconds` (whichever
    # ends first): sep-CMA-ES and the GA stop before a generation would exceed it, Adam after the
    # epoch that reaches it
    evaluations: int | None = None


class WeightsOverrides(TypedDict, total=False):
    """The `WeightsConfig` fields `train_weights` takes as keywords."""

    lr: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    population: int
    sigma: float
    record_every: float
    evaluations: int


@dataclass
class WeightsResult:
    method: str
    test_f1: float
    test_accuracy: float
    val_f1: float
    seconds: float
    evaluations: int  # Adam: mini-batch gradients; the others: full-batch loss evaluations
    history: list[dict[str, float]] = field(default_factory=list)  # seconds, val_f1, test_f1
    recipe: dict[str, object] = field(default_factory=dict)  # the settings that produced it


def check_config(cfg: WeightsConfig) -> None:
    """An `EvopruneError` for a setting `train_weights` cannot run with."""
    if cfg.method not in WEIGHT_METHODS:
        raise EvopruneError(
            f"method: expected one of {', '.join(WEIGHT_METHODS)}, got {cfg.method!r}"
        )
    if cfg.seconds is not None and not (cfg.seconds > 0 and math.isfinite(cfg.seconds)):
        raise EvopruneError(f"seconds: expected a positive number, got {cfg.seconds!r}")
    if cfg.population < 4:
        raise EvopruneError(f"population: expected at least 4, got {cfg.population}")
    least = 1 if cfg.method == "adam" else cfg.population
    e = cfg.evaluations
    if e is not None and (isinstance(e, bool) or not isinstance(e, int) or e < least):
        what = "a positive integer" if least == 1 else f"at least the population ({least})"
        raise EvopruneError(f"evaluations: expected {what}, got {e!r}")


class _Shapes:
    """Flat weight vectors (P, n) <-> the MLP's layers, for a batched forward of a population."""

    def __init__(self, model: nn.Sequential):
        self.linears = [m for m in model if isinstance(m, nn.Linear)]
        self.sizes = [(m.out_features, m.in_features) for m in self.linears]
        self.n = sum(o * i + o for o, i in self.sizes)

    def flatten(self, model: nn.Sequential) -> torch.Tensor:
        return torch.cat([torch.cat([m.weight.reshape(-1), m.bias]) for m in self.linears]).detach()

    def load(self, model: nn.Sequential, flat: torch.Tensor) -> nn.Sequential:
        at = 0
        with torch.no_grad():
            for m, (o, i) in zip(self.linears, self.sizes, strict=True):
                m.weight.copy_(flat[at : at + o * i].view(o, i))
                m.bias.copy_(flat[at + o * i : at + o * i + o])
                at += o * i + o
        return model

    def losses(self, W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each weight vector, W (P, n) -> (P,); ReLU between layers."""
        h = X.expand(len(W), *X.shape)  # (P, N, in)
        at = 0
        for k, (o, i) in enumerate(self.sizes):
            w = W[:, at : at + o * i].view(-1, o, i)
            b = W[:, at + o * i : at + o * i + o]
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (P, N, o)
            if k < len(self.sizes) - 1:
                h = h.relu()
            at += o * i + o
        logp = h.log_softmax(-1)  # (P, N, C)
        return -logp.gather(2, y.view(1, -1, 1).expand(len(W), -1, 1)).squeeze(2).mean(1)


class _Clock:
    """Training CPU time, with scoring paused out; calls `record` every `every` seconds."""

    def __init__(self, budget: float, every: float):
        self.budget, self.every, self.used, self.next = budget, every, 0.0, 0.0
        self._start = cpu_seconds()

    def lap(self) -> float:
        now = cpu_seconds()
        self.used += now - self._start
        self._start = now
        return self.used

    def resume(self) -> None:
        self._start = cpu_seconds()

    @property
    def spent(self) -> bool:
        return self.used >= self.budget


def train_weights(
    method: str = "adam", dataset: str = "digits", seconds: float | None = None, seed: int = 0,
    progress: bool = False, **overrides: Unpack[WeightsOverrides],
) -> WeightsResult:  # fmt: skip
    """Train the 64-32-10 MLP's weights with `method`; returns test macro-F1 and the curve."""
    cfg = WeightsConfig(method=method, seconds=seconds, seed=seed, **overrides)
    check_config(cfg)
    s = load_splits(dataset)
    model = make_mlp(s.n_features, [HIDDEN], s.n_classes, seed=seed)
    if method == "adam":
        return _adam(model, s, cfg)
    if cfg.seconds is not None:
        budget = cfg.seconds
    else:  # the evaluations alone, or the default seconds
        budget = math.inf if cfg.evaluations is not None else DEFAULT_SECONDS
    return _population(model, s, cfg, budget, progress)


def _adam(model: nn.Sequential, s: Splits, cfg: WeightsConfig) -> WeightsResult:
    steps_per_epoch = math.ceil(len(s.y_train) / cfg.batch_size)
    tr = train_adam(model, s, lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                    max_epochs=cfg.max_epochs, patience=cfg.patience, seed=cfg.seed,
                    seconds=cfg.seconds, steps=cfg.evaluations)  # fmt: skip
    history = [
        {"seconds": h["seconds"], "epoch": h["epoch"], "val_f1": h["val_f1"]} for h in tr.history
    ]
    return WeightsResult(
        method="adam",
        test_f1=model_macro_f1(model, s.X_test, s.y_test),
        test_accuracy=accuracy(model, s.X_test, s.y_test),
        val_f1=model_macro_f1(model, s.X_val, s.y_val),
        seconds=tr.seconds,
        evaluations=tr.epochs * steps_per_epoch,
        history=history,
        recipe={
            "optimizer": "Adam",
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "weight_decay_kind": "L2 (torch.optim.Adam)",
            "batch_size": cfg.batch_size,
            "max_epochs": cfg.max_epochs,
            "patience": cfg.patience,
            "early_stopping": "validation loss, best epoch restored",
            "inputs": "standardised with the training split's mean and std (std >= 1)",
            "epochs": tr.epochs,
            "evaluations": cfg.evaluations,
        },
    )


def _population(
    model: nn.Sequential, s: Splits, cfg: WeightsConfig, budget: float, progress: bool
) -> WeightsResult:
    shapes = _Shapes(model)
    x0 = shapes.flatten(model).double().numpy()  # PyTorch's default init: the first mean/parent
    rng = numpy_generator(cfg.seed, f"weights/{cfg.method}")
    history: list[dict[str, float]] = []
    evaluations = 0
    clock = _Clock(budget, cfg.record_every)
    by_evaluations = math.isinf(budget)  # the bar counts what ends the run
    bar = progress_bar(total=cfg.evaluations if by_evaluations else round(budget, 1),
                       desc=cfg.method, unit="eval" if by_evaluations else "s",
                       enabled=progress)  # fmt: skip

    # the evaluations of one generation: sep-CMA-ES's population, the GA's children
    cost = cfg.population if cfg.method == "sep-cmaes" else cfg.population - 2

    def room() -> bool:  # for one more generation, in both budgets
        return not clock.spent and (
            cfg.evaluations is None or evaluations + cost <= cfg.evaluations
        )

    def score(flat: np.ndarray) -> None:  # the curve; its time is not charged to the method
        used = clock.lap()
        if used >= clock.next or not room():
            shapes.load(model, torch.tensor(flat, dtype=torch.float32))
            history.append({"seconds": used, "evaluations": evaluations,
                            "val_f1": model_macro_f1(model, s.X_val, s.y_val),
                            "test_f1": model_macro_f1(model, s.X_test, s.y_test)})  # fmt: skip
            bar.update((evaluations if by_evaluations else round(min(used, budget), 1)) - bar.n)
            clock.next = used + cfg.record_every
        clock.resume()

    def losses(W: np.ndarray) -> np.ndarray:  # (P, n) -> (P,)
        with torch.no_grad():
            return (
                shapes.losses(torch.tensor(W, dtype=torch.float32), s.X_train, s.y_train)
                .double()
                .numpy()
            )

    if cfg.method == "sep-cmaes":
        import cmaes

        opt = cmaes.SepCMA(
            x0, cfg.sigma, seed=int(rng.integers(2**31)), population_size=cfg.population
        )
        best = x0
        while room():
            W = np.stack([opt.ask() for _ in range(opt.population_size)])  # (P, n)
            f = losses(W)
            evaluations += len(W)
            opt.tell(list(zip(W, np.nan_to_num(f, nan=np.inf), strict=True)))
            best = opt.mean  # the distribution's mean is the estimate
            score(best)
    else:
        gen = torch_generator(cfg.seed, "weights/ga-init")
        pop = np.stack([x0] + [_fresh(model, shapes, gen) for _ in range(cfg.population - 1)])
        fit = losses(pop)
        evaluations += len(pop)
        best = pop[int(np.argmin(fit))]
        while room():
            pop, fit = _ga_generation(pop, fit, cfg, rng, losses)
            evaluations += len(pop) - 2
            best = pop[int(np.argmin(fit))]
            score(best)
    bar.close()
    shapes.load(model, torch.tensor(best, dtype=torch.float32))
    return WeightsResult(
        method=cfg.method,
        test_f1=model_macro_f1(model, s.X_test, s.y_test),
        test_accuracy=accuracy(model, s.X_test, s.y_test),
        val_f1=model_macro_f1(model, s.X_val, s.y_val),
        seconds=clock.used,
        evaluations=evaluations,
        history=history,
        recipe={
            "population": cfg.population,
            "sigma": cfg.sigma,
            "seconds": None if math.isinf(budget) else budget,
            "evaluations": cfg.evaluations,
        },  # fmt: skip
    )


def _fresh(model: nn.Sequential, shapes: _Shapes, gen: torch.Generator) -> np.ndarray:
    """Another PyTorch-default initialisation (uniform +-1/sqrt(fan_in)) as a flat vector."""
    parts = []
    for o, i in shapes.sizes:
        bound = 1 / math.sqrt(i)
        parts.append((torch.rand(o * i + o, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
    return torch.cat(parts).numpy()


def _ga_generation(
    pop: np.ndarray,
    fit: np.ndarray,
    cfg: WeightsConfig,
    rng: np.random.Generator,
    losses: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Two elites + (P-2) children: binary tournaments, blend crossover, Gaussian mutation."""
    P, n = pop.shape
    elite = np.argsort(fit, kind="stable")[:2]
    a, b = rng.integers(P, size=(2, 2 * (P - 2)))
    winners = np.where(fit[a] <= fit[b], a, b)
    p1, p2 = pop[winners[: P - 2]], pop[winners[P - 2 :]]
    alpha = rng.random((P - 2, 1))  # blend: a random point on the segment between the parents
    children = alpha * p1 + (1 - alpha) * p2 + rng.normal(0.0, cfg.sigma, size=(P - 2, n))
    child_fit = losses(children)
    return np.concatenate([pop[elite], children]), np.concatenate([fit[elite], child_fit])
