"""CMA-ES over a pruning genome: which weights of a trained network to keep at a fixed budget.

The genome never names weights one by one; it reshapes a static per-weight ranking (the
SynFlow score of the dense network, Tanaka et al. 2020, or |w|), and every genome decodes to a
mask with exactly the budget ``k`` (bisection on a common offset, then largest remainder):

``layer-density``  one gene per layer: densities ``sigmoid(x_l + tau)``, ``tau`` found by
                   bisection so that they keep ``k`` weights; the top weights of each layer by
                   the ranking.
``layer-mix``      two genes per layer: the density as above and how far the layer's ranking
                   leans from |w| (0) to the SynFlow score (1): ``log|w| + gamma_l (log g_i +
                   log f_j)``, the SynFlow score being ``g_i |w_ij| f_j``.
``neuron``         one gene per layer and one per hidden unit (sep-CMA-ES): a unit's gene
                   raises or lowers the ranking of every weight into and out of it, so the
                   search can concentrate the budget on fewer units; global top-k.

Fitness (lower is better, NaN/inf worst):

``synflow``   ``-log R_SF`` of the masked network (data-free; an empty layer is +inf).
``lsq-ce``    the cross-entropy on a calibration batch of the network after the least-squares
              energy compensation (data-aware, closed-form, no gradient step).
``trainfit``  ``-`` validation macro-F1 after a few epochs of masked fine-tuning (the
              training-based reference for the cost comparison).

CMA-ES: the ``cmaes`` package (Hansen's CMA-ES; sep-CMA-ES, Ros & Hansen 2008, for the
neuron genome), ask/tell, population 16, optional IPOP restarts (Auger & Hansen 2005) that
double the population.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from evoprune.errors import EvopruneError
from evoprune.pruning.dense import Net, Split, finetune, scores
from evoprune.pruning.energy import Compensator
from evoprune.pruning.magnitude import allocate, layer_topk_masks, topk_masks
from evoprune.pruning.synflow import log_synflow, synflow_scores
from evoprune.seeding import derive_seed

GENOMES = ("layer-density", "layer-mix", "neuron")
FITNESSES = ("synflow", "lsq-ce", "trainfit")
ORDERS = ("synflow", "magnitude", "iterative")
MAX_POPULATION = 1024


@dataclass(frozen=True)
class CMAConfig:
    genome: str = "layer-mix"
    fitness: str = "lsq-ce"
    order: str = "synflow"  # the static ranking within a layer (layer-density, neuron)
    population: int = 16
    # budget: population * generations evaluations; 10 keeps the lsq-ce search near 0.5 s on a
    # loaded CPU (the specification's 100 is the default of cmaes-trainfit, see job.py)
    generations: int = 10
    sigma: float = 1.0  # initial step size (genes are logits)
    ipop: bool = False  # restart with double the population when CMA-ES stalls
    start: str = "synflow"  # initial mean: iterative SynFlow's layer densities, or "uniform"
    calibration: int = 256  # rows of the training split for the data-aware fitness
    trainfit_epochs: int = 3
    # lsq-ce: the least-squares compensation the fitness scores (as the job's final one)
    ridge: float = 1e-3
    lsq_prior: str = "dense"
    # lsq-ce: score a generation in one batched pass (False: genome by genome, the reference)
    batched: bool = True

    def __post_init__(self) -> None:
        if self.genome not in GENOMES:
            raise EvopruneError(
                f"genome: expected one of {', '.join(GENOMES)}, got {self.genome!r}"
            )
        if self.fitness not in FITNESSES:
            raise EvopruneError(
                f"fitness: expected one of {', '.join(FITNESSES)}, got {self.fitness!r}"
            )
        if self.order not in ORDERS:
            raise EvopruneError(f"order: expected one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.start not in ("synflow", "uniform"):
            raise EvopruneError(f"start: expected synflow or uniform, got {self.start!r}")
        for name in ("generations", "calibration"):
            if int(getattr(self, name)) < 2:
                raise EvopruneError(f"{name}: expected an integer >= 2, got {getattr(self, name)}")
        # below 4, CMA-ES's recombination weights divide by zero; each candidate holds a
        # network's masks in memory (the lsq-ce fitness also its compensated weights)
        if not 4 <= int(self.population) <= MAX_POPULATION:
            raise EvopruneError(
                f"population: expected an integer in [4, {MAX_POPULATION}], got {self.population}"
            )
        if not self.sigma > 0:
            raise EvopruneError(f"sigma: expected a positive number, got {self.sigma}")


def bisect_densities(genes: np.ndarray, sizes: list[int], k: int) -> list[int]:
    """Per-layer kept counts summing to exactly `k`: ``sigmoid(genes + tau) * sizes`` with the
    offset ``tau`` found by bisection, rounded by largest remainder."""
    g = [float(v) for v in genes]  # plain floats: a few genes, so no numpy per step
    pairs = list(zip(g, sizes, strict=True))
    exp = math.exp
    lo, hi = -60.0 - max(g), 60.0 - min(g)
    for _ in range(60):  # the interval shrinks to 120 / 2**60: far below one weight
        mid = 0.5 * (lo + hi)
        kept = 0.0  # the expected kept count at offset mid, summed in layer order
        for x, n in pairs:
            kept += n / (1.0 + exp(min(700.0, -(x + mid))))
        if kept < k:
            lo = mid
        else:
            hi = mid
    tau = 0.5 * (lo + hi)
    frac = [1.0 / (1.0 + math.exp(min(700.0, -(x + tau)))) for x in g]
    return allocate(frac, sizes, k)


@dataclass
class Genome:
    """Decodes a gene vector into masks with exactly `k` kept weights."""

    net: Net
    k: int
    kind: str
    order: str
    survival: list[torch.Tensor] | None = (
        None  # iterative SynFlow's survival keys (order "iterative")
    )
    _log_mag: list[torch.Tensor] = field(init=False, repr=False)
    _log_flow: list[torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        eps = 1e-300
        self.sizes = [w.numel() for w in self.net.weights]
        self._log_mag = [w.double().abs().clamp(min=eps).log() for w in self.net.weights]
        flow = synflow_scores(self.net)
        # the unit part of the SynFlow score: log g_i + log f_j = log S_ij - log |w_ij|
        self._log_flow = [
            s.clamp(min=eps).log() - lm for s, lm in zip(flow, self._log_mag, strict=True)
        ]
        # the static ranking within a layer (layer-density, neuron); layer-mix ranks by its
        # own genes, a mix of magnitude and SynFlow
        order = "magnitude" if self.kind == "layer-mix" else self.order
        base = self._log_mag
        if order == "synflow":
            base = [a + b for a, b in zip(self._log_mag, self._log_flow, strict=True)]
        elif order == "iterative":
            if self.survival is None:
                raise EvopruneError("order iterative: needs iterative SynFlow's survival keys")
            base = [s.double() for s in self.survival]
        self._base = base
        # sorted once: decoding a layer-density genome is then a prefix of each layer's order
        self._sorted = (
            [torch.argsort(b.reshape(-1), descending=True, stable=True) for b in base]
            if self.kind == "layer-density"
            else []
        )
        self._hidden = [int(w.shape[0]) for w in self.net.weights[:-1]]

    @property
    def dim(self) -> int:
        L = len(self.sizes)
        return {"layer-density": L, "layer-mix": 2 * L, "neuron": L + sum(self._hidden)}[self.kind]

    def decode(self, x: np.ndarray) -> list[torch.Tensor]:
        L = len(self.sizes)
        if self.kind == "layer-density":
            counts = bisect_densities(x[:L], self.sizes, self.k)
            masks = []
            for w, order, c in zip(self.net.weights, self._sorted, counts, strict=True):
                m = torch.zeros(w.numel(), dtype=torch.bool)
                m[order[:c]] = True
                masks.append(m.view(w.shape))
            return masks
        if self.kind == "layer-mix":
            gamma = 1.0 / (1.0 + np.exp(-x[L:]))
            ranking = [
                lm + float(g) * lf
                for lm, lf, g in zip(self._log_mag, self._log_flow, gamma, strict=True)
            ]
            return layer_topk_masks(ranking, bisect_densities(x[:L], self.sizes, self.k))
        # neuron: layer offsets + unit offsets on the rows (outputs) and columns (inputs)
        units = np.split(x[L:], np.cumsum(self._hidden)[:-1]) if self._hidden else []
        ranking = []
        for i, base in enumerate(self._base):
            r = base + float(x[i])
            if i < L - 1:  # rows of a hidden layer: its units
                r = r + torch.as_tensor(units[i], dtype=torch.float64)[:, None]
            if i > 0:  # columns: the units of the layer below
                r = r + torch.as_tensor(units[i - 1], dtype=torch.float64)[None, :]
            ranking.append(r)
        return topk_masks(ranking, self.k)

    def mean_for(self, densities: list[float]) -> np.ndarray:
        """Genes whose decoded layer densities are (about) `densities`, other genes neutral."""
        d = np.clip(np.asarray(densities, dtype=np.float64), 1e-4, 1 - 1e-4)
        x = np.zeros(self.dim)
        if self.kind == "neuron":
            # a layer gene is an offset on one global top-k of scores: shift each layer so that
            # its share `d` of weights scores above 0 (the midpoint of the scores either side)
            for i, (base, share) in enumerate(zip(self._base, d, strict=True)):
                ranked = torch.sort(base.reshape(-1), descending=True).values
                c = min(max(round(float(share) * len(ranked)), 1), len(ranked) - 1)
                x[i] = -0.5 * float(ranked[c - 1] + ranked[c])
        else:  # layer densities by bisection on logit(d) + offset
            x[: len(d)] = np.log(d / (1 - d))
        x[: len(d)] -= x[: len(d)].mean()
        return x


Fitness = Callable[[list[torch.Tensor]], float]
PopulationFitness = Callable[[list[list[torch.Tensor]]], list[float]]


def make_population_fitness(
    config: CMAConfig, net: Net, split: Split, seed: int, counter: dict[str, int]
) -> PopulationFitness:
    """The fitness of `config` for a list of genomes' masks (lower is better, inf worst): the
    lsq-ce fitness scores them in one batched pass (``Compensator.lsq_logits``), the others
    one by one with ``make_fitness``."""
    if config.fitness != "lsq-ce" or not config.batched:
        fit = make_fitness(config, net, split, seed, counter)
        return lambda population: [fit(masks) for masks in population]
    X, y = _calibration(config, split, seed)
    compensator = Compensator(net, X, config.ridge, config.lsq_prior)

    def fit_all(population: list[list[torch.Tensor]]) -> list[float]:
        counter["forward_passes"] += 2 * len(population)  # as make_fitness counts them
        with torch.no_grad():
            logits = compensator.lsq_logits(population)  # (P, n, C)
            P, n, C = logits.shape
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(P * n, C), y.repeat(P), reduction="none"
            ).view(P, n)
        return [v if math.isfinite(v) else math.inf for v in loss.mean(1).tolist()]

    return fit_all


def _calibration(config: CMAConfig, split: Split, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The lsq-ce fitness's calibration rows of the training split (seeded)."""
    n = min(config.calibration, len(split.y_train))
    rows = torch.randperm(
        len(split.y_train), generator=torch.Generator().manual_seed(derive_seed(seed, "calib"))
    )[:n]
    return split.X_train[rows], split.y_train[rows]


