"""Edge-popup: a strong lottery ticket by training per-weight scores, never the weights.

Ramanujan, Wortsman, Kembhavi, Farhadi, Rastegari 2020, "What's hidden in a randomly weighted
neural network?", CVPR 2020, arXiv 1911.13299 (reference code: allenai/hidden-networks).
Our own implementation, for the paper's MLPs and for any module with Linear or Conv layers:

- every maskable weight ``w`` (see `evoprune.masks`) gets a score ``s``, initialised like the
  original's ``kaiming_uniform_(a=sqrt(5))``, i.e. U[-1/sqrt(fan_in), 1/sqrt(fan_in)];
- the forward pass uses ``w * h(|s|)`` where ``h`` keeps, per layer, the weights with the
  largest ``|s|`` (Sec. 3, "edge-popup");
- the backward pass treats ``h`` as the identity (straight-through estimator, the original's
  ``GetSubnet.backward``), so ``dL/ds = dL/d(w*h) * w * sign(s)``;
- weights and biases stay frozen at their random values; only the scores are trained, with SGD,
  momentum, weight decay on the scores, and a per-epoch cosine learning rate.

**Sparsity convention.** ``sparsity`` is the fraction of weights *removed* in every layer (the
``prune_rate`` of Ramanujan et al.'s code, allenai/hidden-networks, is called a prune rate
but used as the kept fraction). A layer of ``n`` weights removes ``floor(sparsity * n)`` of them
(the original's ``int(...)`` truncation; we add 1e-9 before flooring so that e.g.
``0.29 * 100`` removes 29, not 28) and keeps the other ``n - floor(sparsity * n)`` (at least 1).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from evoprune.devices import placed, torch_threads
from evoprune.errors import EvopruneError
from evoprune.fastmlp import stack_activation
from evoprune.inputs import check_data
from evoprune.masks import MaskSpace, sparsity
from evoprune.nets import NONLINEARITIES
from evoprune.seeding import torch_generator
from evoprune.ticket import Ticket, layout_fields

# Guards the floor in `kept_count` against float error (0.29 * 100 = 28.999999999999996).
_FLOOR_EPS = 1e-9


@dataclass(frozen=True)
class EdgePopupConfig:
    """Edge-popup hyperparameters. Defaults: our specification of the training setup of the paper's
    edge-popup runs (the authors keep their configs in julianscher/SLTN-GA,
    ``hidden-networks/configs/smallscale/fc/``; we did not check them value by value)."""

    sparsity: float = 0.5  # fraction of weights removed per layer; "EP (50%)"
    epochs: int = 100
    lr: float = 0.1  # initial learning rate, cosine-annealed to 0 over `epochs` (per epoch)
    momentum: float = 0.9
    weight_decay: float = 1e-4  # on the scores (the only trained tensors)
    nesterov: bool = False  # the original's default
    batch_size: int = 128
    threads: int = 1  # torch threads while training; 1 is fastest for these tiny MLPs

    def __post_init__(self) -> None:
        if not (isinstance(self.sparsity, int | float) and 0.0 <= self.sparsity < 1.0):
            raise EvopruneError(
                f"sparsity: expected the fraction of weights removed, in [0, 1), got {self.sparsity!r}"
            )
        for name in ("epochs", "batch_size", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EvopruneError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise EvopruneError(f"{name}: expected a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise EvopruneError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if self.momentum > 1:  # above 1 SGD's velocity grows without bound
            raise EvopruneError(f"momentum: expected a number in [0, 1], got {self.momentum!r}")
        if self.nesterov and self.momentum == 0:
            raise EvopruneError(
                "nesterov: needs a momentum above 0 (Nesterov's look-ahead is of it)"
            )

    @property
    def keep(self) -> float:
        """The kept fraction k = 1 - sparsity (what the scaled Kaiming inits use)."""
        return 1.0 - self.sparsity

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kept_count(n: int, sparsity: float) -> int:
    """How many of a layer's `n` weights edge-popup keeps: ``n - floor(sparsity * n)``, and at
    least one (only a sparsity within 1e-9 / n of 1 would otherwise empty a layer)."""
    return max(1, n - math.floor(sparsity * n + _FLOOR_EPS))


class _TopK(torch.autograd.Function):
    """Forward: 1 for the `kept` largest entries of `scores`, else 0. Backward: identity."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor, kept: int) -> torch.Tensor:
        return top_k_mask(scores, kept).to(scores.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None  # straight-through: the mask's gradient goes to the scores unchanged


def top_k_mask(scores: torch.Tensor, kept: int) -> torch.Tensor:
    """Bool mask of `scores`' shape with exactly `kept` True entries: the largest ones.

    Ties (measure zero for continuous scores) break by flat index, via a stable sort.
    """
    flat = scores.detach().reshape(-1)
    order = torch.argsort(flat, stable=True)  # ascending
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[flat.numel() - kept :]] = True
    return mask.view(scores.shape)


