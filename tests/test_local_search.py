"""The exact local search: acceptance rule, quality on a tiny task, determinism, fixed sparsity."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from evoprune.data.registry import load_dataset
from evoprune.errors import EvopruneError
from evoprune.ga.config import GAConfig
from evoprune.local.config import LocalConfig
from evoprune.local.incremental import MLPState
from evoprune.local.search import LocalSearch, local_search
from evoprune.nets import build_mlp
from evoprune.scores import score_splits


@pytest.fixture(scope="module")
def digits3():
    return load_dataset("digits", 3, None, None)


@pytest.mark.parametrize(
    "objective, tiebreak, temperature",
    [("loss", False, 1.0), ("accuracy", False, 1.0), ("f1", False, 1.0), ("accuracy", True, 1.0),
     ("f1", True, 1.0), ("loss", False, 0.25), ("accuracy", True, 0.3)],
)  # fmt: skip
@pytest.mark.parametrize("ranking", ["expansion", "none"])
def test_every_accepted_step_lowers_the_exact_objective(
    digits3, objective, tiebreak, temperature, ranking
):
    ds = digits3
    net = build_mlp([64, 12, 3], seed=0)
    start = np.random.default_rng(0).random(64 * 12 + 12 * 3) < 0.5
    st = MLPState.from_model(net, ds.X_train, ds.y_train, objective, start,
                             sparsity_penalty=0.01, tiebreak=tiebreak,
                             temperature=temperature)  # fmt: skip
    ls = LocalSearch(st, LocalConfig(ranking=ranking, max_passes=3), init_masks=[start])
    ls._trace = []
    ls.run()
    assert len(ls._trace) > 5
    ties = 0
    for (v0, s0), (v1, s1), removal in ls._trace:  # (objective, tie-breaker), lexicographic
        if tiebreak and abs(v1 - v0) <= 1e-13:
            ties += 1
            assert s1 < s0 - 1e-13 or (removal and s1 <= s0 + 1e-12)
        else:
            assert v1 < v0 - 1e-13 or (removal and v1 <= v0 + 1e-12)
            assert s0 == s1 == 0.0 or tiebreak
    assert ties > 0 or not tiebreak  # the tie-breaker did decide some steps


def test_a_validation_slice_needs_its_rows_and_labels_together():
    # X_val alone failed as "y: expected ... labels", y_val alone was silently dropped
    X = torch.randn(40, 2)
    y = (X[:, 0] > 0).long()
    for half in ({"X_val": X}, {"y_val": y}):
        with pytest.raises(EvopruneError, match="X_val and y_val: give both or neither"):
            local_search(build_mlp([2, 8, 2]), X, y, config=LocalConfig(max_passes=1), **half)


def test_an_empty_list_of_start_masks_is_refused():
    # no start ran, and the search returned None for its mask (a TypeError further on)
    X = torch.randn(40, 2)
    y = (X[:, 0] > 0).long()
    with pytest.raises(EvopruneError, match="init_masks: expected at least one start mask"):
        local_search(build_mlp([2, 8, 2]), X, y, config=LocalConfig(max_passes=1), init_masks=[])


def test_tiebreak_leaves_plateaus_the_objective_alone_cannot(digits3):
    """From an all-zero mask every single flip leaves the prediction constant (accuracy flat):
    the objective alone accepts nothing, the loss tie-breaker finds the way down."""
    ds = digits3
    net = build_mlp([64, 12, 3], seed=0)
    results = {
        tb: local_search(net, ds.X_train, ds.y_train, "accuracy",
                         LocalConfig(start_density=0.0, max_passes=20, tiebreak=tb))
        for tb in (False, True)
    }  # fmt: skip
    assert results[False].metrics["flips_accepted"] == 0
    assert results[True].metrics["train_accuracy"] > 0.6  # chance: 0.34


def test_local_search_beats_a_threshold_on_a_tiny_task(digits3):
    ds = digits3
    net = build_mlp([64, 20, 3], seed=0)
    r = local_search(net, ds.X_train, ds.y_train, "loss", LocalConfig(sparsity_penalty=0.05))
    m = score_splits(
        net, r.mask, {"train": (ds.X_train, ds.y_train), "test": (ds.X_test, ds.y_test)}
    )
    assert m["test_accuracy"] >= 0.93
    assert r.metrics["flips_accepted"] > 0
    # the history counts right answers under the loss too (surely right: margin beyond rounding)
    assert r.history[-1]["train_accuracy"] == pytest.approx(m["train_accuracy"], abs=1e-3)


def test_same_seed_same_mask_other_seed_other_mask(digits3):
    ds = digits3
    net = build_mlp([64, 10, 3], seed=0)
    cfg = LocalConfig(max_passes=3, kicks=2, kick_bits=4)
    runs = [local_search(net, ds.X_train, ds.y_train, "loss", cfg).mask for _ in range(2)]
    other = local_search(net, ds.X_train, ds.y_train, "loss", LocalConfig(max_passes=3, seed=1))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], other.mask)


def test_iterated_search_is_never_worse_than_its_first_descent(digits3):
    ds = digits3
    net = build_mlp([64, 10, 3], seed=0)
    plain = local_search(net, ds.X_train, ds.y_train, "loss", LocalConfig(max_passes=4))
    kicked = local_search(net, ds.X_train, ds.y_train, "loss",
                          LocalConfig(max_passes=4, kicks=4, kick_bits=6))  # fmt: skip
    assert kicked.metrics["train_objective"] <= plain.metrics["train_objective"] + 1e-12


def test_each_history_row_names_the_descent_its_pass_belongs_to(digits3):
    # the last pass of a descent ends it; its row still belongs to it, not to the next kick
    ds = digits3
    cfg = LocalConfig(max_passes=2, kicks=2, kick_bits=6, starts=2)
    r = local_search(build_mlp([64, 10, 3], seed=0), ds.X_train, ds.y_train, "loss", cfg)
    descents = [(row["start"], row["kick"]) for row in r.history]
    assert sorted(set(descents)) == [(s, k) for s in (0, 1) for k in (-1, 0, 1)]
    assert descents == sorted(descents)  # in the order they ran
    assert all(n <= cfg.max_passes for n in map(descents.count, set(descents)))


def test_fixed_sparsity_keeps_every_layer_at_that_sparsity(digits3):
    ds = digits3
    net = build_mlp([64, 10, 3], seed=0)
    cfg = LocalConfig(fixed_sparsity=0.5, max_passes=3, kicks=2, kick_bits=4)
    r = local_search(net, ds.X_train, ds.y_train, "loss", cfg)
    first, second = r.mask[:640].view(10, 64), r.mask[640:].view(3, 10)
    assert int(first.sum()) == 10 * 32 and int(second.sum()) == 3 * 5
    assert r.metrics["flips_accepted"] > 0


def test_fixed_sparsity_swaps_follow_the_tie_breaker_across_an_accuracy_plateau():
    """Swaps judged on the accuracy alone stalled on its plateau (digits-5 A: 76% test against
    96% with the tie-breaking loss); --no-tiebreak then changed nothing."""
    ds = load_dataset("digits", 5, None, None)
    net = build_mlp([64, 20, 5], seed=0)
    runs = {}
    for tiebreak in (True, False):
        cfg = LocalConfig(fixed_sparsity=0.7, tiebreak=tiebreak)
        r = local_search(net, ds.X_train, ds.y_train, "accuracy", cfg)
        runs[tiebreak] = score_splits(net, r.mask, {"train": (ds.X_train, ds.y_train)})
        assert abs(float((~r.mask).double().mean()) - 0.7) < 0.01
    assert runs[True]["train_accuracy"] > runs[False]["train_accuracy"] + 0.1


def test_a_sparsity_penalty_beside_a_fixed_sparsity_is_refused():
    from evoprune.ga.job import check_variant_keys

    job = {"method": "local", "fixed_sparsity": 0.5, "sparsity_penalty": 0.1}
    with pytest.raises(EvopruneError, match="sparsity_penalty: does nothing with fixed_sparsity"):
        check_variant_keys(job)


def test_validation_slice_returns_the_best_validation_mask(digits3):
    ds = digits3
    net = build_mlp([64, 10, 3], seed=0)
    r = local_search(net, ds.X_train, ds.y_train, "loss", LocalConfig(val_fraction=0.2))
    rows = [h["val_accuracy"] for h in r.history]
    assert r.metrics["val_accuracy"] == max(rows)


def test_bad_settings_give_the_documented_error(digits3):
    with pytest.raises(EvopruneError, match="ranking"):
        LocalConfig(ranking="gradient")
    with pytest.raises(EvopruneError, match="temperature: expected a positive number"):
        LocalConfig(temperature=0.0)
    # modules other than MLP stacks are searched too: tests/test_module_state.py


def test_exact_top_rescores_the_best_ranked_candidates_exactly(digits3):
    ds = digits3
    net = build_mlp([64, 12, 8, 3], seed=1)
    start = np.random.default_rng(1).random(64 * 12 + 12 * 8 + 8 * 3) < 0.5
    st = MLPState.from_model(net, ds.X_train, ds.y_train, "loss", start)
    ls = LocalSearch(st, LocalConfig(exact_top=5, max_passes=2), init_masks=[start])
    ranked, ties = st.block_scores(0, np.array([3]), "expansion")
    exact, _ = ls._exact_top(0, 3, ranked[0], ties[0])
    kept = np.isfinite(exact)
    assert kept.sum() == 5 and set(np.nonzero(kept)[0]) == set(np.argsort(ranked[0])[:5])
    assert np.allclose(exact[kept], st.unit_deltas(0, 3, "none")[kept], atol=1e-12)
    ls._trace = []
    ls.run()
    assert len(ls._trace) > 5
    assert all(v1 < v0 - 1e-13 or (rm and v1 <= v0 + 1e-12) for (v0, _), (v1, _), rm in ls._trace)


def test_every_local_search_in_a_process_gets_the_same_threads(digits3, monkeypatch):
    """The search bounds BLAS to one thread, not OpenMP: its compiled kernels take torch's
    thread count, also in the second search of a process (a sweep worker, the benchmark)."""
    from evoprune.local import kernels

    X, y = digits3.X_train, digits3.y_train
    seen: list[int] = []
    set_threads = kernels.set_threads
    monkeypatch.setattr(
        kernels,
        "set_threads",
        lambda work: seen.append(torch.get_num_threads()) or set_threads(work),
    )
    want = torch.get_num_threads()
    for _ in range(2):
        local_search(build_mlp([64, 20, 3], seed=0), X, y, "accuracy", LocalConfig(max_passes=1))
    assert seen and set(seen) == {want}


WARM_CHECK = """
from numba.core.registry import CPUDispatcher
import torch
from evoprune.data.registry import load_dataset
from evoprune.ga.api import search
from evoprune.ga.config import GAConfig
from evoprune.local import kernels
from evoprune.local.compile import compile_kernels
from evoprune.nets import build_mlp