def make_fitness(
    config: CMAConfig, net: Net, split: Split, seed: int, counter: dict[str, int]
) -> Fitness:
    """The fitness function of `config` for one genome's masks (lower is better); counts
    forward passes in `counter`."""
    if config.fitness == "synflow":

        def fit_synflow(masks: list[torch.Tensor]) -> float:
            counter["forward_passes"] += 1  # one all-ones forward (and its backward)
            value = log_synflow(net, masks)
            return -value if math.isfinite(value) else math.inf

        return fit_synflow
    if config.fitness == "lsq-ce":
        X, y = _calibration(config, split, seed)
        compensator = Compensator(net, X, config.ridge, config.lsq_prior)

        def fit_lsq(masks: list[torch.Tensor]) -> float:
            counter["forward_passes"] += 2  # the compensation's layer pass and the scoring pass
            compensator(masks, "lsq")
            logits = compensator.logits
            assert logits is not None  # the call sets it
            with torch.no_grad():
                loss = torch.nn.functional.cross_entropy(logits, y)
            value = float(loss)
            return value if math.isfinite(value) else math.inf

        return fit_lsq

    def fit(masks: list[torch.Tensor]) -> float:
        counter["evaluations_trained"] = counter.get("evaluations_trained", 0) + 1
        tuned = finetune(net, masks, split, config.trainfit_epochs, seed)
        batches = math.ceil(len(split.y_train) / 64)
        counter["forward_passes"] += config.trainfit_epochs * batches + 1
        return -scores(tuned, split.X_val, split.y_val, split.n_classes)["f1"]

    return fit


