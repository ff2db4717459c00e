"""The compiled hot loops of the exact local search, in one place (numba, no C toolchain).

Each kernel scores every candidate flip of ONE unit's incoming weights, candidate by candidate
in parallel (``prange``): candidate j flips input ``cand[j]``, adding ``dw[j]`` to the weight, so
the unit's pre-activation moves by ``dw[j] * x`` on the samples where that input ``x`` is
nonzero — those come from a CSR index of the layer's input by feature (``ptr``, ``rows``,
``vals``), which is what makes sparse inputs (MNIST pixels) cheap. Each candidate's sum runs in
sample order on one thread, so results do not depend on the thread count.

Modes (what a kernel accumulates per candidate): 0 loss — the sum of per-sample cross-entropy
changes; 1 accuracy — the change of the count of samples surely right; 2 F1 — per-class changes
of true positives and predictions. A sample whose margin is within its rounding bound ``tol``
(before or after) is counted in ``out_i[j, 0]`` (UNDECIDED): the caller never accepts such a
candidate on this arithmetic alone. With ``TIEBREAK`` added to the accuracy or F1 mode, the
cross-entropy change is summed into ``out_f`` as well: it breaks ties between flips that leave
the accuracy (F1) as it is. It is summed in a second sweep, only for the candidates that can
still be accepted (no undecided sample, none fewer right, or a macro-F1 not lower); the others get
inf. Near a good mask most flips lose accuracy: on moons B at the memetic search's ticket,
scoring a pass took a third less time (0.19 s -> 0.13 s), and the search took the very same
steps; with F1, the memetic search's local phase on moons D took 26.6 -> 24.4 s (seed 0).
Of the candidates left, most keep every prediction and only raise the tie-breaker; the
cross-entropy is convex in the logits, so its first-order change (the loss's gradient times
the logits' change, summed in the first sweep) bounds it from below, and a candidate whose
bound is above 0 is not summed either (`_bounded_out`). The same tickets, bit for bit, with the
local phase on moons B (seeds 0-9) 21.5 -> 19.0 s in total, on moons B with F1 (seeds 0-1)
22% faster, and on digits-10 B with the accuracy (seed 0) 33.6 -> 18.3 s.

A candidate's first sweep can stop early, once it is certain to be ruled out (``slack >= 0``,
`_cut`): with the accuracy once it has lost more samples than the surely wrong ones could win
back, with F1 once an upper bound on the macro-F1 it can still reach (`_f1_reach`) is below
the state's. Its counts are then partial, and still rule it out. With F1 (seed 0, the same
tickets): moons D's local phase 24.4 -> 19.7 s, moons B's 4.3 -> 4.4 s (seed 4: 4.5 -> 3.9 s),
digits-10 B's unchanged (36.6 s: ten classes, and a descent of 99 passes that keeps finding
flips that lose nothing).

One file, though longer than the others: numba caches each compiled function by its own file
(``cache=True``), and a cached kernel that calls a helper in another file keeps running the old
helper after that file changes (numba 0.68.1; a split into three modules was tried, and a
two-file test showed it). Here a kernel and every helper it inlines change together.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, prange

LOSS, ACCURACY, F1 = 0, 1, 2
# a macro-F1 lower by more than this rules a candidate out; a real change is at least about
# 1 / (2n)^2, and a lower F1 by less is left to the caller, which rejects it too
F1_TOL = 1e-9
TIEBREAK = 4  # added to ACCURACY or F1: also accumulate the loss change into out_f (ties)
PRIMARY = ~TIEBREAK  # mode & PRIMARY: the objective without the tie-breaker flag
# A sample's status: surely wrong, surely right, or within its rounding bound of a tie, where
# only an exact re-scoring decides. WRONG and RIGHT are 0 and 1 so that a difference of two
# statuses counts the samples a flip turns right (+1) or wrong (-1).
WRONG, RIGHT, UNDECIDED = 0, 1, 2
# a flip whose tie-breaker surely rises by more than this (its lower bound, `_bounded_out`) is
# not summed: far above the rounding of the float64 sums, so no flip that could lower it goes
SKIP = 1e-10
THREAD_WORK = 500_000  # (candidate, sample) pairs from which a call uses every thread it may


@njit(cache=True, inline="always")
def _status(lg: np.ndarray, yc: int, tol: float, mode: int) -> tuple[int, int]:
    """(status, prediction) of one sample's logits ``lg (C,)``: for accuracy RIGHT, WRONG or
    UNDECIDED (the margin within tol); for F1 UNDECIDED when the top two logits are within tol,
    else WRONG (F1 counts predictions, not statuses)."""
    C = lg.shape[0]
    best, second, arg = -np.inf, -np.inf, 0
    other = -np.inf
    for c in range(C):
        v = lg[c]
        if v > best:
            second, best, arg = best, v, c
        elif v > second:
            second = v
        if c != yc and v > other:
            other = v
    if mode == ACCURACY:
        margin = lg[yc] - other
        if margin > tol:
            return RIGHT, arg
        if margin < -tol:
            return WRONG, arg
        return UNDECIDED, arg
    return (UNDECIDED if best - second <= tol else WRONG), arg


@njit(cache=True, inline="always")
def _sample_loss(lg: np.ndarray, yc: int) -> float:
    m = -np.inf
    for c in range(lg.shape[0]):
        m = max(m, lg[c])
    se = 0.0
    for c in range(lg.shape[0]):
        se += np.exp(lg[c] - m)
    return m + np.log(se) - lg[yc]


@njit(cache=True, inline="always")
def _accumulate(
    lg: np.ndarray,
    yc: int,
    tol: float,
    mode: int,
    old_loss: float,
    old_status: int,
    old_pred: int,
    j: int,
    out_f: np.ndarray,
    out_i: np.ndarray,
    C: int,
) -> None:
    if mode == LOSS or mode & TIEBREAK:
        out_f[j] += _sample_loss(lg, yc) - old_loss
        if mode == LOSS:
            return
        mode &= PRIMARY
    st, pr = _status(lg, yc, tol, mode)
    if st == UNDECIDED or old_status == UNDECIDED:
        out_i[j, 0] += 1
        return
    if mode == ACCURACY:
        out_i[j, 1] += st - old_status
    elif pr != old_pred:
        out_i[j, 2 + C + pr] += 1
        out_i[j, 2 + C + old_pred] -= 1
        if pr == yc:
            out_i[j, 2 + pr] += 1
        if old_pred == yc:
            out_i[j, 2 + old_pred] -= 1


@njit(cache=True, parallel=True)
def unit_exact(ptr: np.ndarray, rows: np.ndarray, vals: np.ndarray, cand: np.ndarray,
               dw: np.ndarray, zo: np.ndarray, ao: np.ndarray, ui: np.ndarray, relu: bool,
               w: np.ndarray, logits: np.ndarray, y: np.ndarray, tol: np.ndarray, mode: int,
               loss_s: np.ndarray, status: np.ndarray, pred: np.ndarray, base: np.ndarray,
               floor: float, out_f: np.ndarray, out_i: np.ndarray, grad: np.ndarray,
               pen: np.ndarray, wrong: np.ndarray, xt: np.ndarray, slack: int = -1) -> None:  # fmt: skip
    """Exact objective change of each candidate flip of U units whose activations feed the
    logits directly: for unit u, ``logits (n, C) += w[u] (C,) * da`` with ``da = relu(zo[ui[u]]
    + dw[u, j] x) - ao[ui[u]]`` (last hidden units), or ``da = dw[u, j] x`` when ``relu`` is
    False (output units: ``w[u]`` one-hot). Shapes: cand (k,), dw (U, k), zo/ao (H, n) (a
    layer's pre-activations and activations, unit-major; row ui[u] is unit u's), w (U, C),
    out_f (U, k), out_i (U, k, 2 + 2C); ``base (3, C)`` holds the state's true positives,
    predictions and true counts per class, and `floor` its macro-F1 less `F1_TOL` (F1). With
    ``TIEBREAK``, a candidate that loses accuracy or macro-F1 (or moves a near-tied sample) can
    never be accepted: its loss change is not summed, and ``out_f`` holds inf for it
    (`_ruled_out`). With ``slack >= 0`` (with
    the accuracy: the number of samples surely wrong), a candidate's sweep stops as soon as
    that is certain (`_cut`); its counts are then partial, and still rule it out. With two
    classes and the accuracy, ``wrong`` lists those samples and ``xt (f, n)`` is the layer's
    input (the values of `vals`, feature-major): they are swept first (`_binary_candidate`).

    With ``grad (n, C)``, not ``(0, C)``, (the loss's gradient with respect to the logits,
    `loss_gradient`) and ``pen (U, k)`` (each flip's tie-break penalty times n), a flip that
    leaves the accuracy (every prediction, with F1) as it is gets its loss change summed only
    when it can lower the tie-breaker: the cross-entropy is convex in the logits, so its change
    is at least the first-order ``sum(grad @ w[u] * da)``, which the first sweep sums as it
    goes; when that plus ``pen`` is above `SKIP` n, ``out_f`` holds inf for the flip
    (`_bounded_out`)."""
    C = logits.shape[1]
    U, k = dw.shape
    primary = mode & PRIMARY
    gated = primary != LOSS and mode & TIEBREAK != 0
    binary = C == 2 and primary == ACCURACY
    margin = np.empty(logits.shape[0] if binary else 0)
    if binary:  # two classes: a sample's state is its margin, which moves linearly in d
        for s in range(margin.shape[0]):
            margin[s] = logits[s, y[s]] - logits[s, 1 - y[s]]
    bound = gated and grad.shape[0] > 0  # grad (0, C): no bound
    for job in prange(U * k):
        u, j = job // k, job % k
        args = (ptr, rows, vals, cand[j], dw[u, j], zo[ui[u]], ao[ui[u]], relu, w[u], logits, y, tol,
                loss_s, status, pred, margin, binary, j, out_f[u], out_i[u], slack, base,
                floor, wrong, xt)  # fmt: skip
        if not gated:
            _candidate(*args, mode, grad, False)
            continue
        first = _candidate(*args, primary, grad, bound)
        lower = first + pen[u, j] if bound else -np.inf  # of the tie-breaker's change, times n
        if _ruled_out(out_i[u, j], primary, base, floor) or _bounded_out(
            out_i[u, j], primary, lower, y.shape[0]
        ):
            out_f[u, j] = np.inf
        else:
            _candidate(*args, LOSS, grad, False)


@njit(cache=True, inline="always")
def _bounded_out(counts: np.ndarray, primary: int, lower: float, n: int) -> bool | np.bool_:
    """True when a flip that is not ruled out leaves the accuracy as it is (with F1: every
    prediction) and `lower`, a lower bound on its tie-breaker's change times n, is above
    `SKIP` n: it cannot lower the tie-breaker, so its loss change need not be summed."""
    if lower <= SKIP * n:
        return False
    if primary == ACCURACY:
        return counts[1] == 0
    return np.all(counts[2:] == 0)


@njit(cache=True, inline="always")
def _ruled_out(counts: np.ndarray, primary: int, base: np.ndarray, floor: float) -> bool:
    """True when a candidate's counts rule it out: a near-tied sample moved (undecided), or
    fewer samples are surely right (accuracy), or the macro-F1 is below `floor` (F1: the
    state's less `F1_TOL`)."""
    if counts[0] > 0:
        return True
    if primary == ACCURACY:
        return counts[1] < 0
    return _macro_f1(base, counts) < floor


@njit(cache=True, inline="always")
def _macro_f1(base: np.ndarray, counts: np.ndarray) -> float:
    """Macro-F1 of the counts ``base (3, C)`` (true positives, predictions, true counts)
    changed by a candidate's ``counts[2:]``, over the classes present in the labels or the
    predictions, as `evoprune.objectives.f1_from_counts`."""
    C = base.shape[1]
    total, present = 0.0, 0
    for c in range(C):
        tp = base[0, c] + counts[2 + c]
        pred_n = base[1, c] + counts[2 + C + c]
        denom = pred_n + base[2, c]
        if denom > 0:
            total += 2.0 * tp / denom
            present += 1
    return total / max(present, 1)


@njit(cache=True, inline="always")
def _cut(counts: np.ndarray, mode: int, slack: int, base: np.ndarray, floor: float) -> bool:
    """True when a candidate is ruled out (`_ruled_out`) whatever the samples not yet swept
    do: a near-tied sample moved, or (accuracy) more samples were lost than the `slack` surely
    wrong ones could win back, or (F1) even the best the unswept samples could do leaves the
    macro-F1 below `floor` (`_f1_reach`)."""
    if counts[0] > 0:
        return True
    if mode == ACCURACY:
        return counts[1] + slack < 0
    return _f1_reach(base, counts) < floor


@njit(cache=True, inline="always")
def _moved(counts: np.ndarray, watch: int, k: int) -> bool:
    """Whether F1's counts changed with the last sample (undecided, or its prediction moved: the
    count ``k`` of its old prediction, `watch` before, went down); only then can the F1 cut
    newly apply (with ten classes, checking after every sample cost digits 9%)."""
    return counts[0] > 0 or counts[k] != watch


@njit(cache=True, inline="always")
def _f1_reach(base: np.ndarray, counts: np.ndarray) -> float:
    """An upper bound on the macro-F1 a candidate can end at, from its counts so far
    (``counts[2:]``: changes of true positives and predictions per class) and the state's
    ``base`` (true positives, predictions, true counts).

    Per class c, the unswept samples can at best make right every sample of class c now
    wrong (true_c - tp_c of them: true positive and prediction +1 each) and take every wrong
    prediction of c away (pred_c - tp_c: prediction -1 each); breaking a right sample or
    predicting c wrongly never raises F1_c. That gives F1_c <= 2 (true_c + dtp_c) /
    (2 true_c + dpred_c), and F1_c <= 1; where ``tp_c + dpred_c + true_c <= 0`` the bound is
    1 (its steps assume a positive denominator). Classes absent from the labels score 0
    wherever they are predicted: the mean over the labels' classes bounds the macro-F1."""
    C = base.shape[1]
    total, present = 0.0, 0
    for c in range(C):
        true_c = base[2, c]
        if true_c == 0:
            continue
        bound = 1.0
        if base[0, c] + counts[2 + C + c] + true_c > 0:
            bound = min(1.0, 2.0 * (true_c + counts[2 + c]) / (2 * true_c + counts[2 + C + c]))
        total += bound
        present += 1
    return total / max(present, 1)


@njit(cache=True)
def _candidate(ptr: np.ndarray, rows: np.ndarray, vals: np.ndarray, i: int, dwj: float,
               zo: np.ndarray, ao: np.ndarray, relu: bool, w: np.ndarray, logits: np.ndarray,
               y: np.ndarray, tol: np.ndarray, loss_s: np.ndarray, status: np.ndarray,
               pred: np.ndarray, margin: np.ndarray, binary: bool, j: int, out_f: np.ndarray,
               out_i: np.ndarray, slack: int, base: np.ndarray, floor: float, wrong: np.ndarray,
               xt: np.ndarray, mode: int, grad: np.ndarray, bound: bool) -> float:  # fmt: skip
    """One candidate of `unit_exact` (input i, weight change dwj) under one mode: its counts
    (accuracy, F1) or its loss change (LOSS). With `bound`, returns the first-order change of
    the loss, ``sum(grad @ w * da)`` (else 0; partial when the sweep stops early)."""
    if binary:
        return _binary_candidate(ptr, rows, vals, i, dwj, zo, ao, relu, w, y, tol, loss_s,
                                 status, margin, j, out_f, out_i, slack, mode, grad, bound, wrong,
                                 xt)  # fmt: skip
    C = logits.shape[1]
    lg = np.empty(C)
    cut = mode != LOSS and slack >= 0  # mode: LOSS, ACCURACY or F1 here
    first = 0.0
    for p in range(ptr[i], ptr[i + 1]):
        s = rows[p]
        d = _moved_by(dwj * vals[p], zo[s], ao[s], relu)
        if d == 0.0:
            continue
        for c in range(C):
            lg[c] = logits[s, c] + w[c] * d
            if bound:
                first += grad[s, c] * w[c] * d
        watch = out_i[j, 2 + C + pred[s]]
        _accumulate(lg, y[s], tol[s], mode, loss_s[s], status[s], pred[s], j, out_f, out_i, C)
        moved = cut and mode == F1 and _moved(out_i[j], watch, 2 + C + pred[s])
        if moved and _cut(out_i[j], mode, slack, base, floor):
            return first
        if cut and mode == ACCURACY and _cut(out_i[j], mode, slack, base, floor):
            return first
    return first


@njit(cache=True)
def _binary_candidate(ptr: np.ndarray, rows: np.ndarray, vals: np.ndarray, i: int, dwj: float,
                      zo: np.ndarray, ao: np.ndarray, relu: bool, w: np.ndarray, y: np.ndarray,
                      tol: np.ndarray, loss_s: np.ndarray, status: np.ndarray, margin: np.ndarray,
                      j: int, out_f: np.ndarray, out_i: np.ndarray, slack: int, mode: int,
                      grad: np.ndarray, bound: bool, wrong: np.ndarray, xt: np.ndarray) -> float:  # fmt: skip
    """`_candidate` for the accuracy of two classes, where a sample's state is its margin
    alone: the counts (ACCURACY) or the tie-breaker's softplus(-m) change (LOSS), kept in
    locals and written once (the loss in the same order as the general sweep).

    With the cut, the counts' sweep visits the surely wrong samples first (`wrong`, the
    input's values at ``xt[i, s]``), then the others: past the wrong ones a flip can only lose
    samples, so it is ruled out as soon as it has lost more than it won. In one sweep it could
    only be ruled out after losing more than all the wrong samples (moons B seed 0's GA
    ticket: 3,850), and most flips that lose were swept to the end."""
    wd = w[0] - w[1]  # the margin of a class-0 sample moves by wd * d, of a class-1 one by -wd * d
    first, loss, opened, gained = 0.0, 0.0, 0, 0
    if mode == LOSS:
        for p in range(ptr[i], ptr[i + 1]):
            s = rows[p]
            d = _moved_by(dwj * vals[p], zo[s], ao[s], relu)
            if d != 0.0:
                m = margin[s] + (wd if y[s] == 0 else -wd) * d
                loss += max(-m, 0.0) + np.log1p(np.exp(-abs(m))) - loss_s[s]
        out_f[j] += loss
        return first
    cut = slack >= 0
    # the wrong samples first (a flip can only win them, or move a near tie), then the others
    na, start = (wrong.shape[0] if cut else 0), ptr[i]
    for t in range(na + ptr[i + 1] - start):
        if t < na:
            s = wrong[t]
            x = xt[i, s]
        else:
            s = rows[start + t - na]
            if cut and status[s] == WRONG:  # swept above
                continue
            x = vals[start + t - na]
        d = _moved_by(dwj * x, zo[s], ao[s], relu)
        if d == 0.0:
            continue
        if bound:
            first += (grad[s, 0] * w[0] + grad[s, 1] * w[1]) * d
        m = margin[s] + (wd if y[s] == 0 else -wd) * d
        st = RIGHT if m > tol[s] else (WRONG if m < -tol[s] else UNDECIDED)
        if st == UNDECIDED or status[s] == UNDECIDED:
            opened += 1
        else:
            gained += st - status[s]
        if cut and (opened > 0 or gained < 0):  # `_cut`: past the wrong ones, no slack left
            break
    out_i[j, 0] += opened
    out_i[j, 1] += gained
    return first


@njit(cache=True, inline="always")
def _moved_by(dz: float, zo: float, ao: float, relu: bool) -> float:
    """The change of a unit's activation (`relu`) or output when its pre-activation `zo`
    moves by `dz`; `ao` is its activation."""
    if not relu:
        return dz
    z = zo + dz
    return (z if z > 0.0 else 0.0) - ao


@njit(cache=True, parallel=True)
def unit_exact_deep(ptr: np.ndarray, rows: np.ndarray, vals: np.ndarray, cand: np.ndarray,
                    dw: np.ndarray, zo: np.ndarray, ao: np.ndarray, wcol: np.ndarray,
                    pre_next: np.ndarray, rest_w: np.ndarray, rest_shape: np.ndarray,
                    rest_b: np.ndarray, y: np.ndarray, tol: np.ndarray, mode: int,
                    loss_s: np.ndarray, status: np.ndarray, pred: np.ndarray, base: np.ndarray,
                    floor: float, out_f: np.ndarray, out_i: np.ndarray, wrong: np.ndarray,
                    xt: np.ndarray, slack: int = -1) -> None:  # fmt: skip
    """As `unit_exact` for a hidden unit with further hidden layers above: the next layer's
    pre-activation moves by ``wcol (H,) * da`` (a rank-1 update), and the sample goes on through
    the remaining layers, given flat: ``rest_w`` row-major weights of shapes ``rest_shape (k, 2)``
    and ``rest_b`` their biases; the last of them outputs the logits. With the accuracy and the
    cut, the surely wrong samples `wrong` are swept first, as in `_binary_candidate` (circles D:
    its first hidden layer scored in 52 ms a pass instead of 104, the same scores)."""
    primary = mode & PRIMARY
    gated = primary != LOSS and mode & TIEBREAK != 0
    for j in prange(cand.shape[0]):
        args = (ptr, rows, vals, cand[j], dw[j], zo, ao, wcol, pre_next, rest_w, rest_shape,
                rest_b, y, tol, loss_s, status, pred, j, out_f, out_i, slack, base,
                floor, wrong, xt)  # fmt: skip
        if not gated:
            _candidate_deep(*args, mode)
            continue
        _candidate_deep(*args, primary)
        if _ruled_out(out_i[j], primary, base, floor):
            out_f[j] = np.inf
        else:
            _candidate_deep(*args, LOSS)


@njit(cache=True)
def _candidate_deep(ptr: np.ndarray, rows: np.ndarray, vals: np.ndarray, i: int, dwj: float,
                    zo: np.ndarray, ao: np.ndarray, wcol: np.ndarray, pre_next: np.ndarray,
                    rest_w: np.ndarray, rest_shape: np.ndarray, rest_b: np.ndarray, y: np.ndarray,
                    tol: np.ndarray, loss_s: np.ndarray, status: np.ndarray, pred: np.ndarray,
                    j: int, out_f: np.ndarray, out_i: np.ndarray, slack: int, base: np.ndarray,
                    floor: float, wrong: np.ndarray, xt: np.ndarray, mode: int) -> None:  # fmt: skip
    """One candidate of `unit_exact_deep` under one mode (see `_candidate`)."""
    cut = mode != LOSS and slack >= 0  # mode: LOSS, ACCURACY or F1 here
    H = pre_next.shape[1]
    width = H
    for k in range(rest_shape.shape[0]):
        width = max(width, rest_shape[k, 0])
    C = rest_shape[rest_shape.shape[0] - 1, 0]
    a = np.empty(width)
    b = np.empty(width)
    # with the accuracy, the wrong samples first; past them the slack is 0
    na = wrong.shape[0] if cut and mode == ACCURACY else 0
    for t in range(na + ptr[i + 1] - ptr[i]):
        if t < na:
            s = wrong[t]
            x = xt[i, s]
        else:
            s = rows[ptr[i] + t - na]
            if na > 0 and status[s] == WRONG:  # swept above
                continue
            x = vals[ptr[i] + t - na]
        z = zo[s] + dwj * x
        d = (z if z > 0.0 else 0.0) - ao[s]
        if d == 0.0:
            continue
        for h in range(H):
            v = pre_next[s, h] + wcol[h] * d
            a[h] = v if v > 0.0 else 0.0
        off, boff = 0, 0
        n_layers = rest_shape.shape[0]
        for k in range(n_layers):
            out_w, in_w = rest_shape[k, 0], rest_shape[k, 1]
            for o in range(out_w):
                acc = rest_b[boff + o]
                start = off + o * in_w
                for q in range(in_w):
                    acc += rest_w[start + q] * a[q]
                b[o] = acc if (acc > 0.0 or k == n_layers - 1) else 0.0
            off += out_w * in_w
            boff += out_w
            for o in range(out_w):
                a[o] = b[o]
        watch = out_i[j, 2 + C + pred[s]]
        _accumulate(a[:C], y[s], tol[s], mode, loss_s[s], status[s], pred[s], j, out_f, out_i, C)
        check = cut and (mode == ACCURACY or _moved(out_i[j], watch, 2 + C + pred[s]))
        if check and _cut(out_i[j], mode, slack if t < na or na == 0 else 0, base, floor):
            return


@njit(cache=True, parallel=True)
def unit_expansion(
    ptr: np.ndarray,
    rows: np.ndarray,
    vals: np.ndarray,
    cand: np.ndarray,
    dw: np.ndarray,
    coef: np.ndarray,
    relu: bool,
    out_f: np.ndarray,
) -> None:
    """Ranking estimate of each candidate's loss change, for U units at once: per sample the
    4th-order expansion ``c1 d + c2 d^2 + c3 d^3 + c4 d^4`` in the unit's exact activation
    change d (for the softmax: the cumulants of the unit's outgoing weights under it; c1 alone
    is the first-order mask gradient). ``coef (U, n, 6)`` holds per sample (zo, ao, c1..c4),
    packed so one sample is one cache line; dw and out_f are ``(U, k)``."""
    U, k = dw.shape
    for job in prange(U * k):
        u, j = job // k, job % k
        i = cand[j]
        acc = 0.0
        for p in range(ptr[i], ptr[i + 1]):
            c = coef[u, rows[p]]
            dz = dw[u, j] * vals[p]
            if relu:
                z = c[0] + dz
                d = (z if z > 0.0 else 0.0) - c[1]
            else:
                d = dz
            if d == 0.0:
                continue
            acc += d * (c[2] + d * (c[3] + d * (c[4] + d * c[5])))
        out_f[u, j] = acc


def set_threads(work: float) -> None:
    """Every core when a call has enough work to share; one for small ones, where thread
    start-up and barriers cost more than they save (measured: digits units, ~50k pairs, are
    slower on two; a block of eight moons B hidden units, 1.6M, takes 3.4 ms instead of 4.9).
    "Every core" is at most torch's thread count, so ``torch.set_num_threads`` (``--threads``)
    and ``OMP_NUM_THREADS`` bound the local search as they bound the GA."""
    # numba.config sets its options at import time, out of its stubs' sight
    n = min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())  # type: ignore[attr-defined]
    numba.set_num_threads(n if work > THREAD_WORK else 1)


def csr_by_feature(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``A (n, f)`` sample-major: per feature, the samples where it is nonzero and its
    values there (``ptr (f+1,)``, ``rows``, ``vals``), samples in increasing order. A
    unit-major ``A`` (the transpose of a C-contiguous ``(f, n)``) is read row by row."""
    if A.dtype == np.float64 and A.T.flags.c_contiguous and not A.flags.c_contiguous:
        return _csr_by_row(A.T)
    return _csr_by_feature(np.ascontiguousarray(A, dtype=np.float64))


@njit(cache=True)
def _csr_by_row(AT: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, n = AT.shape
    ptr = np.zeros(f + 1, dtype=np.int64)
    for i in range(f):
        ptr[i + 1] = ptr[i] + np.count_nonzero(AT[i])
    # one spare slot: every value is written, and the next overwrites a zero (no branch to
    # mispredict, twice as fast on half-active ReLU units)
    rows = np.empty(ptr[f] + 1, dtype=np.int64)
    vals = np.empty(ptr[f] + 1)
    k = 0
    for i in range(f):
        for s in range(n):
            v = AT[i, s]
            rows[k] = s
            vals[k] = v
            k += v != 0.0
    return ptr, rows[: ptr[f]], vals[: ptr[f]]


@njit(cache=True)
def _csr_by_feature(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, f = A.shape
    ptr = np.zeros(f + 1, dtype=np.int64)
    for s in range(n):
        for i in range(f):
            if A[s, i] != 0.0:
                ptr[i + 1] += 1
    for i in range(f):
        ptr[i + 1] += ptr[i]
    rows = np.empty(ptr[f], dtype=np.int64)
    vals = np.empty(ptr[f])
    fill = ptr[:f].copy()
    for s in range(n):
        for i in range(f):
            v = A[s, i]
            if v != 0.0:
                rows[fill[i]] = s
                vals[fill[i]] = v
                fill[i] += 1
    return ptr, rows, vals


@njit(cache=True)
def statuses(
    logits: np.ndarray,
    y: np.ndarray,
    tol: np.ndarray,
    mode: int,
    status: np.ndarray,
    pred: np.ndarray,
) -> None:
    """`_status` of every sample: fills ``status (n,) int8`` and ``pred (n,) int64``."""
    for s in range(logits.shape[0]):
        st, pr = _status(logits[s], y[s], tol[s], mode)
        status[s] = st
        pred[s] = pr


@njit(cache=True)
def losses(logits: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    """Per-sample cross-entropy of ``logits (n, C)`` into ``out (n,)``."""
    for s in range(logits.shape[0]):
        out[s] = _sample_loss(logits[s], y[s])


@njit(cache=True)
def loss_gradient(logits: np.ndarray, y: np.ndarray, loss_s: np.ndarray, out: np.ndarray) -> None:
    """Per sample the cross-entropy's gradient with respect to the logits, softmax less
    one-hot, into ``out (n, C)``; from the per-sample losses `loss_s` (`losses`), whose
    log-sum-exp is the loss plus the label's logit."""
    for s in range(logits.shape[0]):
        lse = loss_s[s] + logits[s, y[s]]
        for c in range(logits.shape[1]):
            out[s, c] = np.exp(logits[s, c] - lse)
        out[s, y[s]] = np.expm1(-loss_s[s])


@njit(cache=True)
def softmax_cumulants(
    logits: np.ndarray,
    v: np.ndarray,
    y: np.ndarray,
    c1: np.ndarray,
    c2: np.ndarray,
    c3: np.ndarray,
    c4: np.ndarray,
) -> None:
    """Per sample, the Taylor coefficients of the cross-entropy when the logits move by
    ``v[s] d`` (``v (n, C)``, rows may repeat one direction): with p the softmax and κ_k the
    cumulants of v[s] under p, ``c1 = κ1 - v[s, y]``, ``c2 = κ2 / 2``, ``c3 = κ3 / 6``,
    ``c4 = κ4 / 24`` (derivatives of log-sum-exp along v[s])."""
    n, C = logits.shape
    for s in range(n):
        w = v[s]
        m = -np.inf
        for c in range(C):
            m = max(m, logits[s, c])
        z, m1 = 0.0, 0.0
        for c in range(C):
            e = np.exp(logits[s, c] - m)
            z += e
            m1 += e * w[c]
        m1 /= z
        k2, k3, k4 = 0.0, 0.0, 0.0
        for c in range(C):
            p = np.exp(logits[s, c] - m) / z
            dv = w[c] - m1
            d2 = dv * dv
            k2 += p * d2
            k3 += p * d2 * dv
            k4 += p * d2 * d2
        c1[s] = m1 - w[y[s]]
        c2[s] = k2 / 2
        c3[s] = k3 / 6
        c4[s] = (k4 - 3 * k2 * k2) / 24


@njit(cache=True, parallel=True)
def step_top(
    z: np.ndarray,
    old: np.ndarray,
    relu: bool,
    o: int,
    w: np.ndarray,
    logits: np.ndarray,
    y: np.ndarray,
    tol: np.ndarray,
    mode: int,
    track_loss: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A step of unit o whose output feeds the logits directly, given its new pre-activation
    ``z (n,)``: ``old (n,)`` is its activation (``relu``, a last hidden unit: the logits move
    by ``w (C,) * da``) or, for output unit o, its logit (which becomes z). Returns the changed
    samples S, their new logits ``(|S|, C)``, losses (zeros unless `track_loss`) and, unless
    `mode` is LOSS, statuses and predictions (`_status`); the arithmetic of `losses` and
    `statuses` on the logits a numpy step computes. The changed samples are shared among the
    threads (each sample's numbers are its own)."""
    n, C = logits.shape
    d = np.empty(n)
    k = 0
    for s in range(n):
        if relu:
            d[s] = (z[s] if z[s] > 0.0 else 0.0) - old[s]
        else:
            d[s] = z[s] - old[s]
        if d[s] != 0.0:  # for two finite floats, z - old == 0 only where z == old
            k += 1
    S = np.empty(k, np.int64)
    j = 0
    for s in range(n):
        if d[s] != 0.0:
            S[j] = s
            j += 1
    new = np.empty((k, C))
    loss = np.zeros(k)
    status = np.zeros(k, np.int8)
    pred = np.zeros(k, np.int64)
    for j in prange(k):
        s = S[j]
        for c in range(C):
            new[j, c] = logits[s, c] + d[s] * w[c] if relu else logits[s, c]
        if not relu:
            new[j, o] = z[s]
        if track_loss:
            loss[j] = _sample_loss(new[j], y[s])
        if mode != LOSS:
            status[j], pred[j] = _status(new[j], y[s], tol[s], mode)
    return S, new, loss, status, pred


@njit(cache=True)
def apply_top(S: np.ndarray, new: np.ndarray, losses: np.ndarray, status: np.ndarray,
              pred: np.ndarray, logits: np.ndarray, loss_s: np.ndarray, status_s: np.ndarray,
              pred_s: np.ndarray, tp: np.ndarray, pred_n: np.ndarray, y: np.ndarray, track: bool,
              counted: bool) -> np.ndarray:  # fmt: skip
    """Write a step's changed samples S into the state: their logits ``new (|S|, C)``, and
    with `track` their losses, with `counted` their statuses and predictions, keeping the
    per-class counts ``tp`` and ``pred_n`` up to date. Returns the changes of the counts of
    surely right and of undecided samples ``(2,)``."""
    moved = np.zeros(2, np.int64)
    for j in range(S.shape[0]):
        s = S[j]
        for c in range(new.shape[1]):
            logits[s, c] = new[j, c]
        if track:
            loss_s[s] = losses[j]
        if not counted:
            continue
        moved[0] += (status[j] == RIGHT) - (status_s[s] == RIGHT)
        moved[1] += (status[j] == UNDECIDED) - (status_s[s] == UNDECIDED)
        old = pred_s[s]
        pred_n[old] -= 1
        pred_n[pred[j]] += 1
        if old == y[s]:
            tp[old] -= 1
        if pred[j] == y[s]:
            tp[pred[j]] += 1
        status_s[s] = status[j]
        pred_s[s] = pred[j]
    return moved


@njit(cache=True)
def combine(
    ptr: np.ndarray, rows: np.ndarray, vals: np.ndarray, inputs: np.ndarray, dw: np.ndarray, n: int
) -> np.ndarray:
    """The pre-activation change ``(n,)`` of one unit when the weights of `inputs` change by
    `dw` together: ``sum_j dw[j] * x[inputs[j]]``, over the nonzeros only."""
    dz = np.zeros(n)
    for j in range(inputs.shape[0]):
        i = inputs[j]
        for p in range(ptr[i], ptr[i + 1]):
            dz[rows[p]] += dw[j] * vals[p]
    return dz