def signatures():
    return {name: len(f.signatures) for name in dir(kernels)
            if isinstance(f := getattr(kernels, name), CPUDispatcher)}

compile_kernels()
warm = signatures()
ds = load_dataset("digits", 3)
cfg = GAConfig(variant="memetic", population=10, min_generations=2, max_generations=2, kicks=1)
for layers, objective in [([64, 12, 3], "accuracy"), ([64, 10, 8, 3], "loss"),
                         ([64, 10, 8, 3], "accuracy"), ([64, 12, 3], "f1")]:
    search(build_mlp(layers, seed=0), ds.X_train, ds.y_train, objective, cfg)
moons = load_dataset("moons")
X, y = moons.X_train[:2000], moons.y_train[:2000]
search(build_mlp([2, 16, 2], seed=0), X, y, "accuracy", cfg)
grown = {k: (warm[k], v) for k, v in signatures().items() if v != warm[k]}
print("compiled later:", grown)
assert not grown, grown
"""


def test_compile_kernels_covers_the_memetic_searches():
    # `make` runs evoprune.local.compile at install, so the first search times the search, not
    # numba: memetic searches of each objective, shallow and deep, two and three classes, must
    # need no kernel signature that it did not compile (a fresh process: signatures are per
    # process)
    out = subprocess.run([sys.executable, "-c", WARM_CHECK], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


@pytest.mark.parametrize("sparsity", [0.9, 0.2])
def test_fixed_sparsity_is_the_layers_up_to_rounding_even_on_narrow_units(digits3, sparsity):
    """Each unit kept round((1 - p) * fan_in) weights: with fan-in 2 and p 0.9 none (a dead
    network at 95% sparsity), and 1 - 0.9 rounded 7.5 of 75 down. The layer's count is now
    spread over its units, and swaps keep it."""
    net = build_mlp([2, 75, 4, 3], seed=0)
    X = torch.randn(60, 2, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    cfg = LocalConfig(fixed_sparsity=sparsity, max_passes=2, kicks=2, kick_bits=4)
    mask = local_search(net, X, y, "loss", cfg).mask
    sizes = [150, 300, 12]
    kept = [int(part.sum()) for part in torch.split(mask, sizes)]
    assert kept == [round(round((1 - sparsity) * n, 9)) for n in sizes]


def test_fixed_sparsity_is_refused_for_the_memetic_search():
    with pytest.raises(EvopruneError, match="fixed_sparsity: only with variant 'local'"):
        GAConfig(variant="memetic", fixed_sparsity=0.5)


def test_keys_compare_the_objective_then_the_tie_breaker_then_fewer_set_bits():
    """(objective, tie-breaker, set bits), lower is better, in that order, float terms within
    EPS tied: the kicks and the best over starts are judged by it."""
    from evoprune.local.search import EPS, _better, _compare, _worse

    assert _compare([-0.9, 1.0, 50.0], [-0.8, 0.0, 10.0]) == -1
    assert _compare([-0.9, 0.5, 50.0], [-0.9, 0.6, 10.0]) == -1
    assert _compare([-0.9, 0.5, 10.0], [-0.9 + EPS / 2, 0.5 - EPS / 2, 50.0]) == -1
    assert _compare([-0.9, 0.5, 10.0], [-0.9, 0.5, 10.0]) == 0
    assert _better([0.1, 0.0, 10.0], [0.1, 0.0, 11.0])
    assert _worse([0.1, 0.0, 11.0], [0.1, 0.0, 10.0])
    assert not _better([0.1, 0.0, 10.0], [0.1, 0.0, 10.0])
    assert not _worse([0.1, 0.0, 10.0], [0.1, 0.0, 10.0])


def dead_net():
    """Every hidden unit dead (bias -100) on the data below: the logits are the output bias
    whatever the mask, so all masks with as many set bits tie."""
    net = build_mlp([4, 6, 3], seed=0)
    with torch.no_grad():
        net[0].bias.fill_(-100.0)
    return net


def test_a_kick_that_ties_is_kept_and_a_later_start_that_ties_is_not():
    # a kick is kept when not worse (so the walk moves on across a plateau); a later start
    # replaces the best only when better, so among tied starts the first is kept
    X = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(30) % 3
    r = local_search(dead_net(), X, y, "loss", LocalConfig(fixed_sparsity=0.5, kicks=3))
    assert r.metrics["kicks_kept"] == 3
    rng = np.random.default_rng(0)
    starts = [rng.permutation(42) < 21 for _ in range(3)]
    r = local_search(dead_net(), X, y, "loss", LocalConfig(fixed_sparsity=0.5), init_masks=starts)
    assert r.metrics["flips_accepted"] == 0 and np.array_equal(r.mask.numpy(), starts[0])


def test_the_validation_patience_counts_passes_without_a_strictly_better_accuracy():
    # the validation inputs are 0 and the first layer's biases negative: every mask gives
    # the same validation accuracy, so the descent stops `patience` passes after the first
    # while the training loss still falls
    gen = torch.Generator().manual_seed(0)
    X = 3 * torch.randn(200, 4, generator=gen)
    y = (X[:, 0] + X[:, 1] > 0).long()
    net = build_mlp([4, 16, 2], seed=0)
    with torch.no_grad():
        net[0].bias.copy_(-net[0].bias.abs())
    cfg = LocalConfig(patience=2, min_gain=0.0)
    r = local_search(net, X, y, "loss", cfg, X_val=torch.zeros(20, 4), y_val=y[:20])
    assert len(r.history) == 3
    assert all(row["flips_accepted"] > 0 for row in r.history)


def test_a_flip_that_changes_nothing_is_taken_only_as_a_removal(digits3):
    """Inputs 0-7 are 0 in every sample: their weights change nothing. Taking one away is a
    step (sparser, no worse); adding one never is, not even within a batch that improves."""
    X = digits3.X_train.clone()
    X[:, :8] = 0.0
    net = build_mlp([64, 12, 3], seed=0)
    start = np.random.default_rng(0).random(64 * 12 + 12 * 3) < 0.5
    start[: 64 * 12].reshape(12, 64)[:, :8] = False
    st = MLPState.from_model(net, X, digits3.y_train, "loss", start)
    added, apply = [], st.apply

    def recording_apply(li, o, inputs):
        added.extend(int(i) for i in inputs if li == 0 and i < 8 and not st.mask[0][o, i])
        apply(li, o, inputs)

    st.apply = recording_apply
    ls = LocalSearch(st, LocalConfig(max_passes=3), init_masks=[start])
    ls.run()
    assert ls.pos.flips_accepted > 0 and added == []


def test_a_unit_takes_its_best_flip_by_the_objective_then_the_tie_breaker(digits3):
    """With batch 1 a unit tries the one flip that is best by (objective, tie-breaker), in
    that order: the accuracy's plateaus are broken by the loss and the density, not overruled
    by them (a heavy density term makes a removal that gains nothing the tie-breaker's best)."""
    net = build_mlp([64, 12, 3], seed=0)
    start = np.random.default_rng(2).random(64 * 12 + 12 * 3) < 0.5
    st = MLPState.from_model(net, digits3.X_train, digits3.y_train, "accuracy", start,
                             sparsity_penalty=2.0, tiebreak=True)  # fmt: skip
    ls = LocalSearch(st, LocalConfig(batch=1))
    taken = loss_first_differs = 0
    for li in (1, 0):  # the output layer first, as a pass
        for o in range(st.W[li].shape[0]):
            p, s = (v[0] for v in st.block_scores(li, np.array([o]), "none"))
            on = st.mask[li][o].copy()
            good = [
                i
                for i in range(len(p))
                if p[i] < 0 or (p[i] <= 0 and (s[i] < 0 or (on[i] and s[i] <= 0)))
            ]
            if not good:
                continue
            best = min(good, key=lambda i: (p[i], s[i], i))
            loss_first_differs += best != min(good, key=lambda i: (s[i], p[i], i))
            if ls.unit_step(li, o, (p, s)):
                assert np.nonzero(on != st.mask[li][o])[0].tolist() == [best], (li, o)
                taken += 1
    assert taken > 0 and loss_first_differs > 0


def test_each_kick_flips_exactly_kick_bits_bits(digits3, monkeypatch):
    """A kick flips `kick_bits` distinct bits of the mask it starts from, once per kick."""
    moved = []
    real = LocalSearch._kick

    def recorded(self):
        before = self.state.mask_bits()
        real(self)
        moved.append(int((self.state.mask_bits() != before).sum()))

    monkeypatch.setattr(LocalSearch, "_kick", recorded)
    net = build_mlp([64, 10, 3], seed=0)
    cfg = LocalConfig(max_passes=1, kicks=3, kick_bits=5)
    local_search(net, digits3.X_train, digits3.y_train, "loss", cfg)
    assert moved == [5, 5, 5]


def test_a_kill_inside_a_compiled_kernel_still_leaves_a_checkpoint(digits3, tmp_path, monkeypatch):
    """numba's dispatcher, interrupted as it calls a kernel, reports a SystemError ("returned a
    result with an exception set") instead of the KeyboardInterrupt: the search still takes it
    as the interrupt and writes its checkpoint (the memetic kill test failed so, once)."""
    import signal

    ds = digits3
    calls = {"n": 0}
    scores = MLPState.block_scores

    def interrupted_kernel(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 12:  # a few passes in
            try:
                signal.raise_signal(signal.SIGTERM)
            except KeyboardInterrupt:
                raise SystemError("CPUDispatcher returned a result with an exception set") from None
        return scores(self, *args, **kwargs)

    monkeypatch.setattr(MLPState, "block_scores", interrupted_kernel)
    ckpt = tmp_path / "local-checkpoint.npz"
    with pytest.raises(KeyboardInterrupt):
        local_search(build_mlp([64, 20, 3], seed=0), ds.X_train, ds.y_train, "accuracy",
                     LocalConfig(max_passes=50), checkpoint=ckpt, checkpoint_every=1)  # fmt: skip
    assert calls["n"] == 12 and ckpt.exists()
