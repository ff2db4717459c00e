"""Loss and accuracy landscapes around a ticket (arXiv 2508.08877, Fig. 8).

After Li et al., "Visualizing the Loss Landscape of Neural Nets" (NeurIPS 2018,
arXiv 1712.09913): two random directions d1, d2 over the moving parameters (see
`evoprune.analysis.params`), and for every (δ, η) on a G x G grid over [-span, span]^2 the
network ``w^t = w^s + δ·d1 + η·d2`` is scored on the training data::

    directions  gaussian  d ~ N(0, 1) per moving entry (the paper's choice)
                filter    Gaussian, then each filter (a weight row: one unit's incoming
                          weights; a conv output channel; a whole bias vector) rescaled to the
                          norm of the ticket's own filter over the moving entries (Li et al.)
                uniform   d ~ U[0, 1) per entry (what the authors' plotting code draws)

All G² networks are scored in batches, float32 forward, cross-entropy summed in float64,
accuracy counted in integers. Any module: ``torch.func.functional_call`` under ``vmap`` over
chunks of the grid. An MLP stack (Linear, ReLU, ..., Linear) takes a faster path: the first
layer's pre-activation is affine in (δ, η), ``X(W + δD1 + ηD2)ᵀ + b + δd1_b + ηd2_b =
A + δB + ηC``, so its three products are computed once for the whole grid; the later layers are
batched products per chunk of grid points, over sample chunks that stay in cache. (A plain loop
of one forward per grid point beat the vmapped general path on digits-10 B; see
``benchmarks/bench_analyses.py``.)

The centre (δ = η = 0) is the ticket itself and is scored by `evoprune.scores.score_splits`, the
function that wrote the ticket's ``train_loss`` and ``train_accuracy``, so it equals them exactly.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from evoprune.analysis.choices import DIRECTIONS
from evoprune.analysis.params import (
    Selection,
    describe,
    masked_state,
    ticket_dataset,
    training_data,
)
from evoprune.data.registry import Dataset
from evoprune.devices import placed
from evoprune.errors import EvopruneError
from evoprune.evaluate import each_copy
from evoprune.fastmlp import is_mlp_stack
from evoprune.inputs import check_data
from evoprune.io import provenance, write_atomic, write_json
from evoprune.scores import score_splits
from evoprune.seeding import torch_generator
from evoprune.ticket import Ticket

MLP_POINTS = 32  # grid points per batch on the MLP path
CACHE_BYTES = 2 << 20  # one sample chunk's activations stay in cache (as in evoprune.evaluate)


MAX_GRID = 1_001  # points per axis: a million networks scored, hours on a CPU


@dataclass(frozen=True)
class LandscapeConfig:
    grid: int = 41  # G, odd, so that δ = η = 0 is a grid point (the paper's plots: 41 x 41)
    span: float = 1.0  # δ, η in [-span, span]
    directions: str = "gaussian"
    params: str = "surviving"  # which parameters move, see evoprune.analysis.params
    seed: int = 0  # draws the two directions
    memory_mb: float = 256.0  # bound on one chunk's activations

    def __post_init__(self) -> None:
        if not 3 <= self.grid <= MAX_GRID or self.grid % 2 == 0:
            raise EvopruneError(
                f"grid: expected an odd number from 3 to {MAX_GRID} (so the centre is a grid "
                f"point), got {self.grid}"
            )
        if not 0 < self.span < math.inf:
            raise EvopruneError(f"span: expected a positive finite number, got {self.span}")
        if self.directions not in DIRECTIONS:
            raise EvopruneError(
                f"directions: expected one of {', '.join(DIRECTIONS)}, got {self.directions!r}"
            )


@dataclass
class Landscape:
    """``loss[i, j]`` and ``accuracy[i, j]`` at δ = ``delta[i]``, η = ``eta[j]``."""

    delta: np.ndarray  # (G,)
    eta: np.ndarray  # (G,)
    loss: np.ndarray  # (G, G) mean training cross-entropy
    accuracy: np.ndarray  # (G, G) training accuracy
    n_params: int
    config: LandscapeConfig
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def centre(self) -> tuple[float, float]:
        c = len(self.delta) // 2
        return float(self.loss[c, c]), float(self.accuracy[c, c])

    def summary(self) -> dict[str, Any]:
        loss, acc = self.centre
        return {
            "config": asdict(self.config),
            "n_params": self.n_params,
            "centre_loss": loss,
            "centre_accuracy": acc,
            "min_loss": float(np.nanmin(self.loss)),
            "max_accuracy": float(np.nanmax(self.accuracy)),
            "seconds": round(self.seconds, 4),
            **self.info,
        }


def directions(
    state: dict[str, torch.Tensor], sel: Selection, kind: str, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two directions, each a dict of full-shape tensors (zero where nothing moves)."""
    gen = torch_generator(seed, "landscape-directions")
    out: list[dict[str, torch.Tensor]] = []
    for _ in range(2):
        d: dict[str, torch.Tensor] = {}
        for m in sel.moving:
            w = state[m.name]
            if kind == "uniform":
                raw = torch.rand(m.shape, generator=gen, dtype=torch.float64)
            else:
                raw = torch.randn(m.shape, generator=gen, dtype=torch.float64)
            raw = raw * m.where
            if kind == "filter":
                raw = _filter_normalise(raw, w.double() * m.where)
            d[m.name] = raw.to(w.dtype)
        out.append(d)
    return out[0], out[1]


