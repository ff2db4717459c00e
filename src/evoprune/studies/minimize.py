"""Minimising the test functions with CMA-ES (IPOP), a real-coded GA, Adam, SGD and random search,
each with the same number of function evaluations (a gradient step costs one evaluation).

Every method starts from a point drawn uniformly in the function's usual domain (the population
methods draw their first mean/population there) and only sees ``f`` through a `Tracker`, which
counts evaluations, stops the method when the budget is spent, and records the best value so far.

- CMA-ES: the ``cmaes`` package (Nomura & Shibata, arXiv 2402.01373) with IPOP restarts: on
  stagnation restart from a new uniform mean with the population doubled (Auger & Hansen, CEC 2005).
- GA: a small real-coded GA: binary tournaments, simulated binary crossover (Deb & Agrawal 1995),
  Gaussian mutation of each gene with probability 1/d whose step size is self-adapted per
  individual (log-normal, as in evolution strategies), one elite, all clipped to the domain.
- Adam / SGD: torch autograd from one start point per seed, a cosine-decayed step size, steps clipped to a
  tenth of the domain (plain SGD diverges on Rosenbrock otherwise).
- random: uniform samples in the domain.

>>> r = minimize("sphere", 2, "cmaes", budget=2000, seed=0)
>>> r.best < 1e-6
True
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from evoprune.errors import EvopruneError
from evoprune.seeding import numpy_generator
from evoprune.studies.functions import FUNCTIONS, TestFunction

SUCCESS = 1e-6  # a run succeeds when it finds f < SUCCESS (our specification's threshold)
MAX_DIM = 1_000  # CMA-ES keeps a dim x dim covariance; the default budget is 10^4 * dim
STOP_BELOW = 1e-9  # a method stops early once f < STOP_BELOW (1000x below success)


class _BudgetSpent(Exception):
    pass


@dataclass
class Tracker:
    """Counts evaluations, keeps the best value, and ends the run when the budget is spent."""

    fn: TestFunction
    budget: int
    evaluations: int = 0
    best: float = math.inf
    evaluations_to_success: int | None = None
    trace: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, best so far)
    _next_mark: int = 1

    def record(self, v: float) -> None:
        """Count one evaluation that gave `v`."""
        self.evaluations += 1
        if v < self.best:  # NaN never is
            self.best = v
            if self.evaluations_to_success is None and v < SUCCESS:
                self.evaluations_to_success = self.evaluations
        if self.evaluations >= self._next_mark:  # ~12 points per decade, for the plots
            self.trace.append((self.evaluations, self.best))
            self._next_mark = max(self._next_mark + 1, int(self._next_mark * 1.2))

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """f of the rows of `X` (P, d) that fit in the budget; raises when it is spent."""
        left = self.budget - self.evaluations
        if left <= 0 or self.best < STOP_BELOW:
            raise _BudgetSpent
        values = np.asarray(self.fn.f(X[:left]), dtype=float)
        values = np.where(np.isnan(values), np.inf, values)
        for v in values.tolist():  # in evaluation order
            self.record(v)
        return values

    def finish(self) -> None:
        if not self.trace or self.trace[-1][0] != self.evaluations:
            self.trace.append((self.evaluations, self.best))


def _uniform(
    fn: TestFunction, dim: int, rng: np.random.Generator, n: int | None = None
) -> np.ndarray:
    shape = (dim,) if n is None else (n, dim)
    return rng.uniform(fn.low, fn.high, size=shape)


def run_cmaes(t: Tracker, dim: int, rng: np.random.Generator) -> None:
    import cmaes

    bounds = np.array([[t.fn.low, t.fn.high]] * dim)
    sigma0 = (t.fn.high - t.fn.low) / 10  # 95% of 20 seeds solve Rastrigin-10 (1/5: 85%)
    popsize = 4 + int(3 * math.log(dim))  # CMA-ES's default, doubled at every restart
    while True:
        seed = int(rng.integers(2**31))
        opt = cmaes.CMA(
            _uniform(t.fn, dim, rng), sigma0, bounds, seed=seed, population_size=popsize
        )
        while not opt.should_stop():
            X = np.stack([opt.ask() for _ in range(opt.population_size)])  # (P, d)
            values = t.evaluate(X)
            if len(values) < len(X):
                raise _BudgetSpent
            opt.tell(list(zip(X, values, strict=True)))
        popsize *= 2


@dataclass(frozen=True)
class GAConfig:
    population: int = 100
    crossover: float = 0.9  # probability a pair is recombined
    eta_crossover: float = 15.0  # SBX distribution index (Deb & Agrawal 1995)
    sigma0: float = 0.1  # initial mutation step, a fraction of the domain's width
    rate: float | None = None  # probability a gene mutates; None: 1/d
    min_sigma: float = 1e-12  # floor of the step, a fraction of the domain's width
    elites: int = 1


def tournament(fitness: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n` binary-tournament winners (lower f wins)."""
    a, b = rng.integers(len(fitness), size=(2, n))
    return np.where(fitness[a] <= fitness[b], a, b)


