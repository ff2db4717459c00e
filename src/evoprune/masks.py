"""Which weights of a module can be masked, and how a flat bit string maps onto them.

Bit order (stable, documented): the maskable parameters in the order ``module.named_modules()``
yields their layers, and within one parameter its elements in row-major (C) order. For an
``nn.Linear`` with weight ``(out, in)`` bit ``o * in + i`` of that layer's slice keeps the
connection from input ``i`` to output ``o``. By default the ``weight`` of every Linear and Conv
layer is maskable and biases never are (as in the paper).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from evoprune.errors import EvopruneError

MASKABLE_TYPES: tuple[type[nn.Linear], type[nn.Conv1d], type[nn.Conv2d], type[nn.Conv3d]] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
)


@dataclass(frozen=True)
class MaskedParam:
    name: str  # full parameter name, e.g. "0.weight"
    shape: tuple[int, ...]
    start: int  # first bit of this parameter in the flat genome
    size: int


class MaskSpace:
    """The flat genome layout of a module's maskable weights.

    >>> from evoprune.nets import MLP
    >>> space = MaskSpace(MLP([2, 75, 2]))
    >>> space.n_bits
    300
    """

    def __init__(
        self,
        model: nn.Module,
        is_maskable: Callable[[str, nn.Module], bool] | None = None,
    ):
        is_maskable = is_maskable or (lambda _name, m: isinstance(m, MASKABLE_TYPES))
        params: list[MaskedParam] = []
        start = 0
        seen: set[int] = set()
        # a weight by its registered name (a tied weight: the name of its first owner)
        registered = {id(p): name for name, p in model.named_parameters()}
        for module_name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor) or not is_maskable(module_name, module):
                continue
            if id(weight) in seen:  # a weight tied to an earlier layer's: one mask, masked once
                continue
            seen.add(id(weight))
            if id(weight) not in registered:
                raise EvopruneError(
                    f"model: {module_name or 'the model'}.weight is computed, not a parameter "
                    "(torch.nn.utils.prune or a parametrization such as weight_norm): remove it "
                    "first (prune.remove, parametrize.remove_parametrizations), or leave the "
                    "layer out with MaskSpace(model, is_maskable=...)"
                )
            name = registered[id(weight)]
            params.append(MaskedParam(name, tuple(weight.shape), start, weight.numel()))
            start += weight.numel()
        if not params:
            raise EvopruneError(
                f"model: expected a module with maskable weights (a Linear or Conv layer), "
                f"got a {type(model).__name__} without any"
            )
        self.params = params
        self.n_bits = start

    def split(self, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-parameter masks from flat masks: ``(n_bits,)`` -> shapes, ``(P, n_bits)`` -> ``(P, *shape)``."""
        lead = masks.shape[:-1]
        return {
            p.name: masks[..., p.start : p.start + p.size].reshape(*lead, *p.shape)
            for p in self.params
        }

    def join(self, per_param: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of `split` for a single mask: per-parameter masks -> flat ``(n_bits,)``."""
        return torch.cat([per_param[p.name].reshape(-1) for p in self.params])


def count_ones(masks: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Set bits of bool `masks` along `dim`, int64: ``(P, n_bits)`` -> ``(P,)`` per mask, or
    with ``dim=0`` ``(n_bits,)`` per bit. Counted by NumPy, which takes no copy: torch sums a
    bool tensor by converting all of it to int64 first, 8 bytes a bit (290 MB for the 153
    masks a GA ranks on MNIST 784-300-10, 11 GB for 765 over 784-1000-1000-10), and 10x slower."""
    counts = np.count_nonzero(masks.cpu().numpy(), axis=dim)
    return torch.from_numpy(np.asarray(counts, dtype=np.int64)).to(masks.device)


def sparsity(masks: torch.Tensor) -> torch.Tensor:
    """Fraction of zero bits per mask, ``(P, n_bits)`` -> ``(P,)`` (or a scalar for one mask):
    zeros / bits, one float64 division, so correctly rounded (210 zeros of 300 give 0.7, and
    every search and report gives the same number for the same mask)."""
    n = masks.shape[-1]
    return (n - count_ones(masks).double()) / n


def pack(mask: torch.Tensor | np.ndarray) -> bytes:
    """A compact, hashable key for one binary mask (8 bits per byte)."""
    bits = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
    return np.packbits(bits).tobytes()


def pack_rows(masks: torch.Tensor) -> np.ndarray:
    """Packed bytes of every row of ``(P, n_bits)`` masks: ``(P, ceil(n_bits / 8))`` uint8."""
    return np.packbits(masks.cpu().numpy().astype(bool), axis=1)


def unpack(packed: bytes | np.ndarray, n_bits: int) -> torch.Tensor:
    """Inverse of `pack`: a bool tensor ``(n_bits,)``."""
    raw = np.frombuffer(packed, dtype=np.uint8) if isinstance(packed, bytes) else packed
    return torch.from_numpy(np.unpackbits(raw, count=n_bits).astype(bool))
