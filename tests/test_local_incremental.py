"""The incremental float64 state of `evoprune.local.incremental` against plain recomputation."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from evoprune.local import kernels
from evoprune.local.incremental import UNDECIDED_DELTA, MLPState
from evoprune.masks import MaskSpace
from evoprune.nets import build_mlp


def _state(layers, objective, seed=0, n=240, penalty=0.05, sparse=True, tiebreak=False):
    rng = np.random.default_rng(seed)
    W = [rng.uniform(-1, 1, (b, a)) for a, b in zip(layers[:-1], layers[1:], strict=True)]
    B = [rng.uniform(-1, 1, b) for b in layers[1:]]
    X = rng.normal(size=(n, layers[0]))
    if sparse:
        X[X < 0.3] = 0.0  # zero inputs, as MNIST's blank pixels
    y = rng.integers(0, layers[-1], n)
    M = [rng.random(w.shape) < 0.5 for w in W]
    return MLPState(W, B, X, y, objective, M, sparsity_penalty=penalty, tiebreak=tiebreak), rng


def _forward(st):
    a = st.X
    for li in range(st.n_layers):
        z = a @ st.masked(li).T + st.b[li]
        a = np.maximum(z, 0.0) if li < st.n_layers - 1 else z
    return a


@pytest.mark.parametrize("layers", [[6, 12, 3], [6, 10, 7, 4], [5, 8, 6, 5, 3]])
def test_state_equals_full_forward_after_thousands_of_flips(layers):
    st, rng = _state(layers, "loss")
    for _ in range(3000):
        li = int(rng.integers(st.n_layers))
        o = int(rng.integers(st.W[li].shape[0]))
        inputs = rng.choice(st.W[li].shape[1], int(rng.integers(1, 4)), replace=False)
        st.apply(li, o, inputs)
    assert np.abs(st.pre[-1] - _forward(st)).max() <= 1e-9
    for li in range(st.n_layers - 1):
        assert np.abs(st.acts[li + 1] - np.maximum(st.pre[li], 0)).max() == 0.0
    assert abs(st.value - st.full_value()) <= 1e-9


@pytest.mark.parametrize("objective", ["loss", "accuracy", "f1"])
@pytest.mark.parametrize("layers", [[6, 12, 3], [6, 10, 7, 4]])
def test_candidate_deltas_equal_per_flip_recomputation(objective, layers):
    st, _ = _state(layers, objective, seed=1)
    base = st.full_value()
    checked = 0
    for li in range(st.n_layers):
        for o in range(st.W[li].shape[0]):
            deltas = st.unit_deltas(li, o, "none")
            for i, d in enumerate(deltas):
                st.mask[li][o, i] = ~st.mask[li][o, i]
                full = st.full_value()
                st.mask[li][o, i] = ~st.mask[li][o, i]
                if d == UNDECIDED_DELTA:
                    continue
                assert d == pytest.approx(full - base, abs=1e-12)
                checked += 1
    assert checked > 0.9 * sum(w.size for w in st.W)


@pytest.mark.parametrize(
    "objective, tiebreak", [("loss", False), ("accuracy", False), ("accuracy", True), ("f1", True)]
)
@pytest.mark.parametrize("layers", [[6, 12, 2], [6, 10, 7, 4]])
def test_flips_into_a_unit_without_outgoing_weights_change_only_the_density(
    objective, tiebreak, layers
):
    """A hidden unit whose outgoing weights are all masked moves no logit: its flips score
    exactly 0 on the objective and the density term alone (in the tie-breaker with it), as a
    plain recomputation finds; the live units of the same block score as usual."""
    st, _ = _state(layers, objective, seed=3, penalty=0.05)
    for li in range(st.n_layers - 1):
        st.mask[li + 1][:, :3] = False  # units 0-2 of every hidden layer feed nothing
    st = MLPState(st.W, st.b, st.X, st.y, objective, st.mask, sparsity_penalty=0.05,
                  tiebreak=tiebreak)  # fmt: skip
    base, base_s = st.full_value(), st.full_secondary() if tiebreak else 0.0
    for li in range(st.n_layers - 1):
        units = np.arange(st.W[li].shape[0])
        primary, ties = st.block_scores(li, units, "none")
        density = np.where(st.mask[li], -0.05, 0.05) / st.n_maskable
        scores = (np.zeros_like(density), density) if tiebreak else (density, 0 * density)
        np.testing.assert_array_equal(primary[:3], scores[0][:3])
        np.testing.assert_array_equal(ties[:3], scores[1][:3])
        for o in range(st.W[li].shape[0]):
            for i in range(st.W[li].shape[1]):
                st.mask[li][o, i] = ~st.mask[li][o, i]
                full = st.full_value() - base
                full_s = (st.full_secondary() - base_s) if tiebreak else 0.0
                st.mask[li][o, i] = ~st.mask[li][o, i]
                if primary[o, i] not in (UNDECIDED_DELTA, np.inf) and ties[o, i] != np.inf:
                    assert primary[o, i] == pytest.approx(full, abs=1e-12)
                    assert ties[o, i] == pytest.approx(full_s, abs=1e-12)


@pytest.mark.parametrize("objective", ["accuracy", "f1"])
@pytest.mark.parametrize("layers", [[6, 10, 7, 4], [6, 10, 7, 2]])
def test_tiebreak_scores_equal_per_flip_recomputation(objective, layers):
    """With the loss as tie-breaker, each flip's (objective, loss + penalty) change equals a
    plain recomputation, and the penalty sits in the tie-breaker only. A flip that loses
    accuracy or F1 (or is UNDECIDED_DELTA) is never accepted, and its tie score is inf."""
    st, _ = _state(layers, objective, seed=2, penalty=0.05)
    st = MLPState(st.W, st.b, st.X, st.y, objective, st.mask, sparsity_penalty=0.05, tiebreak=True)
    base, base_s = st.full_value(), st.full_secondary()
    assert abs(st.secondary - base_s) < 1e-12 and st.value == pytest.approx(base, abs=1e-15)
    scored = skipped = 0
    for li in range(st.n_layers):
        primary, ties = st.block_scores(li, np.arange(st.W[li].shape[0]), "none")
        for o in range(st.W[li].shape[0]):
            for i in range(st.W[li].shape[1]):
                st.mask[li][o, i] = ~st.mask[li][o, i]
                full, full_s = st.full_value(), st.full_secondary()
                st.mask[li][o, i] = ~st.mask[li][o, i]
                if primary[o, i] != UNDECIDED_DELTA:
                    assert primary[o, i] == pytest.approx(full - base, abs=1e-12)
                if primary[o, i] > 0:
                    assert ties[o, i] == np.inf
                    skipped += 1
                else:
                    assert ties[o, i] == pytest.approx(full_s - base_s, abs=1e-12)
                    scored += 1
    assert scored > 0 and skipped > 0
    d, t = st.try_step(1, 3, [0, 2, 5])
    st.apply(1, 3, [0, 2, 5])
    assert t == pytest.approx(st.full_secondary() - base_s, abs=1e-12)
    assert abs(st.secondary - st.full_secondary()) < 1e-12


def test_set_of_flips_equals_recomputation_and_leaves_state():
    st, rng = _state([6, 10, 7, 4], "loss", seed=2)
    before = [p.copy() for p in st.pre]
    for li in range(st.n_layers):
        inputs = rng.choice(st.W[li].shape[1], 3, replace=False)
        d = st.try_flips(li, 1, inputs)
        st.mask[li][1, inputs] = ~st.mask[li][1, inputs]
        after = st.full_value()
        st.mask[li][1, inputs] = ~st.mask[li][1, inputs]
        assert d == pytest.approx(after - st.full_value(), abs=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(before, st.pre, strict=True))


@pytest.mark.parametrize("objective,tiebreak", [("loss", False), ("accuracy", False),
                                                ("accuracy", True), ("f1", True)])  # fmt: skip
def test_apply_after_try_step_equals_apply_alone(objective, tiebreak):
    # apply reuses the propagation try_step just computed for the same flips; after another
    # step, or for other flips, it must compute its own
    a, rng = _state([6, 10, 7, 4], objective, seed=3, tiebreak=tiebreak)
    b, _ = _state([6, 10, 7, 4], objective, seed=3, tiebreak=tiebreak)
    for step in range(300):
        li = int(rng.integers(a.n_layers))
        o = int(rng.integers(a.W[li].shape[0]))
        inputs = rng.choice(a.W[li].shape[1], int(rng.integers(1, 4)), replace=False)
        a.try_step(li, o, inputs)
        if step % 3 == 0:  # a stale try: another unit's flips judged, these applied
            a.try_step(li, (o + 1) % a.W[li].shape[0], inputs)
        a.apply(li, o, inputs)
        b.apply(li, o, inputs)
    arrays = lambda st: [*st.pre, *st.acts, st.loss_s, st.status, st.pred, st.tp, st.pred_n]  # noqa: E731
    assert all(np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b), strict=True))
    assert (a.n_right, a.n_undecided, a.value, a.secondary) == (
        b.n_right,
        b.n_undecided,
        b.value,
        b.secondary,
    )


@pytest.mark.parametrize("layers", [[8, 16, 5], [8, 16, 12, 5]])
def test_expansion_ranks_like_the_exact_change(layers):
    # below the last hidden layer each sample's logits move along their own direction (the
    # ReLU pattern above); the backpropagated gradient alone gave 0.969 for unit 2 of layer 0
    st, _ = _state(layers, "loss", seed=3, penalty=0.0)
    for li in range(st.n_layers):
        for o in (2, 4):
            exact = st.unit_deltas(li, o, "none")
            approx = st.unit_deltas(li, o, "expansion")
            assert np.corrcoef(exact, approx)[0, 1] > 0.99, (li, o)


def test_from_model_follows_the_mask_space_bit_order():
    net = build_mlp([4, 6, 3], seed=0)
    space = MaskSpace(net)
    bits = torch.rand(space.n_bits, generator=torch.Generator().manual_seed(0)) < 0.5
    X = torch.randn(50, 4)
    st = MLPState.from_model(net, X, torch.zeros(50, dtype=torch.long), "loss", bits, space)
    assert np.array_equal(st.mask_bits(), bits.numpy())
    masked = [net[0].weight * bits[:24].view(6, 4), net[2].weight * bits[24:].view(3, 6)]
    ref = torch.relu(X @ masked[0].T + net[0].bias) @ masked[1].T + net[2].bias
    assert np.abs(st.pre[-1] - ref.double().numpy()).max() < 1e-5


def test_from_model_keeps_a_layer_outside_the_mask_space_whole():
    net = build_mlp([4, 6, 3], seed=0)
    space = MaskSpace(
        net, is_maskable=lambda name, m: isinstance(m, torch.nn.Linear) and name != "2"
    )
    bits = torch.rand(space.n_bits, generator=torch.Generator().manual_seed(0)) < 0.5
    X = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    st = MLPState.from_model(net, X, torch.zeros(50, dtype=torch.long), "loss", bits, space)
    assert st.maskable == [True, False] and np.array_equal(st.mask_bits(), bits.numpy())
    hidden = torch.relu(X @ (net[0].weight * bits.view(6, 4)).T + net[0].bias)
    ref = hidden @ net[2].weight.T + net[2].bias  # layer 2 unmasked, not masked away
    assert np.abs(st.pre[-1] - ref.double().numpy()).max() < 1e-5


@pytest.mark.parametrize("layers", [[6, 12, 3], [6, 10, 7, 4]])
def test_temperature_scales_the_loss_and_keeps_every_prediction(layers):
    plain, rng = _state(layers, "loss", seed=3, penalty=0.0)
    W = [w.copy() for w in plain.W]
    hot = MLPState(W, plain.b, plain.X, plain.y, "loss", plain.mask, temperature=0.25)
    for _ in range(200):  # the same flips on both
        li = int(rng.integers(plain.n_layers))
        o = int(rng.integers(plain.W[li].shape[0]))
        inputs = rng.choice(plain.W[li].shape[1], 2, replace=False)
        plain.apply(li, o, inputs)
        hot.apply(li, o, inputs)
    logits = torch.from_numpy(_forward(plain))
    expected = torch.nn.functional.cross_entropy(logits / 0.25, torch.from_numpy(plain.y))
    assert abs(hot.value - float(expected)) <= 1e-9
    assert (
        abs(
            plain.value
            - float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(plain.y)))
        )
        <= 1e-9
    )
    assert np.array_equal(hot.pred, plain.pred)
    assert np.array_equal(hot.W[0], plain.W[0])  # only the last layer is scaled


@pytest.mark.parametrize("objective,tiebreak", [("loss", False), ("accuracy", True), ("f1", False)])
@pytest.mark.parametrize("layers", [[6, 12, 3], [6, 10, 2]])
def test_compiled_step_of_the_top_layers_equals_the_numpy_step(objective, tiebreak, layers):
    """`_step` of the last hidden and the output layer (one compiled pass) gives bit for bit
    what the general numpy route (`_propagate`, then losses and statuses) gives."""
    from evoprune.local.incremental import _losses, _statuses

    st, rng = _state(layers, objective, seed=3, tiebreak=tiebreak)
    for _ in range(60):
        li = int(rng.integers(st.n_layers))
        o = int(rng.integers(st.W[li].shape[0]))
        inputs = rng.choice(st.W[li].shape[1], int(rng.integers(1, 4)), replace=False)
        step = st._step(li, o, inputs)
        z, S, layers_above = st._propagate(li, o, inputs)
        assert np.array_equal(step["z"], z) and np.array_equal(step["S"], S)
        assert np.array_equal(step["layers"][-1], layers_above[-1])
        if "losses" in step:
            assert np.array_equal(step["losses"], _losses(layers_above[-1], st.y[S]))
        if objective != "loss":
            want = _statuses(layers_above[-1], st.y[S], st.tol[S], st.mode)
            assert all(np.array_equal(a, b) for a, b in zip(step["status"], want, strict=True))
        st.apply(li, o, inputs)


@pytest.mark.parametrize("layout", ["C", "F"])
def test_csr_by_feature_lists_each_features_nonzeros_in_sample_order(layout):
    from evoprune.local.kernels import csr_by_feature

    A = np.maximum(np.random.default_rng(0).normal(size=(300, 7)), 0.0)
    A[:, 3] = 0.0  # a feature that is never active
    ptr, rows, vals = csr_by_feature(np.asarray(A, order=layout))
    for i in range(A.shape[1]):
        nz = np.nonzero(A[:, i])[0]
        assert np.array_equal(rows[ptr[i] : ptr[i + 1]], nz)
        assert np.array_equal(vals[ptr[i] : ptr[i + 1]], A[nz, i])
    assert ptr[-1] == len(rows) == len(vals) == np.count_nonzero(A)


@pytest.mark.parametrize("objective", ["accuracy", "f1"])
@pytest.mark.parametrize("tiebreak", [True, False])
@pytest.mark.parametrize("layers", [[6, 12, 2], [6, 12, 4], [6, 10, 7, 3]])
@pytest.mark.parametrize("wrong", [3, 100])  # a small slack, and a large one (two classes:
# the wrong samples are swept first)
def test_cut_sweeps_rule_out_exactly_the_flips_the_full_sweeps_rule_out(
    tiebreak, layers, objective, wrong
):
    """With `cut`, a flip that surely loses accuracy (F1) stops being swept early, and (with
    the tie-breaker) one that keeps every prediction but surely raises the tie-breaker is not
    summed at all: scores may differ from the full sweep's, but only for flips the search
    cannot accept — both rule them out (primary > 0 or UNDECIDED_DELTA), or the full sweep gives a primary
    of 0 and a tie-breaker change above 0 where the cut gives inf."""
    st, _ = _state(layers, objective, seed=4, n=400, tiebreak=tiebreak)
    y = st._full_logits().argmax(1)  # labels the mask predicts: few samples wrong, a small slack
    y[:wrong] = (y[:wrong] + 1) % layers[-1]
    st = MLPState(st.W, st.b, st.X, y, objective, st.mask, sparsity_penalty=0.05,
                  tiebreak=tiebreak)  # fmt: skip
    cut_short, bounded = 0, 0
    for li in range(st.n_layers):
        units = np.arange(st.W[li].shape[0])
        full_p, full_t = st.block_scores(li, units)
        cut_p, cut_t = st.block_scores(li, units, cut=True)
        differ = (full_p != cut_p) | (full_t != cut_t)
        ruled_out = differ & (full_p > 0)
        cut_short += int(ruled_out.sum())
        assert np.all(cut_p[ruled_out] > 0)  # UNDECIDED_DELTA is inf > 0
        if tiebreak:  # ruled out: no tie-breaking loss in either
            assert np.all(np.isinf(full_t[ruled_out])) and np.all(np.isinf(cut_t[ruled_out]))
        skipped = differ & ~ruled_out  # the tie-breaker's lower bound is above 0
        bounded += int(skipped.sum())
        assert np.all(full_p[skipped] == 0) and np.all(cut_p[skipped] == 0)
        assert np.all(full_t[skipped] > 0) and np.all(np.isinf(cut_t[skipped]))
    # F1's reach bound does not cut with a hundred wrong samples of 400; the accuracy's does
    assert cut_short > 0 or (objective == "f1" and wrong == 100)
    assert (bounded > 0) == tiebreak, bounded


def test_f1_reach_bounds_every_completion_of_a_sweep():
    """`_f1_reach` from a candidate's counts over the samples swept so far is at least the
    macro-F1 it ends at, whatever the samples not yet swept do."""
    rng = np.random.default_rng(0)
    for trial in range(400):
        C, n = int(rng.integers(2, 5)), int(rng.integers(5, 40))
        y = rng.integers(0, C, n)
        old = np.where(rng.random(n) < 0.8, y, rng.integers(0, C, n))  # the state's predictions
        new = np.where(rng.random(n) < 0.5, old, rng.integers(0, C, n))  # the candidate's
        base = np.stack([np.bincount(old[old == y], minlength=C), np.bincount(old, minlength=C),
                         np.bincount(y, minlength=C)]).astype(np.int64)  # fmt: skip
        swept = int(rng.integers(0, n + 1))
        counts = np.zeros(2 + 2 * C, np.int64)  # the changes of the swept samples
        for s_ in range(swept):
            counts[2 + C + new[s_]] += 1
            counts[2 + C + old[s_]] -= 1
            counts[2 + new[s_]] += new[s_] == y[s_]
            counts[2 + old[s_]] -= old[s_] == y[s_]
        final = f1_score(y, new, average="macro", labels=np.unique(np.concatenate([y, new])))
        assert kernels._f1_reach(base, counts) >= final - 1e-12, trial


def test_loss_gradient_equals_autograds_gradient_of_the_cross_entropy():
    """`kernels.loss_gradient` (from the per-sample losses) is the gradient torch computes."""
    rng = np.random.default_rng(0)
    for C in (2, 5):
        logits = rng.normal(scale=3.0, size=(50, C))
        y = rng.integers(0, C, 50)
        loss_s = np.empty(50)
        kernels.losses(logits, y, loss_s)
        out = np.empty((50, C))
        kernels.loss_gradient(logits, y, loss_s, out)
        t = torch.tensor(logits, requires_grad=True)
        torch.nn.functional.cross_entropy(t, torch.tensor(y), reduction="sum").backward()
        np.testing.assert_allclose(out, t.grad.numpy(), rtol=1e-12, atol=1e-15)


def _logits(weights, biases, X, number):
    """The forward of one sample per row of X, summed left to right in the type `number`
    (`Fraction`: exact; `float`: one float64 order the rounding bound must cover too)."""
    rows = []
    for x in X:
        a = [number(float(v)) for v in x]
        for li, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = []
            for row, bias in zip(w, b, strict=True):
                s = number(0)
                for wij, aj in zip(row, a, strict=True):
                    s += number(float(wij)) * aj
                z.append(s + number(float(bias)))
            a = [max(v, number(0)) for v in z] if li < len(weights) - 1 else z
        rows.append(a)
    return rows


def _margins(logits, y):
    """The true class's logit minus the largest other one, per sample."""
    return [
        row[t] - max(v for c, v in enumerate(row) if c != t)
        for row, t in zip(logits, y, strict=True)
    ]


