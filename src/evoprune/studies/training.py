"""What the HPO and weight-training studies share: digits split 70/15/15, an MLP with dropout,
Adam with early stopping, macro-F1.

>>> s = digits_splits()
>>> [len(s.y_train), len(s.y_val), len(s.y_test)]
[1257, 270, 270]
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from evoprune.errors import EvopruneError
from evoprune.seeding import derive_seed


def cpu_seconds() -> float:
    """The clock of training budgets: this process's CPU time, so that a budget buys the same
    work on a busy machine as on an idle one (wall-clock budgets gave the population methods a
    fraction of their evaluations at load 15-20). With several torch threads it counts them all."""
    return time.process_time()


@dataclass(frozen=True)
class Splits:
    """Standardised features and labels of a 70/15/15 stratified split."""

    X_train: torch.Tensor  # (n, 64) float32
    y_train: torch.Tensor  # (n,) int64
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        return int(self.y_train.max()) + 1


STUDY_DATASETS = ("digits",)


def digits_splits(split_seed: int = 0) -> Splits:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), split 70/15/15 stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    seed = derive_seed(split_seed, "studies/split") % 2**32
    X_tr, X_rest, y_tr, y_rest = train_test_split(
        X, y, train_size=0.7, stratify=y, random_state=seed
    )
    X_va, X_te, y_va, y_te = train_test_split(
        X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed
    )
    # standardised with the training split's statistics; the std is floored at one grey level
    # so that pixels almost always blank in training do not blow up on the test images
    mean, std = X_tr.mean(0), np.maximum(X_tr.std(0), 1.0)
    f = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    g = lambda a: torch.tensor(a, dtype=torch.int64)  # noqa: E731
    return Splits(f(X_tr), g(y_tr), f(X_va), g(y_va), f(X_te), g(y_te))


def load_splits(dataset: str, split_seed: int = 0) -> Splits:
    if dataset != "digits":
        raise EvopruneError(
            f"dataset: expected one of {', '.join(STUDY_DATASETS)}, got {dataset!r}"
        )
    return digits_splits(split_seed)


def make_mlp(
    n_in: int, widths: Sequence[int], n_out: int, dropouts: Sequence[float] | None = None,
    seed: int = 0, dtype: torch.dtype = torch.float32,
) -> nn.Sequential:  # fmt: skip
    """Linear-ReLU(-Dropout) blocks then a Linear head, PyTorch's default init from `seed`."""
    dropouts = list(dropouts) if dropouts is not None else [0.0] * len(widths)
    layers: list[nn.Module] = []
    sizes = [n_in, *widths]
    gen = torch.Generator().manual_seed(derive_seed(seed, "studies/init"))
    with torch.random.fork_rng(devices=[]):  # nn.Linear draws from the global RNG; isolate it
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
        for a, b, p in zip(sizes[:-1], sizes[1:], dropouts, strict=True):
            layers += [nn.Linear(a, b, dtype=dtype), nn.ReLU()]
            if p > 0:
                layers.append(nn.Dropout(p))
        layers.append(nn.Linear(sizes[-1], n_out, dtype=dtype))
    return nn.Sequential(*layers)


def model_macro_f1(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(X).argmax(1)
    return float(f1_score(y.numpy(), pred.numpy(), average="macro"))


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(X).argmax(1) == y).float().mean())


def val_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(X), y))


@dataclass(frozen=True)
class TrainResult:
    val_f1: float  # of the restored best epoch
    epochs: int
    seconds: float
    history: list[dict[str, float]]  # per epoch: epoch, seconds (training time), val_loss, val_f1


def train_adam(
    model: nn.Module, s: Splits, lr: float = 1e-3, weight_decay: float = 0.0,
    batch_size: int = 64, max_epochs: int = 200, patience: int = 20, seed: int = 0,
    seconds: float | None = None, on_epoch: Callable[[int, float], None] | None = None,
    steps: int | None = None,
) -> TrainResult:  # fmt: skip
    """Adam on the training split with early stopping on the validation loss: stop after
    `patience` epochs without improvement (or at the end of the epoch that reaches `seconds` of
    training or `steps` mini-batch steps), restore the best epoch. Mini-batch order and dropout
    masks come from generators derived from `seed`."""
    order_gen = torch.Generator().manual_seed(derive_seed(seed, "studies/batches"))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = len(s.y_train)
    best, best_state, best_epoch, best_f1 = np.inf, copy.deepcopy(model.state_dict()), 0, 0.0
    history: list[dict[str, float]] = []
    trained = 0.0
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global RNG; isolate it
        torch.manual_seed(derive_seed(seed, "studies/dropout"))
        epoch = 0
        for epoch in range(1, max_epochs + 1):
            start = cpu_seconds()
            model.train()
            perm = torch.randperm(n, generator=order_gen)
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                opt.zero_grad(set_to_none=True)
                loss_fn(model(s.X_train[idx]), s.y_train[idx]).backward()
                opt.step()
            trained += cpu_seconds() - start
            loss = val_loss(model, s.X_val, s.y_val)
            f1 = model_macro_f1(model, s.X_val, s.y_val)
            history.append({"epoch": epoch, "seconds": trained, "val_loss": loss, "val_f1": f1})
            if on_epoch is not None:
                on_epoch(epoch, trained)
            if loss < best:
                best, best_epoch, best_f1 = loss, epoch, f1
                best_state = copy.deepcopy(model.state_dict())
            if not np.isfinite(loss) or epoch - best_epoch >= patience:
                break
            if seconds is not None and trained >= seconds:
                break
            if steps is not None and epoch * math.ceil(n / batch_size) >= steps:
                break
    model.load_state_dict(best_state)
    return TrainResult(val_f1=best_f1, epochs=epoch, seconds=trained, history=history)
