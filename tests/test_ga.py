"""The GA: termination, adaptive bound, post-pruning, determinism, resume, convergence, API."""

import dataclasses
import json
import time

import numpy as np
import pytest
import torch
from torch import nn

import evoprune
from evoprune.data import load_dataset
from evoprune.evaluate import Evaluator
from evoprune.ga import GAConfig, GeneticSearch, post_prune
from evoprune.ga.state import GAState
from evoprune.masks import sparsity
from evoprune.nets import build_mlp

SMALL = GAConfig(population=20, min_generations=8, patience=4, max_generations=15)


@pytest.fixture(scope="module")
def digits2():
    return load_dataset("digits", classes=2)


def tiny_search(ds, config=SMALL, seed=0, **kwargs):
    net = build_mlp([64, 20, 2], seed=seed)
    return evoprune.search(
        net,
        ds.X_train,
        ds.y_train,
        config=dataclasses.replace(config, seed=seed),
        X_test=ds.X_test,
        y_test=ds.y_test,
        **kwargs,
    )


def state_at(generation, last_improvement):
    empty = torch.zeros(0)
    return GAState(
        empty, empty, empty, empty, generation=generation, last_improvement=last_improvement
    )


@pytest.mark.parametrize(
    ("variant", "cap", "generation", "last", "done"),
    [
        ("ga", None, 99, 0, False),  # never before min_generations
        ("ga", None, 100, 50, True),  # 50 generations without improvement
        ("ga", None, 100, 51, False),
        ("ga", None, 150, 120, False),
        ("ga", None, 1000, 999, True),  # the cap of plain ga
        ("ga-adaptive", None, 200, 199, True),  # the adaptive variant stops at 200
        ("ga-adaptive", None, 199, 199, False),
        ("ga", 30, 30, 30, True),
    ],
)
def test_termination_rules(digits2, variant, cap, generation, last, done):
    cfg = GAConfig(variant=variant, max_generations=cap)
    ev = Evaluator(build_mlp([64, 20, 2]), digits2.X_train, digits2.y_train)
    ga = GeneticSearch(ev, cfg)
    assert ga.done(state_at(generation, last)) is done


def test_survivors_are_ranked_by_performance_then_sparsity(digits2):
    ticket = tiny_search(digits2)
    ev = Evaluator(build_mlp([64, 20, 2], seed=0), digits2.X_train, digits2.y_train)
    ga = GeneticSearch(ev, SMALL)
    state = ga.initial_state()
    state = ga.tell(state, ga.ask(state), time.perf_counter())
    fit = state.fitness.tolist()
    zeros = (~state.population).sum(dim=1).tolist()
    keys = [(-f, -z) for f, z in zip(fit, zeros, strict=True)]
    assert keys == sorted(keys)
    assert len(state.population) == SMALL.population
    assert ticket.history[-1]["generation"] >= SMALL.min_generations


def test_generation_adds_children_mutants_and_migrants_to_the_parents(digits2):
    ev = Evaluator(build_mlp([64, 20, 2]), digits2.X_train, digits2.y_train)
    cfg = GAConfig(population=50, rec_rate=0.0, mut_rate=0.0, mig_rate=0.2)
    ga = GeneticSearch(ev, cfg)
    state = ga.initial_state()
    assert len(ga.ask(state)) == 10  # only floor(50 * 0.2) migrants
    cfg = GAConfig(population=50, rec_rate=1.0, mut_rate=1.0, mig_rate=0.0)
    ga = GeneticSearch(ev, cfg)
    assert len(ga.ask(state)) == 50 + 100  # 50 children, then a mutant of each of 100


def test_the_parents_yield_mutants_first_then_the_children(digits2):
    # step 3: every individual, new children included, the parents first; the order fixes
    # which draw mutates which individual, hence the ticket a seed gives (a reproducibility pin)
    ev = Evaluator(build_mlp([64, 20, 2]), digits2.X_train, digits2.y_train)
    ga = GeneticSearch(ev, GAConfig(population=50, rec_rate=1.0, mut_rate=1.0, mig_rate=0.0))
    state = ga.initial_state()
    new = ga.ask(state)
    children, mutants = new[:50], new[50:]
    sources = torch.cat([state.population, children])
    assert ((mutants != sources).sum(dim=1) == 1).all()