def test_the_rounding_bound_holds_against_exact_arithmetic():
    """`rounding_bound` bounds the error of every float64 margin (numpy's forward and a left to
    right one) against exact rationals, for every submask. The first net is built to reach it:
    its hidden unit adds to 1 199 terms of just over half an ulp, each rounding up (~199 u in
    all: the fan-in, not the fan-out, counts); sample 1 is that unit's bias plus one such term
    (an error the weights alone do not bound); output unit 0 carries nothing (the bound is the
    largest unit's, not the smallest)."""
    from fractions import Fraction

    from evoprune.local.rounding import rounding_bound

    t = 2.0**-53 * (1 + 2.0**-20)
    X = np.zeros((2, 200))
    X[0, 0], X[0, 1:], X[1, 1] = 1.0, t, t
    nets = [([np.ones((1, 200)), np.array([[0.0], [1.0]])], [np.ones(1), np.zeros(2)], X,
             np.array([1, 1]), [None])]  # fmt: skip
    rng = np.random.default_rng(0)
    W = [rng.uniform(-1, 1, (5, 6)), rng.uniform(-1, 1, (3, 5))]
    masks = [[rng.random(w.shape) < 0.6 for w in W] for _ in range(3)]
    nets.append((W, [rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 3)], rng.normal(size=(20, 6)),
                 rng.integers(0, 3, 20), masks))  # fmt: skip
    built_to_err = []
    for W, b, X, y, submasks in nets:
        bound = [Fraction(float(m)) for m in rounding_bound(W, b, X.T, 0)]
        for mask in submasks:
            Wm = W if mask is None else [w * m for w, m in zip(W, mask, strict=True)]
            exact = _margins(_logits(Wm, b, X, Fraction), y)
            a = X
            for li, (w, bias) in enumerate(zip(Wm, b, strict=True)):
                a = a @ w.T + bias
                a = np.maximum(a, 0.0) if li < len(Wm) - 1 else a
            for computed in (_margins(a, y), _margins(_logits(Wm, b, X, float), y)):
                errors = [abs(Fraction(float(c)) - e) for c, e in zip(computed, exact, strict=True)]
                assert all(err <= m for err, m in zip(errors, bound, strict=True))
                if mask is None:
                    built_to_err += errors
    assert all(built_to_err)  # the first net does err, on both samples, in both orders