def sbx(p1: np.ndarray, p2: np.ndarray, eta: float, rng: np.random.Generator) -> np.ndarray:
    """Simulated binary crossover of parent rows (n, d): two children per pair, stacked (2n, d)."""
    u = rng.random(p1.shape)
    beta = np.where(u <= 0.5, (2 * u) ** (1 / (eta + 1)), (1 / (2 * (1 - u))) ** (1 / (eta + 1)))
    c1 = 0.5 * ((1 + beta) * p1 + (1 - beta) * p2)
    c2 = 0.5 * ((1 - beta) * p1 + (1 + beta) * p2)
    return np.concatenate([c1, c2])


def self_adaptive_mutation(
    X: np.ndarray, sigma: np.ndarray, low: float, high: float, floor: float, rate: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Self-adaptive Gaussian mutation with one step size per individual, as in evolution
    strategies (Schwefel 1981; Beyer & Schwefel, "Evolution strategies - A comprehensive
    introduction", Natural Computing 1, 2002, Sec. 4.1 and the sigma-SA-ES with
    tau = 1/sqrt(2N)): first the step mutates log-normally, sigma' = sigma * exp(tau * N(0, 1)),
    then each gene, with probability `rate`, moves by sigma' * N(0, 1). The step is inherited
    with the genes, so selection shrinks it as the population closes in on a minimum (the old
    polynomial mutation's steps stayed a fixed fraction of the domain). `sigma` (n,) is in units
    of the domain's width; floored at `floor`."""
    tau = 1 / math.sqrt(2 * X.shape[1])
    sigma = np.maximum(sigma * np.exp(tau * rng.standard_normal(len(sigma))), floor)
    step = sigma[:, None] * (high - low) * rng.standard_normal(X.shape)
    step *= rng.random(X.shape) < rate
    return np.clip(X + step, low, high), sigma


def run_ga(t: Tracker, dim: int, rng: np.random.Generator, cfg: GAConfig = GAConfig()) -> None:
    X = _uniform(t.fn, dim, rng, cfg.population)  # (N, d)
    sigma = np.full(cfg.population, cfg.sigma0)  # each individual's mutation step
    rate = 1 / dim if cfg.rate is None else cfg.rate
    fit = t.evaluate(X)
    while True:
        n_pairs = (cfg.population - cfg.elites + 1) // 2
        w = tournament(fit, 2 * n_pairs, rng)
        p1, p2 = X[w[:n_pairs]], X[w[n_pairs:]]
        s1, s2 = sigma[w[:n_pairs]], sigma[w[n_pairs:]]
        cross = rng.random(n_pairs) < cfg.crossover
        children = np.where(np.concatenate([cross, cross])[:, None],
                            sbx(p1, p2, cfg.eta_crossover, rng), np.concatenate([p1, p2]))  # fmt: skip
        mean = np.sqrt(s1 * s2)  # recombined children inherit the parents' geometric mean step
        child_sigma = np.concatenate([np.where(cross, mean, s1), np.where(cross, mean, s2)])
        children, child_sigma = self_adaptive_mutation(
            children, child_sigma, t.fn.low, t.fn.high, cfg.min_sigma, rate, rng
        )
        children = children[: cfg.population - cfg.elites]
        child_sigma = child_sigma[: cfg.population - cfg.elites]
        elite = np.argsort(fit, kind="stable")[: cfg.elites]
        child_fit = t.evaluate(children)
        X = np.concatenate([X[elite], children[: len(child_fit)]])
        sigma = np.concatenate([sigma[elite], child_sigma[: len(child_fit)]])
        fit = np.concatenate([fit[elite], child_fit])


def run_gradient(fn: TestFunction, starts: np.ndarray, budget: int, method: str) -> list[Tracker]:
    """Adam or SGD from each row of `starts` (K, d), all rows in one tensor: Adam and SGD act
    elementwise and ``f(X).sum()`` separates the rows, so row k is an independent run. One
    gradient step is one evaluation; one `Tracker` per row, which stops recording once its
    row is below `STOP_BELOW` (as that row alone would stop), while the others go on."""
    span = fn.high - fn.low
    lr = 0.01 * span if method == "adam" else 1e-3 * span
    x = torch.tensor(starts, dtype=torch.float64, requires_grad=True)  # (K, d)
    opt = torch.optim.Adam([x], lr=lr) if method == "adam" else torch.optim.SGD([x], lr=lr)
    trackers = [Tracker(fn, budget) for _ in range(len(starts))]
    best = np.full(len(starts), math.inf)
    max_step = span / 10
    for step in range(budget):
        going = np.flatnonzero(best >= STOP_BELOW)
        if not len(going):
            break
        for group in opt.param_groups:  # cosine decay over the budget
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / budget))
        opt.zero_grad(set_to_none=True)
        values = fn.f(x)  # (K,)
        values.sum().backward()
        v = values.detach().numpy()
        best = np.minimum(best, np.where(np.isnan(v), np.inf, v))
        for k in going:
            trackers[k].record(float(v[k]))
        grad = x.grad
        assert grad is not None  # backward() just filled it
        with torch.no_grad():
            grad.nan_to_num_(0.0)
            if method == "sgd":  # clip each row's step to a tenth of the domain
                norm = grad.norm(dim=1, keepdim=True) * opt.param_groups[0]["lr"]
                grad.mul_(max_step / norm.clamp(min=max_step))
        opt.step()
        with torch.no_grad():
            x.clamp_(fn.low, fn.high)
    return trackers