def test_adaptive_bound_is_deterministic_and_respected(digits2):
    cfg = GAConfig(
        variant="ga-adaptive", population=20, adaptive_bound=0.9, adaptive_step=100, seed=3
    )

    def initial():
        ev = Evaluator(build_mlp([64, 20, 2], seed=3), digits2.X_train, digits2.y_train)
        return GeneticSearch(ev, cfg).initial_state(), ev

    a, ev = initial()
    b, _ = initial()
    assert torch.equal(a.population, b.population)
    assert a.init_info == b.init_info
    bound = a.init_info["adaptive_final_bound"]
    assert 0.5 <= bound <= 0.9
    acc = a.scores[:, ev.metric_names.index("accuracy")]
    assert (acc >= bound).all()
    assert a.init_info["adaptive_candidates"] >= 20


def always_class_0(labels: torch.Tensor) -> Evaluator:
    """An evaluator on which every mask predicts class 0 (the output bias): every mask has
    the same accuracy, the share of 0 labels."""
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[2].bias.copy_(torch.tensor([100.0, -100.0]))
    X = torch.randn(len(labels), 2, generator=torch.Generator().manual_seed(0))
    return Evaluator(net, X, labels)


@pytest.mark.timeout(30)
def test_the_adaptive_bound_falls_to_its_floor_where_no_mask_reaches_chance():
    # 9 in 10 labels are 1: accuracy 0.1, under chance (1/2); the bound must reach its floor
    # and admit them, not wait forever
    ev = always_class_0((torch.arange(100) % 10 != 0).long())
    cfg = GAConfig(variant="ga-adaptive", population=10, adaptive_step=10, seed=0)
    state = GeneticSearch(ev, cfg).initial_state()
    assert state.init_info["adaptive_final_bound"] == 0.0
    assert len(state.population) == 10


def test_a_mask_exactly_at_the_adaptive_bound_is_admitted():
    # 3 in 4 labels are 0: every mask has accuracy 0.75, the bound itself ("reach", not pass)
    ev = always_class_0((torch.arange(100) % 4 == 3).long())
    cfg = GAConfig(variant="ga-adaptive", population=10, adaptive_bound=0.75, adaptive_step=10)
    state = GeneticSearch(ev, cfg).initial_state()
    assert state.init_info == {"adaptive_final_bound": 0.75, "adaptive_candidates": 10}


def test_each_level_of_the_adaptive_bound_gets_adaptive_step_candidates():
    # accuracy 0.1 everywhere: the bound 0.9 falls to 0.5 + 0.4 * 0.04 after 20 candidates,
    # then to its floor after 20 more (not after every batch once 20 have been spent), and
    # the floor admits the next 10
    ev = always_class_0((torch.arange(100) % 10 != 0).long())
    cfg = GAConfig(variant="ga-adaptive", population=10, adaptive_bound=0.9, adaptive_step=20,
                   adaptive_decay=0.04)  # fmt: skip
    state = GeneticSearch(ev, cfg).initial_state()
    assert state.init_info == {"adaptive_final_bound": 0.0, "adaptive_candidates": 50}


def test_a_best_that_only_ties_is_no_improvement():
    # every mask has the same fitness: the search stops once patience has run out after
    # min_generations, not at the generation cap
    ev = always_class_0((torch.arange(100) % 4 == 3).long())
    cfg = GAConfig(population=10, min_generations=3, patience=2, max_generations=20)
    state = GeneticSearch(ev, cfg).run()
    assert state.generation == 3 and state.last_improvement == 0


def test_history_rows_describe_the_ranked_population(digits2):
    # best_sparsity is the best individual's (the sparsest may rank lower), the performances
    # are the objective's (here the loss, not the accuracy), best_sparsity_so_far the running
    # maximum of every population's sparsest, the initial one's included
    ev = Evaluator(build_mlp([64, 20, 2], seed=0), digits2.X_train, digits2.y_train, "loss")
    ga = GeneticSearch(ev, SMALL)
    state = ga.initial_state()
    most = float(sparsity(state.population).max())
    assert state.best_sparsity_so_far == most > float(sparsity(state.population)[0])
    lower_ranked_sparsest = 0
    for _ in range(3):
        state = ga.tell(state, ga.ask(state), time.perf_counter())
        row, kept = state.history[-1], sparsity(state.population)
        loss = state.scores[:, ev.metric_names.index("loss")]
        most = max(most, float(kept.max()))
        assert row["best_sparsity"] == float(kept[0])
        assert row["max_sparsity"] == float(kept.max())
        assert row["best_sparsity_so_far"] == most
        assert row["best_performance"] == float(loss[0])
        assert row["mean_performance"] == float(loss.mean())
        lower_ranked_sparsest += float(kept[0]) < float(kept.max())
    assert lower_ranked_sparsest  # else best_sparsity could not tell the two apart