def _tied_state(objective):
    """Output units 0 and 1 identical: every sample they lead ties exactly (undecided), and
    exactly in float64 too, so a plain recomputation scores the ties as exact arithmetic."""
    st, _ = _state([6, 10, 3], objective, seed=5, penalty=0.0)
    W, b, mask = st.W, st.b, st.mask
    W[1][1], b[1][1], mask[1][1] = W[1][0], b[1][0], mask[1][0]
    return MLPState(W, b, st.X, st.y, objective, mask)


@pytest.mark.parametrize("objective", ["accuracy", "f1"])
def test_scores_of_flips_that_move_a_tie_are_undecided_or_exact(objective):
    """A flip of output unit 0 or 1 breaks the ties, each the way exact arithmetic says: the
    scores leave such flips UNDECIDED_DELTA (counting the tied samples as neither right nor
    wrong would score them wrongly); every finite score is the recomputed change."""
    st = _tied_state(objective)
    assert st.n_undecided > 0
    base, undecided = st.full_value(), 0
    for li in range(st.n_layers):
        primary, _ = st.block_scores(li, np.arange(st.W[li].shape[0]), "none")
        for o in range(st.W[li].shape[0]):
            for i in range(st.W[li].shape[1]):
                st.mask[li][o, i] = ~st.mask[li][o, i]
                full = st.full_value()
                st.mask[li][o, i] = ~st.mask[li][o, i]
                if primary[o, i] == UNDECIDED_DELTA:
                    undecided += 1
                else:
                    assert primary[o, i] == pytest.approx(full - base, abs=1e-12), (li, o, i)
    assert undecided > 0


