"""Exact incremental evaluation of single-weight flips in an MLP stack (float64 state).

The masked network's activations on the training set are kept in float64: ``acts[l] (n, in_l)``
is the input of layer l (``acts[0]`` the data) and ``pre[l] (n, out_l)`` its pre-activation;
``pre[-1]`` are the logits. They are sample-major, except the first hidden layer's ``pre[0]``
and ``acts[1]``, stored unit by unit (the transpose of an ``(out, n)`` array). Flipping
connection ``(o, i)`` of layer l adds ``dw = ±W[o, i]`` to one weight, so only unit o's
pre-activation moves, by ``dw * acts[l][:, i]``, and only on the samples where input i is
nonzero. Through the ReLU that is an activation change ``da`` of one unit; the next layer's
pre-activations move by the rank-1 term ``W[:, o] da``, and only the samples where ``da != 0``
go on through the layers above. `unit_deltas` scores every flip of one unit's incoming weights
that way (compiled, `evoprune.local.kernels`); `try_flips` and `apply` do the same for a set of
flips of one unit taken together.

The objective, lower is better: mean cross-entropy, minus the accuracy, or minus the macro F1,
plus ``sparsity_penalty * density``. With ``tiebreak`` (accuracy and F1 only) the
cross-entropy breaks ties: a step is scored by the pair (objective change, loss change), compared
in that order, and the density penalty moves to the second term, so it never trades accuracy for
sparsity; on the plateaus of a step objective, where most flips change no prediction, the loss
still points downhill. The cross-entropy may be taken at a temperature T, of the logits / T (the
state scales the last layer: the predictions, hence the accuracy and F1, stay as they are);
T < 1 weighs the samples near the decision boundary more.

Exactness: each sample's margin carries a bound on its float64 rounding error
(`evoprune.local.rounding`, which post-pruning's incremental walk,
`evoprune.ga.prune_incremental`, uses as well; here over the full, unmasked weights so it holds
for every submask); a step that would move a sample whose margin is within that bound is never
accepted on this arithmetic (`UNDECIDED_DELTA`). The state is rebuilt from the mask by a plain
forward (`refresh`) at every pass boundary of the search, so rounding never accumulates and a
resumed search continues from the very same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from evoprune.errors import EvopruneError
from evoprune.fastmlp import is_mlp_stack
from evoprune.local import kernels
from evoprune.local.config import LOCAL_OBJECTIVES
from evoprune.local.rounding import rounding_bound
from evoprune.masks import MaskSpace

OBJECTIVE_MODES = dict(
    zip(LOCAL_OBJECTIVES, (kernels.LOSS, kernels.ACCURACY, kernels.F1), strict=True)
)
UNDECIDED_DELTA = np.inf  # the delta of a step that moves an UNDECIDED sample: never accepted


class MLPState:
    """The float64 state of one masked MLP on one dataset, with exact flip evaluation.

    >>> rng = np.random.default_rng(0)
    >>> W = [rng.uniform(-1, 1, (8, 2)), rng.uniform(-1, 1, (2, 8))]
    >>> b = [rng.uniform(-1, 1, 8), rng.uniform(-1, 1, 2)]
    >>> X = rng.normal(size=(50, 2)); y = (X[:, 0] > 0).astype(np.int64)
    >>> st = MLPState(W, b, X, y, "loss", [np.ones((8, 2), bool), np.ones((2, 8), bool)])
    >>> d = st.unit_deltas(0, 3)
    >>> bool(abs(st.try_flips(0, 3, [1]) - d[1]) < 1e-12)
    True
    """

    def __init__(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        X: np.ndarray,
        y: np.ndarray,
        objective: str,
        mask: list[np.ndarray],
        maskable: list[bool] | None = None,
        sparsity_penalty: float = 0.0,
        tiebreak: bool = False,
        temperature: float = 1.0,
    ):
        if objective not in OBJECTIVE_MODES:
            raise EvopruneError(f"objective: expected loss, accuracy or f1, got {objective!r}")
        self.objective, self.mode = objective, OBJECTIVE_MODES[objective]
        self.tiebreak = bool(tiebreak) and self.mode != kernels.LOSS
        self.kmode = self.mode + (kernels.TIEBREAK if self.tiebreak else 0)  # what the kernels get
        self.W = [np.ascontiguousarray(w, dtype=np.float64) for w in weights]
        self.b = [np.asarray(v, dtype=np.float64).reshape(-1) for v in biases]
        if temperature != 1.0:  # the cross-entropy of logits / T; a positive scale keeps every
            # prediction, so scaling the last layer changes the loss and nothing else
            self.W[-1], self.b[-1] = self.W[-1] / temperature, self.b[-1] / temperature
        self.mask = [
            np.array(m, dtype=bool).reshape(w.shape) for m, w in zip(mask, self.W, strict=True)
        ]
        self.maskable = list(maskable) if maskable is not None else [True] * len(self.W)
        self.X = np.ascontiguousarray(X, dtype=np.float64).reshape(len(X), -1)
        self.y = np.asarray(y, dtype=np.int64)
        self.n, self.C = len(self.y), self.W[-1].shape[0]
        self.n_maskable = sum(w.size for w, m in zip(self.W, self.maskable, strict=True) if m)
        self.penalty = float(sparsity_penalty)
        self.true_n = np.bincount(self.y, minlength=self.C).astype(np.int64)
        self.tol = self._rounding_bound()
        # per layer, its input indexed by feature (`csr`, `inputs_by_feature`); layer 0's, the
        # data's, never changes, the others follow the mask (`_forget_indexes`)
        self._csr: dict[int, tuple] = {}
        self._xt: dict[int, np.ndarray] = {}
        self.refresh()

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        X: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        objective: str,
        mask_bits: torch.Tensor | np.ndarray,
        space: MaskSpace | None = None,
        sparsity_penalty: float = 0.0,
        tiebreak: bool = False,
        temperature: float = 1.0,
    ) -> MLPState:
        """The state of `model` (an `nn.Sequential` of Linear and ReLU) under the genome
        `mask_bits` ``(n_bits,)`` in `MaskSpace` order."""
        if not is_mlp_stack(model):
            raise EvopruneError("MLPState needs an nn.Sequential of Linear and ReLU layers")
        space = space or MaskSpace(model)
        starts = {p.name: p.start for p in space.params}
        bits = np.asarray(torch.as_tensor(mask_bits).cpu(), dtype=bool)
        W, b, masks, maskable = [], [], [], []
        for idx, module in enumerate(model):
            if not isinstance(module, nn.Linear):
                continue
            w = module.weight.detach().double().cpu().numpy()
            W.append(w)
            bias = module.bias
            b.append(bias.detach().double().cpu().numpy() if bias is not None else np.zeros(len(w)))
            start = starts.get(f"{idx}.weight")
            maskable.append(start is not None)
            masks.append(np.ones(w.shape, bool) if start is None else bits[start : start + w.size])
        Xn = np.asarray(torch.as_tensor(X).detach().cpu().double().reshape(len(X), -1))
        yn = np.asarray(torch.as_tensor(y).cpu(), dtype=np.int64)
        return cls(W, b, Xn, yn, objective, masks, maskable, sparsity_penalty, tiebreak,
                   temperature)  # fmt: skip

    # -- the state ----------------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        return len(self.W)

    def masked(self, li: int) -> np.ndarray:
        return self.W[li] * self.mask[li]

    def _rounding_bound(self) -> np.ndarray:
        """Per sample, a bound on |computed - exact| margin valid for every mask and for the
        updates of one pass: `rounding_bound` of the full weights with the pass's at most
        n_bits updates (+64), doubled again for safety."""
        return 2 * rounding_bound(self.W, self.b, self.X.T, self.n_maskable + 64)

    def refresh(self) -> None:
        """Rebuild every activation from the mask with a plain float64 forward."""
        # a step judged by `try_step`, as long as nothing has changed since
        self._tried: dict[str, Any] | None = None
        self._grad: np.ndarray | None = None  # `loss_gradient`'s, as long as nothing has changed
        self.acts, self.pre = [self.X], []
        for li in range(self.n_layers):
            if li == 0 and self.n_layers > 1:
                # unit-major (the transpose of an (out, n) array): the first hidden layer only
                # changes unit by unit, and scoring a block of its units reads whole units
                # (moons B, seeds 0-4: the local search 21% faster, the very same tickets)
                z = self.masked(li) @ self.acts[li].T
                z += self.b[li][:, None]  # in place: one (n, H) array less to write
                z = z.T
            else:
                z = self.acts[li] @ self.masked(li).T
                z += self.b[li]
            self.pre.append(z)
            if li < self.n_layers - 1:
                self.acts.append(np.maximum(z, 0.0))
        self._forget_indexes(above=0)
        self._stats(self.pre[-1])

    def _stats(self, logits: np.ndarray) -> None:
        track = self.mode == kernels.LOSS or self.tiebreak
        self.loss_s = _losses(logits, self.y) if track else np.zeros(self.n)
        # the loss counts right answers too (history, progress bar), as the accuracy does
        counted = kernels.ACCURACY if self.mode == kernels.LOSS else self.mode
        self.status, self.pred = _statuses(logits, self.y, self.tol, counted)
        self.n_right = int(np.count_nonzero(self.status == kernels.RIGHT))
        self.n_undecided = int(np.count_nonzero(self.status == kernels.UNDECIDED))
        self.tp = np.bincount(self.pred[self.pred == self.y], minlength=self.C).astype(np.int64)
        self.pred_n = np.bincount(self.pred, minlength=self.C).astype(np.int64)

    def loss_gradient(self) -> np.ndarray:
        """The per-sample cross-entropy's gradient with respect to the logits ``(n, C)``."""
        if self._grad is None:
            self._grad = np.empty((self.n, self.C))
            kernels.loss_gradient(self.pre[-1], self.y, self.loss_s, self._grad)
        return self._grad

    def inputs_by_feature(self, li: int) -> np.ndarray:
        """Layer l's input feature-major, ``(f, n)`` C-contiguous (the first hidden layer's
        activations as they are; rebuilt with `csr`)."""
        if li not in self._xt:
            a = self.acts[li]
            self._xt[li] = a.T if a.T.flags.c_contiguous else np.ascontiguousarray(a.T)
        return self._xt[li]

    def _forget_indexes(self, above: int) -> None:
        """Drop the feature indexes of the layers' inputs above layer `above`."""
        self._csr = {k: v for k, v in self._csr.items() if k <= above}
        self._xt = {k: v for k, v in self._xt.items() if k <= above}

    def csr(self, li: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nonzeros of layer l's input by feature (rebuilt after the layers below change)."""
        if li not in self._csr:
            self._csr[li] = kernels.csr_by_feature(self.acts[li])
        return self._csr[li]

    @property
    def accuracy(self) -> float:
        """The training accuracy of the current mask, for history and reports: the surely
        right samples (margin beyond rounding); with F1, whose statuses mark only near ties,
        the predictions equal to their label."""
        right = int(self.tp.sum()) if self.mode == kernels.F1 else self.n_right
        return right / self.n

    @property
    def ones(self) -> int:
        return int(sum(m.sum() for m, ok in zip(self.mask, self.maskable, strict=True) if ok))

    @property
    def score(self) -> float:
        """The objective of the current mask in its own sign, without the density penalty:
        the accuracy, the macro-F1 or the mean cross-entropy (what history and results show)."""
        primary = self._primary(0.0, 0, None)
        return primary if self.mode == kernels.LOSS else -primary

    @property
    def value(self) -> float:
        """What the search minimises, lower is better: the loss, or minus the accuracy or F1,
        plus the density penalty where no tie-breaker holds it (see the module docstring)."""
        return self._primary(0.0, 0, None) + (0.0 if self.tiebreak else self._density_term())

    @property
    def secondary(self) -> float:
        """The tie-breaker of the current mask: mean cross-entropy + penalty * density with
        ``tiebreak``, else 0."""
        if not self.tiebreak:
            return 0.0
        return float(self.loss_s.sum()) / self.n + self._density_term()

    def _density_term(self) -> float:
        return self.penalty * self.ones / self.n_maskable

    def _primary(self, dloss: float, dright: int, dconf: np.ndarray | None) -> float:
        if self.mode == kernels.LOSS:
            return (float(self.loss_s.sum()) + dloss) / self.n
        if self.mode == kernels.ACCURACY:
            return -(self.n_right + dright) / self.n
        tp, pred_n = self.tp.copy(), self.pred_n.copy()
        if dconf is not None:
            tp += dconf[: self.C]
            pred_n += dconf[self.C :]
        return -_macro_f1(tp, pred_n, self.true_n)

    def full_value(self) -> float:
        """The objective by a plain float64 forward from the mask (a reference for tests)."""
        a = self._full_logits()
        if self.mode == kernels.LOSS:
            primary = float(_losses(a, self.y).mean())
        elif self.mode == kernels.ACCURACY:
            primary = -float(np.mean(a.argmax(1) == self.y))
        else:
            pred = a.argmax(1)
            tp = np.bincount(pred[pred == self.y], minlength=self.C)
            primary = -_macro_f1(tp, np.bincount(pred, minlength=self.C), self.true_n)
        return primary + (0.0 if self.tiebreak else self._density_term())

    def full_secondary(self) -> float:
        """`secondary` by a plain float64 forward from the mask (a reference for tests)."""
        if not self.tiebreak:
            return 0.0
        return float(_losses(self._full_logits(), self.y).mean()) + self._density_term()

    def _full_logits(self) -> np.ndarray:
        a = self.X
        for li in range(self.n_layers):
            z = a @ self.masked(li).T + self.b[li]
            a = np.maximum(z, 0.0) if li < self.n_layers - 1 else z
        return a

    def mask_bits(self) -> np.ndarray:
        """The genome ``(n_bits,)`` bool: maskable layers' masks, row-major, in layer order."""
        return np.concatenate(
            [m.reshape(-1) for m, ok in zip(self.mask, self.maskable, strict=True) if ok]
        )

    def set_mask_bits(self, bits: np.ndarray) -> None:
        """Replace the whole mask and rebuild the state."""
        start = 0
        for li, ok in enumerate(self.maskable):
            if ok:
                size = self.mask[li].size
                self.mask[li] = np.array(bits[start : start + size], bool).reshape(
                    self.mask[li].shape
                )
                start += size
        self.refresh()

    # -- single flips ----------------------------------------------------------------------------

    def _penalty_delta(self, li: int, o: int | np.ndarray, cand: np.ndarray) -> np.ndarray:
        """The density term's change of flipping bits `cand` of unit(s) o of layer li (o a
        unit, or units as a column ``(U, 1)``: then ``(U, k)``)."""
        removing = self.mask[li][o, cand]
        return np.where(removing, -1.0, 1.0) * self.penalty / self.n_maskable

    def unit_deltas(
        self, li: int, o: int, ranking: str = "none", cand: np.ndarray | None = None
    ) -> np.ndarray:
        """The objective change of flipping each incoming bit `cand` (default all) of unit o
        of layer li, alone: ``(len(cand),)``; `UNDECIDED_DELTA` where not certain. With ``ranking
        "expansion"`` (cross-entropy only) an estimate: the 4th-order expansion of the softmax
        along each sample's logit direction (see `_expansion_coefficients`)."""
        return self.block_scores(li, np.array([o]), ranking, cand)[0][0]

    def block_scores(
        self,
        li: int,
        units: np.ndarray,
        ranking: str = "none",
        cand: np.ndarray | None = None,
        cut: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`unit_deltas` of several units of layer li at once and, with ``tiebreak``, each
        flip's change of `secondary` (else zeros): ``(primary, secondary)``, both
        ``(U, len(cand))``. One compiled call whose (unit, candidate) pairs are shared among
        the cores. With `cut`, a flip that surely loses accuracy or macro-F1 (or moves a
        near-tied sample) is swept only until that is certain: its primary is then some
        positive change (or `UNDECIDED_DELTA`), not its exact one."""
        units = np.asarray(units, np.int64)
        cand = np.arange(self.W[li].shape[1]) if cand is None else np.asarray(cand, np.int64)
        expansion = ranking == "expansion" and self.mode == kernels.LOSS
        nxt = self.masked(li + 1) if li < self.n_layers - 1 else None  # the layer fed
        if nxt is not None and not expansion:
            live = np.any(nxt[:, units] != 0, axis=0)
            if not live.all():  # a unit without outgoing weights: its flips change no output
                return self._dead_unit_scores(li, units, cand, live, ranking, cut)
        ptr, rows, vals = self.csr(li)
        w_rows = self.W[li][units][:, cand]  # (U, k)
        on = self.mask[li][units][:, cand]
        dw = np.ascontiguousarray(np.where(on, -w_rows, w_rows))
        # the units' pre-activations and activations are the rows `ui` of zo and ao (n,)
        zo, ui = _unit_rows(self.pre[li], units)
        last = li == self.n_layers - 1
        ao = zo if last else _unit_rows(self.acts[li + 1], units)[0]
        pairs = len(rows) * len(cand) / max(self.W[li].shape[1], 1) * len(units)
        penalty = self._penalty_delta(li, units[:, None], cand)
        out_f = np.zeros((len(units), len(cand)))
        if expansion:
            kernels.set_threads(pairs)
            coef = np.empty((len(units), self.n, 6))
            coef[:, :, 0], coef[:, :, 1] = zo[ui], ao[ui]
            for u, o in enumerate(units):
                self._expansion_coefficients(li, int(o), coef[u])
            kernels.unit_expansion(ptr, rows, vals, cand, dw, coef, not last, out_f)
            return out_f / self.n + penalty, np.zeros_like(out_f)
        # per (candidate, sample): the logits, and in a deep net every layer above the next
        above = sum(self.W[k].size for k in range(li + 2, self.n_layers))
        kernels.set_threads(pairs * (self.C + above))
        out_i = np.zeros((len(units), len(cand), 2 + 2 * self.C), np.int64)
        # F1: the counts per class, and the macro-F1 a flip must keep (within F1_TOL)
        base = np.stack([self.tp, self.pred_n, self.true_n])
        floor = _macro_f1(self.tp, self.pred_n, self.true_n) - kernels.F1_TOL
        st = (self.y, self.tol, self.kmode, self.loss_s, self.status, self.pred, base, floor,
              out_f, out_i)  # fmt: skip
        # with the accuracy, the samples surely wrong: all a flip can win back of what it has
        # lost so far (F1 bounds its own from the counts, `kernels._f1_reach`); -1: no cut
        slack = -1
        if cut and self.mode != kernels.LOSS:
            slack = self.n - self.n_right - self.n_undecided if self.mode == kernels.ACCURACY else 0
        # the accuracy of two classes, or a deeper unit's: those samples are swept first
        wrong, xt = np.empty(0, np.int64), np.empty((0, 0))
        deep = li < self.n_layers - 2
        if self.mode == kernels.ACCURACY and slack >= 0 and (self.C == 2 or deep):
            wrong, xt = np.flatnonzero(self.status == kernels.WRONG), self.inputs_by_feature(li)
        if last or li == self.n_layers - 2:
            # (U, C): what each unit's change moves the logits by (output units: one-hot)
            w = np.eye(self.C)[units] if nxt is None else np.ascontiguousarray(nxt[:, units].T)
            # with the tie-breaker, its first-order change bounds a flip's from below
            grad, pen_n = np.empty((0, self.C)), np.empty((len(units), 0))
            if self.tiebreak and slack >= 0:
                grad, pen_n = self.loss_gradient(), penalty * self.n
            kernels.unit_exact(ptr, rows, vals, cand, dw, zo, ao, ui, not last, w, self.pre[-1],
                               *st, grad, pen_n, wrong, xt, slack)  # fmt: skip
        else:
            assert nxt is not None  # a layer below the last hidden one
            rest = [self.masked(k) for k in range(li + 2, self.n_layers)]
            rest_w = np.concatenate([r.reshape(-1) for r in rest])
            shape = np.array([r.shape for r in rest], np.int64)
            rest_b = np.concatenate(self.b[li + 2 :])
            for u, o in enumerate(units):
                wcol = np.ascontiguousarray(nxt[:, o])
                st_u = (*st[:8], out_f[u], out_i[u])
                kernels.unit_exact_deep(ptr, rows, vals, cand, dw[u], zo[ui[u]], ao[ui[u]], wcol,
                                  self.pre[li + 1], rest_w, shape, rest_b, *st_u, wrong, xt,
                                  slack)  # fmt: skip
        primary = np.stack([self._deltas(out_f[u], out_i[u]) for u in range(len(units))])
        if self.tiebreak:
            return primary, out_f / self.n + penalty
        return primary + penalty, np.zeros_like(out_f)

    def _dead_unit_scores(
        self,
        li: int,
        units: np.ndarray,
        cand: np.ndarray,
        live: np.ndarray,
        ranking: str,
        cut: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`block_scores` where some units have no outgoing weight left (`live` False): their
        flips move no logit, so they change the objective by exactly 0 and the tie-breaker
        by the density term alone; the live units are scored as usual. On a moons B ticket
        about half of the hidden units are dead, and each of their flips was a full sweep."""
        penalty = self._penalty_delta(li, units[:, None], cand)
        zeros = np.zeros_like(penalty)
        primary, secondary = (zeros, penalty) if self.tiebreak else (penalty, zeros)
        if live.any():
            primary[live], secondary[live] = self.block_scores(li, units[live], ranking, cand, cut)
        return primary, secondary

    def _deltas(self, out_f: np.ndarray, out_i: np.ndarray) -> np.ndarray:
        base = self._primary(0.0, 0, None)
        if self.mode == kernels.LOSS:
            d = out_f / self.n
        elif self.mode == kernels.ACCURACY:
            d = -out_i[:, 1] / self.n
        else:
            d = np.array([self._primary(0.0, 0, row[2:]) - base for row in out_i])
        if self.mode != kernels.LOSS:
            d = np.where(out_i[:, 0] > 0, UNDECIDED_DELTA, d)
        return d

    def _expansion_coefficients(self, li: int, o: int, coef: np.ndarray) -> None:
        """Per sample, the Taylor coefficients of the cross-entropy in unit o's activation
        change (1/k! times the k-th derivative), into ``coef[:, 2:6]``. The logits move by
        ``v d``: for the last two layers v is one column of the next layer's weights; below,
        each sample's own v, the layers in between linearised at its current ReLU pattern
        (exact while no unit above changes side). The derivatives of log-sum-exp along v are
        the cumulants of v under the sample's softmax."""
        if li >= self.n_layers - 2:
            w = np.eye(self.C)[o] if li == self.n_layers - 1 else self.masked(li + 1)[:, o]
            v = np.broadcast_to(w, (self.n, self.C))
        else:
            v = self._direction(li, o)
        c = tuple(np.empty(self.n) for _ in range(4))
        kernels.softmax_cumulants(self.pre[-1], v, self.y, *c)
        coef[:, 2], coef[:, 3], coef[:, 4], coef[:, 5] = c

    def _direction(self, li: int, o: int) -> np.ndarray:
        """``(n, C)``: per sample, the change of the logits per unit change of unit o's
        activation in layer l, through the layers above at their current ReLU patterns."""
        v = self.W[li + 1][:, o] * self.mask[li + 1][:, o]
        for k in range(li + 1, self.n_layers - 1):
            v = ((self.pre[k] > 0) * v) @ self.masked(k + 1).T
        return v

    # -- a set of flips of one unit --------------------------------------------------------------

    def _new_pre(self, li: int, o: int, inputs: np.ndarray) -> np.ndarray:
        """Unit o's pre-activation ``(n,)`` once `inputs` of layer l are flipped together."""
        dw = np.where(self.mask[li][o, inputs], -self.W[li][o, inputs], self.W[li][o, inputs])
        ptr, rows, vals = self.csr(li)
        return self.pre[li][:, o] + kernels.combine(ptr, rows, vals, inputs, dw, self.n)

    def _propagate(
        self, li: int, o: int, inputs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The effect of flipping `inputs` of unit o in layer l together: the new pre-activation
        of unit o, and the changed samples with their new activations at every layer above."""
        z = self._new_pre(li, o, inputs)
        if li == self.n_layers - 1:
            S = np.nonzero(z != self.pre[li][:, o])[0]
            logits = self.pre[li][S].copy()
            logits[:, o] = z[S]
            return z, S, [logits]
        a = np.maximum(z, 0.0)
        da = a - self.acts[li + 1][:, o]
        S = np.nonzero(da)[0]
        nxt = self.pre[li + 1][S] + np.outer(da[S], self.masked(li + 1)[:, o])
        layers = [nxt]
        for k in range(li + 2, self.n_layers):
            layers.append(np.maximum(layers[-1], 0.0) @ self.masked(k).T + self.b[k])
        return z, S, layers

    def try_flips(self, li: int, o: int, inputs: np.ndarray) -> float:
        """The exact objective change of flipping `inputs` of unit o in layer l together
        (`UNDECIDED_DELTA` if a near-tied sample moves); the state is left as it is."""
        return self.try_step(li, o, inputs)[0]

    def try_step(self, li: int, o: int, inputs: np.ndarray) -> tuple[float, float]:
        """`try_flips` and the change of `secondary`: ``(primary, secondary)``."""
        inputs = np.asarray(inputs, np.int64)
        pen = float(self._penalty_delta(li, o, inputs).sum())
        if self._is_dead(li, o):  # no logit moves, near-tied samples included: exactly 0
            self._tried = None  # `apply` works the step out
            return (0.0, pen) if self.tiebreak and self.mode != kernels.LOSS else (pen, 0.0)
        step = self._tried = self._step(li, o, inputs)  # `apply` of the same flips reuses it
        S = step["S"]
        if self.mode == kernels.LOSS:
            return float((step["losses"] - self.loss_s[S]).sum()) / self.n + pen, 0.0
        primary = self._set_delta(S, *step["status"])
        if not self.tiebreak:
            return primary + pen, 0.0
        dloss = float((step["losses"] - self.loss_s[S]).sum()) / self.n
        return primary, dloss + pen

    def _is_dead(self, li: int, o: int) -> bool:
        """Whether hidden unit o of layer li has no outgoing weight left (as `block_scores`
        tells dead units): its flips change its activation and nothing above it."""
        if li == self.n_layers - 1:
            return False
        return not np.any(self.W[li + 1][:, o] * self.mask[li + 1][:, o] != 0)

    def _step(self, li: int, o: int, inputs: np.ndarray) -> dict[str, Any]:
        """Flipping `inputs` of unit o in layer l together, worked out: the propagation
        (`_propagate`) and, on the changed samples S, their new losses (the loss or the
        tie-breaker) and statuses and predictions (accuracy, F1)."""
        if li >= self.n_layers - 2:  # the unit feeds the logits: one compiled pass
            return self._step_top(li, o, inputs)
        z, S, layers = self._propagate(li, o, inputs)
        step = {"key": (li, o, inputs.tobytes()), "z": z, "S": S, "layers": layers}
        if self.mode == kernels.LOSS or self.tiebreak:
            step["losses"] = _losses(layers[-1], self.y[S])
        if self.mode != kernels.LOSS:
            step["status"] = _statuses(layers[-1], self.y[S], self.tol[S], self.mode)
        return step

    def _step_top(self, li: int, o: int, inputs: np.ndarray) -> dict[str, Any]:
        """`_step` of a unit whose output feeds the logits (the last hidden or the output
        layer), with the same arithmetic in one compiled pass (`kernels.step_top`)."""
        z = self._new_pre(li, o, inputs)
        relu = li < self.n_layers - 1
        old = self.acts[li + 1][:, o] if relu else self.pre[li][:, o]
        w = self.masked(li + 1)[:, o] if relu else np.zeros(self.C)
        track = self.mode == kernels.LOSS or self.tiebreak
        kernels.set_threads(self.n * (self.C + 40 * track))  # a loss costs ~40 additions
        S, new, losses, status, pred = kernels.step_top(
            z, old, relu, o, w, self.pre[-1], self.y, self.tol, self.mode, track
        )
        step = {"key": (li, o, inputs.tobytes()), "z": z, "S": S, "layers": [new]}
        if track:
            step["losses"] = losses
        if self.mode != kernels.LOSS:
            step["status"] = (status, pred)
        return step

    def _set_delta(self, S: np.ndarray, status: np.ndarray, pred: np.ndarray) -> float:
        """The change of the accuracy or F1 term when the samples S take `status`, `pred`."""
        if np.any(status == kernels.UNDECIDED) or np.any(self.status[S] == kernels.UNDECIDED):
            return UNDECIDED_DELTA
        if self.mode == kernels.ACCURACY:
            return -int((status - self.status[S]).sum()) / self.n
        y = self.y[S]
        dconf = np.zeros(2 * self.C, np.int64)
        np.add.at(dconf, self.C + pred, 1)
        np.add.at(dconf, self.C + self.pred[S], -1)
        np.add.at(dconf, pred[pred == y], 1)
        old = self.pred[S]
        np.add.at(dconf, old[old == y], -1)
        return self._primary(0.0, 0, dconf) - self._primary(0.0, 0, None)

    def apply(self, li: int, o: int, inputs: ArrayLike) -> None:
        """Flip `inputs` of unit o in layer l and update the state with the same arithmetic
        `try_flips` judged it by."""
        inputs = np.asarray(inputs, np.int64)
        step, self._tried, self._grad = self._tried, None, None
        if step is None or step["key"] != (li, o, inputs.tobytes()):
            step = self._step(li, o, inputs)
        z, S, layers = step["z"], step["S"], step["layers"]
        self.mask[li][o, inputs] = ~self.mask[li][o, inputs]
        self.pre[li][:, o] = z
        if li < self.n_layers - 1:
            self.acts[li + 1][:, o] = np.maximum(z, 0.0)
            for k, new in enumerate(layers[:-1]):  # the hidden layers above; the logits below
                self.pre[li + 1 + k][S] = new
                self.acts[li + 2 + k][S] = np.maximum(new, 0.0)
            self._forget_indexes(above=li)
        # with the loss, the counts are refreshed per pass: a step carries no statuses
        status, pred = step.get("status", (self.status[:0], self.pred[:0]))
        moved = kernels.apply_top(
            S, layers[-1], step.get("losses", self.loss_s[:0]), status, pred, self.pre[-1],
            self.loss_s, self.status, self.pred, self.tp, self.pred_n, self.y, "losses" in step,
            "status" in step,
        )  # fmt: skip
        self.n_right += int(moved[0])
        self.n_undecided += int(moved[1])


def _unit_rows(A: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns `units` of ``A (n, H)`` as rows of a C-contiguous ``(H', n)`` and their
    indices there: a unit-major ``A`` (the first hidden layer's, see `MLPState.refresh`) as
    it is (no copy: 3 MB a block of eight moons units), else a copy of those columns."""
    if A.T.flags.c_contiguous:
        return A.T, units
    return np.ascontiguousarray(A[:, units].T), np.arange(len(units))


def _losses(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy of ``logits (n, C)``: ``(n,)``."""
    out = np.empty(len(y))
    kernels.losses(np.ascontiguousarray(logits, dtype=np.float64), y, out)
    return out


def _statuses(
    logits: np.ndarray, y: np.ndarray, tol: np.ndarray, mode: int
) -> tuple[np.ndarray, np.ndarray]:
    """(status, prediction) per sample; see `evoprune.local.kernels._status`."""
    status, pred = np.empty(len(y), np.int8), np.empty(len(y), np.int64)
    kernels.statuses(np.ascontiguousarray(logits, dtype=np.float64), y, tol, mode, status, pred)
    return status, pred


def _macro_f1(tp: np.ndarray, pred_n: np.ndarray, true_n: np.ndarray) -> float:
    """Macro F1 over the classes present in truth or prediction (as `objectives.macro_f1`)."""
    denom = pred_n + true_n
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].sum() / max(present.sum(), 1))
