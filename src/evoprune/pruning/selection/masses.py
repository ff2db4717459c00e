"""Masses on a module's units: a scalar per Linear output (and per Conv2d channel) that scales it.

Shah & Khan, "Pruning as evolution" (arXiv 2601.10765): each hidden neuron is a population whose
mass ``m_i`` scales its output, ``h = m ⊙ act(W x + b)``. Here the mass multiplies the layer's
output through a forward hook, ``m ⊙ (W x + b)``, which is the same thing for ReLU (and any
positively homogeneous activation) because masses are never negative. Masses are leaf tensors
with ``requires_grad``: one ``loss.backward()`` gives the optimiser its gradients and gives
``∂L/∂m`` (the fitness signal) for free; the optimiser never sees the masses.

>>> from evoprune.nets import MLP
>>> net = MLP([4, 8, 6, 3])
>>> masses = Masses(net)
>>> masses.names, masses.sizes
(['0', '2'], [8, 6])
>>> masses.remove()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from evoprune.errors import EvopruneError

if TYPE_CHECKING:
    from evoprune.nets import MLP

MASSED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


class Masses:
    """Scalar masses on the output units of some of `model`'s Linear / Conv2d layers.

    `layers`: module names (as in ``model.named_modules()``); default every Linear and Conv2d
    except the last one (its outputs are the logits). Masses start at 1 (the network unchanged).
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None):
        modules = dict(model.named_modules())
        candidates = [n for n, m in modules.items() if isinstance(m, MASSED_TYPES)]
        if layers is None:
            layers = candidates[:-1]
        unknown = [n for n in layers if n not in candidates]
        if unknown:
            raise EvopruneError(
                f"masses: {unknown[0]!r} is not a Linear or Conv2d layer of the model; "
                f"expected some of {', '.join(candidates) or '(none)'}"
            )
        if not layers:
            raise EvopruneError("masses: the model has no hidden Linear or Conv2d layer to mass")
        self.names: list[str] = list(layers)
        self.values: list[torch.Tensor] = []  # per layer (n_l,) float32, leaf, requires_grad
        self.alive: list[torch.Tensor] = []  # per layer (n_l,) bool; extinct is for good
        self._handles = []
        for name in self.names:
            module = modules[name]
            n = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            m = torch.ones(n, dtype=torch.float32, requires_grad=True)
            self.values.append(m)
            self.alive.append(torch.ones(n, dtype=torch.bool))
            self._handles.append(module.register_forward_hook(_hook(m)))

    @property
    def sizes(self) -> list[int]:
        return [int(m.numel()) for m in self.values]

    @property
    def n(self) -> int:
        return sum(self.sizes)

    def grads(self) -> list[torch.Tensor]:
        """``∂L/∂m`` per layer from the last backward pass (zeros before the first)."""
        return [m.grad if m.grad is not None else torch.zeros_like(m) for m in self.values]

    def zero_grad(self) -> None:
        for m in self.values:
            m.grad = None

    def set(self, values: Sequence[torch.Tensor]) -> None:
        """Overwrite the masses in place (no autograd history)."""
        with torch.no_grad():
            for m, v in zip(self.values, values, strict=True):
                m.copy_(v)

    def flat(self) -> torch.Tensor:
        """All masses in layer order, ``(n,)``, detached."""
        return torch.cat([m.detach() for m in self.values])

    def flat_alive(self) -> torch.Tensor:
        return torch.cat(self.alive)

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """A flat ``(n,)`` tensor cut into per-layer pieces."""
        return list(torch.split(flat, self.sizes))

    def keep(self, keep: torch.Tensor) -> None:
        """Extinguish every unit whose entry of the flat bool `keep` is False."""
        pieces = self.split(keep.to(torch.bool))
        with torch.no_grad():
            for m, alive, k in zip(self.values, self.alive, pieces, strict=True):
                alive &= k
                m.mul_(alive.to(m.dtype))

    def remove(self) -> None:
        """Detach the hooks: the model computes as if it had no masses."""
        for h in self._handles:
            h.remove()
        self._handles = []


def _hook(
    m: torch.Tensor,
) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
    def scale(
        module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor
    ) -> torch.Tensor:
        if out.dim() == 2:
            return out * m  # (B, n) * (n,)
        return out * m.view(1, -1, *([1] * (out.dim() - 2)))  # (B, C, H, W) * (1, C, 1, 1)

    return scale


def lowest(
    scores: torch.Tensor,
    count: int,
    alive: torch.Tensor,
    sizes: Sequence[int],
    tiebreak: torch.Tensor | None = None,
) -> torch.Tensor:
    """A flat bool keep-mask that removes the `count` lowest-scoring living units (ties by
    `tiebreak`, then index),
    never the last living unit of a layer. Already extinct units count as removed first."""
    n = scores.numel()
    keep = alive.clone()
    todo = count - int((~alive).sum())
    if todo <= 0:
        return keep
    key = torch.where(alive, scores, torch.inf)
    if tiebreak is None:
        order = torch.argsort(key, stable=True)
    else:  # equal scores (masses clipped at the same bound): the lower tiebreak goes first
        first = torch.argsort(tiebreak, stable=True)
        order = first[torch.argsort(key[first], stable=True)]
    layer_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(list(sizes)))
    left = torch.tensor([int(a.sum()) for a in torch.split(alive, list(sizes))])
    for i in order[:n].tolist():
        if todo == 0:
            break
        if not keep[i]:
            continue
        layer = int(layer_of[i])
        if left[layer] <= 1:
            continue
        keep[i] = False
        left[layer] -= 1
        todo -= 1
    return keep


def shrink_mlp(model: nn.Sequential, masses: Masses) -> MLP:
    """A physically smaller copy of a ReLU MLP (`evoprune.nets.MLP`): the extinct units' rows and
    the matching input columns of the next layer are gone, and each surviving mass is folded into
    its unit's weights and bias (``m · relu(z) = relu(m · z)`` for ``m >= 0``).

    The small network computes the masked one's logits up to floating-point rounding.
    """
    from evoprune.nets import MLP

    linears = [m for m in model if isinstance(m, nn.Linear)]
    names = [n for n, m in model.named_children() if isinstance(m, nn.Linear)]
    if not isinstance(model, MLP) or names[:-1] != masses.names:
        raise EvopruneError(
            "shrink: expected an evoprune MLP with masses on every hidden Linear layer"
        )
    keeps = [a.nonzero().flatten() for a in masses.alive]
    widths = [linears[0].in_features, *[int(k.numel()) for k in keeps], linears[-1].out_features]
    small = MLP(widths)
    with torch.no_grad():
        cols = torch.arange(linears[0].in_features)
        for i, (big, new) in enumerate(zip(linears, small.linears, strict=True)):
            rows = keeps[i] if i < len(keeps) else torch.arange(big.out_features)
            scale = masses.values[i].detach()[rows] if i < len(keeps) else torch.ones(len(rows))
            new.weight.copy_(big.weight[rows][:, cols] * scale[:, None])
            new.bias.copy_(big.bias[rows] * scale)
            cols = rows
    return small
