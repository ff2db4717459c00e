"""The local search's state for any masked module: flips scored by the batched evaluator.

`MLPState` scores a flip of an MLP stack by a rank-1 update of float64 activations; a module of
any other shape (Tanh or GELU between the layers, normalisation, residual connections, your own
``forward``) has no such update, and `ModuleState` scores its flips the way the GA scores its
genomes: each candidate mask goes through `evoprune.evaluate.Evaluator` (its batched fast path
for a stack of Linear layers with Tanh, Sigmoid or GELU between them, else the general path,
``torch.func.functional_call`` under ``vmap``; float32 forward, the loss summed in float64), a
block of them per call. A flip's score is therefore the exact change of what the GA measures,
in the GA's own arithmetic; no rounding bound is needed, since that arithmetic is the one of
record (`LocalSearch` never sees ``UNDECIDED_DELTA`` from it).

Layout, as `LocalSearch` walks it: every maskable weight is a layer, its rows (a Linear's output
units, a conv's output channels) are the units, and a unit's candidates are the bits of its row
(a conv's ``in * kh * kw``). Scoring every candidate costs a forward of the training set per
bit (``ranking="none"``), against a fraction of one for an MLP stack's incremental update.

With the cross-entropy as the objective, ``ranking="expansion"`` (the default, as for
`MLPState`) orders the candidates by the first term of the loss's expansion instead: the
gradient of the loss with respect to the masked weights (one backward pass of the training set
for the whole genome, until a step is taken), times the weight a flip adds or removes. It only
orders: `LocalSearch` tries the candidates in that order and accepts each step on its exact
evaluation, and it ends each start with a descent over exact removals (`removal_pass`), which
that order reaches too seldom. The accuracy and F1 are step functions, which no derivative estimates; their
candidates are always evaluated.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
>>> X = torch.randn(100, 2); y = (X[:, 0] > 0).long()
>>> st = ModuleState(net, X, y, "loss", torch.ones(32, dtype=torch.bool))
>>> primary, _ = st.block_scores(1, np.array([0]))
>>> st.apply(1, 0, np.array([3]))
>>> bool(abs(st.value - st.full_value()) < 1e-12)
True
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from evoprune.errors import EvopruneError
from evoprune.evaluate import Evaluator
from evoprune.masks import MaskSpace

# candidate masks scored by one evaluator call: at most this many, and at most this many bytes
# of genomes (each candidate is a copy of the genome, one byte a bit)
CANDIDATES_PER_CALL = 1024
CANDIDATE_BYTES = 64 << 20


class ModuleState:
    """A masked module on one dataset, its flips scored by the general evaluator; the same
    interface as `MLPState` for `evoprune.local.search.LocalSearch` (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        X: torch.Tensor,
        y: torch.Tensor,
        objective: str,
        mask_bits: torch.Tensor | np.ndarray,
        space: MaskSpace | None = None,
        sparsity_penalty: float = 0.0,
        tiebreak: bool = False,
        temperature: float = 1.0,
        device: str = "cpu",
        memory_mb: float = 64.0,
    ):
        if objective not in ("loss", "accuracy", "f1"):
            raise EvopruneError(f"objective: expected loss, accuracy or f1, got {objective!r}")
        if temperature != 1.0:
            raise EvopruneError(
                "temperature: only for an MLP stack (nn.Sequential of Linear and ReLU), whose "
                "last layer the local search scales; other modules take the loss as it is"
            )
        self.space = space or MaskSpace(model)
        self.objective = objective
        self.tiebreak = bool(tiebreak) and objective != "loss"
        metrics = (objective, "accuracy", *(("loss",) if self.tiebreak else ()))
        self.evaluator = Evaluator(model, X, y, objective, space=self.space, device=device,
                                   memory_mb=memory_mb, cache=False,
                                   metrics=tuple(dict.fromkeys(metrics)))  # fmt: skip
        self.penalty = float(sparsity_penalty)
        self.n_maskable = self.space.n_bits
        self.model, self.X, self.y = self.evaluator.model, self.evaluator.X, self.evaluator.y
        params = self.evaluator.params  # the full weights in genome order, (n_bits,)
        flat = torch.cat([params[p.name].reshape(-1) for p in self.space.params])
        self._weights = flat.cpu().double().numpy()
        self._starts = [p.start for p in self.space.params]
        # a layer per maskable weight, (units, candidates): the rows of the weight as it is
        # stored (views of `_weights`)
        self.W = [
            self._weights[p.start : p.start + p.size].reshape(p.shape[0], -1)
            for p in self.space.params
        ]
        self.maskable = [True] * len(self.W)
        self.set_mask_bits(np.asarray(torch.as_tensor(mask_bits).cpu(), dtype=bool))

    @property
    def n_layers(self) -> int:
        return len(self.W)

    # -- the state ---------------------------------------------------------------------------

    def mask_bits(self) -> np.ndarray:
        """The genome ``(n_bits,)`` bool in `MaskSpace` order."""
        return self._bits.copy()

    def set_mask_bits(self, bits: np.ndarray) -> None:
        """Replace the whole mask and score it."""
        self._bits = np.array(bits, dtype=bool).reshape(self.n_maskable)
        self.mask = [
            self._bits[s : s + w.size].reshape(w.shape)  # views: they follow `_bits`
            for s, w in zip(self._starts, self.W, strict=True)
        ]
        self.refresh()

    def refresh(self) -> None:
        """Score the current mask (one evaluation)."""
        self._tried: tuple[np.ndarray, tuple[np.ndarray, ...]] | None = None
        self._grad: np.ndarray | None = None  # `loss_gradient`'s, until the mask changes
        row = self._score(self._bits[None, :])
        self.value, self.secondary = float(row[0][0]), float(row[1][0])
        self.score, self.accuracy = float(row[2][0]), float(row[3][0])

    @property
    def ones(self) -> int:
        return int(np.count_nonzero(self._bits))

    def full_value(self) -> float:
        """`value` by a fresh evaluation of the mask (a reference, as `MLPState`'s)."""
        return float(self._score(self._bits[None, :])[0][0])

    def full_secondary(self) -> float:
        return float(self._score(self._bits[None, :])[1][0])

    def _score(self, masks: np.ndarray) -> tuple[np.ndarray, ...]:
        """For masks ``(P, n_bits)``: what the search minimises and its tie-breaker (lower is
        better; `MLPState.value` and `.secondary`), the objective in its own sign, and the
        accuracy, each ``(P,)``."""
        m = self.evaluator.evaluate(torch.from_numpy(masks))
        density = self.penalty * masks.sum(1) / self.n_maskable
        score = m[self.objective].numpy()
        primary = score if self.objective == "loss" else -score
        if self.tiebreak:
            value, secondary = primary, m["loss"].numpy() + density
        else:
            value, secondary = primary + density, np.zeros(len(masks))
        return value, secondary, score, m["accuracy"].numpy()

    # -- flips -------------------------------------------------------------------------------

    def _flipped(self, bits: np.ndarray) -> np.ndarray:
        """The current genome with one flip each, bit `bits[k]` in row k: ``(len(bits), n_bits)``."""
        masks = np.repeat(self._bits[None, :], len(bits), axis=0)
        masks[np.arange(len(bits)), bits] ^= True
        return masks

    def block_scores(
        self,
        li: int,
        units: np.ndarray,
        ranking: str = "none",
        cand: np.ndarray | None = None,
        cut: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The changes of (value, secondary) of flipping each candidate `cand` (default all)
        of each unit of layer li alone: ``(U, len(cand))`` each. Exact, an evaluation each,
        except with the loss and ``ranking="expansion"``: then the gradient's first-order
        estimate, an order for `LocalSearch` to try them in (`cut` is `MLPState`'s alone)."""
        units = np.asarray(units, np.int64)
        cand = np.arange(self.W[li].shape[1]) if cand is None else np.asarray(cand, np.int64)
        bits = self._bits_of(li, units[:, None], cand[None, :]).ravel()
        shape = (len(units), len(cand))
        if ranking == "expansion" and self.objective == "loss":  # an order, not a score
            on = self._bits[bits]
            added = np.where(on, -self._weights[bits], self._weights[bits])
            density = np.where(on, -self.penalty, self.penalty) / self.n_maskable
            estimate = self.loss_gradient()[bits] * added + density
            return estimate.reshape(shape), np.zeros(shape)
        per_call = max(1, min(CANDIDATES_PER_CALL, CANDIDATE_BYTES // self.n_maskable))
        values, ties = [], []
        for first in range(0, len(bits), per_call):
            value, secondary, _, _ = self._score(self._flipped(bits[first : first + per_call]))
            values.append(value - self.value)
            ties.append(secondary - self.secondary)
        return np.concatenate(values).reshape(shape), np.concatenate(ties).reshape(shape)

    def loss_gradient(self) -> np.ndarray:
        """The mean cross-entropy's gradient with respect to each masked weight, ``(n_bits,)``
        in genome order (one forward and backward pass of the training set)."""
        if self._grad is None:
            ev = self.evaluator
            masks = self.space.split(torch.from_numpy(self._bits).to(ev.device))
            masked = {n: (ev.params[n] * m).requires_grad_(True) for n, m in masks.items()}
            with torch.enable_grad():
                logits = functional_call(self.model, ({**ev.params, **masked}, ev.buffers),
                                         (self.X,))  # fmt: skip
                loss = F.cross_entropy(logits.double(), self.y)
                grads = torch.autograd.grad(loss, [masked[p.name] for p in self.space.params])
            self._grad = torch.cat([g.reshape(-1) for g in grads]).cpu().double().numpy()
        return self._grad

    def _bits_of(self, li: int, o: int | np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """Genome positions of inputs `inputs` of unit(s) `o` of layer li (broadcast)."""
        return self._starts[li] + o * self.W[li].shape[1] + np.asarray(inputs, np.int64)

    def try_step(self, li: int, o: int, inputs: np.ndarray) -> tuple[float, float]:
        """The changes of (value, secondary) of flipping bits `inputs` of unit o together."""
        bits = self._bits.copy()
        bits[self._bits_of(li, o, inputs)] ^= True
        scored = self._score(bits[None, :])
        self._tried = (bits, scored)  # `apply` of the same step takes its scores
        return float(scored[0][0]) - self.value, float(scored[1][0]) - self.secondary

    def apply(self, li: int, o: int, inputs: np.ndarray) -> None:
        """Flip bits `inputs` of unit o of layer li, and score the new mask."""
        self._bits[self._bits_of(li, o, inputs)] ^= True
        tried, self._tried, self._grad = self._tried, None, None
        if tried is None or not np.array_equal(tried[0], self._bits):
            return self.refresh()
        value, secondary, score, accuracy = (float(v[0]) for v in tried[1])
        self.value, self.secondary, self.score, self.accuracy = value, secondary, score, accuracy
