"""GA operators: small pure functions over the whole population (no per-bit Python loops).

All take an explicit `torch.Generator`; populations are bool tensors ``(P, n_bits)``. The
population handed to `crossover` is ranked (fittest first), as `select` leaves it.
"""

from __future__ import annotations

import numpy as np
import torch


def random_masks(n: int, n_bits: int, density: float, gen: torch.Generator) -> torch.Tensor:
    """``(n, n_bits)`` masks with every bit 1 with probability `density`."""
    return torch.rand(n, n_bits, generator=gen) < density


def crossover(
    ranked: torch.Tensor, rec_rate: float, n_parents: int, gen: torch.Generator
) -> torch.Tensor:
    """Uniform crossover: each individual becomes a first parent with probability `rec_rate`,
    its mate drawn uniformly from the top `n_parents`; each child bit comes from either parent
    with probability 1/2. Returns the children ``(k, n_bits)``."""
    N, n_bits = ranked.shape
    first = torch.nonzero(torch.rand(N, generator=gen) < rec_rate).flatten()  # (k,)
    mates = torch.randint(0, max(n_parents, 1), (len(first),), generator=gen)  # (k,)
    take_first = torch.rand(len(first), n_bits, generator=gen) < 0.5  # (k, n_bits)
    return torch.where(take_first, ranked[first], ranked[mates])


def mutate(pool: torch.Tensor, mut_rate: float, gen: torch.Generator) -> torch.Tensor:
    """Each individual of `pool` yields, with probability `mut_rate`, a mutant with exactly one
    random bit flipped. Returns the mutants ``(m, n_bits)``; `pool` is not changed."""
    P, n_bits = pool.shape
    chosen = torch.nonzero(torch.rand(P, generator=gen) < mut_rate).flatten()  # (m,)
    flip = torch.randint(0, n_bits, (len(chosen),), generator=gen)  # (m,)
    mutants = pool[chosen].clone()
    rows = torch.arange(len(chosen))
    mutants[rows, flip] = ~mutants[rows, flip]
    return mutants


def rank(fitness: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """Order of individuals, best first: higher fitness, then more zero bits (sparser), then
    lower index (deterministic tie-break: the earlier individual wins)."""
    index = np.arange(len(fitness))
    fit = np.nan_to_num(fitness.double().numpy(), nan=-np.inf)
    return torch.from_numpy(np.lexsort((index, -zeros.numpy(), -fit)).copy())


def diversity(population: torch.Tensor) -> float:
    """Mean pairwise Hamming distance between distinct individuals, as a fraction of bits."""
    P = population.shape[0]
    if P < 2:
        return 0.0
    ones = population.sum(dim=0, dtype=torch.float64)  # (n_bits,)
    pairs_differing = ones * (P - ones)  # per bit: pairs (i, j) with different bits
    return float(pairs_differing.sum() / (P * (P - 1) / 2) / population.shape[1])