def _filter_normalise(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Li et al.'s normalisation: each filter of `d` gets the norm of the same filter of `w`."""
    if d.ndim <= 1:  # a bias vector is one filter
        norm = d.norm()
        return d * (w.norm() / norm) if norm > 0 else d
    dn = d.reshape(d.shape[0], -1).norm(dim=1)  # (out,)
    wn = w.reshape(w.shape[0], -1).norm(dim=1)
    scale = torch.where(dn > 0, wn / dn.clamp(min=1e-300), torch.zeros_like(dn))
    return d * scale.view(-1, *([1] * (d.ndim - 1)))


def landscape(
    model: nn.Module,
    mask: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    config: LandscapeConfig | None = None,
    progress: bool = False,
    fast: bool | None = None,
) -> Landscape:
    """The loss and accuracy landscape around the masked `model` on (X, y).

    `fast`: the MLP path (default: when `model` is an MLP stack); False forces the general path.

    `model` is the unmasked random network and `mask` a mask over its `MaskSpace`, as in
    `evoprune.search`; any ``nn.Module`` works.

    >>> from evoprune.nets import build_mlp
    >>> X = torch.randn(100, 2); y = (X[:, 0] > 0).long()
    >>> L = landscape(build_mlp([2, 8, 2]), torch.ones(32, dtype=torch.bool), X, y,
    ...               LandscapeConfig(grid=5))
    >>> L.loss.shape
    (5, 5)
    """
    config = config or LandscapeConfig()
    start = time.perf_counter()
    model = placed(model, torch.device("cpu"))  # in eval mode; the caller's left as it was
    X, y, _, _ = check_data(model, X, y)
    mask = torch.as_tensor(mask).to(torch.bool).reshape(-1)
    sel = Selection(model, mask, config.params)
    state = masked_state(model, mask, torch.float32)
    d1, d2 = directions(state, sel, config.directions, config.seed)

    G = config.grid
    axis = np.linspace(-config.span, config.span, G)
    axis[G // 2] = 0.0  # exactly the ticket
    dd, ee = np.meshgrid(axis, axis, indexing="ij")  # (G, G): [i, j] -> (delta[i], eta[j])
    coeffs = torch.from_numpy(np.stack([dd.ravel(), ee.ravel()], axis=1)).float()  # (G*G, 2)

    loss: np.ndarray = np.empty(G * G)  # (G*G,), then (G, G)
    acc: np.ndarray = np.empty(G * G)
    # the MLP path reads every layer's bias; a bias-free stack takes the general one
    biased = all(m.bias is not None for m in model.modules() if isinstance(m, nn.Linear))
    fast = is_mlp_stack(model) and biased and (fast is None or fast)
    step = MLP_POINTS if fast else _grid_step(model, X, len(coeffs), config.memory_mb)
    chunks = range(0, len(coeffs), step)
    if progress:
        from evoprune.progress import progress_bar

        chunks = progress_bar(chunks, desc="landscape", unit="chunk")
    # fast: an MLP stack, an nn.Sequential
    mlp = (
        _FirstLayer(model, state, d1, d2, X) if fast and isinstance(model, nn.Sequential) else None
    )
    for c0 in chunks:
        part = coeffs[c0 : c0 + step]  # (p, 2)
        if mlp is not None:
            l_, a_ = mlp.score(part, y)
        else:
            l_, a_ = _score_grid(model, state, d1, d2, part, X, y, config.memory_mb)
        loss[c0 : c0 + len(part)] = l_
        acc[c0 : c0 + len(part)] = a_
    loss, acc = loss.reshape(G, G), acc.reshape(G, G)

    # The centre, scored as the ticket's own metrics were (same function, same data).
    batched = (float(loss[G // 2, G // 2]), float(acc[G // 2, G // 2]))
    exact = score_splits(model, mask, {"train": (X, y)})
    loss[G // 2, G // 2] = exact["train_loss"]
    acc[G // 2, G // 2] = exact["train_accuracy"]
    info = {
        # the batched forward at the centre, for the record: it differs from the exact centre
        # only by float32 summation order
        "batched_centre_loss": batched[0],
        "batched_centre_accuracy": batched[1],
    }
    return Landscape(
        delta=axis.copy(),
        eta=axis.copy(),
        loss=loss,
        accuracy=acc,
        n_params=sel.n_params,
        config=config,
        seconds=time.perf_counter() - start,
        info=info,
    )


def _grid_step(model: nn.Module, X: torch.Tensor, n: int, memory_mb: float) -> int:
    """Grid points per chunk: the widest activation of all of them on a sample slice fits."""
    widest = max([m.out_features for m in model.modules() if isinstance(m, nn.Linear)] or [64])
    n_params = sum(p.numel() for p in model.parameters())
    per_point = 4 * (n_params + min(len(X), 4096) * widest * 3)
    return max(1, min(n, int(memory_mb * 2**20 // per_point)))


def _score_grid(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    d1: dict[str, torch.Tensor],
    d2: dict[str, torch.Tensor],
    coeffs: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    memory_mb: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy of ``w^s + δ d1 + η d2`` for each row (δ, η) of `coeffs`."""
    p = len(coeffs)
    moved = {}
    for name, d in d1.items():
        shape = (p, *([1] * d.ndim))
        moved[name] = (
            state[name] + coeffs[:, 0].view(shape) * d + coeffs[:, 1].view(shape) * d2[name]
        )  # (p, *shape)
    fixed = {k: v for k, v in state.items() if k not in moved}

    def one(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**fixed, **w}, (x,))

    vmapped, by_one = vmap(one, in_dims=(0, None)), False

    def batched(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        nonlocal by_one
        if not by_one:
            try:
                return vmapped(w, x)
            except RuntimeError as exc:  # a forward vmap cannot batch: each grid point alone,
                by_one = "vmap" in str(exc)  # as `evoprune.evaluate.Evaluator` does
        return each_copy(one, w, x)

    ce = torch.zeros(p, dtype=torch.float64)
    correct = torch.zeros(p, dtype=torch.long)
    rows = max(1, min(len(X), 4096))
    with torch.no_grad():
        for s0 in range(0, len(X), rows):
            logits = batched(moved, X[s0 : s0 + rows])  # (p, s, C)
            yy = y[s0 : s0 + rows]
            log_probs = torch.log_softmax(logits.double(), dim=-1)
            ce += -log_probs.gather(-1, yy.view(1, -1, 1).expand(p, -1, 1)).squeeze(-1).sum(1)
            correct += (logits.argmax(dim=-1) == yy).sum(dim=1)
    n = max(len(X), 1)
    return (ce / n).numpy(), (correct.double() / n).numpy()


def ticket_landscape(
    ticket: Ticket,
    ds: Dataset | None = None,
    config: LandscapeConfig | None = None,
    progress: bool = False,
) -> Landscape:
    """`landscape` of a saved ticket on its own training data (or `ds`)."""
    ds = ticket_dataset(ticket, ds)
    model = ticket.build_model()
    X, y = training_data(model, ds)
    L = landscape(model, ticket.mask, X, y, config, progress)
    L.info.update(ticket=describe(ticket), data=ds.config)
    return L


def write_landscape(
    L: Landscape, out: str | Path, source: dict[str, Any] | None = None
) -> dict[str, Path]:
    """``out/landscape.npz`` (delta, eta, loss, accuracy), ``landscape.csv``, ``landscape.json``
    (settings and summary, and `source`: e.g. the ticket file's path and SHA-256)
    and ``landscape.png`` (two contour panels: loss, accuracy)."""
    from evoprune.analysis.plots import draw_landscape, save_png, ticket_caption

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, delta=L.delta, eta=L.eta, loss=L.loss, accuracy=L.accuracy)
    paths = {"npz": write_atomic(out / "landscape.npz", buf.getvalue())}
    dd, ee = np.meshgrid(L.delta, L.eta, indexing="ij")
    lines = ["delta,eta,loss,accuracy"] + [
        f"{d!r},{e!r},{lo!r},{a!r}"
        for d, e, lo, a in zip(
            dd.ravel().tolist(), ee.ravel().tolist(), L.loss.ravel().tolist(),
            L.accuracy.ravel().tolist(), strict=True,
        )
    ]  # fmt: skip
    paths["csv"] = write_atomic(out / "landscape.csv", "\n".join(lines) + "\n")
    cfg = L.config
    title = (
        f"Landscape around the {ticket_caption(L.info.get('ticket'), L.info.get('data'))}\n"
        f"w + δ·d1 + η·d2 over {L.n_params} {cfg.params} parameters, {cfg.directions} "
        f"directions (seed {cfg.seed}); training data; ★ the ticket"
    )
    paths["png"] = save_png(
        draw_landscape(L.delta, L.eta, L.loss, L.accuracy, title), out / "landscape.png"
    )
    paths["json"] = write_json(
        out / "landscape.json", {**L.summary(), **(source or {}), **provenance()}
    )
    return paths


class _FirstLayer:
    """The MLP path: the first layer's three products once, then batches of grid points."""

    def __init__(
        self,
        model: nn.Sequential,
        state: dict[str, torch.Tensor],
        d1: dict[str, torch.Tensor],
        d2: dict[str, torch.Tensor],
        X: torch.Tensor,
    ) -> None:
        self.model, self.state, self.d1, self.d2 = model, state, d1, d2
        first = f"{next(i for i, m in enumerate(model) if isinstance(m, nn.Linear))}"
        w, b = f"{first}.weight", f"{first}.bias"
        X = X.reshape(len(X), -1)
        with torch.no_grad():
            self.A = X @ state[w].T + state[b]  # (s, h) the ticket's pre-activations
            self.B = self._part(X, d1, w, b)  # (s, h) along d1
            self.C = self._part(X, d2, w, b)
        h = self.A.shape[1]
        widest = max([m.out_features for m in model if isinstance(m, nn.Linear)] + [h])
        self.rows = max(1, min(len(X), CACHE_BYTES // (4 * MLP_POINTS * widest)))

    @staticmethod
    def _part(X: torch.Tensor, d: dict[str, torch.Tensor], w: str, b: str) -> torch.Tensor:
        out = X @ d[w].T if w in d else torch.zeros(len(X), 1)
        return out + d[b] if b in d else out

    def _layer(self, name: str, delta: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        """Parameter `name` at every grid point: ``(p, *shape)`` or the shared ``(*shape)``."""
        base = self.state[name]
        if name not in self.d1:
            return base
        shape = (len(delta), *([1] * base.ndim))
        return base + delta.view(shape) * self.d1[name] + eta.view(shape) * self.d2[name]

    def score(self, coeffs: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        p = len(coeffs)
        delta, eta = coeffs[:, 0], coeffs[:, 1]
        later = [(f"{i}.weight", f"{i}.bias") for i, m in enumerate(self.model)
                 if isinstance(m, nn.Linear)][1:]  # fmt: skip
        params = [(self._layer(w, delta, eta), self._layer(b, delta, eta)) for w, b in later]
        ce = torch.zeros(p, dtype=torch.float64)
        correct = torch.zeros(p, dtype=torch.long)
        d3, e3 = delta.view(p, 1, 1), eta.view(p, 1, 1)
        with torch.no_grad():
            for s0 in range(0, len(self.A), self.rows):
                rows = slice(s0, s0 + self.rows)
                z = self.A[rows] + d3 * self.B[rows] + e3 * self.C[rows]  # (p, s, h)
                for W, b in params:
                    z = torch.relu(z)
                    Wt = W.transpose(-1, -2)  # (p, in, out) or (in, out)
                    z = z @ Wt + (b.unsqueeze(-2) if b.ndim == 2 else b)  # (p, s, out)
                yy = y[rows]
                log_probs = torch.log_softmax(z.double(), dim=-1)
                ce -= log_probs.gather(-1, yy.view(1, -1, 1).expand(p, -1, 1)).squeeze(-1).sum(1)
                correct += (z.argmax(dim=-1) == yy).sum(dim=1)
        n = max(len(y), 1)
        return (ce / n).numpy(), (correct.double() / n).numpy()
