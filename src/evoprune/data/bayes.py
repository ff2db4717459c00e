"""The Bayes rule of the generated datasets: the best any classifier can do on moons and circles.

scikit-learn's generators put each class's points evenly along a curve (moons: two half
circles, angles evenly spaced in [0, pi]; circles: two full circles of radius 1 and 0.8) and add
isotropic Gaussian noise (sigma 0.07 here). A class's density is therefore the curve's points
smeared by the noise, and the rule that picks the denser class (the two are equally likely) is
the most accurate one there is. It measures how far a ticket is from the best possible:

>>> from evoprune.data import fresh_sample
>>> X, y = fresh_sample("moons", 20_000, seed=1)
>>> bool((bayes_predict("moons", X) == y).float().mean() > 0.999)
True

Circles: the density of a circle of radius R smeared by the noise is a function of the radius
r alone, exp(-(r^2 + R^2) / 2 sigma^2) I0(r R / sigma^2) / (2 pi sigma^2), exactly. Moons: each
half circle's density is the mean of the Gaussian over its arc, a midpoint sum of `ARC_POINTS`
angles (spacing 0.0004, 1/180 of sigma: within 1e-3 of the integral in the log ratio). The arc
is the limit of the generator's n / 2 points per class, which, ends included, reach half a
spacing further: near the boundary that moves the log ratio by up to 0.01 for the 8,000
points of the test split, which changes no decision that is not a coin toss. Most points are
decided by their distance to each arc alone: a class's log-density is at most -d^2 / 2 sigma^2
(d the distance to its arc) and at least -(d + h)^2 / 2 sigma^2 - log(ARC_POINTS) (h half the
spacing), so the sum runs only where those bounds leave the class open.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from scipy.special import i0e, logsumexp

from evoprune.data.registry import DATASETS, GENERATORS, N_TEST, NOISE, _generate, generated_range
from evoprune.data.scaling import unscale_global
from evoprune.errors import EvopruneError

CIRCLES_FACTOR = 0.8  # make_circles' default: the inner circle's radius
ARC_POINTS = 8_000  # angles per half circle in the moons density's midpoint sum
CHUNK = 1_024  # samples per block of the midpoint sum: (CHUNK, ARC_POINTS) float64, 65 MB


def bayes_predict(name: str, X: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
    """The Bayes rule's class (0 or 1) for each row of `X` (n, 2), which is scaled as
    `load_dataset(name, normalize=...)` scales it (by default as the paper does)."""
    return torch.as_tensor(bayes_log_ratio(name, raw_points(name, X, normalize)) > 0).long()


@cache
def bayes_test_accuracy(name: str) -> float:
    """The Bayes rule's accuracy on the dataset's fixed test split, the same for every run
    (moons 1.0, circles 0.9237): the ceiling of every ticket's test accuracy there."""
    _check_name(name)
    X, y = _generate(name, N_TEST)
    return float(np.mean((bayes_log_ratio(name, X) > 0) == (y == 1)))


def bayes_log_ratio(name: str, X_raw: np.ndarray) -> np.ndarray:
    """log p(x | class 1) - log p(x | class 0) for points `X_raw` (n, 2) in the generator's own
    coordinates (before any scaling); positive where class 1 is the likelier. On moons, where a
    point's distances to the two arcs decide its class, the value is the distance estimate
    (d0^2 - d1^2) / 2 sigma^2, of the right sign; everywhere else it is exact."""
    _check_name(name)
    X_raw = np.asarray(X_raw, dtype=np.float64).reshape(-1, 2)
    if name == "circles":
        r = np.hypot(X_raw[:, 0], X_raw[:, 1])
        return _log_ring(r, CIRCLES_FACTOR) - _log_ring(r, 1.0)
    return _moons_log_ratio(X_raw)


def raw_points(
    name: str, X: torch.Tensor | np.ndarray, normalize: bool | None = None
) -> np.ndarray:
    """`X` scaled as `load_dataset(name, normalize=...)` scales it, back in the generator's
    coordinates: the inverse of the paper's global min-max over the training split."""
    _check_name(name)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if X.shape[1] != 2:
        raise EvopruneError(
            f"bayes rule of {name}: expected points with 2 features, got {X.shape[1]}"
        )
    if not (DATASETS[name].normalize if normalize is None else normalize):
        return X
    return unscale_global(X, *generated_range(name))


