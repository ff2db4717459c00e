"""GA operators: small pure functions over the whole population (no per-bit Python loops).

All take an explicit `torch.Generator`; populations are bool tensors ``(P, n_bits)``. The
population handed to `crossover` is ranked (fittest first), as `select` leaves it.
"""

from __future__ import annotations

import numpy as np
import torch

from evoprune.masks import count_ones

# Bits drawn at once: a float32 draw takes 4 bytes a bit (4 MB a block).
DRAW_BLOCK_BITS = 1 << 20


def random_masks(n: int, n_bits: int, density: float, gen: torch.Generator) -> torch.Tensor:
    """``(n, n_bits)`` masks with every bit 1 with probability `density`."""
    masks = torch.empty(n, n_bits, dtype=torch.bool)
    for block in masks.split(_rows_per_draw(n_bits)):
        torch.lt(torch.rand(block.shape, generator=gen), density, out=block)
    return masks


def _rows_per_draw(n_bits: int) -> int:
    """Masks drawn at once: their float32 draws take 4 bytes a bit (one draw for a population
    of 200 over 784-1000-1000-10 took 1.4 GB). A CPU generator fills a tensor serially, so
    drawing a block of rows at a time gives the very numbers one draw would."""
    return max(1, DRAW_BLOCK_BITS // max(1, n_bits))


def crossover(
    ranked: torch.Tensor, rec_rate: float, n_parents: int, gen: torch.Generator
) -> torch.Tensor:
    """Uniform crossover: each individual becomes a first parent with probability `rec_rate`,
    its mate drawn uniformly from the top `n_parents`; each child bit comes from either parent
    with probability 1/2. Returns the children ``(k, n_bits)``."""
    N, n_bits = ranked.shape
    first = torch.nonzero(torch.rand(N, generator=gen) < rec_rate).flatten()  # (k,)
    mates = torch.randint(0, max(n_parents, 1), (len(first),), generator=gen)  # (k,)
    children = torch.empty(len(first), n_bits, dtype=torch.bool)  # (k, n_bits)
    step = _rows_per_draw(n_bits)
    for block, f, m in zip(children.split(step), first.split(step), mates.split(step), strict=True):
        take_first = torch.rand(block.shape, generator=gen) < 0.5
        torch.where(take_first, ranked[f], ranked[m], out=block)
    return children


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
    ones = count_ones(population, dim=0).double()  # (n_bits,)
    pairs_differing = ones * (P - ones)  # per bit: pairs (i, j) with different bits
    return float(pairs_differing.sum() / (P * (P - 1) / 2) / population.shape[1])
