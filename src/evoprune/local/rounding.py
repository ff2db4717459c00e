"""The float64 rounding bound of the exact incremental MLP walks (no numba: post-pruning imports
it without the compiled kernels). `evoprune.local.incremental.MLPState` (local search) and
`evoprune.ga.prune_incremental` (post-pruning) decide on float64 margins and leave a sample whose
margin is within this bound to exact means (never accepting on it, or asking the `Evaluator`).
"""

from __future__ import annotations

import numpy as np

UNIT_ROUNDOFF = 2.0**-53  # float64


def rounding_bound(
    weights: list[np.ndarray], biases: list[np.ndarray], XT: np.ndarray, n_updates: int
) -> np.ndarray:
    """Per sample, a bound on |computed - exact| float64 margin for *every* submask of the
    layers `weights` (``(out, in)`` each) and `biases` (``(out,)``) on the data ``XT (in, n)``,
    with `n_updates` in-place updates on top: ``(n,)``.

    A dot product of n terms plus a bias errs by at most gamma(n+1) * (|W| |x| + |b|), with
    gamma(n) = n u / (1 - n u) (Higham, Accuracy and Stability of Numerical Algorithms, 2002,
    eq. 3.5), and an error carried in from the layer below grows by at most |W|. With
    ``B_l = |W_l| B_{l-1} + |b_l|`` from ``B_0 = |x|``, which bounds every |activation| of
    every submask (masking only drops terms; |relu(z)| <= |z|), a logit errs by at most
    ``sum_l gamma(n_l + 1) B_L``, a margin by twice that. Each update (an accepted removal or
    flip, done in place) computes a product and a sum of terms bounded by 2B (at most 6u B,
    carried up by |W|); we count 8u B_L per update. Twice all that, for safety.
    """
    gamma, bound = 0.0, np.abs(XT)
    for w, b in zip(weights, biases, strict=True):
        k = w.shape[1] + 1
        gamma += k * UNIT_ROUNDOFF / (1 - k * UNIT_ROUNDOFF)
        bound = np.abs(w) @ bound + np.abs(b)[:, None]
    return (4 * gamma + 8 * UNIT_ROUNDOFF * n_updates) * bound.max(0)
