"""Checks on the data and network a user hands the Python API, before any search starts.

Without them a label out of range, a NaN or a feature count that does not fit the network
surfaces as an index or shape error deep inside torch, often after the whole GA has run, or
not at all (one NaN in X gives a search on NaN fitness and a useless ticket).

>>> import torch
>>> from evoprune.nets import build_mlp
>>> X, y, _, _ = check_data(build_mlp([2, 8, 2]), [[0.0, 1.0], [1.0, 0.0]], [0, 1])
>>> X.dtype, y.tolist()
(torch.float32, [0, 1])
>>> check_data(build_mlp([2, 8, 2]), [[0.0, 1.0]], [2])
Traceback (most recent call last):
...
evoprune.errors.EvopruneError: y: expected class labels 0..1 (the network has 2 outputs), got 2..2
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from evoprune.errors import EvopruneError


def check_data(
    model: nn.Module, X: Any, y: Any, X_test: Any = None, y_test: Any = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(X, y, X_test, y_test)`` as the searches take them (float32 features, int64 labels,
    no autograd), or one `EvopruneError` naming what does not fit."""
    if not isinstance(model, nn.Module):
        raise EvopruneError(f"model: expected a torch nn.Module, got {type(model).__name__}")
    both_or_neither(X_test, y_test)
    X, y = _features("X", X), _labels("y", y)
    _same_length("X", "y", X, y)
    n_out = _outputs(model, X, "X")
    _in_range("y", y, n_out)
    if X_test is not None:
        X_test, y_test = _features("X_test", X_test), _labels("y_test", y_test)
        _same_length("X_test", "y_test", X_test, y_test)
        if X_test.shape[1:] != X.shape[1:]:
            raise EvopruneError(
                f"X_test: expected rows of shape {tuple(X.shape[1:])} like X, "
                f"got {tuple(X_test.shape[1:])}"
            )
        _in_range("y_test", y_test, n_out)
    return X, y, X_test, y_test