@dataclass
class SearchResult:
    masks: list[torch.Tensor]
    fitness: float
    genes: np.ndarray
    history: list[dict[str, Any]]
    evaluations: int
    forward_passes: int
    seconds: float


def cmaes_search(
    net: Net,
    k: int,
    split: Split,
    config: CMAConfig,
    seed: int,
    start_densities: list[float] | None = None,
    progress: Callable[[int], None] | None = None,
    survival: list[torch.Tensor] | None = None,
) -> SearchResult:
    """Minimise the fitness of `config` over the genome with CMA-ES; the best mask seen wins.

    `start_densities` (e.g. iterative SynFlow's) centre the initial mean; it is also evaluated,
    so the result is never worse than the starting point.
    """
    from cmaes import CMA, SepCMA

    begin = time.perf_counter()
    genome = Genome(net, k, config.genome, config.order, survival)
    if genome.dim < 2:
        raise EvopruneError(
            f"genome: {config.genome} has {genome.dim} gene for a network of layers "
            f"{net.layers}; CMA-ES needs at least 2 (use genome layer-mix)"
        )
    counter = {"forward_passes": 0}
    fit = make_population_fitness(config, net, split, seed, counter)
    mean = genome.mean_for(start_densities) if start_densities else np.zeros(genome.dim)
    best_x = mean.copy()
    best_masks = genome.decode(mean)
    best_f = fit([best_masks])[0]
    history: list[dict[str, Any]] = []
    evaluations, generation, popsize, restart = 1, 0, config.population, 0
    budget = config.population * config.generations
    while evaluations < budget:
        cls = SepCMA if config.genome == "neuron" else CMA
        opt = cls(
            mean=mean.copy(),
            sigma=config.sigma,
            seed=int(derive_seed(seed, f"cmaes-{restart}") % (2**31)),
            population_size=popsize,
        )
        while evaluations < budget:
            xs = [opt.ask() for _ in range(opt.population_size)]
            population = [genome.decode(x) for x in xs]
            told = []
            for x, masks, f in zip(xs, population, fit(population), strict=True):
                evaluations += 1
                told.append((x, f if math.isfinite(f) else 1e300))
                if f < best_f:
                    best_f, best_x, best_masks = f, x.copy(), masks
            opt.tell(told)
            generation += 1
            values = [v for _, v in told]
            history.append(
                {
                    "generation": generation,
                    "restart": restart,
                    "population": opt.population_size,
                    "evaluations": evaluations,
                    "best_fitness": float(min(values)),
                    "mean_fitness": float(np.mean(values)),
                    "best_so_far": float(best_f),
                    "sigma": float(getattr(opt, "_sigma", float("nan"))),
                }
            )
            if progress:
                progress(generation)
            if config.ipop and opt.should_stop():
                break
        if not config.ipop:
            break
        restart += 1
        popsize *= 2
    return SearchResult(
        masks=best_masks,
        fitness=float(best_f),
        genes=best_x,
        history=history,
        evaluations=evaluations,
        forward_passes=counter["forward_passes"],
        seconds=time.perf_counter() - begin,
    )
