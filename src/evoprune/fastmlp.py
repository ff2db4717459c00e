"""Exact batched forward of a population of masked MLPs (``nn.Sequential`` of Linear layers with
one elementwise nonlinearity between them: ReLU, the paper's, or Tanh, Sigmoid or GELU).

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

Nets with two or more hidden layers are *compacted* per population chunk: a hidden unit is
dropped from a mask's forward when it cannot change the output, so the batched products shrink
to the widest mask's live units (zero-padded). A unit goes when its outgoing weights are all
masked (or feed only dropped units), when its output is constant (its incoming weights are all
masked: ``f(b)`` is folded into the next layer's bias), or, for a tabulated first layer of a
ReLU net, when its table row is zero on every sample of ``support`` (the evaluator's data). On moons with
architecture D a random density-0.5 mask keeps ~22 of 50 first-layer and ~37 of 50
second-layer units, and fewer as the GA prunes. Dropped terms are exact zeros, and folding only
reorders float32 sums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import nn

from evoprune.masks import MaskSpace
from evoprune.nets import NONLINEARITIES

TABLE_MAX_IN = 3  # up to 2**3 = 8 input subsets per unit; beyond that direct GEMM is cheaper


# the nonlinearities the batched forward applies itself: exactly the classes `evoprune.nets` puts
# between an MLP's layers (GELU in its exact form), by name
_NONLINEAR = {kind: name for name, kind in NONLINEARITIES.items()}
_APPLY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_, "gelu": F.gelu
}  # fmt: skip


def stack_activation(model: nn.Module) -> str | None:
    """The nonlinearity of ``Linear (f Linear)*``, strictly alternating with one `f` of
    ReLU, Tanh, Sigmoid or GELU (exact), so the fast path mirrors it: an `nn.Sequential` (or a
    subclass that keeps its `forward`) whose children are named 0, 1, 2, ... as the fast paths
    name their parameters, without forward hooks (the fast path does not call the modules).
    None for anything else, which the general path evaluates by calling the model itself."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return None
    if [name for name, _ in model.named_children()] != [str(i) for i in range(len(model))]:
        return None
    kinds = [type(m) for m in model]
    if not kinds or kinds[-1] is not nn.Linear or _hooked(model):  # hooks would not run
        return None
    if any(k is not nn.Linear for k in kinds[::2]):
        return None
    between = {_NONLINEAR.get(k) for k in kinds[1::2]}
    if len(between) > 1 or None in between:
        return None
    if any(isinstance(m, nn.GELU) and m.approximate != "none" for m in model):
        return None
    return between.pop() if between else "relu"  # one Linear: no nonlinearity to apply


def is_mlp_stack(model: nn.Module) -> TypeGuard[nn.Sequential]:
    """True for ``Linear (ReLU Linear)*`` (`stack_activation` "relu"): what the incremental
    local search, post-pruning's walk and edge-popup's fast path take. A single Linear counts."""
    return stack_activation(model) == "relu"


def _hooked(model: nn.Module) -> bool:
    """Whether a forward hook (on `model`, a child, or every module) would change its output."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@dataclass(frozen=True)
class _Layer:
    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor  # (out,); zeros when the layer has none (adding 0.0 is exact)
    bits: slice | None  # this weight's bits in the genome; None if it is not maskable


@dataclass(frozen=True)
class MaskedChunk:
    """`p` masks applied to the MLP's weights, ready for `FastMLP.logits` (`FastMLP.prepare`)."""

    p: int
    weights: list[torch.Tensor]  # per layer (p, out, in), hidden widths compacted; layer 0
    # unused when tabulated
    biases: list[torch.Tensor]  # per layer (p, out, 1) or shared (1, out, 1)
    select: torch.Tensor | None  # (p*w0,) table rows the first hidden units read (deep, tabulated)
    head: torch.Tensor | None  # (p*C, K) one-hidden-layer tabulated nets: logits = head @ T
    head_bias: torch.Tensor | None  # (p*C, 1) output bias plus folded constant units

    @property
    def width(self) -> int:
        """Widest activation per sample and mask, for sizing sample chunks."""
        return max(w.shape[1] for w in self.weights)