def both_or_neither(
    X: torch.Tensor | None, y: torch.Tensor | None, names: str = "X_test and y_test"
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(X, y)`` when both are given, None when neither is; one alone is an `EvopruneError`
    (`names` says which pair, e.g. ``"X_val and y_val"``)."""
    if X is not None and y is not None:
        return X, y
    if X is None and y is None:
        return None
    raise EvopruneError(f"{names}: give both or neither")


def _array(value: Any) -> Any:
    """A pandas DataFrame or Series as its numpy values (``torch.as_tensor`` indexes a frame by
    column labels, a KeyError)."""
    if hasattr(value, "to_numpy") and not torch.is_tensor(value):
        return value.to_numpy(copy=True)  # a copy: pandas' own arrays may be read-only
    return value


def check_arrays(X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)`` as float32 finite rows and int64 class labels of the same length, without a
    network to check them against (a trained baseline's own), or one `EvopruneError`."""
    X, y = _features("X", X), _labels("y", y)
    _same_length("X", "y", X, y)
    if int(y.min()) < 0:
        raise EvopruneError(f"y: expected class labels 0, 1, ..., got {int(y.min())}")
    return X, y


def check_features(model: nn.Module, X: Any, name: str = "X") -> torch.Tensor:
    """`X` as float32 rows the network takes (finite, of its input shape), or one
    `EvopruneError` naming what does not fit."""
    X = _features(name, X)
    _outputs(model, X, name)
    return X


def _features(name: str, X: Any) -> torch.Tensor:
    try:
        X = torch.as_tensor(_array(X)).detach()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise EvopruneError(f"{name}: expected a tensor or array of features ({exc})") from None
    if X.dim() < 2 or len(X) == 0:
        raise EvopruneError(f"{name}: expected (samples, features...) with samples, got {tuple(X.shape)}")  # fmt: skip
    if X.is_complex() or X.dtype == torch.bool:
        raise EvopruneError(f"{name}: expected real-valued features, got {X.dtype}")
    finite = bool(torch.isfinite(X).all())
    X = X.to(torch.float32)
    if not torch.isfinite(X).all():
        bad = int((~torch.isfinite(X)).any(dim=tuple(range(1, X.dim()))).sum())
        if finite:  # float64 values that float32 rounds to inf
            raise EvopruneError(
                f"{name}: {bad} rows hold values beyond float32's range (about 3.4e38), which "
                "evoprune computes in; rescale them"
            )
        raise EvopruneError(f"{name}: {bad} rows hold NaN or infinite values")
    return X


def _labels(name: str, y: Any) -> torch.Tensor:
    try:
        y = torch.as_tensor(_array(y)).detach()
    except (TypeError, ValueError, RuntimeError) as exc:
        if _is_text(y):
            raise EvopruneError(
                f"{name}: expected integer class labels 0, 1, ..., got text (number the "
                f"classes: np.unique({name}, return_inverse=True)[1])"
            ) from None
        raise EvopruneError(f"{name}: expected a tensor or array of class labels ({exc})") from None
    if y.dim() != 1:
        raise EvopruneError(
            f"{name}: expected one class label per sample, shape (samples,), got {tuple(y.shape)}"
            + (
                " (a column: pass y.ravel())"
                if y.dim() == 2 and y.shape[1] == 1
                else " (one-hot? pass y.argmax(1))"
                if y.dim() == 2
                else ""
            )  # fmt: skip
        )
    if y.is_floating_point():
        if not torch.isfinite(y).all() or not torch.equal(y, y.round()):
            odd = y[~torch.isfinite(y) | (y != y.round())][0].item()
            raise EvopruneError(f"{name}: expected integer class labels, got {odd}")
    elif y.is_complex():
        raise EvopruneError(f"{name}: expected integer class labels, got {y.dtype}")
    return y.to(torch.long)


def _is_text(values: Any) -> bool:
    """Whether `values` (a list, array or Series torch could not take) hold strings."""
    try:
        array = np.asarray(_array(values))
    except (TypeError, ValueError):  # a ragged list
        return False
    return array.dtype.kind in "US" or any(isinstance(v, str) for v in array.ravel())


def _same_length(xn: str, yn: str, X: torch.Tensor, y: torch.Tensor) -> None:
    if len(X) != len(y):
        raise EvopruneError(f"{xn} has {len(X)} samples but {yn} has {len(y)}")


def _outputs(model: nn.Module, X: torch.Tensor, name: str) -> int:
    """The number of logits `model` gives for rows of X (run on two rows, in eval mode)."""
    wide = next((p.dtype for p in model.parameters() if p.is_floating_point() and p.dtype != torch.float32), None)  # fmt: skip
    if wide is not None:
        raise EvopruneError(
            f"model: its parameters are {str(wide).removeprefix('torch.')}; evoprune evaluates "
            "in float32 (pass model.float())"
        )
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            out = model(X[:2].to(device))
    except Exception as exc:  # noqa: BLE001 - whatever the module raises, say which input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvopruneError(
            f"{name}: the model does not take rows of shape {tuple(X.shape[1:])} ({first})"
        ) from None
    finally:
        model.train(training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or len(out) != min(2, len(X)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EvopruneError(f"model: expected logits of shape (samples, classes), got {got}")
    return out.shape[1]


def _in_range(name: str, y: torch.Tensor, n_out: int) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_out:
        raise EvopruneError(
            f"{name}: expected class labels 0..{n_out - 1} (the network has {n_out} outputs), "
            f"got {lo}..{hi}"
        )


def problem_digest(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict[str, str]:
    """Digests of the data and the network's weights: the checkpoint fingerprint of a search
    started from Python, so that resuming on other data or another network is refused."""
    data = hashlib.sha256()
    for t in (X, y):
        data.update(str((t.dtype, tuple(t.shape))).encode())
        data.update(t.detach().cpu().contiguous().numpy().tobytes())
    net = hashlib.sha256()
    for name, t in model.state_dict().items():
        net.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        net.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"data": data.hexdigest()[:16], "network": net.hexdigest()[:16]}
