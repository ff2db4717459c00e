"""The backprop baseline: an ordinary trained MLP (scikit-learn ``MLPClassifier``), and its tuning.

As in the paper (Altmann et al. 2024, arXiv 2411.04658; Schönberger et al. 2025, arXiv
2508.08877): the same hidden layers as the random networks, ReLU (or Tanh or Sigmoid, as a
reference for a ticket over such a network: `SKLEARN_ACTIVATIONS`), ``max_iter=1000`` (epochs,
sklearn stops earlier when the training loss stalls for 10 epochs), and per dataset/architecture
the hyperparameters of Table 2 (`evoprune.baselines.table2`). Weights use sklearn's own
(Glorot-uniform) initialisation, seeded from the run seed; no mask is involved.

`tune_backprop` is the search that produced Table 2: ``RandomizedSearchCV`` (cv=3) over the
paper's ranges.
"""

from __future__ import annotations

import signal
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier

from evoprune.archs import SKLEARN_ACTIVATIONS
from evoprune.baselines.table2 import BackpropParams
from evoprune.errors import EvopruneError
from evoprune.inputs import check_arrays
from evoprune.interrupts import raising
from evoprune.seeding import derive_seed

MAX_ITER = 1000  # the paper's max_iter (epochs for the stochastic solvers)


def sklearn_activation(activation: str) -> str:
    """scikit-learn's name for `activation`, or one line saying which it has."""
    if activation not in SKLEARN_ACTIVATIONS:
        raise EvopruneError(
            f"activation: scikit-learn's MLPClassifier has {', '.join(SKLEARN_ACTIVATIONS)}, "
            f"got {activation!r}"
        )
    return SKLEARN_ACTIVATIONS[activation]


# The paper's tuning ranges (its hyperparameter_tuning code; Table 2 caption): one distribution
# per solver, RandomizedSearchCV first picks a dict, then samples each entry.
SEARCH_SPACE: list[dict[str, Any]] = [
    {
        "solver": ["adam"],
        "alpha": np.logspace(-4, -1, 10),
        "learning_rate": ["constant", "adaptive"],
        "learning_rate_init": np.logspace(-3, -1, 10),
        "batch_size": [32, 64, 128],
        "epsilon": np.logspace(-9, -7, 10),
    },
    {
        "solver": ["sgd"],
        "alpha": np.logspace(-4, -1, 10),
        "learning_rate": ["constant", "adaptive"],
        "learning_rate_init": np.logspace(-3, -1, 10),
        "batch_size": [32, 64, 128],
        "momentum": np.linspace(0.0, 1.0, 5),
        "nesterovs_momentum": [True, False],
    },
]


def sklearn_seed(seed: int, purpose: str = "backprop") -> int:
    """A ``random_state`` for sklearn (which wants < 2**32) derived from the run seed."""
    return derive_seed(seed, purpose) % (2**32)


class _EpochHookMLP(MLPClassifier):
    """``MLPClassifier`` that calls ``self.epoch_hook(loss)`` after every epoch.

    sklearn has no callback; its stochastic solvers call ``_update_no_improvement_count`` exactly
    once per epoch, right after appending the epoch's loss, so we hook there (only to drive a
    progress bar: training is unchanged). If a future sklearn renames it, the bar just stays
    still.
    """

    epoch_hook: Callable[[float], None] | None = None

    def _update_no_improvement_count(self, *args: Any, **kwargs: Any) -> None:
        super()._update_no_improvement_count(*args, **kwargs)
        if self.epoch_hook is not None and self.loss_curve_:
            self.epoch_hook(float(self.loss_curve_[-1]))


class _Interrupted(BaseException):
    """Ctrl-C (or SIGTERM) inside scikit-learn: its stochastic solvers catch
    ``KeyboardInterrupt``, warn and return a half-trained model as if it had finished; this
    passes through them."""