def test_post_prune_never_lowers_training_accuracy_and_matches_the_plain_walk(digits2):
    net = build_mlp([64, 20, 2], seed=1)
    ev = Evaluator(net, digits2.X_train, digits2.y_train, cache=False, metrics=("accuracy",))
    mask = torch.rand(ev.n_bits, generator=torch.Generator().manual_seed(1)) < 0.6
    pruned, report = post_prune(ev, mask)
    assert report.accuracy_after >= report.accuracy_before
    assert not (pruned & ~mask).any()  # only clears bits
    # The plain one-bit-at-a-time walk of the paper gives the same mask.
    plain, acc = mask.clone(), float(ev.evaluate(mask.view(1, -1))["accuracy"][0])
    for bit in torch.nonzero(mask).flatten():
        trial = plain.clone()
        trial[bit] = False
        trial_acc = float(ev.evaluate(trial.view(1, -1))["accuracy"][0])
        if trial_acc >= acc:
            plain, acc = trial, trial_acc
    assert torch.equal(pruned, plain)
    assert report.bits_after < report.bits_before


def test_same_seed_same_ticket_different_seed_different(digits2):
    a, b, c = (
        tiny_search(digits2, seed=5),
        tiny_search(digits2, seed=5),
        tiny_search(digits2, seed=6),
    )
    assert torch.equal(a.mask, b.mask)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in a.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in b.history]
    assert not torch.equal(a.mask, c.mask)


def test_search_reports_before_and_after_post_pruning(digits2):
    t = tiny_search(digits2)
    m = t.metrics
    assert m["sparsity"] >= m["sparsity_before_post_prune"]
    assert m["train_accuracy"] >= m["train_accuracy_before_post_prune"]
    assert abs(m["sparsity"] - t.sparsity) < 1e-12
    no_prune = tiny_search(digits2, config=dataclasses.replace(SMALL, post_prune=False))
    assert no_prune.metrics["sparsity"] == no_prune.metrics["sparsity_before_post_prune"]


def test_checkpointed_search_resumes_to_the_identical_result(digits2, tmp_path):
    cfg = dataclasses.replace(SMALL, min_generations=12, max_generations=12)
    full = tiny_search(digits2, cfg)
    ckpt = tmp_path / "ckpt.npz"

    class Stop(Exception):
        pass

    # Interrupt after generation 7 by raising from the evaluator, as Ctrl-C would.
    calls = {"n": 0}
    original = Evaluator.evaluate

    def flaky(self, masks):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return original(self, masks)

    Evaluator.evaluate = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            tiny_search(digits2, cfg, checkpoint=ckpt, checkpoint_every=5)
    finally:
        Evaluator.evaluate = original
    assert ckpt.exists()
    resumed = tiny_search(digits2, cfg, checkpoint=ckpt, checkpoint_every=5, resume=True)
    assert torch.equal(full.mask, resumed.mask)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(full.history) == drop(resumed.history)
    assert full.metrics["evaluations"] == resumed.metrics["evaluations"]


def test_a_checkpoint_whose_cache_holds_packed_genomes_resumes_the_same(
    digits2, tmp_path, monkeypatch
):
    # checkpoints written before the cache kept digests hold each genome's packed bits, and no
    # cache_keys field: they are hashed on loading, and the search goes on as it would have
    import evoprune.evaluate
    import evoprune.ga.checkpoint

    cfg = dataclasses.replace(SMALL, min_generations=12, max_generations=12)
    full = tiny_search(digits2, cfg)
    ckpt = tmp_path / "ckpt.npz"
    original = Evaluator.evaluate
    calls = {"n": 0}

    def interrupted(self, masks):  # Ctrl-C in generation 7
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return original(self, masks)

    with monkeypatch.context() as old_code:
        old_code.setattr(evoprune.evaluate, "genome_key", lambda packed: packed.tobytes())
        old_code.setattr(evoprune.ga.checkpoint, "CACHE_KEYS", None)
        old_code.setattr(Evaluator, "evaluate", interrupted)
        with pytest.raises(KeyboardInterrupt):
            tiny_search(digits2, cfg, checkpoint=ckpt, checkpoint_every=5)
    with np.load(ckpt) as saved:
        header, keys = json.loads(saved["header"].tobytes()), saved["cache_keys"]
    assert header["cache_keys"] is None and keys.shape[1] == 1320 // 8  # 64-20-2: 1,320 bits
    resumed = tiny_search(digits2, cfg, checkpoint=ckpt, checkpoint_every=5, resume=True)
    assert torch.equal(full.mask, resumed.mask)
    assert full.metrics["evaluations"] == resumed.metrics["evaluations"]


