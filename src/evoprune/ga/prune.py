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

- MLP stacks (``nn.Sequential`` of Linear and ReLU), *incrementally*, on float64 activations
  updated one connection at a time (`evoprune.ga.prune_incremental`): a candidate costs about
  one column of one layer instead of a whole forward, and the decisions are those of exact
  arithmetic. Should the `Evaluator`'s accuracy of the final mask ever be lower than that of
  the first, the general path redoes the walk.
- Any other module: speculative batches of K candidates (the current mask minus one more bit
  each) through the general batched `Evaluator`, accepting the first that passes; everything
  before it was judged against the same current mask, so the outcome is that of the
  one-at-a-time walk. K grows while candidates fail and shrinks after an acceptance. The
  guarded criteria (``"no-new-errors"``, ``"holdout"``) walk the same batches, judged per
  sample or on the guard slice (`_GuardedWalk`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from evoprune.errors import EvopruneError
from evoprune.evaluate import Evaluator
from evoprune.fastmlp import is_mlp_stack
from evoprune.ga.config import LOSS_SLACK, POST_PRUNE_CRITERIA
from evoprune.ga.prune_incremental import IncrementalWalk
from evoprune.ga.prune_report import PruneReport
from evoprune.objectives import Objective
from evoprune.progress import progress_bar
from evoprune.seeding import torch_generator

MAX_BATCH = 256  # candidates per batch of the general path
HOLDOUT_FRACTION = 0.2  # share of the training set the "holdout" criterion sets aside


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
            pruned, report = IncrementalWalk(evaluator, mask, criterion).run(bar)
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