class FastMLP:
    """Logits of many masked copies of one MLP, sample chunk by sample chunk.

    `support` ``(in, n)``, feature-major, holds every sample `logits` will be asked about; a
    first-layer unit that is zero on all of them is then skipped (see the module docstring).

    >>> from evoprune.nets import build_mlp
    >>> net = build_mlp([2, 20, 2], seed=0)
    >>> fm = FastMLP(net, MaskSpace(net))
    >>> pop = fm.prepare(torch.ones(3, MaskSpace(net).n_bits, dtype=torch.bool))
    >>> fm.logits(pop, torch.randn(2, 16)).shape  # x is feature-major (in, s)
    torch.Size([3, 2, 16])
    """

    def __init__(self, model: nn.Module, space: MaskSpace, support: torch.Tensor | None = None):
        activation = stack_activation(model)
        if activation is None or not isinstance(model, nn.Sequential):  # (the latter for mypy)
            raise ValueError("FastMLP needs an nn.Sequential of Linear layers and one of ReLU, "
                             "Tanh, Sigmoid or GELU between them")  # fmt: skip
        self.activation = activation
        self._f = _APPLY[activation]  # in place where torch has it; GELU returns a new tensor
        if activation != "relu":  # the zero rows below are ReLU's
            support = None
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
            H, n_sub = self.n_hidden, 2**self.n_in
            # subset k keeps input i iff bit i of k is set: (n_sub, in)
            subsets = (torch.arange(n_sub)[:, None] >> torch.arange(self.n_in)) & 1
            self._subset_code = 2 ** torch.arange(self.n_in)  # (in,) mask bits -> subset index
            # Row k*H + h of the full table is unit h restricted to subset k.
            w_all = (subsets[:, None, :].float() * first.weight).reshape(-1, self.n_in)
            b_all = first.bias.repeat(n_sub)
            # Rows zero on the whole support are never computed: a unit reading one is inert.
            self._inert = _zero_on(w_all, b_all, support)  # (n_sub*H,)
            keep = ~self._inert
            if self.one_hidden_table:  # the no-input subset is folded into the head's bias
                keep[:H] = False
            self._rows = keep.nonzero()[:, 0]  # (K,) full-table rows that are computed
            self._row_pos = torch.zeros(n_sub * H, dtype=torch.long)  # full row -> table row
            self._row_pos[self._rows] = torch.arange(len(self._rows))
            self._table_w = w_all[self._rows]  # (K, in)
            self._table_b = b_all[self._rows, None]  # (K, 1)
            if not len(self._rows) and not self.one_hidden_table:
                # every first-layer unit is zero on the whole support (one sample, all biases
                # negative ...): no table row to select from; the direct GEMM is right as ever
                self.tabulated = False

    @property
    def table_rows(self) -> int:
        """Rows of the hidden-unit table computed per sample (K); 0 when not tabulated."""
        return self._table_w.shape[0] if self.tabulated else 0

    @property
    def one_hidden_table(self) -> bool:
        return self.tabulated and len(self.layers) == 2

    def prepare(self, masks: torch.Tensor, margin: bool = False) -> MaskedChunk:
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
        biases = [layer.bias.view(1, -1) for layer in self.layers]
        if margin and self.n_classes == 2:
            weights[-1] = weights[-1][:, 1:2] - weights[-1][:, 0:1]  # (p, 1, H)
            biases[-1] = biases[-1][:, 1:2] - biases[-1][:, 0:1]
        code = None
        if self.tabulated:
            m1 = masks[:, self.layers[0].bits].view(p, self.n_hidden, self.n_in).long()
            code = (m1 * self._subset_code).sum(-1)  # (p, H) which input subset unit h keeps
        if self.one_hidden_table:
            assert code is not None  # one_hidden_table implies tabulated
            return self._prepare_head(p, weights[1], biases[1], code)
        select = None
        if len(self.layers) > 2:
            inert = None
            if code is not None:  # tabulated
                inert = self._inert[code * self.n_hidden + torch.arange(self.n_hidden)]
            weights, biases, first_units = _compact(weights, biases, inert, self._f)
            if code is not None:
                rows = code.gather(1, first_units) * self.n_hidden + first_units  # (p, w0)
                select = self._row_pos[rows].reshape(-1)
        biases = [b.reshape(len(b), -1, 1) for b in biases]
        if select is None and not self.tabulated:
            biases[0] = biases[0].expand(p, -1, -1).reshape(-1, 1)  # (p*w0, 1) for one GEMM
        return MaskedChunk(p, weights, biases, select, None, None)

    def _prepare_head(
        self, p: int, out: torch.Tensor, out_bias: torch.Tensor, code: torch.Tensor
    ) -> MaskedChunk:
        """One hidden layer, tabulated: the logits are one GEMM, ``head (p*C, K) @ T (K, s)``."""
        H, n_sub, C = self.n_hidden, 2**self.n_in, out.shape[1]
        # head[p, c, k, h] = out[p, c, h] where k is unit h's subset, else 0.  out: (p, C, H)
        head = out.new_zeros(p, C, n_sub, H)
        head.scatter_(2, code.view(p, 1, 1, H).expand(p, C, 1, H), out.unsqueeze(2))
        # Units that keep no input are constant, f(b): fold them into the bias.
        const = head[:, :, 0, :] @ self._f(self.layers[0].bias.clone())  # (p, C)
        head_bias = (out_bias + const).reshape(p * C, 1)
        head = head.reshape(p * C, n_sub * H)[:, self._rows]  # (p*C, K)
        return MaskedChunk(p, [out], [out_bias.view(1, -1, 1)], None, head, head_bias)

    def _table(self, xT: torch.Tensor) -> torch.Tensor:
        """First-layer activations of the computed (unit, input subset) rows: ``(K, s)``."""
        return self._f(torch.addmm(self._table_b, self._table_w, xT))

    def logits(self, pop: MaskedChunk, xT: torch.Tensor) -> torch.Tensor:
        """Logits ``(p, C, s)`` of the population on samples ``xT (in, s)``."""
        p, s = pop.p, xT.shape[1]
        if pop.head is not None:
            assert pop.head_bias is not None  # `_prepare_head` sets both
            return torch.addmm(pop.head_bias, pop.head, self._table(xT)).view(p, -1, s)
        if pop.select is not None:
            a = self._table(xT).index_select(0, pop.select)  # (p*w0, s)
        else:
            w = pop.weights[0].reshape(-1, self.n_in)  # (p*w0, in)
            a = torch.addmm(pop.biases[0], w, xT)  # (p*w0, s)
            if len(self.layers) == 1:
                return a.view(p, -1, s)
            a = self._f(a)
        h = a.view(p, -1, s)
        last = len(self.layers) - 1
        for i in range(1, last + 1):
            h = torch.baddbmm(pop.biases[i], pop.weights[i], h)  # (p, out, s)
            if i < last:
                h = self._f(h)
        return h


