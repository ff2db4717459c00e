"""Exact batched forward of a population of masked MLPs (``nn.Sequential`` of Linear and ReLU).

Activations are kept *feature-major*, ``(p, features, s)``: the first layer is then one GEMM
for the whole population, ``(p*H, in) @ (in, s)``, whose output is already the layout the next
batched product wants, so nothing is transposed or copied between layers. Callers pass samples
in chunks small enough that one activation tensor stays in the CPU cache; memory traffic, not
arithmetic, is what bounds these thin layers.

A first layer with few inputs (``in <= TABLE_MAX_IN``, e.g. the 2-D toy datasets) is
*tabulated*: under any mask, hidden unit ``h`` sees one of the ``2**in`` subsets of its inputs,
so its activation on a sample is one of ``2**in`` values that do not depend on the mask. They
are computed once per sample chunk, ``T (2**in * H, s)``, and a mask only *selects* among them.
With one hidden layer the logits are then linear in the table, so the whole population is a
single dense GEMM ``(p*C, K) @ (K, s)``; with more layers the first activation is a row gather.
Both are exact: the same sums in float32, only in a different order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from evoprune.masks import MaskSpace

TABLE_MAX_IN = 3  # up to 2**3 = 8 input subsets per unit; beyond that direct GEMM is cheaper


def is_mlp_stack(model: nn.Module) -> bool:
    """True for ``Linear (ReLU Linear)*``, strictly alternating, so the fast path mirrors it."""
    if not isinstance(model, nn.Sequential):
        return False
    kinds = [type(m) for m in model]
    if not kinds or kinds[-1] is not nn.Linear:
        return False
    return all(k is (nn.Linear if i % 2 == 0 else nn.ReLU) for i, k in enumerate(kinds))


@dataclass(frozen=True)
class _Layer:
    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor  # (out,); zeros when the layer has none (adding 0.0 is exact)
    bits: slice | None  # this weight's bits in the genome; None if it is not maskable


@dataclass(frozen=True)
class Population:
    """Per-chunk state of `p` masks, built by `FastMLP.prepare`."""

    p: int
    weights: list[torch.Tensor]  # per layer (p, out, in); layer 0 unused when tabulated
    out_bias: torch.Tensor  # (C,) output bias, or (1,) with margins
    first_bias: torch.Tensor  # (p*H, 1) first-layer bias of every unit of every mask
    select: torch.Tensor | None  # (p*H,) rows of the table each unit reads (deep tabulated nets)
    head: torch.Tensor | None  # (p*C, K) one-hidden-layer tabulated nets: logits = head @ T
    head_bias: torch.Tensor | None  # (p*C, 1) output bias plus folded constant units


class FastMLP:
    """Logits of many masked copies of one MLP, sample chunk by sample chunk.

    >>> from evoprune.nets import build_mlp
    >>> net = build_mlp([2, 20, 2], seed=0)
    >>> fm = FastMLP(net, MaskSpace(net))
    >>> pop = fm.prepare(torch.ones(3, MaskSpace(net).n_bits, dtype=torch.bool))
    >>> fm.logits(pop, torch.randn(2, 16)).shape  # x is feature-major (in, s)
    torch.Size([3, 2, 16])
    """

    def __init__(self, model: nn.Sequential, space: MaskSpace):
        if not is_mlp_stack(model):
            raise ValueError("FastMLP needs an nn.Sequential of Linear and ReLU layers")
        bits = {p.name: slice(p.start, p.start + p.size) for p in space.params}
        self.layers: list[_Layer] = []
        for idx, module in enumerate(model):
            if isinstance(module, nn.Linear):
                w = module.weight.detach().float()
                b = module.bias.detach().float() if module.bias is not None else w.new_zeros(len(w))
                self.layers.append(_Layer(w, b, bits.get(f"{idx}.weight")))
        first = self.layers[0]
        self.n_in = first.weight.shape[1]
        self.n_hidden = first.weight.shape[0]
        self.n_classes = self.layers[-1].weight.shape[0]
        # Tabulate only a masked first layer with few inputs that is followed by hidden layers.
        self.tabulated = (
            first.bits is not None and self.n_in <= TABLE_MAX_IN and len(self.layers) > 1
        )
        if self.tabulated:
            n_sub = 2**self.n_in
            # subset k keeps input i iff bit i of k is set: (n_sub, in)
            subsets = (torch.arange(n_sub)[:, None] >> torch.arange(self.n_in)) & 1
            self._subset_code = 2 ** torch.arange(self.n_in)  # (in,) mask bits -> subset index
            # Row k*H + h of the table is unit h restricted to subset k.
            self._table_w = (subsets[:, None, :].float() * first.weight).reshape(-1, self.n_in)
            self._table_b = first.bias.repeat(n_sub)[:, None]  # (n_sub*H, 1)

    @property
    def one_hidden_table(self) -> bool:
        return self.tabulated and len(self.layers) == 2

    def prepare(self, masks: torch.Tensor, margin: bool = False) -> Population:
        """Masked weights of a population chunk ``(p, n_bits)`` bool.

        With `margin` and two classes the net gets one output, logit 1 minus logit 0: half the
        work of the last layer, and all that accuracy needs (class 1 iff the margin is > 0).
        """
        p = masks.shape[0]
        weights = []
        for layer in self.layers:
            if layer.bits is None:
                weights.append(layer.weight.expand(p, *layer.weight.shape))
            else:
                m = masks[:, layer.bits].view(p, *layer.weight.shape)
                weights.append(layer.weight * m)  # (p, out, in)
        out_bias = self.layers[-1].bias
        if margin and self.n_classes == 2:
            weights[-1] = weights[-1][:, 1:2] - weights[-1][:, 0:1]  # (p, 1, H)
            out_bias = out_bias[1:2] - out_bias[0:1]
        select = head = head_bias = None
        if self.tabulated:
            H, n_sub = self.n_hidden, 2**self.n_in
            m1 = masks[:, self.layers[0].bits].view(p, H, self.n_in).long()
            code = (m1 * self._subset_code).sum(-1)  # (p, H) which input subset unit h keeps
            rows = code * H + torch.arange(H)  # (p, H)
            if self.one_hidden_table:
                out = weights[1]  # (p, C, H)
                C = out.shape[1]
                # head[p, c, k, h] = out[p, c, h] where k is unit h's subset, else 0.
                head = out.new_zeros(p, C, n_sub, H)
                head.scatter_(2, code.view(p, 1, 1, H).expand(p, C, 1, H), out.unsqueeze(2))
                # Units that keep no input are constant, relu(b): fold them into the bias.
                const = head[:, :, 0, :] @ self.layers[0].bias.relu()  # (p, C)
                head_bias = (out_bias + const).reshape(p * C, 1)
                head = head[:, :, 1:, :].reshape(p * C, (n_sub - 1) * H)
            else:
                select = rows.reshape(-1)
        first_bias = (out_bias if len(self.layers) == 1 else self.layers[0].bias).repeat(p)
        return Population(p, weights, out_bias, first_bias[:, None], select, head, head_bias)

    def _table(self, xT: torch.Tensor, skip_constant: bool) -> torch.Tensor:
        """First-layer activations of every unit under every input subset: ``(K, s)``."""
        w, b = self._table_w, self._table_b
        if skip_constant:  # the subset keeping no input is folded into the head's bias
            w, b = w[self.n_hidden :], b[self.n_hidden :]
        return torch.addmm(b, w, xT).relu_()

    def logits(self, pop: Population, xT: torch.Tensor) -> torch.Tensor:
        """Logits ``(p, C, s)`` of the population on samples ``xT (in, s)``."""
        p, s = pop.p, xT.shape[1]
        if pop.head is not None:
            table = self._table(xT, skip_constant=True)  # (K, s)
            return torch.addmm(pop.head_bias, pop.head, table).view(p, -1, s)
        if pop.select is not None:
            a = self._table(xT, skip_constant=False).index_select(0, pop.select)  # (p*H, s)
        else:
            w = pop.weights[0].reshape(-1, self.n_in)  # (p*H, in)
            a = torch.addmm(pop.first_bias, w, xT)  # (p*H, s)
            if len(self.layers) == 1:
                return a.view(p, -1, s)
            a.relu_()
        h = a.view(p, self.n_hidden, s)
        last = len(self.layers) - 1
        for i in range(1, last + 1):
            bias = pop.out_bias if i == last else self.layers[i].bias
            h = torch.baddbmm(bias.view(1, -1, 1), pop.weights[i], h)  # (p, out, s)
            if i < last:
                h.relu_()
        return h
