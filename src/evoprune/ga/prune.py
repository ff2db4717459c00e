"""Post-evolutionary pruning: drop every weight the final ticket does not need.

As in the paper: walk the set bits of the best mask in order and clear each one whose removal
does not lower the training accuracy (compared with the current, already pruned mask).

That criterion (``"accuracy"``) is `post_prune`'s default and the paper specs' choice;
`GAConfig` defaults to ``"accuracy-loss"`` (below), which lost no test accuracy where the
paper's did (`benchmarks/bench_post_prune.py`). On small
training sets it can trade test accuracy for sparsity: a removal that keeps the training
accuracy may still move the decision boundary (one sample turns right, another wrong, or
margins shrink). Stricter criteria, all walked the same way (set bits in order, each judged
against the current mask), incrementally on MLP stacks for ``"accuracy-loss"``, else through
the batched `Evaluator`:

- ``"accuracy-loss"``: the training accuracy does not drop *and* the training cross-entropy
  does not rise (by more than float32 rounding, `LOSS_SLACK` per sample);
- ``"no-new-errors"``: no training sample that the current mask classifies right turns wrong;
- ``"holdout"``: a fixed, seeded 20% slice of the training set is set aside as a guard; the
  accuracy on neither the rest nor the guard may drop.

Two ways to walk, each with the outcome of the plain one-candidate-at-a-time walk:

- MLP stacks (``nn.Sequential`` of Linear and ReLU), *incrementally*. The activations of the
  current mask on the training set are kept in float64. Removing connection ``(o, i)`` of
  layer l changes only row ``o`` of that layer's pre-activations, by ``-W[o, i] * A_in[i]``,
  and only on the samples where input ``i`` is nonzero; only the samples whose activation
  actually changes go through the layers above (a rank-1 update of the next layer). A
  candidate then costs about one column of one layer instead of a whole forward, and its
  accuracy is the current one plus the change on those samples. Candidates are judged one
  at a time, as in the paper: about half of them are accepted (measured on digits), which
  makes speculative batches mostly wasted work.
- Any other module: speculative batches of K candidates (the current mask minus one more bit
  each) through the general batched `Evaluator`, accepting the first that passes; everything
  before it was judged against the same current mask, so the outcome is that of the
  one-at-a-time walk. K grows while candidates fail and shrinks after an acceptance. The
  guarded criteria (``"no-new-errors"``, ``"holdout"``) walk the same batches, judged per
  sample or on the guard slice (`_GuardedWalk`).

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

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from evoprune.errors import EvopruneError
from evoprune.evaluate import Evaluator
from evoprune.fastmlp import FastMLP, is_mlp_stack
from evoprune.ga.config import POST_PRUNE_CRITERIA
from evoprune.local.rounding import rounding_bound
from evoprune.objectives import Objective
from evoprune.progress import progress_bar
from evoprune.seeding import torch_generator

MAX_BATCH = 256  # candidates per batch of the general path
HOLDOUT_FRACTION = 0.2  # share of the training set the "holdout" criterion sets aside
LOSS_SLACK = 1e-6  # per sample: a rise of the mean cross-entropy below this is rounding


@dataclass(frozen=True)
class PruneReport:
    bits_before: int  # set bits before pruning
    bits_after: int
    accuracy_before: float  # training accuracy
    accuracy_after: float
    evaluations: int  # candidates judged, plus the evaluator's scorings of whole masks
    criterion: str = "accuracy"


def post_prune(
    evaluator: Evaluator,
    mask: torch.Tensor,
    criterion: str = "accuracy",
    seed: int = 0,
    progress: bool = False,
    keep: Objective | None = None,
) -> tuple[torch.Tensor, PruneReport]:
    """Prune `mask` ``(n_bits,)`` greedily on `evaluator`'s (training) data. Returns the pruned
    mask and a report. The training accuracy never goes down. `criterion` is one of
    `POST_PRUNE_CRITERIA` (default: the paper's); `seed` draws the "holdout" guard slice;
    `progress` shows the set bits judged so far. `keep`: an objective the pruning may not
    worsen either (the search's, where it is neither the accuracy nor the loss: a macro-F1 or
    the user's own function, which the criteria alone do not see). The criterion's walk runs
    first; only where it worsened `keep` is the walk redone with `keep` judged at every
    removal too, on per-sample logits (slower: the batched evaluator).

    >>> from evoprune.nets import build_mlp
    >>> X, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    >>> ev = Evaluator(build_mlp([2, 8, 2], seed=0), X, y, metrics=("accuracy",))
    >>> pruned, report = post_prune(ev, torch.ones(ev.n_bits, dtype=torch.bool))
    >>> report.accuracy_after >= report.accuracy_before
    True
    """
    mask = mask.detach().clone().to(device="cpu", dtype=torch.bool)
    if criterion not in POST_PRUNE_CRITERIA:
        raise EvopruneError(
            f"post_prune_criterion: expected one of {', '.join(POST_PRUNE_CRITERIA)}, "
            f"got {criterion!r}"
        )
    with progress_bar(total=int(mask.sum()), desc="post-pruning", unit="bit", enabled=progress,
                      leave=False) as bar:  # fmt: skip
        if keep is not None:
            pruned, report = post_prune(evaluator, mask, criterion, seed)
            if _fitness(evaluator, keep, pruned) >= _fitness(evaluator, keep, mask):
                return pruned, replace(report, evaluations=report.evaluations + 2)
            pruned, again = _GuardedWalk(evaluator, criterion, seed, keep).run(mask, bar)
            return pruned, replace(again, evaluations=report.evaluations + 2 + again.evaluations)
        if is_mlp_stack(evaluator.model) and criterion in ("accuracy", "accuracy-loss"):
            pruned, report = _IncrementalWalk(evaluator, mask, criterion).run(bar)
            if report.accuracy_after >= report.accuracy_before:
                return pruned, report
            warnings.warn(  # never seen: a safety net should the rounding bound ever fail
                "incremental post-pruning lowered the evaluator's accuracy; redoing it the slow way",
                RuntimeWarning,
                stacklevel=2,
            )
        if criterion != "accuracy":
            return _GuardedWalk(evaluator, criterion, seed).run(mask, bar)
        return _speculative_walk(evaluator, mask, bar)


def _accuracy(evaluator: Evaluator, masks: torch.Tensor) -> torch.Tensor:
    return evaluator.evaluate(masks.to(evaluator.device))["accuracy"]


def _speculative_walk(
    evaluator: Evaluator, mask: torch.Tensor, bar: Any
) -> tuple[torch.Tensor, PruneReport]:
    """The general path: batches of candidates through `Evaluator.evaluate`."""
    evaluations = 0

    def score(masks: torch.Tensor) -> Scores:
        nonlocal evaluations
        evaluations += len(masks)
        return (_accuracy(evaluator, masks),)

    passes = lambda new, cur: new[0] >= cur[0]  # noqa: E731
    mask, (accuracy,), first, walked = _batched_walk(mask, score, passes, MAX_BATCH, bar)
    report = PruneReport(
        bits_before=walked,
        bits_after=int(mask.sum()),
        accuracy_before=float(first[0]),
        accuracy_after=float(accuracy),
        evaluations=evaluations,
    )
    return mask, report


Scores = tuple[torch.Tensor, ...]  # per-candidate tensors, each with the candidates first


def _batched_walk(
    mask: torch.Tensor,
    score: Callable[[torch.Tensor], Scores],
    passes: Callable[[Scores, Scores], torch.Tensor],
    max_batch: int,
    bar: Any,
) -> tuple[torch.Tensor, Scores, Scores, int]:
    """Walk the set bits of `mask` in bit order, K candidates at a time (the current mask minus
    one more bit each): `score` them ``(K, n_bits) -> Scores``, and accept the first that
    `passes` ``(new, current) -> (K,) bool`` against the current mask's scores. Every candidate
    before it was judged against the same current mask, so the outcome is that of the
    one-at-a-time walk; K doubles while candidates fail and shrinks after an acceptance.
    Returns the final mask, its scores, the first mask's scores and the bits walked."""
    mask = mask.clone()
    current = tuple(t[0] for t in score(mask.view(1, -1)))
    first = current
    order = torch.nonzero(mask).flatten()  # the set bits, in bit order
    i, k = 0, 8
    while i < len(order):
        bits = order[i : i + k]  # (k,)
        candidates = mask.expand(len(bits), -1).clone()  # (k, n_bits)
        candidates[torch.arange(len(bits)), bits] = False
        new = score(candidates)
        passed = torch.nonzero(passes(new, current)).flatten()
        if len(passed) == 0:
            i += len(bits)
            bar.update(len(bits))
            k = min(2 * k, max_batch)
            continue
        j = int(passed[0])
        mask[bits[j]] = False
        current = tuple(t[j] for t in new)
        i += j + 1
        bar.update(j + 1)
        k = min(max(4, 2 * (j + 1)), max_batch)
    return mask, current, first, len(order)


def _fitness(evaluator: Evaluator, objective: Objective, mask: torch.Tensor) -> float:
    """`objective`'s fitness (higher is better) of one mask, from the evaluator's logits."""
    logits = evaluator.logits(mask.view(1, -1).to(evaluator.device))
    return float(_fitness_of(objective, logits, evaluator.y)[0])


def _fitness_of(objective: Objective, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`objective`'s fitness ``(K,)`` of logits ``(K, d, C)``."""
    return objective.fitness(torch.as_tensor(objective.fn(logits, y)).reshape(len(logits)))


class _GuardedWalk:
    """The stricter criteria: the walk of `_speculative_walk`, judged on per-sample logits.

    State of the current mask: which training samples it classifies right ``(d,)`` and its
    summed cross-entropy (float64 over the evaluator's float32 logits). Batches of K candidates
    are scored together and the first that passes is accepted; all before it were judged
    against the same current mask, so the outcome is that of the one-at-a-time walk.
    """

    def __init__(self, evaluator: Evaluator, criterion: str, seed: int,
                 keep: Objective | None = None):  # fmt: skip
        self.ev, self.criterion, self.keep = evaluator, criterion, keep
        self.y = evaluator.y
        d = len(self.y)
        per_candidate = d * max(int(evaluator.n_classes), 2) * 4 * 3  # logits + float64 loss
        self.max_batch = int(max(1, min(MAX_BATCH, evaluator.memory_bytes // per_candidate)))
        self.guard = torch.zeros(d, dtype=torch.bool, device=self.y.device)
        if criterion == "holdout":
            order = torch.randperm(d, generator=torch_generator(seed, "post-prune/holdout"))
            self.guard[order[: int(round(HOLDOUT_FRACTION * d))].to(self.y.device)] = True
        self.evaluations = 0

    def _judge(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per candidate ``(K, n_bits)``: which samples are right ``(K, d)``, the summed
        cross-entropy ``(K,)`` float64 and the kept objective's fitness ``(K,)`` (0 without)."""
        logits = self.ev.logits(masks.to(self.ev.device))  # (K, d, C)
        self.evaluations += len(masks)
        right = logits.argmax(dim=2) == self.y  # argmax: the first maximum, as the evaluator
        k, d, c = logits.shape
        loss = F.cross_entropy(
            logits.reshape(k * d, c).double(), self.y.repeat(k), reduction="none"
        ).view(k, d)
        kept = (
            _fitness_of(self.keep, logits, self.y)
            if self.keep is not None else torch.zeros(k, dtype=torch.float64)
        )  # fmt: skip
        return right, loss.sum(dim=1), kept

    def _passes(
        self,
        right: torch.Tensor,
        loss: torch.Tensor,
        cur_right: torch.Tensor,
        cur_loss: torch.Tensor,
    ) -> torch.Tensor:
        """Which candidates ``(K,)`` the criterion accepts against the current mask."""
        if self.criterion == "no-new-errors":
            return ~(cur_right & ~right).any(dim=1)
        if self.criterion == "holdout":
            fit, guard = ~self.guard, self.guard
            return (right[:, fit].sum(1) >= cur_right[fit].sum()) & (
                right[:, guard].sum(1) >= cur_right[guard].sum()
            )
        if self.criterion == "accuracy":  # the paper's, here beside a kept objective
            return right.sum(1) >= cur_right.sum()
        # accuracy-loss; float32 logits of one function can differ in the last bit between
        # batches, so "does not rise" allows LOSS_SLACK per sample
        slack = LOSS_SLACK * len(self.y)
        return (right.sum(1) >= cur_right.sum()) & (loss <= cur_loss + slack)

    def run(self, mask: torch.Tensor, bar: Any) -> tuple[torch.Tensor, PruneReport]:
        start_accuracy = float(_accuracy(self.ev, mask.view(1, -1))[0])

        def passes(new: Scores, cur: Scores) -> torch.Tensor:
            (right, loss, kept), (cur_right, cur_loss, cur_kept) = new, cur
            return self._passes(right, loss, cur_right, cur_loss) & (kept >= cur_kept)

        mask, _, _, walked = _batched_walk(mask, self._judge, passes, self.max_batch, bar)
        report = PruneReport(
            bits_before=walked,
            bits_after=int(mask.sum()),
            accuracy_before=start_accuracy,
            accuracy_after=float(_accuracy(self.ev, mask.view(1, -1))[0]),
            evaluations=self.evaluations + 2,
            criterion=self.criterion,
        )
        return mask, report


class _IncrementalWalk:
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
        self.loss_slack = LOSS_SLACK * len(evaluator.y)  # as `_GuardedWalk`'s
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
        for idx, w in enumerate(self.masked):
            self.pre.append(w @ self.acts[idx] + self.biases[idx])
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
        return float(_accuracy(self.evaluator, mask.view(1, -1))[0])

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
            passed = n_right >= np.count_nonzero(self.right[changed])
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
