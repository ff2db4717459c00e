"""Post-pruning's incremental walk over MLP stacks (``nn.Sequential`` of Linear and ReLU), with
the outcome of the plain one-candidate-at-a-time walk (`evoprune.ga.prune`, whose
``"accuracy"`` and ``"accuracy-loss"`` criteria it decides).

The activations of the current mask on the training set are kept in float64. Removing connection
``(o, i)`` of layer l changes only row ``o`` of that layer's pre-activations, by
``-W[o, i] * A_in[i]``, and only on the samples where input ``i`` is nonzero; only the samples
whose activation actually changes go through the layers above (a rank-1 update of the next
layer). A candidate then costs about one column of one layer instead of a whole forward, and its
accuracy is the current one plus the change on those samples. Candidates are judged one at a
time, as in the paper: about half of them are accepted (measured on digits), which makes
speculative batches mostly wasted work.

Rounding: the incremental walk decides on float64 logits, whose error we bound per sample
(`evoprune.local.rounding.rounding_bound`, the exact local search's bound, here over the
starting mask's weights with one update per set bit); a sample whose margin is within the
bound is *undecided*, and a decision touching one is left to the `Evaluator`. So the
decisions are those of exact arithmetic. A float32 walk (the `Evaluator`, or a plain forward)
can only decide differently when a sample's float32 margin is within float32 rounding (~1e-6
relative) of zero at that step, where two float32 walks summing in different orders disagree
with each other as well. The reported accuracies are the `Evaluator`'s, of the first and the
final mask; should the final one ever be lower, the general path redoes the walk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from evoprune.evaluate import Evaluator
from evoprune.fastmlp import FastMLP
from evoprune.ga.config import LOSS_SLACK
from evoprune.ga.prune_report import PruneReport
from evoprune.local.rounding import rounding_bound


class IncrementalWalk:
    """The walk over an MLP stack with float64 activations updated one connection at a time.

    State, feature-major as in `evoprune.fastmlp` so one unit is one contiguous row:
    ``acts[l]`` ``(in_l, s)`` is the input of layer l (``acts[0]`` the data) and ``pre[l]``
    ``(out_l, s)`` its pre-activation under the current mask; ``pre[-1]`` are the logits.
    ``right[s]`` says whether sample s is surely classified right, ``undecided[s]`` whether its
    margin is within rounding of zero (undecided). While any sample is undecided, the
    evaluator judges every candidate: its exact status may change under any removal.
    """

    def __init__(self, evaluator: Evaluator, mask: torch.Tensor, criterion: str = "accuracy"):
        self.evaluator, self.mask, self.criterion = evaluator, mask, criterion
        self.loss_slack = LOSS_SLACK * len(evaluator.y)  # as `prune._GuardedWalk`'s
        self.layers = FastMLP(evaluator.model, evaluator.space).layers
        self.masked = []  # (out, in) float64 weights under the current mask
        for layer in self.layers:
            w = layer.weight.double().cpu()
            if layer.bits is not None:
                w = w * mask[layer.bits].view(w.shape)
            self.masked.append(w.numpy().copy())
        biases = [layer.bias.double().cpu().numpy() for layer in self.layers]  # (out,) each
        self.biases = [b[:, None] for b in biases]
        n = len(evaluator.X)
        XT = evaluator.X.reshape(n, -1).double().cpu().numpy().T.copy()  # (in, s)
        self.y = evaluator.y.cpu().numpy()
        # valid for every submask of the starting one, with one update per set bit
        self.tol = rounding_bound(self.masked, biases, XT, int(mask.sum()))
        self.acts, self.pre = [XT], []
        for idx, masked in enumerate(self.masked):
            self.pre.append(masked @ self.acts[idx] + self.biases[idx])
            if idx < len(self.masked) - 1:
                self.acts.append(np.maximum(self.pre[idx], 0.0))
        self.sign = np.where(self.y == 1, 1.0, -1.0)  # two classes: margin = sign * (l1 - l0)
        self.cols = np.arange(n)
        margin = self._margin(self.pre[-1], slice(None))
        self.right, self.undecided = margin > self.tol, np.abs(margin) <= self.tol
        self.n_undecided = int(np.count_nonzero(self.undecided))
        self.reach: dict[int, tuple[np.ndarray | slice, np.ndarray]] = {}
        self.evaluations = 0

    def _margin(self, logits: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """The true class's logit minus the largest other one, of samples `rows` with logits
        ``(C, r)``: ``(r,)``. Ties are left undecided (|margin| <= tol), so argmax's tie rule
        never matters here."""
        if logits.shape[0] == 2:
            return (logits[1] - logits[0]) * self.sign[rows]
        y, cols = self.y[rows], self.cols[: logits.shape[1]]
        true = logits[y, cols]
        others = logits.copy()
        others[y, cols] = -np.inf
        return true - others.max(0)

    def _inputs(self, idx: int, i: int) -> tuple[np.ndarray | slice, np.ndarray]:
        """The samples where input i of layer idx is nonzero, and its values there. Fixed
        while layer idx is walked (they depend on the layers below only), so kept: at most
        a quarter of the samples each, else a view, so under half the size of ``acts[idx]``."""
        if i not in self.reach:
            x = self.acts[idx][i]
            rows = _support(x)
            self.reach[i] = rows, x[rows]
        return self.reach[i]

    def _score(self, mask: torch.Tensor) -> float:
        """The evaluator's accuracy of one mask."""
        self.evaluations += 1
        scores = self.evaluator.evaluate(mask.view(1, -1).to(self.evaluator.device))
        return float(scores["accuracy"][0])

    def run(self, bar: Any) -> tuple[torch.Tensor, PruneReport]:
        mask = self.mask.clone()
        start_accuracy = self._score(mask)
        order = torch.nonzero(mask).flatten()
        for idx, layer in enumerate(self.layers):
            if layer.bits is None:
                continue
            bits = order[(order >= layer.bits.start) & (order < layer.bits.stop)]
            self.reach = {}
            for bit in bits.tolist():
                o, i = divmod(bit - layer.bits.start, layer.weight.shape[1])
                if self._try(idx, o, i, mask, bit):
                    mask[bit] = False
            bar.update(len(bits))
        report = PruneReport(
            bits_before=len(order),
            bits_after=int(mask.sum()),
            accuracy_before=start_accuracy,
            accuracy_after=self._score(mask),
            evaluations=self.evaluations,
            criterion=self.criterion,
        )
        return mask, report

    def _try(self, idx: int, o: int, i: int, mask: torch.Tensor, bit: int) -> bool:
        """Judge "remove (o, i) of layer idx" against the current mask; if it passes, make it
        the current mask (with the very arithmetic it was judged by) and return True."""
        self.evaluations += 1
        last = len(self.masked) - 1
        rows, x = self._inputs(idx, i)  # the samples this connection reaches
        if not isinstance(rows, slice) and len(rows) == 0:  # none: removing it changes nothing
            self.masked[idx][o, i] = 0.0
            return True
        w = self.masked[idx][o, i]
        z = self.pre[idx][o, rows] - w * x  # new pre-activations of unit o
        if idx == last:
            changed = rows
            logits = self.pre[idx][:, rows]  # (C, r)
            logits = logits.copy() if isinstance(rows, slice) else logits
            logits[o] = z
        else:
            a = np.maximum(z, 0.0)
            da = a - self.acts[idx + 1][o, rows]
            moved = _support(da)
            if not isinstance(moved, slice) and len(moved) == 0:  # no activation moves
                self.masked[idx][o, i] = 0.0
                self.pre[idx][o, rows] = z
                return True
            changed, da = _compose(rows, moved), da[moved]
            # A rank-1 update of the next layer: (out, r)
            nxt = self.pre[idx + 1][:, changed] + self.masked[idx + 1][:, o : o + 1] * da
            logits = nxt
            for j in range(idx + 2, last + 1):
                logits = self.masked[j] @ np.maximum(logits, 0.0) + self.biases[j]
        margin, tol = self._margin(logits, changed), self.tol[changed]
        right = margin > tol
        n_right, n_wrong = np.count_nonzero(right), np.count_nonzero(margin < -tol)
        if self.n_undecided or n_right + n_wrong < len(margin):  # a near-tie: the evaluator decides
            trial = mask.clone()
            trial[bit] = False
            passed = self._score(trial) >= self._score(mask)
        else:
            passed = bool(n_right >= np.count_nonzero(self.right[changed]))
        if passed and self.criterion == "accuracy-loss":  # and the cross-entropy must not rise
            y = self.y[changed]
            passed = _ce(logits, y) <= _ce(self.pre[last][:, changed], y) + self.loss_slack
        if not passed:
            return False
        undecided = np.abs(margin) <= tol
        self.n_undecided += int(np.count_nonzero(undecided)) - int(
            np.count_nonzero(self.undecided[changed])
        )
        self.masked[idx][o, i] = 0.0
        self.pre[idx][o, rows] = z
        if idx < last:
            self.acts[idx + 1][o, rows] = a
            self.pre[idx + 1][:, changed] = nxt
            for j in range(idx + 2, last + 1):  # layers above: only the samples that moved
                self.acts[j][:, changed] = np.maximum(self.pre[j - 1][:, changed], 0.0)
                self.pre[j][:, changed] = self.masked[j] @ self.acts[j][:, changed] + self.biases[j]
        self.right[changed], self.undecided[changed] = right, undecided
        return True


def _ce(logits: np.ndarray, y: np.ndarray) -> float:
    """Summed cross-entropy of logits ``(C, r)`` with labels ``(r,)`` (float64)."""
    top = logits.max(0)
    lse = top + np.log(np.exp(logits - top).sum(0))
    return float((lse - logits[y, np.arange(logits.shape[1])]).sum())


def _support(v: np.ndarray) -> np.ndarray | slice:
    """Where `v` is nonzero: indices when that is under a quarter of it, else everything
    (dense slices then beat gathers and scatters)."""
    n = np.count_nonzero(v)
    return v.nonzero()[0] if 4 * n < len(v) else slice(None)


def _compose(rows: np.ndarray | slice, sub: np.ndarray | slice) -> np.ndarray | slice:
    """``rows[sub]`` for index arrays or the full slice."""
    if isinstance(rows, slice):
        return sub
    return rows if isinstance(sub, slice) else rows[sub]