@pytest.mark.parametrize("objective", ["accuracy", "f1"])
@pytest.mark.parametrize("tiebreak", [False, True])
def test_flips_of_a_dead_unit_score_exactly_zero_among_ties(objective, tiebreak):
    """A hidden unit with no outgoing weight moves no logit: flipping its inputs changes the
    objective by exactly 0 (and the tie-breaker by nothing), even where the samples it moves
    are exactly tied, and `try_flips` says so as `block_scores` does."""
    tied = _tied_state(objective)
    mask = [m.copy() for m in tied.mask]
    mask[1][:, 3] = False  # hidden unit 3 feeds nothing
    st = MLPState(tied.W, tied.b, tied.X, tied.y, objective, mask, sparsity_penalty=0.0,
                  tiebreak=tiebreak)  # fmt: skip
    moved_ties = 0
    base = st.full_value()
    primary, secondary = st.block_scores(0, np.array([3]), "none")
    for i in range(st.W[0].shape[1]):
        moved = st._step(0, 3, np.array([i]))["S"]
        moved_ties += int(np.any(st.status[moved] == kernels.UNDECIDED))
        assert st.try_step(0, 3, [i]) == (0.0, 0.0) == (primary[0, i], secondary[0, i])
        st.apply(0, 3, [i])
        assert st.full_value() == base
        assert st.n_undecided == np.count_nonzero(st.status == kernels.UNDECIDED)
    assert moved_ties > 0  # the flips did move tied samples