def _expected_warnings_off() -> None:
    """Inside ``warnings.catch_warnings()``: silence what sklearn warns of by design here."""
    # Hitting max_iter is part of the protocol (the paper's runs did too), not an error.
    warnings.simplefilter("ignore", ConvergenceWarning)
    # A Table 2 batch above a small file's rows: sklearn clips it to the rows (full batches),
    # as it should, in a warning that points into its own source.
    warnings.filterwarnings("ignore", message="Got `batch_size` less than 1 or larger")


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C or SIGTERM during a fit stops it as a ``KeyboardInterrupt`` (exit 130, nothing
    written)."""
    try:
        with raising(signal.SIGINT, _Interrupted), raising(signal.SIGTERM, _Interrupted):
            yield
    except _Interrupted:
        raise KeyboardInterrupt from None


@dataclass
class BackpropResult:
    """A trained MLP and how it got there."""

    model: MLPClassifier
    params: BackpropParams
    hidden: tuple[int, ...]
    random_state: int
    max_iter: int
    history: list[dict[str, Any]] = field(default_factory=list)  # epoch, train_loss
    wall_seconds: float = 0.0
    activation: str = "relu"  # between the hidden layers (`SKLEARN_ACTIVATIONS`)

    @property
    def epochs(self) -> int:
        """Epochs actually run (sklearn stops early when the loss stalls)."""
        return int(self.model.n_iter_)

    def metrics(self, X: Any, y: Any) -> tuple[float, float]:
        """(accuracy, mean cross-entropy in nats) on ``X, y`` (numpy arrays or CPU tensors)."""
        X, y = np.asarray(X), np.asarray(y)  # a tensor y would turn `== y` into a tensor
        proba = self.model.predict_proba(X)
        acc = float(np.mean(self.model.classes_[proba.argmax(axis=1)] == y))
        return acc, float(log_loss(y, proba, labels=self.model.classes_))

    def sklearn_params(self) -> dict[str, Any]:
        """Everything needed to rebuild and retrain this model with ``MLPClassifier(**...)``."""
        return {
            **self.params.sklearn_kwargs(),
            "activation": sklearn_activation(self.activation),
            "hidden_layer_sizes": list(self.hidden),
            "max_iter": self.max_iter,
            "random_state": self.random_state,
        }


def backprop(
    X: Any,
    y: Any,
    hidden: Sequence[int],
    params: BackpropParams,
    *,
    seed: int = 0,
    max_iter: int = MAX_ITER,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    activation: str = "relu",
) -> BackpropResult:
    """Train ``MLPClassifier`` with `hidden` layer widths, `activation` between them and one
    Table 2 row on ``X, y``.

    >>> from evoprune.baselines.table2 import TABLE2
    >>> X = np.random.default_rng(0).normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
    >>> res = backprop(X, y, [20], TABLE2[("moons", "A", 2)], seed=0, max_iter=20)
    >>> res.metrics(X, y)[0] > 0.9
    True
    """
    hidden = hidden_layers(hidden)
    if not isinstance(params, BackpropParams):
        raise EvopruneError(f"params: expected a BackpropParams (a Table 2 row), got a "
                            f"{type(params).__name__}")  # fmt: skip
    if not isinstance(max_iter, int) or max_iter < 1:
        raise EvopruneError(f"max_iter: expected a positive integer, got {max_iter!r}")
    X_checked, y_checked = check_arrays(X, y)  # finite rows, integer labels: else one line
    X, y = np.asarray(X, dtype=np.float64).reshape(len(X_checked), -1), y_checked.numpy()
    random_state = sklearn_seed(seed)
    model = _EpochHookMLP(
        hidden_layer_sizes=hidden,
        activation=sklearn_activation(activation),
        max_iter=max_iter,
        random_state=random_state,
        **params.sklearn_kwargs(),
    )
    history: list[dict[str, Any]] = []
    start = time.perf_counter()

    def hook(loss: float) -> None:
        row = {
            "epoch": len(history) + 1,
            "train_loss": loss,
            "seconds": time.perf_counter() - start,
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)

    model.epoch_hook = hook
    with warnings.catch_warnings(), _interruptible():
        _expected_warnings_off()
        model.fit(X, y)
    model.epoch_hook = None
    return BackpropResult(
        model=model,
        params=params,
        hidden=hidden,
        random_state=random_state,
        max_iter=max_iter,
        history=history,
        wall_seconds=time.perf_counter() - start,
        activation=activation,
    )


@dataclass
class TuneResult:
    best: BackpropParams
    cv_accuracy: float  # mean 3-fold CV accuracy of `best`
    candidates: list[dict[str, Any]]  # every sampled setting with its mean CV accuracy


def tune_backprop(
    X: Any,
    y: Any,
    hidden: Sequence[int],
    *,
    n_iter: int = 10,
    cv: int = 3,
    seed: int = 0,
    n_jobs: int = 1,
    max_iter: int = MAX_ITER,
    progress: bool = False,
    activation: str = "relu",
) -> TuneResult:
    """``RandomizedSearchCV`` over `SEARCH_SPACE` (the paper's ranges) for one architecture.

    `n_iter` settings are sampled (sklearn's default 10, as in the paper's code); each is fit
    `cv` times. With ``n_jobs=1`` a progress bar counts the fits; with parallel jobs it stays off.
    """
    from sklearn.model_selection import RandomizedSearchCV

    from evoprune.progress import progress_bar

    hidden = hidden_layers(hidden)  # what `backprop` will be given
    for name, value in (("n_iter", n_iter), ("cv", cv)):
        if not isinstance(value, int) or value < (2 if name == "cv" else 1):
            raise EvopruneError(
                f"{name}: expected an integer >= {2 if name == 'cv' else 1}, got {value!r}"
            )
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    bar = progress_bar(total=n_iter * cv, desc="tune-backprop", unit="fit",
                       enabled=progress and n_jobs == 1, leave=False)  # fmt: skip

    def accuracy_and_tick(estimator: Any, X_val: Any, y_val: Any) -> float:
        bar.update(1)  # the scorer runs once per (candidate, fold)
        return float(np.mean(estimator.predict(X_val) == y_val))

    search = RandomizedSearchCV(
        MLPClassifier(
            hidden_layer_sizes=tuple(hidden),
            activation=sklearn_activation(activation),
            max_iter=max_iter,
            random_state=sklearn_seed(seed, "backprop/tune-model"),
        ),
        SEARCH_SPACE,
        n_iter=n_iter,
        cv=cv,
        scoring=accuracy_and_tick,
        n_jobs=n_jobs,
        random_state=sklearn_seed(seed, "backprop/tune-search"),
        refit=False,
    )
    try:
        with warnings.catch_warnings(), _interruptible():
            _expected_warnings_off()
            search.fit(X, y)
    finally:
        bar.close()
    best = _to_params(search.best_params_)
    candidates = [
        {**{k: _plain(v) for k, v in p.items()}, "cv_accuracy": float(s)}
        for p, s in zip(
            search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
        )
    ]
    return TuneResult(best=best, cv_accuracy=float(search.best_score_), candidates=candidates)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _to_params(sampled: dict[str, Any]) -> BackpropParams:
    return BackpropParams(**{k: _plain(v) for k, v in sampled.items()})


def hidden_layers(hidden: Sequence[int]) -> tuple[int, ...]:
    """The hidden widths as ints; at least one layer (sklearn's MLP without one is a linear
    model, not the paper's baseline)."""
    if isinstance(hidden, int | str) or not hasattr(hidden, "__iter__"):
        raise EvopruneError(f"hidden: expected a list of hidden widths like [75], got {hidden!r}")
    widths = tuple(int(h) for h in hidden)
    if not widths or any(h < 1 for h in widths):
        raise EvopruneError(f"arch: backprop needs at least one hidden layer, got {list(widths)}")
    return widths