def test_a_config_of_numpy_numbers_resumes_its_own_checkpoint(digits2, tmp_path):
    cfg = dataclasses.replace(SMALL, mut_rate=np.float32(0.1), memory_mb=np.float32(8))
    assert type(cfg.mut_rate) is float  # as JSON writes and reads it back
    ckpt = tmp_path / "ckpt.npz"
    first = tiny_search(digits2, cfg, checkpoint=ckpt, checkpoint_every=1)
    again = tiny_search(digits2, cfg, checkpoint=ckpt, checkpoint_every=1, resume=True)
    assert torch.equal(first.mask, again.mask)


def test_resume_rejects_a_checkpoint_of_another_search(digits2, tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    tiny_search(digits2, checkpoint=ckpt, checkpoint_every=5)
    with pytest.raises(evoprune.EvopruneError, match="different search.*delete it to start afresh"):
        tiny_search(
            digits2,
            dataclasses.replace(SMALL, population=30),
            checkpoint=ckpt,
            checkpoint_every=5,
            resume=True,
        )


def test_converges_on_moons_with_a_small_budget():
    ds = load_dataset("moons")
    cfg = GAConfig(population=50, min_generations=40, patience=20, max_generations=40, seed=0)
    t = evoprune.search(
        build_mlp([2, 75, 2], seed=0),
        ds.X_train,
        ds.y_train,
        config=cfg,
        X_test=ds.X_test,
        y_test=ds.y_test,
    )
    assert t.metrics["test_accuracy"] > 0.85
    assert t.sparsity > 0.4


def test_search_any_module_conv_on_8x8_digits():
    ds = load_dataset("digits", classes=4, normalize=True)
    X = ds.X_train.view(-1, 1, 8, 8)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 4))
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-1, 1)
    cfg = GAConfig(population=30, min_generations=25, max_generations=25, seed=0)
    t = evoprune.search(
        net, X, ds.y_train, config=cfg, X_test=ds.X_test.view(-1, 1, 8, 8), y_test=ds.y_test
    )
    assert t.layers is None and t.n_bits == 6 * 9 + 6 * 36 * 4
    assert t.metrics["test_accuracy"] > 0.5  # chance is 0.25
    # the returned mask applied to the module gives the reported accuracy
    masked = t.apply(net)
    acc = (masked(X).argmax(1) == ds.y_train).double().mean().item()
    assert abs(acc - t.metrics["train_accuracy"]) < 1e-12


def test_custom_objective_callable(digits2):
    def balanced_error(logits, y):  # lower is better, not differentiable
        pred = logits.argmax(-1)
        per_class = [((pred != c) & (y == c)).double().sum(-1) / (y == c).sum() for c in (0, 1)]
        return (per_class[0] + per_class[1]) / 2

    t = tiny_search(digits2, objective=balanced_error, maximize=False)
    assert t.metrics["objective"] == "balanced_error"
    assert t.metrics["best_performance"] < 0.5


def test_a_small_search_runs_on_one_thread_with_the_same_arithmetic():
    # iris-sized work is not shared among threads (a hand-off waits a time slice when another
    # process holds a core); moons-sized work is. The ticket does not depend on it.
    X, y = torch.randn(120, 4), torch.randint(0, 3, (120,))
    small = Evaluator(build_mlp([4, 75, 3], seed=0), X, y)
    big = Evaluator(
        build_mlp([2, 75, 2], seed=0), torch.randn(50_000, 2), torch.randint(0, 2, (50_000,))
    )
    assert small.is_small(100) and not big.is_small(100)
    cfg = GAConfig(population=20, min_generations=5, max_generations=5, seed=3)
    before = torch.get_num_threads()
    masks = []
    for threads in (2, 1):
        torch.set_num_threads(threads)
        try:
            masks.append(evoprune.search(build_mlp([4, 75, 3], seed=0), X, y, config=cfg).mask)
        finally:
            torch.set_num_threads(before)
    assert torch.equal(masks[0], masks[1]) and torch.get_num_threads() == before