def _exact_accuracy(st):
    """The accuracy of the current mask in exact rational arithmetic (argmax: the first)."""
    from fractions import Fraction

    W = [st.masked(li) for li in range(st.n_layers)]
    logits = _logits(W, st.b, st.X, Fraction)
    pred = [max(range(st.C), key=lambda c, row=row: (row[c], -c)) for row in logits]
    return Fraction(sum(int(p == t) for p, t in zip(pred, st.y, strict=True)), st.n)


def test_a_tie_that_float64_rounding_hides_is_undecided():
    """Sample 0 ties exactly (logits 1 + 2^-52 each; argmax takes class 0, wrong), but float64
    sums its class-0 logit to 1 (1 + 2^-53 rounds to even): a margin of +2^-52 that only the
    rounding bound marks undecided. So it is never counted right (accuracy and objective
    alike), and every flip scores its exact change or UNDECIDED_DELTA."""
    e = 2.0**-53
    W, b = [np.array([[1.0, 1.0, 2.0], [1.0, 2.0, 0.0]])], [np.array([e, 0.0])]
    X, y = np.array([[1.0, e, 0.0], [4.0, 0.0, 1.0]]), np.array([1, 0])
    st = MLPState(W, b, X, y, "accuracy", [np.ones((2, 3), bool)])
    exact = _exact_accuracy(st)
    assert st.accuracy == st.score == exact == 0.5
    for o in range(2):
        scores = st.unit_deltas(0, o)
        for i in range(3):
            st.mask[0][o, i] = False
            change = -float(_exact_accuracy(st) - exact)
            st.mask[0][o, i] = True
            assert st.try_flips(0, o, [i]) in (UNDECIDED_DELTA, change), (o, i)
            assert scores[i] in (UNDECIDED_DELTA, change), (o, i)


