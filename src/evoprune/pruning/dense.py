"""The trained network that every pruning method starts from, and masked fine-tuning.

A network here is a plain `Net`: the weights ``(out, in)`` and biases of a ReLU MLP, float32
(scored in float64 where it matters). Masks are one bool tensor per layer, biases are never
pruned. Every pruning method gets the same dense checkpoint for a seed: `dense_network` trains
it once (Adam 1e-3, batch 64, early stopping on validation macro-F1) and caches it on disk keyed
by everything that determines it, so a sweep over methods does not retrain it.

The data split is stratified 70/15/15 (train / validation / test), fixed (the same rows for
every seed): the dataset registry's own train and test splits are pooled and re-split (a user's
file is read with split seed 0 whatever the run's seed, so its rows pool in one order).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from evoprune.data.registry import Dataset
from evoprune.errors import EvopruneError
from evoprune.io import write_atomic
from evoprune.objectives import confusion_counts, f1_from_counts
from evoprune.seeding import torch_generator

SPLIT_STATE = 42  # the 70/15/15 split is the same for every run seed


@dataclass(frozen=True)
class Net:
    """A ReLU MLP as tensors: ``weights[l]`` is ``(out, in)``, ``biases[l]`` is ``(out,)``."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]

    @property
    def layers(self) -> list[int]:
        return [int(self.weights[0].shape[1])] + [int(w.shape[0]) for w in self.weights]

    @property
    def n_weights(self) -> int:
        return sum(w.numel() for w in self.weights)

    def masked(self, masks: Sequence[torch.Tensor]) -> Net:
        return Net(tuple(w * m for w, m in zip(self.weights, masks, strict=True)), self.biases)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of `evoprune.nets.MLP` (``0.weight``, ``0.bias``, ``2.weight``, ...)."""
        out: dict[str, torch.Tensor] = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{2 * i}.weight"] = w.detach().float().contiguous().clone()
            out[f"{2 * i}.bias"] = b.detach().float().contiguous().clone()
        return out


def forward(net: Net, X: torch.Tensor) -> torch.Tensor:
    """Logits ``(n, C)`` of `net` on ``X (n, in)``."""
    h = X.to(net.weights[0].dtype)
    for i, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        h = h @ w.T + b
        if i < len(net.weights) - 1:
            h = torch.relu(h)
    return h


def full_masks(net: Net) -> list[torch.Tensor]:
    return [torch.ones_like(w, dtype=torch.bool) for w in net.weights]


def f1_of_predictions(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """Macro-F1 of predictions ``(n,)`` against labels ``(n,)``, as the searches score it
    (`evoprune.objectives.f1_from_counts`: scikit-learn's ``average='macro'``)."""
    tp, pred_n = confusion_counts(pred.unsqueeze(0), y, n_classes)
    return float(f1_from_counts(tp, pred_n, torch.bincount(y, minlength=n_classes))[0])


def scores(net: Net, X: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, float]:
    """Macro-F1 and accuracy of `net` on ``(X, y)``."""
    with torch.no_grad():
        pred = forward(net, X).argmax(1)
    return {
        "f1": f1_of_predictions(pred, y, n_classes),
        "accuracy": float((pred == y).float().mean()),
    }


@dataclass(frozen=True)
class Split:
    """Stratified train / validation / test tensors."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int


def split_70_15_15(ds: Dataset) -> Split:
    """Pool the dataset's rows and split them 70/15/15, stratified, with a fixed state."""
    X = torch.cat([ds.X_train.reshape(len(ds.X_train), -1), ds.X_test.reshape(len(ds.X_test), -1)])
    y = torch.cat([ds.y_train, ds.y_test])
    idx = np.arange(len(y))
    try:
        tr, rest = train_test_split(
            idx, test_size=0.30, random_state=SPLIT_STATE, stratify=y.numpy()
        )
        va, te = train_test_split(
            rest, test_size=0.50, random_state=SPLIT_STATE, stratify=y.numpy()[rest]
        )
    except ValueError:
        classes, counts = np.unique(y.numpy(), return_counts=True)
        fewest = int(classes[counts.argmin()])
        names = ds.config.get("labels") or list(range(ds.n_classes))  # a file's own labels
        raise EvopruneError(
            f"data: cannot split {len(y)} rows 70/15/15 stratified: class {names[fewest]!r} has "
            f"{counts.min()} rows; validation and test need 2 of each class in the 30% held out"
        ) from None
    t = torch.as_tensor
    return Split(X[t(tr)], y[t(tr)], X[t(va)], y[t(va)], X[t(te)], y[t(te)], n_classes=ds.n_classes)


@dataclass(frozen=True)
class DenseConfig:
    """How the dense network is trained: MLP 64-128-64-10, Adam 1e-3, batch 64, early stopping."""

    hidden: tuple[int, ...] = (128, 64)  # MLP 64-128-64-10 on digits
    lr: float = 1e-3  # Adam
    batch_size: int = 64
    max_epochs: int = 300
    patience: int = 30  # early stopping on validation macro-F1: epochs without a new best


def init_net(layers: Sequence[int], seed: int) -> Net:
    """PyTorch's default Linear init (U(+-1/sqrt(fan_in)) for weights and biases), seeded."""
    gen = torch_generator(seed, "dense-init")
    ws, bs = [], []
    for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=True):
        bound = 1.0 / fan_in**0.5
        ws.append((torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound)
        bs.append((torch.rand(fan_out, generator=gen) * 2 - 1) * bound)
    return Net(tuple(ws), tuple(bs))


def train(
    net: Net,
    split: Split,
    masks: Sequence[torch.Tensor] | None,
    epochs: int,
    seed: int,
    purpose: str,
    lr: float = 1e-3,
    batch_size: int = 64,
    patience: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    on_state: Callable[[int, Net], None] | None = None,
) -> tuple[Net, dict[str, Any]]:
    """Adam on the cross-entropy, the masked weights held at zero (``W * M`` in the forward).

    With `patience` the best-validation-F1 state is returned (early stopping); without it, the
    state after exactly `epochs` epochs (`on_state` sees the state after every epoch: the state
    after epoch 30 of a 100-epoch run is the 30-epoch run's, the batches being drawn in order). Returns the net and {epochs, best_val_f1, forward_passes}.
    """
    params = [w.detach().clone().requires_grad_(True) for w in net.weights]
    params += [b.detach().clone().requires_grad_(True) for b in net.biases]
    L = len(net.weights)
    masks = [m.to(params[0].dtype) for m in masks] if masks is not None else None
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch_generator(seed, purpose)
    n = len(split.y_train)

    def current() -> Net:
        ws = [p.detach().clone() for p in params[:L]]
        if masks is not None:
            ws = [w * m for w, m in zip(ws, masks, strict=True)]
        return Net(tuple(ws), tuple(p.detach().clone() for p in params[L:]))

    best, best_f1, since, passes, epoch = current(), -1.0, 0, 0, 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            ws = (
                params[:L]
                if masks is None
                else [w * m for w, m in zip(params[:L], masks, strict=True)]
            )
            logits = forward(Net(tuple(ws), tuple(params[L:])), split.X_train[rows])
            loss = torch.nn.functional.cross_entropy(logits, split.y_train[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            passes += 1
        if patience is None:
            if on_epoch:
                on_epoch(epoch, float("nan"))
            if on_state:
                on_state(epoch, current())
            continue
        state = current()
        f1 = scores(state, split.X_val, split.y_val, split.n_classes)["f1"]
        if on_epoch:
            on_epoch(epoch, f1)
        if f1 > best_f1:
            best, best_f1, since = state, f1, 0
        else:
            since += 1
            if since >= patience:
                break
    if patience is None:
        best = current()
        best_f1 = scores(best, split.X_val, split.y_val, split.n_classes)["f1"]
    return best, {"epochs": epoch, "best_val_f1": best_f1, "forward_passes": passes}


def finetune(
    net: Net, masks: Sequence[torch.Tensor], split: Split, epochs: int, seed: int, lr: float = 1e-3
) -> Net:
    """Masked fine-tuning for exactly `epochs` epochs (Adam, batch 64); pruned weights stay zero."""
    if epochs <= 0:
        return net.masked(masks)
    tuned, _ = train(net, split, masks, epochs, seed, "finetune", lr=lr)
    return tuned


@functools.cache
def _training_code() -> str:
    """A digest of the code a dense network's weights depend on (this module, the seeding and
    the F1 of its early stopping) and of torch's version: a cached network trained by other
    code is trained anew, not taken for this code's (a git revision would not tell: the cache
    is shared between checkouts, and a working tree may be edited)."""
    from evoprune import objectives, seeding

    digest = hashlib.sha256(torch.__version__.encode())
    for module in (__file__, seeding.__file__, objectives.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:16]


def _cache_key(split: Split, config: DenseConfig, layers: list[int], seed: int, data: dict) -> str:
    digest = hashlib.sha256()
    meta = {"config": asdict(config), "layers": layers, "seed": seed, "data": data, "v": 1,
            "code": _training_code()}  # fmt: skip
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for t in (split.X_train, split.y_train, split.X_val, split.y_val):
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def dense_network(
    split: Split,
    config: DenseConfig,
    seed: int,
    cache_dir: str | Path | None = None,
    data_config: dict | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[Net, dict[str, Any]]:
    """The trained dense network for `seed` (from `cache_dir` when it was trained before);
    `on_epoch(epoch, val_f1)` follows a training that runs.

    The cache file is a ``torch.save`` of plain tensors and ints (``weights_only`` loadable),
    written atomically; its name hashes the data, the layer list, the config, the seed and the
    training code (`_training_code`).
    """
    layers = [int(split.X_train.shape[1]), *config.hidden, split.n_classes]
    key = _cache_key(split, config, layers, seed, data_config or {})
    path = Path(cache_dir) / f"dense-{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            net = Net(tuple(blob["weights"]), tuple(blob["biases"]))
            return net, {**blob["info"], "cached": True, "cache_file": str(path)}
        except Exception:  # a damaged cache file is retrained, never trusted
            pass
    start = time.perf_counter()
    net, info = train(
        init_net(layers, seed),
        split,
        None,
        config.max_epochs,
        seed,
        "dense-batches",
        lr=config.lr,
        batch_size=config.batch_size,
        patience=config.patience,
        on_epoch=on_epoch,
    )
    info = {**info, "train_seconds": round(time.perf_counter() - start, 4)}
    if path is not None:
        buf = io.BytesIO()
        torch.save({"weights": list(net.weights), "biases": list(net.biases), "info": info}, buf)
        write_atomic(path, buf.getvalue())
    return net, {**info, "cached": False, "cache_file": str(path) if path else None}


def load_model_file(path: str | Path) -> Net:
    """A user's MLP: ``{"layers": [...], "state_dict": {...}}`` or a bare ``nn.Sequential`` state
    dict of Linear layers (ReLU between them), loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise EvopruneError(f"--model: {what} {str(path)!r}")
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise EvopruneError(
            f"{path}: not a weights-only torch file ({type(exc).__name__})"
        ) from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise EvopruneError(f"{path}: expected a state dict or {{'layers', 'state_dict'}}")
    names = [k[: -len(".weight")] for k in state if k.endswith(".weight")]
    try:
        ws = [state[f"{n}.weight"].detach().float() for n in names]
        bs = [state[f"{n}.bias"].detach().float() for n in names]
    except KeyError as exc:
        raise EvopruneError(
            f"{path}: layer {exc.args[0]!r} missing (every Linear needs a bias)"
        ) from None
    if not ws or any(w.dim() != 2 for w in ws):
        raise EvopruneError(f"{path}: expected Linear layers (2-d weights) in a state dict")
    for a, b in zip(ws[:-1], ws[1:], strict=True):
        if b.shape[1] != a.shape[0]:
            raise EvopruneError(
                f"{path}: layer widths do not chain ({tuple(a.shape)} then {tuple(b.shape)})"
            )
    for name, t in zip([f"{n}.{part}" for n in names for part in ("weight", "bias")],
                       [t for pair in zip(ws, bs, strict=True) for t in pair], strict=True):  # fmt: skip
        if not bool(torch.isfinite(t).all()):
            raise EvopruneError(f"{path}: {name} holds NaN or infinite values")
    net = Net(tuple(ws), tuple(bs))
    layers = blob.get("layers") if isinstance(blob, dict) else None
    if layers is not None and list(layers) != net.layers:
        raise EvopruneError(
            f"{path}: 'layers' {list(layers)} does not match the weights {net.layers}"
        )
    return net
