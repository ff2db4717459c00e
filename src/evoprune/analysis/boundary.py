"""Decision boundaries of tickets on two-feature data, beside the Bayes rule's.

On moons and circles near-perfect tickets differ by a test error or two; the picture shows
where: each ticket's boundary over the data, its test errors, and (for the generated datasets)
the boundary of the Bayes rule, the most accurate classifier there is
(`evoprune.data.bayes`). Drawn by `evoprune.analysis.plots.draw_boundaries`.

>>> from evoprune.data import load_dataset
>>> from evoprune.nets import build_mlp
>>> from evoprune.ticket import Ticket
>>> import torch
>>> ds = load_dataset("moons")
>>> t = Ticket(mask=torch.ones(2 * 20 + 20 * 2, dtype=torch.bool), layers=[2, 20, 2],
...            init="uniform", seed=0, dataset=ds.config)
>>> b = decision_boundaries([t], ["dense"], ds, grid=51)
>>> b.predictions[0].shape, b.bayes is not None
((51, 51), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from evoprune.data.bayes import bayes_log_ratio, bayes_predict, raw_points
from evoprune.data.newdata import trained_normalize
from evoprune.data.registry import GENERATORS, Dataset
from evoprune.errors import EvopruneError
from evoprune.ticket import Ticket

PAD = 0.05  # the grid reaches this share of the data's range beyond it on each side
SHOWN_POINTS = 3_000  # training points drawn under the boundaries
MAX_GRID = 2_001  # points per axis: 4M lattice points, finer than any figure draws them


@dataclass
class Boundaries:
    xs: np.ndarray  # (G,) first input feature, as the network sees it (scaled)
    ys: np.ndarray  # (G,) second input feature
    predictions: list[np.ndarray]  # per ticket (G, G): class at (ys[i], xs[j])
    labels: list[str]  # per ticket
    test_errors: list[np.ndarray]  # per ticket: indices of the test points it gets wrong
    X_shown: np.ndarray  # (SHOWN_POINTS, 2) training points drawn beneath
    y_shown: np.ndarray
    X_test: np.ndarray  # (n_test, 2)
    bayes: np.ndarray | None = None  # (G, G) log p(class 1) / p(class 0); None off moons/circles
    bayes_test_errors: np.ndarray | None = None


def decision_boundaries(
    tickets: Sequence[Ticket], labels: Sequence[str], ds: Dataset, grid: int = 301
) -> Boundaries:
    """Each ticket's class over a `grid` x `grid` lattice spanning the data, its test errors,
    and the Bayes rule's log ratio on the same lattice where `ds` is moons or circles."""
    if ds.n_features != 2:
        raise EvopruneError(
            f"boundary: expected data with 2 features, {ds.name} has {ds.n_features}"
        )
    if not 3 <= grid <= MAX_GRID:
        raise EvopruneError(f"--grid: expected 3 to {MAX_GRID} points per axis, got {grid}")
    X = ds.X_train.double().numpy()
    lo, hi = X.min(0), X.max(0)
    lo, hi = lo - PAD * (hi - lo), hi + PAD * (hi - lo)
    xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
    gx, gy = np.meshgrid(xs, ys)  # (G, G), rows follow ys
    lattice = torch.as_tensor(np.c_[gx.ravel(), gy.ravel()], dtype=torch.float32)
    predictions, test_errors = [], []
    for ticket in tickets:
        predictions.append(ticket.predict(lattice).numpy().reshape(grid, grid))
        test_errors.append(np.flatnonzero((ticket.predict(ds.X_test) != ds.y_test).numpy()))
    shown = np.random.default_rng(0).permutation(len(X))[:SHOWN_POINTS]
    b = Boundaries(xs, ys, predictions, list(labels), test_errors, X[shown],
                   ds.y_train.numpy()[shown], ds.X_test.numpy())  # fmt: skip
    if ds.name in GENERATORS:
        normalize = trained_normalize(ds.config)
        ratio = bayes_log_ratio(ds.name, raw_points(ds.name, lattice, normalize))
        b.bayes = ratio.reshape(grid, grid)
        wrong = (bayes_predict(ds.name, ds.X_test, normalize) != ds.y_test).numpy()
        b.bayes_test_errors = np.flatnonzero(wrong)
    return b


__all__ = ["Boundaries", "decision_boundaries"]