def test_f1_counts_a_class_that_is_only_predicted():
    """Macro-F1 averages over the classes in the labels or the predictions (as scikit-learn
    and `evoprune.objectives`): a class no sample holds but some are predicted scores 0."""
    st, _ = _state([6, 10, 3], "f1", seed=4, penalty=0.0)
    y = np.where(st.y == 2, 0, st.y)  # no label 2
    st = MLPState(st.W, st.b, st.X, y, "f1", st.mask)
    pred = _forward(st).argmax(1)
    assert (pred == 2).any()
    assert st.score == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))


def test_applied_flips_keep_the_counts_of_right_and_undecided_samples():
    """After every applied flip (ties made and broken), `n_right` and `n_undecided` are the
    counts of the statuses, as a state built afresh from the mask has them: the cut's slack
    (the samples surely wrong) is read from them."""
    for objective in ("accuracy", "f1"):
        st = _tied_state(objective)
        rng = np.random.default_rng(0)
        for _ in range(60):
            li = int(rng.integers(st.n_layers))
            o = int(rng.integers(2)) if li == 1 else int(rng.integers(st.W[0].shape[0]))
            st.apply(li, o, rng.choice(st.W[li].shape[1], 2, replace=False))
            fresh = MLPState(st.W, st.b, st.X, st.y, objective, st.mask)
            assert st.n_undecided == np.count_nonzero(st.status == kernels.UNDECIDED)
            assert st.n_right == np.count_nonzero(st.status == kernels.RIGHT)
            assert (st.n_right, st.n_undecided) == (fresh.n_right, fresh.n_undecided)


