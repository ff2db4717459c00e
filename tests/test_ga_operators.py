"""GA operators keep their invariants (property tests) and selection orders as published."""

import subprocess
import sys
from unittest import mock

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evoprune import masks
from evoprune.ga import operators as ops
from evoprune.seeding import torch_generator

seeds = st.integers(0, 2**31 - 1)


def population(seed: int, n: int, n_bits: int) -> torch.Tensor:
    return ops.random_masks(n, n_bits, 0.5, torch_generator(seed, "test-pop"))


@settings(max_examples=40, deadline=None)
@given(seed=seeds, n=st.integers(2, 40), n_bits=st.integers(1, 300), rate=st.floats(0, 1))
def test_crossover_children_take_every_bit_from_a_parent(seed, n, n_bits, rate):
    pop = population(seed, n, n_bits)
    gen = torch_generator(seed, "x")
    n_parents = max(1, n // 3)
    children = ops.crossover(pop, rate, n_parents, gen)
    assert children.shape[1] == n_bits and children.dtype == torch.bool
    # Replay the draws to recover each child's parents and check bit provenance.
    gen = torch_generator(seed, "x")
    first = torch.nonzero(torch.rand(n, generator=gen) < rate).flatten()
    mates = torch.randint(0, n_parents, (len(first),), generator=gen)
    assert len(children) == len(first)
    assert (mates < n_parents).all()
    from_a = children == pop[first]
    from_b = children == pop[mates]
    assert (from_a | from_b).all()


@settings(max_examples=40, deadline=None)
@given(seed=seeds, n=st.integers(1, 40), n_bits=st.integers(1, 300), rate=st.floats(0, 1))
def test_mutants_differ_from_their_source_in_exactly_one_bit(seed, n, n_bits, rate):
    pool = population(seed, n, n_bits)
    before = pool.clone()
    gen = torch_generator(seed, "m")
    mutants = ops.mutate(pool, rate, gen)
    assert torch.equal(pool, before)  # the pool is not changed
    gen = torch_generator(seed, "m")
    chosen = torch.nonzero(torch.rand(n, generator=gen) < rate).flatten()
    assert len(mutants) == len(chosen)
    flipped = (mutants != pool[chosen]).sum(dim=1)
    assert (flipped == 1).all()


def test_mutation_rate_and_density_are_respected_on_average():
    gen = torch_generator(0, "rates")
    masks = ops.random_masks(2000, 100, 0.5, gen)
    assert abs(masks.float().mean().item() - 0.5) < 0.01
    mutants = ops.mutate(masks, 0.1, gen)
    assert 150 < len(mutants) < 250
    children = ops.crossover(masks, 0.3, 600, gen)
    assert 500 < len(children) < 700


def test_rank_orders_by_fitness_then_sparsity_then_index():
    fitness = torch.tensor([0.9, 0.9, 0.95, float("nan"), 0.9], dtype=torch.float64)
    zeros = torch.tensor([5, 7, 1, 100, 7])
    order = ops.rank(fitness, zeros).tolist()
    # best fitness first; among 0.9: more zeros first, ties by index; NaN last
    assert order == [2, 1, 4, 0, 3]


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(2, 30))
def test_rank_is_a_sorted_permutation(seed, n):
    gen = torch_generator(seed, "r")
    fitness = torch.randint(0, 4, (n,), generator=gen).double() / 4
    zeros = torch.randint(0, 5, (n,), generator=gen)
    order = ops.rank(fitness, zeros)
    assert sorted(order.tolist()) == list(range(n))
    keys = [(-fitness[i].item(), -zeros[i].item(), int(i)) for i in order]
    assert keys == sorted(keys)


def test_diversity_is_mean_pairwise_hamming_fraction():
    pop = population(3, 12, 50)
    pairs = [(pop[i] != pop[j]).double().mean().item() for i in range(12) for j in range(i + 1, 12)]
    assert abs(ops.diversity(pop) - sum(pairs) / len(pairs)) < 1e-12
    assert ops.diversity(pop[:1].expand(5, -1)) == 0.0


def test_random_masks_keep_each_bit_with_the_asked_density():
    # the GA's init_density and migrants: a flipped comparison keeps bits with 1 - density
    for density in (0.2, 0.8):
        masks = ops.random_masks(200, 500, density, torch_generator(0, "density"))
        assert abs(masks.float().mean().item() - density) < 0.01


def test_crossover_takes_each_bit_from_either_parent_with_probability_one_half():
    n, n_bits = 400, 400
    first_half = torch.zeros(n, n_bits, dtype=torch.bool)
    ranked = torch.cat([torch.ones(1, n_bits, dtype=torch.bool), first_half[1:]])
    # every individual a first parent; its mate the top one (all ones), itself all zeros but
    # the top: the share of ones in the other children is the share taken from the mate
    children = ops.crossover(ranked, 1.0, 1, torch_generator(0, "uniform"))
    assert abs(children[1:].float().mean().item() - 0.5) < 0.01


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(0, 12), n_bits=st.integers(1, 50))
def test_counts_equal_sums(seed, n, n_bits):
    pop = population(seed, n, n_bits)
    for counted in (pop, pop.T, pop[:, :1]):  # and not contiguous
        for dim in (0, 1, -1):
            assert torch.equal(masks.count_ones(counted, dim), counted.sum(dim=dim))
    assert torch.equal(masks.count_ones(pop[:, 0]), pop[:, 0].sum())  # one mask: a scalar


def test_counting_a_large_population_takes_no_copy_of_it():
    # A sum over bools converts the whole tensor to int64 first: 8 bytes a bit. The GA counts
    # zeros (ranking), sparsities and per-bit ones (diversity) of every population: for 765
    # masks over a 784-1000-1000-10 network that was 11 GB. Here 160 MB of masks; the counts
    # must stay far below the 1.3 GB a whole-tensor sum took.
    code = (
        "import resource, torch\n"
        "from evoprune.ga import operators as ops\n"
        "from evoprune.masks import count_ones, sparsity\n"
        "pop = torch.ones(160, 1_000_000, dtype=torch.bool)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "count_ones(pop); sparsity(pop); ops.diversity(pop)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 300  # MB above the masks themselves


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(0, 12), n_bits=st.integers(1, 50), block=st.integers(1, 64))
def test_drawing_in_blocks_gives_the_numbers_of_one_draw(seed, n, n_bits, block):
    def draw(block_bits):
        gen = torch_generator(seed, "blocks")
        with mock.patch.object(ops, "DRAW_BLOCK_BITS", block_bits):
            pop = ops.random_masks(n, n_bits, 0.5, gen)
            children = ops.crossover(pop, 0.6, max(1, n // 2), gen) if n else pop
            return pop, children, torch.rand(2, generator=gen)  # and the generator after

    for a, b in zip(draw(block), draw(1 << 40), strict=True):
        assert torch.equal(a, b)


def test_drawing_a_large_population_takes_a_byte_a_bit():
    # float32 draws for every bit at once took 4 bytes a bit beside the masks
    code = (
        "import resource, torch\n"
        "from evoprune.ga import operators as ops\n"
        "gen = torch.Generator().manual_seed(0)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "pop = ops.random_masks(160, 1_000_000, 0.5, gen)\n"
        "children = ops.crossover(pop, 1.0, 160, gen)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 320 + 150  # MB: the 2 x 160 MB of masks, and a little