def _check_name(name: str) -> None:
    if name not in GENERATORS:
        raise EvopruneError(
            f"bayes rule: expected a generated dataset ({', '.join(GENERATORS)}), got {name!r}"
        )


def _log_ring(r: np.ndarray, radius: float) -> np.ndarray:
    """log density (up to a constant shared by both classes) at radius `r` of a circle of
    `radius` smeared by the noise; i0e(z) = I0(z) exp(-z) keeps it finite."""
    z = r * radius / NOISE**2
    return -((r - radius) ** 2) / (2 * NOISE**2) + np.log(i0e(z))


# moons: class 0's arc is (cos t, sin t), class 1's (1 - cos t, 0.5 - sin t), t in [0, pi]: the
# upper half circle about (0, 0) and the lower one about (1, 0.5), each evenly spread in angle
ARCS = ((np.array([0.0, 0.0]), 1.0), (np.array([1.0, 0.5]), -1.0))  # (centre, orientation)


def _moons_log_ratio(X: np.ndarray) -> np.ndarray:
    d2 = [_arc_distance2(X, *arc) for arc in ARCS]  # squared distance to each arc, (n,)
    d = [np.sqrt(v) for v in d2]
    ratio = (d2[0] - d2[1]) / (2 * NOISE**2)  # the log ratio where only distance counts
    # each class's log-density lies in [-(d + h)^2 / 2 sigma^2 - log K, -d^2 / 2 sigma^2]:
    # the arc points nearest x are at most h (half their spacing) from its nearest arc point
    h, log_k = np.pi / ARC_POINTS / 2, np.log(ARC_POINTS)
    low = (d2[0] - (d[1] + h) ** 2) / (2 * NOISE**2) - log_k
    high = ((d[0] + h) ** 2 - d2[1]) / (2 * NOISE**2) + log_k
    open_ = np.flatnonzero((low <= 0) & (high >= 0))
    ratio[open_] = _moons_sum(X[open_])
    return ratio


def _moons_sum(X: np.ndarray) -> np.ndarray:
    """The moons' log ratio by the midpoint sum over each arc, for every row of `X`."""
    t = (np.arange(ARC_POINTS) + 0.5) * (np.pi / ARC_POINTS)
    curves = [c + np.c_[np.cos(t), o * np.sin(t)] for c, o in ARCS]  # (K, 2) each
    ratio = np.empty(len(X))
    for start in range(0, len(X), CHUNK):
        log0, log1 = (_log_mean_gauss(X[start : start + CHUNK], c) for c in curves)
        ratio[start : start + CHUNK] = log1 - log0
    return ratio


def _arc_distance2(X: np.ndarray, centre: np.ndarray, orientation: float) -> np.ndarray:
    """Squared distance of each point to the half circle of radius 1 about `centre` on the
    upper (orientation 1) or lower (-1) side: to the circle where the point's angle lies over
    the arc, else to the nearer end."""
    v = X - centre
    over = orientation * v[:, 1] >= 0
    to_circle = (np.hypot(v[:, 0], v[:, 1]) - 1.0) ** 2
    ends = np.minimum((v[:, 0] - 1.0) ** 2, (v[:, 0] + 1.0) ** 2) + v[:, 1] ** 2
    return np.where(over, to_circle, ends)


def _log_mean_gauss(X: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """log of the mean over the curve's points of exp(-|x - c|^2 / 2 sigma^2), per row of X."""
    d2 = (X**2).sum(1)[:, None] - 2 * X @ curve.T + (curve**2).sum(1)[None]  # (rows, points)
    return logsumexp(-np.maximum(d2, 0.0) / (2 * NOISE**2), axis=1) - np.log(len(curve))


__all__ = ["bayes_log_ratio", "bayes_predict", "bayes_test_accuracy", "raw_points"]