def init_scores(model: nn.Module, space: MaskSpace, seed: int) -> dict[str, torch.Tensor]:
    """One score tensor per maskable weight, drawn like ``kaiming_uniform_(a=sqrt(5))``.

    That init has bound ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + 5))``, which is
    ``1 / sqrt(fan_in)``; we draw it from our own generator so a run depends only on its seed.
    """
    gen = torch_generator(seed, "edge-popup/scores")
    weights = dict(model.named_parameters())
    scores = {}
    for p in space.params:
        fan_in = weights[p.name][0].numel()  # in_features (x kernel size for convolutions)
        bound = 1.0 / math.sqrt(fan_in)
        scores[p.name] = torch.empty(p.shape).uniform_(-bound, bound, generator=gen)
    return scores


@dataclass
class EdgePopupResult:
    """What one edge-popup run found."""

    mask: torch.Tensor  # (n_bits,) bool, bit order of `MaskSpace`
    scores: dict[str, torch.Tensor]  # final scores, per maskable parameter
    space: MaskSpace
    config: EdgePopupConfig
    seed: int
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    wall_seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False)  # the frozen network it masks

    @property
    def sparsity(self) -> float:
        """Fraction of zero bits over all maskable weights (per-layer flooring can shift it
        slightly from `config.sparsity`)."""
        return float(sparsity(self.mask))

    def ticket(
        self, dataset: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None
    ) -> Ticket:
        """The mask as a `Ticket`, to save or rebuild like a GA ticket (``masked_model()`` for a
        network from `build_mlp` / `build_network`; ``apply(model)`` for the user's own).

        >>> from evoprune.nets import build_mlp
        >>> res = edge_popup(build_mlp([2, 8, 2]), torch.randn(32, 2), torch.randint(0, 2, (32,)), epochs=1)
        >>> res.ticket().masked_model()[0].weight.eq(0).float().mean().item()
        0.5
        """
        if self.model is None:
            raise EvopruneError("ticket: this result does not hold its network (model=None)")
        return Ticket(
            mask=self.mask,
            **layout_fields(self.model, None),
            dataset=dict(dataset or {}),
            metrics=dict(metrics if metrics is not None else {"sparsity": self.sparsity}),
            method="edge-popup",
        )


def _linear_stack(model: nn.Module) -> tuple[list[str], nn.Module] | None:
    """The Linear layers' names in an ``nn.Sequential`` of Linear layers with one nonlinearity
    between them (`evoprune.fastmlp.stack_activation`: its own forward, no hooks), and that
    nonlinearity; None for any other module, which the general path calls."""
    activation = stack_activation(model)
    if activation is None:
        return None
    names = [name for name, m in model.named_children() if isinstance(m, nn.Linear)]
    return names, NONLINEARITIES[activation]()


