"""Feature scaling: the paper's global min-max, and per-feature min-max for the user's own data.

The paper's code scales every feature of a built-in dataset with *one* minimum and maximum
over the whole training matrix (`global_min_max`): right for pixels, wrong for a table with
grams beside millimetres, where it flattens every small-unit column. The user's own tables get
`FeatureScaling`: each column mapped to [-0.7, 0.7] by its own training-split range. The fitted
ranges travel with the dataset config (and so with a ticket), so new data is scaled the same way.

>>> import numpy as np
>>> s = FeatureScaling.fit(np.array([[0.0, 100.0, 5.0], [10.0, 300.0, 5.0]]))
>>> s.apply(np.array([[5.0, 300.0, 7.0]])).round(3).tolist()
[[0.0, 0.7, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evoprune.errors import EvopruneError

SCALE = 0.7  # target range [-0.7, 0.7], as in the paper's code


def global_min_max(X_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """The paper's scaling: every array to [-0.7, 0.7] by one min and max over all training
    features."""
    lo, hi = float(X_train.min()), float(X_train.max())
    return [scale_global(a, lo, hi) for a in (X_train, *others)]


def scale_global(X: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """`X` mapped by one range: `lo` -> -0.7, `hi` -> 0.7 (a training split's min and max; a
    dataset config's ``global_range``, so new data is scaled as the training data was)."""
    span = hi - lo if hi > lo else 1.0
    return (X - lo) / span * (2 * SCALE) - SCALE


def unscale_global(X: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The inverse of `scale_global`: scaled `X` back in the units of the range [lo, hi]."""
    span = hi - lo if hi > lo else 1.0
    return (X + SCALE) / (2 * SCALE) * span + lo


@dataclass(frozen=True)
class FeatureScaling:
    """Per-feature min-max to [-0.7, 0.7], fitted on a training split.

    A column that is constant on the training split carries no information there; it is mapped
    to 0 (its weight then contributes nothing), whatever its value in new data, instead of
    dividing by a zero range.
    """

    low: np.ndarray  # (features,) float64, training minimum of each column
    high: np.ndarray  # (features,) float64, training maximum

    @classmethod
    def fit(cls, X_train: np.ndarray) -> FeatureScaling:
        X = np.asarray(X_train, dtype=np.float64).reshape(len(X_train), -1)
        return cls(low=X.min(axis=0), high=X.max(axis=0))

    @property
    def n_features(self) -> int:
        return int(self.low.size)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """`X` ``(n, features)`` scaled: training range -> [-0.7, 0.7], constant columns -> 0."""
        X = np.asarray(X, dtype=np.float64)
        flat = X.reshape(len(X), -1)
        if flat.shape[1] != self.n_features:
            raise EvopruneError(
                f"scaling: fitted on {self.n_features} features, the data has {flat.shape[1]}"
            )
        span = self.high - self.low
        varies = span > 0
        factor = np.where(varies, 2 * SCALE / np.where(varies, span, 1.0), 0.0)
        mid = (self.low + self.high) / 2
        return ((flat - mid) * factor).reshape(X.shape)

    def to_config(self) -> dict[str, Any]:
        """JSON-able form for a dataset config, result.json and the ticket header."""
        return {
            "method": "per-feature",
            "range": [-SCALE, SCALE],
            "low": [float(v) for v in self.low],
            "high": [float(v) for v in self.high],
        }

    @classmethod
    def from_config(cls, config: Any) -> FeatureScaling:
        """Back from `to_config`; anything else is an `EvopruneError` naming the field."""
        if not isinstance(config, dict) or config.get("method") != "per-feature":
            raise EvopruneError(f"scaling: expected a per-feature scaling record, got {config!r}")
        try:
            low = np.asarray(config["low"], dtype=np.float64)
            high = np.asarray(config["high"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise EvopruneError("scaling: expected numeric lists 'low' and 'high'") from None
        if low.ndim != 1 or low.shape != high.shape or not (high >= low).all():
            raise EvopruneError("scaling: 'low' and 'high' must be equal-length with low <= high")
        return cls(low=low, high=high)