def test_a_flip_that_loses_as_many_samples_as_are_wrong_and_wins_them_back_is_not_cut():
    """The cut stops a sweep only once more samples are lost than the surely wrong ones could
    win back: a flip that first loses sample 0 (right) and then wins sample 1 (the one wrong)
    changes the accuracy by exactly 0, with the cut as without it."""
    W = [np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])]
    b = [np.array([0.5, 0.0, 0.0])]
    X, y = np.array([[1.0, 1.0], [-1.0, 1.0]]), np.array([1, 0])
    mask = [np.array([[False, False], [True, False], [True, False]])]
    st = MLPState(W, b, X, y, "accuracy", mask, sparsity_penalty=0.0)
    assert st.n - st.n_right - st.n_undecided == 1  # the slack: sample 1, wrong
    full, _ = st.block_scores(0, np.arange(3))
    cut, _ = st.block_scores(0, np.arange(3), cut=True)
    assert full[0, 1] == cut[0, 1] == 0.0  # unit 0 gains input 1: sample 0 lost, sample 1 won


def test_two_class_cut_sweeps_count_near_tied_samples_as_undecided():
    """Two classes, the accuracy and the cut: the surely wrong samples are swept first and
    then the others, near-tied ones included — a flip that moves a tied sample is
    UNDECIDED_DELTA (ruled out) with the cut as without it, never scored as if it stood still."""
    st, _ = _state([6, 10, 2], "accuracy", seed=6, penalty=0.0)
    W, b, mask = st.W, st.b, st.mask
    W[1][1], b[1][1], mask[1][1] = W[1][0], b[1][0], mask[1][0]  # both logits alike ...
    W[1][1, 7], mask[1][:, 7] = W[1][0, 7] + 0.5, True  # ... but through hidden unit 7 (30% on)
    st = MLPState(W, b, st.X, st.y, "accuracy", mask, sparsity_penalty=0.0)
    slack = st.n - st.n_right - st.n_undecided
    assert st.n_undecided > 0 and slack > 0
    for li in range(st.n_layers):
        units = np.arange(st.W[li].shape[0])
        full, _ = st.block_scores(li, units)
        cut, _ = st.block_scores(li, units, cut=True)
        differ = full != cut
        assert np.all(full[differ] > 0) and np.all(cut[differ] > 0), li  # both rule them out
        assert np.array_equal(full == UNDECIDED_DELTA, cut == UNDECIDED_DELTA), li


@pytest.mark.parametrize("objective", ["accuracy", "f1"])
def test_a_flip_that_gains_is_scored_whatever_the_sparsity_penalty(objective):
    """The tie-breaker's lower bound skips only flips that leave the accuracy (F1: every
    prediction) as it is: a flip that gains keeps its exact tie-breaker change even when
    the penalty of the weight it adds puts that bound above 0."""
    st, _ = _state([6, 12, 2], objective, seed=4, n=400, penalty=5.0, tiebreak=True)
    base, base_s = st.full_value(), st.full_secondary()
    gains = 0
    for li in range(st.n_layers):
        primary, ties = st.block_scores(li, np.arange(st.W[li].shape[0]), cut=True)
        for o, i in zip(*np.nonzero(primary < 0), strict=True):
            st.mask[li][o, i] = ~st.mask[li][o, i]
            full, full_s = st.full_value(), st.full_secondary()
            st.mask[li][o, i] = ~st.mask[li][o, i]
            assert primary[o, i] == pytest.approx(full - base, abs=1e-12)
            assert ties[o, i] == pytest.approx(full_s - base_s, abs=1e-12), (li, o, i)
            gains += 1
    assert gains > 0