class ScoredNetwork:
    """A frozen module plus trainable scores; calling it runs the top-k masked forward."""

    def __init__(self, model: nn.Module, sparsity: float, seed: int, fast: bool = True):
        self.model = model
        self.space = MaskSpace(model)
        # Detached copies: nothing we do can write to (or train) the module's own parameters.
        self.frozen = {k: v.detach() for k, v in model.named_parameters()}
        self.buffers = {k: v.detach() for k, v in model.named_buffers()}
        self.kept = {p.name: kept_count(p.size, sparsity) for p in self.space.params}
        self.scores = {
            k: v.requires_grad_(True) for k, v in init_scores(model, self.space, seed).items()
        }
        stack = _linear_stack(model) if fast else None
        self.linears: list[str] | None = stack[0] if stack is not None else None
        self._nonlinear: nn.Module | None = stack[1] if stack is not None else None

    def masked_weights(self) -> dict[str, torch.Tensor]:
        return {
            name: self.frozen[name] * _TopK.apply(score.abs(), self.kept[name])
            for name, score in self.scores.items()
        }

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.masked_weights()
        if self.linears is not None:
            # Fast path for MLP stacks (about 20% faster per step than functional_call; tests
            # check that both paths agree).
            assert self._nonlinear is not None  # set with `linears`
            h = x
            for i, name in enumerate(self.linears):
                h = F.linear(h, weights[f"{name}.weight"], self.frozen.get(f"{name}.bias"))
                if i < len(self.linears) - 1:
                    h = self._nonlinear(h)
            return h
        params = {**self.frozen, **weights}
        return functional_call(self.model, (params, self.buffers), (x,))

    def mask(self) -> torch.Tensor:
        """The current flat binary mask ``(n_bits,)``."""
        return self.space.join(
            {name: top_k_mask(s.abs(), self.kept[name]) for name, s in self.scores.items()}
        )


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """The original's schedule (no warm-up): ``0.5 * (1 + cos(pi * epoch / epochs)) * lr``."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)) * base_lr


def train_edge_popup(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    config: EdgePopupConfig,
    seed: int = 0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    fast: bool = True,
) -> EdgePopupResult:
    """Train edge-popup scores over the frozen `model` on ``X (n, ...)``, ``y (n,)``.

    `on_epoch` is called with each epoch's history row (progress bars hook in here); `fast`
    False forces the general ``functional_call`` forward even for MLP stacks.
    """
    # an eval-mode copy unless it is one: the caller's BatchNorm statistics stay as they were,
    # and no dropout draws from torch's global generator
    model = placed(model, torch.device("cpu"))
    # labels outside the network's outputs would fail as an IndexError deep inside torch, and
    # fractional ones would be truncated to classes
    X, y, _, _ = check_data(model, X, y)
    start = time.perf_counter()
    net = ScoredNetwork(model, config.sparsity, seed, fast=fast)
    optimizer = torch.optim.SGD(
        list(net.scores.values()),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    shuffle = torch_generator(seed, "edge-popup/shuffle")
    n = X.shape[0]
    history: list[dict[str, Any]] = []
    with torch_threads(config.threads):
        for epoch in range(config.epochs):
            lr = cosine_lr(config.lr, epoch, config.epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            order = torch.randperm(n, generator=shuffle)
            loss_sum, correct = 0.0, 0
            for b0 in range(0, n, config.batch_size):
                idx = order[b0 : b0 + config.batch_size]
                xb, yb = X[idx], y[idx]
                logits = net(xb)  # (b, C)
                loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.detach().argmax(dim=1) == yb).sum())
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": loss_sum / n,
                "train_accuracy": correct / n,
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
    scores = {k: v.detach().clone() for k, v in net.scores.items()}
    return EdgePopupResult(
        mask=net.mask(),
        scores=scores,
        space=net.space,
        config=config,
        seed=seed,
        history=history,
        wall_seconds=time.perf_counter() - start,
        model=model,
    )


def edge_popup(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    sparsity: float = 0.5,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> EdgePopupResult:
    """Find a strong lottery ticket in the frozen random `model` with edge-popup.

    Works for any module with Linear/Conv layers; the module's parameters are not changed.

    >>> from evoprune.nets import build_mlp
    >>> net = build_mlp([2, 20, 2], seed=0)
    >>> X, y = torch.randn(256, 2), torch.randint(0, 2, (256,))
    >>> res = edge_popup(net, X, y, sparsity=0.5, epochs=2, seed=0)
    >>> res.mask.shape, round(res.sparsity, 2)
    (torch.Size([80]), 0.5)
    """
    config = EdgePopupConfig(
        sparsity=sparsity,
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_size=batch_size,
    )
    with epoch_bar(config.epochs, "edge-popup", progress) as on_epoch:
        return train_edge_popup(model, X, y, config, seed, on_epoch)


@contextlib.contextmanager
def epoch_bar(
    total: int, desc: str, progress: bool, key: str = "train_loss"
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A progress bar over epochs (`evoprune.progress`) and its per-epoch callback."""
    from evoprune.progress import progress_bar

    bar = progress_bar(total=total, desc=desc, unit="epoch", enabled=progress, leave=False)

    def tick(row: dict[str, Any]) -> None:
        bar.update(1)
        if key in row:
            bar.set_postfix({key: f"{row[key]:.4f}"}, refresh=False)

    try:
        yield tick
    finally:
        bar.close()