def _zero_on(w: torch.Tensor, b: torch.Tensor, support: torch.Tensor | None) -> torch.Tensor:
    """Rows ``relu(w x + b)`` that are 0 on every support sample ``(in, n)``: ``(rows,)`` bool.

    Decided in float64 with a margin far above float32 rounding (``in + 1`` terms), so the
    float32 forward of such a row is negative, hence exactly 0 after the ReLU, in any order.
    """
    if support is None or support.shape[1] == 0:
        return torch.zeros(len(w), dtype=torch.bool)
    w64, b64, x64 = w.double(), b.double()[:, None], support.double()
    w_abs, b_abs = w64.abs(), b64.abs()
    highest = torch.full_like(b64[:, 0], -torch.inf)
    for s0 in range(0, x64.shape[1], 8192):
        x = x64[:, s0 : s0 + 8192]
        # in place, two (rows, chunk) arrays instead of six (moons B: 45 -> 26 ms a call)
        slack = w_abs @ x.abs()
        slack += b_abs
        slack *= 1e-5  # >> (in + 1) * 2**-24 * scale
        z = w64 @ x
        z += b64
        z += slack
        highest = torch.maximum(highest, z.amax(1))
    return highest < 0


def _compact(
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    inert: torch.Tensor | None,
    f: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Drop hidden units that cannot change a mask's output; pad to the widest mask.

    `weights` per layer ``(p, out, in)``, `biases` ``(1 or p, out)``, `inert` ``(p, H0)``
    first-layer units known to output 0, `f` the nonlinearity (in place). Returns compacted
    weights and biases ``(p, w)`` and the original index of each first-layer unit kept
    ``(p, w0)``. A padding unit reads nothing and nothing reads it, whatever f(0) is.
    """
    p, L = weights[0].shape[0], len(weights)
    weights, biases = list(weights), [b.expand(p, -1) for b in biases]
    dropped = []
    for k in range(L - 1):  # forward: constant units into the next bias, inert ones out
        const = (weights[k] == 0).all(-1)  # (p, out_k): f(b) whatever the input
        value = torch.where(const, f(biases[k].clone()), 0.0)  # (p, out_k)
        biases[k + 1] = biases[k + 1] + (weights[k + 1] @ value.unsqueeze(-1))[..., 0]
        drop = const if (k or inert is None) else const | inert
        weights[k + 1] = weights[k + 1] * ~drop[:, None, :]
        dropped.append(drop)
    live = [torch.empty(0)] * (L - 1)
    needed = torch.ones(weights[-1].shape[:2], dtype=torch.bool)  # (p, C): every output
    for k in range(L - 2, -1, -1):  # backward: a unit lives if a needed unit reads it
        live[k] = ((weights[k + 1] != 0) & needed[:, :, None]).any(1)  # (p, out_k)
        needed = live[k]
    # Per mask, its live units first (in their order), then padding up to the widest mask.
    units, valid = [], []
    for k in range(L - 1):
        width = max(1, int(live[k].sum(1).max()))
        order = torch.sort((~live[k]).to(torch.uint8), dim=1, stable=True).indices[:, :width]
        units.append(order)  # (p, w_k)
        valid.append(live[k].gather(1, order).float())
    out_w, out_b = [], []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if i < L - 1:  # rows: this layer's hidden units
            w = w.gather(1, units[i][:, :, None].expand(-1, -1, w.shape[2]))
            b = b.gather(1, units[i]) * valid[i]
            w = w * valid[i][:, :, None]
        if i > 0:  # columns: the previous layer's hidden units
            w = w.gather(2, units[i - 1][:, None, :].expand(-1, w.shape[1], -1))
            w = w * valid[i - 1][:, None, :]
        out_w.append(w.contiguous())
        out_b.append(b.contiguous())
    return out_w, out_b, units[0]