def run_random(t: Tracker, dim: int, rng: np.random.Generator) -> None:
    while True:
        t.evaluate(_uniform(t.fn, dim, rng, 1000))


# population methods: run(tracker, dim, rng) evaluates through the tracker until it is spent
METHODS: dict[str, Callable[[Tracker, int, np.random.Generator], None] | None] = {
    "cmaes": run_cmaes,
    "ga": run_ga,
    "adam": None,  # gradient methods: `run_gradient`, batched over seeds
    "sgd": None,
    "random": run_random,
}


@dataclass(frozen=True)
class MinimizeResult:
    function: str
    dim: int
    method: str
    seed: int
    budget: int
    best: float
    success: bool
    evaluations: int
    evaluations_to_success: int | None
    seconds: float
    trace: tuple[tuple[int, float], ...]


def default_budget(dim: int) -> int:
    return 10_000 * dim


def check(function: str, dim: int, method: str, budget: int | None) -> None:
    if function not in FUNCTIONS:
        raise EvopruneError(f"function: expected one of {', '.join(FUNCTIONS)}, got {function!r}")
    if method not in METHODS:
        raise EvopruneError(f"method: expected some of {', '.join(METHODS)}, got {method!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise EvopruneError(
            f"dim: expected an integer from 1 to {MAX_DIM} (e.g. 2, 10, 30), got {dim!r}"
        )
    if function == "rosenbrock" and dim < 2:  # a sum over neighbouring pairs: 0 everywhere
        raise EvopruneError("dim: rosenbrock needs at least 2 dimensions, got 1")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
    ):
        raise EvopruneError(f"budget: expected a positive number of evaluations, got {budget!r}")


def minimize(
    function: str, dim: int, method: str, budget: int | None = None, seed: int = 0
) -> MinimizeResult:
    """Minimise `function` in `dim` dimensions with `method` and `budget` evaluations
    (default 10^4 * dim). The run is a pure function of its arguments."""
    return minimize_seeds(function, dim, method, budget, [seed])[0]


def minimize_seeds(
    function: str, dim: int, method: str, budget: int | None, seeds: list[int]
) -> list[MinimizeResult]:
    """`minimize` for each seed (the gradient methods run all seeds in one batch)."""
    check(function, dim, method, budget)
    budget = default_budget(dim) if budget is None else budget
    fn = FUNCTIONS[function]
    rngs = [numpy_generator(s, f"minimize/{function}/{dim}/{method}") for s in seeds]
    out = []
    run = METHODS[method]
    if run is None:
        start = time.perf_counter()
        starts = np.stack([_uniform(fn, dim, rng) for rng in rngs])  # (K, d)
        trackers = run_gradient(fn, starts, budget, method)
        seconds = [(time.perf_counter() - start) / len(seeds)] * len(seeds)
    else:
        trackers, seconds = [], []
        for rng in rngs:
            start = time.perf_counter()
            t = Tracker(fn, budget)
            with contextlib.suppress(_BudgetSpent):
                run(t, dim, rng)
            trackers.append(t)
            seconds.append(time.perf_counter() - start)
    for seed, t, sec in zip(seeds, trackers, seconds, strict=True):
        t.finish()
        out.append(
            MinimizeResult(
                function=function,
                dim=dim,
                method=method,
                seed=seed,
                budget=budget,
                best=t.best,
                success=t.best < SUCCESS,
                evaluations=t.evaluations,
                evaluations_to_success=t.evaluations_to_success,
                seconds=sec,
                trace=tuple(t.trace),
            )
        )
    return out


def summarise(results: list[MinimizeResult]) -> dict[str, float | int | None]:
    """median_best, success_rate, median_evaluations_to_success (over the successful seeds)."""
    bests = [r.best for r in results]
    hits = [r.evaluations_to_success for r in results if r.evaluations_to_success is not None]
    return {
        "median_best": float(np.median(bests)),
        "success_rate": sum(r.success for r in results) / len(results),
        "median_evaluations_to_success": float(np.median(hits)) if hits else None,
        "seeds": len(results),
        "mean_seconds": float(np.mean([r.seconds for r in results])),
    }
