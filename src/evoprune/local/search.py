"""Exact local search over single-bit flips of a mask, and iterated local search.

A *pass* visits every unit of every maskable layer (output layer first, then the hidden layers
from the top down, units in a seeded random order). For a unit, every flip of its incoming
weights is scored (`MLPState.block_scores`: exactly with ``ranking="none"``, by the softmax
expansion with ``ranking="expansion"``), the promising ones are sorted, and the best
``batch`` of them are tried together, *exactly* (`MLPState.try_step`); the batch is halved
until it is accepted or empty. A step is accepted when the exact objective improves, or when
it only removes weights and the objective does not get worse (so sparsity keeps rising: the
paper's post-pruning is the special case of removals only). With the accuracy or F1 objective
and ``tiebreak`` (the default) a step is judged by the pair (objective, cross-entropy + penalty *
density) in that order: among flips that leave the objective as it is, the loss decides.
A descent ends after a pass
without an accepted step, after ``max_passes``, or when the validation accuracy has not
improved for ``patience`` passes.

Iterated local search (Lourenço, Martin & Stützle, "Iterated Local Search", 2003): after the
descent, ``kicks`` times flip ``kick_bits`` random bits, descend again, and keep the result if
(objective, tie-breaker, set bits) is not worse, else go back. On the general path
(`ModuleState`) with the loss and the expansion ranking, which there is the gradient alone, a
start then ends with one more descent whose passes score every removal of a kept weight
exactly (`LocalSearch.removal_pass`): under a first-order order a removal that barely moves
the loss ranks low and is seldom tried. ``starts`` random masks of density
``start_density`` give the multi-start search; `local_search` keeps the best.

With ``fixed_sparsity`` every mask has exactly that sparsity in every layer, and a step swaps
as many bits on as off within one unit (like-for-like with edge-popup at sparsity p).

Determinism: every random choice comes from one generator seeded by the run seed; the state
is rebuilt from the mask after every pass and kick, so a resumed run (from a checkpoint
written at such a boundary) continues with the very same numbers, bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoprune.errors import EvopruneError
from evoprune.evaluate import Evaluator
from evoprune.fastmlp import is_mlp_stack
from evoprune.inputs import both_or_neither
from evoprune.interrupts import errors_of_interrupts, sigterm_as_interrupt
from evoprune.io import write_atomic
from evoprune.local import checkpoint as ckpt_file
from evoprune.local.checkpoint import Position
from evoprune.local.config import LocalConfig
from evoprune.local.incremental import UNDECIDED_DELTA, MLPState
from evoprune.local.module_state import ModuleState
from evoprune.local.state import FlipState
from evoprune.masks import MaskSpace
from evoprune.seeding import numpy_generator

EPS = 1e-12  # a loss change must exceed this to count as an improvement (float64 sums)


@dataclass
class LocalResult:
    mask: torch.Tensor  # (n_bits,) bool
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


class LocalSearch:
    """Local and iterated local search on one state (`evoprune.local.state.FlipState`: an MLP
    stack's `MLPState`, any other module's `ModuleState`); see the module docstring."""

    def __init__(
        self,
        state: FlipState,
        config: LocalConfig,
        val: Evaluator | None = None,
        progress: bool = False,
        init_masks: list[np.ndarray] | None = None,
    ):
        if init_masks is not None and not len(init_masks):
            raise EvopruneError("init_masks: expected at least one start mask, got none")
        self.state, self.cfg, self.val = state, config, val
        self.rng = numpy_generator(config.seed, "local")
        self.init_masks = init_masks
        default_gain = 1e-3 if state.objective == "loss" else 0.0
        self.min_gain = config.min_gain if config.min_gain is not None else default_gain
        self.progress = progress
        self.history: list[dict[str, Any]] = []
        self.pos = Position()
        # the masks the search keeps: the ILS incumbent, the best over starts, the best on the
        # validation slice
        self.incumbents: dict[str, np.ndarray | None] = dict.fromkeys(("base", "best", "val_best"))
        self.last_val = float("nan")  # the validation accuracy of the last pass
        self.layers = [li for li in range(state.n_layers) if state.maskable[li]][::-1]
        # the general path orders the loss's flips by its gradient alone, under which a removal
        # that barely moves the loss ranks low and is seldom tried: each start ends with a
        # descent that scores every removal exactly (`removal_pass`)
        self.prunes = (
            isinstance(state, ModuleState)
            and config.ranking == "expansion"
            and state.objective == "loss"
            and config.fixed_sparsity is None
        )
        self._trace: list[tuple] | None = None  # ((value, secondary) before, after, removal-only)
        self.last_snapshot: bytes | None = None  # the checkpoint as of the last pass boundary
        self.resumed_code: list[dict[str, Any]] = []  # the code of the runs it resumes

    # -- one unit, one pass ---------------------------------------------------------------------

    def unit_step(
        self, li: int, o: int, scores: tuple[np.ndarray, np.ndarray] | None = None
    ) -> int:
        """Score the flips of unit o of layer li (or take `scores`, ``(primary, secondary)``
        scored a moment ago), accept the best batch that passes exactly. Returns the number
        of flips accepted. A step passes when it improves (primary, secondary) in that order,
        or when it only removes weights and makes neither worse."""
        st, cfg = self.state, self.cfg
        if scores is None:
            p, s = st.block_scores(li, np.array([o]), cfg.ranking)
            scores = p[0], s[0]
            self.pos.flips_evaluated += len(scores[0])
        deltas, ties = scores  # the changes of (primary, secondary) per flip
        on = st.mask[li][o]
        if cfg.fixed_sparsity is not None:
            return self._swap_step(li, o, deltas, ties, on)
        good = np.nonzero((deltas < 0) | ((deltas <= 0) & ((ties < 0) | (on & (ties <= 0)))))[0]
        if len(good) == 0:
            return 0
        order = good[np.lexsort((ties[good], deltas[good]))]
        k = min(len(order), cfg.batch)
        while k >= 1:
            chosen = order[:k]
            d, t = st.try_step(li, o, chosen)
            removal = bool(on[chosen].all())
            if d != UNDECIDED_DELTA and (
                d < -EPS or (d <= 0.0 and (t < -EPS or (removal and t <= 0.0)))
            ):
                self._accept(li, o, chosen, removal)
                return k
            k //= 2
        return 0

    def _swap_step(
        self, li: int, o: int, deltas: np.ndarray, ties: np.ndarray, on: np.ndarray
    ) -> int:
        """Swap the k best weights off for the k best on (each side ranked by (primary,
        secondary)): accepted when (primary, secondary) improves, so the accuracy or F1's
        tie-breaking loss leads the swaps across a plateau as it leads `unit_step`'s flips."""
        off_i, on_i = np.nonzero(~on)[0], np.nonzero(on)[0]
        adds = off_i[np.lexsort((ties[off_i], deltas[off_i]))]
        drops = on_i[np.lexsort((ties[on_i], deltas[on_i]))]
        n = min(len(adds), len(drops))
        pair = deltas[adds[:n]] + deltas[drops[:n]]
        pair_ties = ties[adds[:n]] + ties[drops[:n]]
        k = min(int(np.count_nonzero((pair < 0) | ((pair <= 0) & (pair_ties < 0)))), self.cfg.batch)
        while k >= 1:
            chosen = np.concatenate([drops[:k], adds[:k]])
            d, t = self.state.try_step(li, o, chosen)
            if d != UNDECIDED_DELTA and (d < -EPS or (d <= 0.0 and t < -EPS)):
                self._accept(li, o, chosen, False)
                return 2 * k
            k //= 2
        return 0

    def _accept(self, li: int, o: int, chosen: np.ndarray, removal: bool) -> None:
        full = lambda: (self.state.full_value(), self.state.full_secondary())  # noqa: E731
        before = full() if self._trace is not None else None
        self.state.apply(li, o, chosen)
        self.pos.flips_accepted += len(chosen)
        if self._trace is not None:
            self._trace.append((before, full(), removal))

    def one_pass(self) -> int:
        """Every unit of every maskable layer once; units are scored `block` at a time (one
        compiled call shared among the cores), then judged one by one against the current
        mask (a score may be a few acceptances old: it only orders the candidates)."""
        accepted = 0
        cut = self.cfg.fixed_sparsity is None  # a swap step pairs flips by their exact changes
        for li in self.layers:
            order = self.rng.permutation(self.state.W[li].shape[0])
            for first in range(0, len(order), self.cfg.block):
                units = order[first : first + self.cfg.block]
                deltas, ties = self.state.block_scores(li, units, self.cfg.ranking, cut=cut)
                self.pos.flips_evaluated += deltas.size
                for u, o in enumerate(units):
                    scores = self._exact_top(li, int(o), deltas[u], ties[u])
                    accepted += self.unit_step(li, int(o), scores)
        if accepted:  # else the state is the last refresh's, bit for bit
            self.state.refresh()
        return accepted

    def removal_pass(self) -> int:
        """Every unit of every maskable layer once, each removal of a weight it keeps scored
        exactly and judged as `unit_step` judges a flip (the last descent of a start on the
        general path with the loss: see `prunes`)."""
        accepted = 0
        for li in self.layers:
            for o in self.rng.permutation(self.state.W[li].shape[0]):
                kept = np.nonzero(self.state.mask[li][o])[0]
                if not len(kept):
                    continue
                p, s = self.state.block_scores(li, np.array([o]), "none", cand=kept)
                self.pos.flips_evaluated += len(kept)
                deltas = np.full(self.state.W[li].shape[1], np.inf)
                ties = deltas.copy()
                deltas[kept], ties[kept] = p[0], s[0]
                accepted += self.unit_step(li, int(o), (deltas, ties))
        if accepted:
            self.state.refresh()
        return accepted

    def _pruning(self) -> bool:
        """Whether the current descent is a start's last, over exact removals."""
        return self.prunes and self.pos.kick == self.cfg.kicks

    def _exact_top(self, li: int, o: int, deltas: np.ndarray, ties: np.ndarray) -> tuple:
        """With ``exact_top`` and the expansion ranking: the unit's best-ranked candidates
        scored exactly now, the others out of reach (inf)."""
        top = self.cfg.exact_top
        expanded = self.cfg.ranking == "expansion" and self.state.objective == "loss"
        if not top or not expanded or top >= len(deltas):
            return deltas, ties
        cand = np.sort(np.argsort(deltas, kind="stable")[:top])
        p, s = self.state.block_scores(li, np.array([o]), "none", cand=cand)
        self.pos.flips_evaluated += len(cand)
        exact, tie = np.full_like(deltas, np.inf), np.full_like(ties, np.inf)
        exact[cand], tie[cand] = p[0], s[0]
        return exact, tie

    # -- starts and kicks -----------------------------------------------------------------------

    def _random_mask(self) -> np.ndarray:
        st, cfg = self.state, self.cfg
        parts = []
        for li in range(st.n_layers):
            if not st.maskable[li]:
                continue
            size = st.W[li].size
            if cfg.fixed_sparsity is None:
                parts.append(self.rng.random(size) < cfg.start_density)
                continue
            # the layer's count, spread over its units (the swaps keep each unit's): random
            # units take one more; round to 9 places first (1 - 0.9 is 0.09999999999999998)
            n_rows, width = st.W[li].shape
            per_row, extra = divmod(round(round((1 - cfg.fixed_sparsity) * size, 9)), n_rows)
            more = self.rng.permutation(n_rows) < extra
            rows = [self.rng.permutation(width) < per_row + more[r] for r in range(n_rows)]
            parts.append(np.concatenate(rows))
        return np.concatenate(parts)

    def _kick(self) -> None:
        st = self.state
        n_bits = sum(st.W[li].size for li in self.layers)
        bits = self.rng.choice(n_bits, size=min(self.cfg.kick_bits, n_bits), replace=False)
        mask = st.mask_bits()
        if self.cfg.fixed_sparsity is None:
            mask[bits] = ~mask[bits]
        else:  # swap each chosen bit with a random bit of the other value in the same row
            mask = self._kick_swaps(mask, bits)
        st.set_mask_bits(mask)

    def _kick_swaps(self, mask: np.ndarray, bits: np.ndarray) -> np.ndarray:
        offsets, start = [], 0
        for li in range(self.state.n_layers):
            if self.state.maskable[li]:
                offsets.append((start, self.state.W[li].shape[1]))
                start += self.state.W[li].size
        for b in bits:
            lo, width = next((s, w) for s, w in offsets[::-1] if b >= s)
            row = lo + (b - lo) // width * width
            other = np.nonzero(mask[row : row + width] != mask[b])[0]
            if len(other):
                j = row + int(other[self.rng.integers(len(other))])
                mask[b], mask[j] = mask[j], mask[b]
        return mask

    def key(self) -> list[float]:
        """(objective, tie-breaker, set bits): lower is better, compared in that order."""
        return [self.state.value, self.state.secondary, float(self.state.ones)]

    # -- checkpoints (evoprune.local.checkpoint) -------------------------------------------------

    def snapshot(self, fingerprint: dict[str, Any] | None) -> bytes:
        """The checkpoint's bytes for the search as it stands (between two passes)."""
        masks = {**self.incumbents, "current": self.state.mask_bits()}
        state = self.rng.bit_generator.state
        return ckpt_file.snapshot(
            self.pos, state, self.history, masks, fingerprint, self.resumed_code
        )

    def save(self, path: Path, fingerprint: dict[str, Any] | None) -> Path:
        self.last_snapshot = self.snapshot(fingerprint)
        return write_atomic(path, self.last_snapshot)

    def load(self, path: Path, fingerprint: dict[str, Any] | None) -> None:
        saved = ckpt_file.read(path, fingerprint, self.state.n_maskable)
        self.pos, self.history = saved.position, saved.history
        self.resumed_code = saved.code
        self.rng.bit_generator.state = saved.rng_state
        self.incumbents = {k: saved.masks.get(k) for k in self.incumbents}
        if not self.pos.fresh:
            self.state.set_mask_bits(saved.masks["current"])

    # -- the loop -------------------------------------------------------------------------------

    def run(
        self,
        checkpoint: Path | None = None,
        every: int = 0,
        fingerprint: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Search until done; returns the best mask ``(n_bits,)`` bool."""
        from evoprune.progress import progress_bar

        cfg, pos = self.cfg, self.pos
        n_starts = len(self.init_masks) if self.init_masks is not None else cfg.starts
        bar = progress_bar(desc="local search", unit="pass", enabled=self.progress, leave=False)
        bar.update(pos.total_passes)
        if checkpoint is not None and every:
            self.last_snapshot = self.snapshot(fingerprint)
        while pos.start < n_starts:
            started = time.perf_counter()
            if pos.fresh:
                init = (
                    self.init_masks[pos.start]
                    if self.init_masks is not None
                    else self._random_mask()
                )
                self.state.set_mask_bits(np.asarray(init, bool))
                pos.fresh, pos.kick, pos.passes, pos.since_val_best = False, -1, 0, 0
            before = self.state.value
            accepted = self.removal_pass() if self._pruning() else self.one_pass()
            pos.passes += 1
            pos.total_passes += 1
            stop = self._validate() or before - self.state.value < self.min_gain
            descent = (pos.start, pos.kick)  # the pass's own, before a descent that ends moves on
            if accepted == 0 or pos.passes >= cfg.max_passes or stop:
                self._end_descent(n_starts)
            pos.seconds += time.perf_counter() - started
            self._log(accepted, bar, descent)
            if checkpoint is not None and every and pos.total_passes % every == 0:
                self.save(checkpoint, fingerprint)
        bar.close()
        if checkpoint is not None and every:
            self.save(checkpoint, fingerprint)
        best, val_best = self.incumbents["best"], self.incumbents["val_best"]
        if self.val is not None and val_best is not None:
            return val_best
        assert best is not None  # every start ends in `_end_descent`, which sets it
        return best

    def _end_descent(self, n_starts: int) -> None:
        pos, cfg = self.pos, self.cfg
        key = self.key()
        if pos.kick >= 0 and not self._pruning():  # judge the kick: keep if not worse, else
            # go back (the removals' descent only takes steps that make nothing worse)
            kept, kept_key = self.incumbents["base"], pos.base_key
            assert kept is not None and kept_key is not None  # set when kick -1 ended
            if not _worse(key, kept_key):
                pos.kicks_kept += 1
            else:
                self.state.set_mask_bits(kept)
                key = kept_key
        base = self.state.mask_bits()
        self.incumbents["base"], pos.base_key = base, key
        pos.kick += 1
        pos.passes = 0
        if pos.kick < cfg.kicks:
            self._kick()
            return
        if pos.kick == cfg.kicks and self.prunes:  # then a last descent over exact removals
            return
        if pos.best_key is None or _better(key, pos.best_key):
            self.incumbents["best"], pos.best_key = base.copy(), key
        pos.start += 1
        pos.fresh = True

    def _validate(self) -> bool:
        """Validation accuracy of the current mask; True when the descent should stop."""
        if self.val is None:
            return False
        acc = float(
            self.val.evaluate(torch.from_numpy(self.state.mask_bits()).view(1, -1))["accuracy"][0]
        )
        self.last_val = acc
        if acc > self.pos.val_best:
            self.pos.val_best, self.pos.since_val_best = acc, 0
            self.incumbents["val_best"] = self.state.mask_bits()
            return False
        self.pos.since_val_best += 1
        return self.pos.since_val_best >= self.cfg.patience

    def _log(self, accepted: int, bar: Any, descent: tuple[int, int]) -> None:
        """One history row for the pass just made, in descent (start, kick) of the search: kick
        -1 is a start's first descent, k the one after kick k, and `kicks` the removals'."""
        st, pos = self.state, self.pos
        row = {
            "pass": pos.total_passes,
            "start": descent[0],
            "kick": descent[1],
            "objective": st.score,  # the objective itself (accuracy, F1 or loss)
            "cost": st.value,  # what the search minimises (with the density penalty)
            "train_accuracy": st.accuracy,
            "val_accuracy": self.last_val,
            "sparsity": (st.n_maskable - st.ones) / st.n_maskable,
            "flips_accepted": accepted,
            "flips_evaluated": pos.flips_evaluated,
            "seconds": round(pos.seconds, 4),
        }
        self.history.append(row)
        rate = pos.flips_evaluated / max(pos.seconds, 1e-9)
        val = f" val {row['val_accuracy']:.4f}" if self.val is not None else ""
        bar.set_postfix_str(f"train {row['train_accuracy']:.4f}{val} sparsity {row['sparsity']:.3f} "
                            f"flips/s {rate:,.0f}", refresh=False)  # fmt: skip
        bar.update(1)


def _compare(a: list[float], b: list[float]) -> int:
    """-1, 0 or 1 as key `a` is better than, tied with or worse than `b` (lexicographic; the
    float terms within EPS count as tied, the set bits exactly)."""
    for x, y in zip(a[:-1], b[:-1], strict=True):
        if x < y - EPS:
            return -1
        if x > y + EPS:
            return 1
    return (a[-1] > b[-1]) - (a[-1] < b[-1])


def _better(a: list[float], b: list[float]) -> bool:
    return _compare(a, b) < 0


def _worse(a: list[float], b: list[float]) -> bool:
    return _compare(a, b) > 0


def validation_rows(fraction: float, n: int) -> int:
    """How many of `n` training rows `fraction` holds out; an error unless both parts keep one."""
    n_val = int(round(fraction * n))
    if not 1 <= n_val < n:
        raise EvopruneError(
            f"val_fraction: {fraction} of {n} training rows holds out {n_val}; expected "
            "at least one row held out and one left to fit"
        )
    return n_val


def split_validation(
    X: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded random slice of (X, y) held out: ``(X_fit, y_fit, X_val, y_val)``."""
    n_val = validation_rows(fraction, len(y))
    perm = torch.from_numpy(numpy_generator(seed, "validation").permutation(len(y)))
    val, fit = perm[:n_val], perm[n_val:]
    return X[fit], y[fit], X[val], y[val]


def local_search(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    objective: str = "loss",
    config: LocalConfig | None = None,
    *,
    X_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    init_masks: list[np.ndarray] | None = None,
    space: MaskSpace | None = None,
    device: str = "cpu",
    progress: bool = False,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    fingerprint: dict[str, Any] | None = None,
) -> LocalResult:
    """Exact (iterated, multi-start) local search for a mask over `model`'s fixed weights.

    An MLP stack (`nn.Sequential` of Linear and ReLU; see `evoprune.nets`) is searched on its
    incremental float64 state (`MLPState`); any other module by the general evaluator, one
    forward per candidate flip tried (`ModuleState`: exact, and the slower the larger the
    module; with the loss, ``ranking="expansion"`` orders the flips by the gradient). With
    ``config.val_fraction`` a
    slice of (X, y) is held out (or pass X_val, y_val) and the mask of the best validation
    accuracy is returned.

    >>> from evoprune.nets import build_mlp
    >>> X = torch.randn(200, 2); y = (X[:, 0] > 0).long()
    >>> r = local_search(build_mlp([2, 16, 2]), X, y, config=LocalConfig(max_passes=3))
    >>> r.metrics["train_accuracy"] > 0.8
    True
    """
    config = config or LocalConfig()
    space = space or MaskSpace(model)
    y = torch.as_tensor(y, dtype=torch.long)
    held_out = both_or_neither(X_val, y_val, "X_val and y_val")
    if held_out is None and config.val_fraction > 0:
        X, y, X_held, y_held = split_validation(X, y, config.val_fraction, config.seed)
        held_out = (X_held, y_held)
    val = None
    if held_out is not None:
        val = Evaluator(model, *held_out, "accuracy", space=space, device=device, cache=False,
                        metrics=("accuracy",))  # fmt: skip
    state: FlipState
    if is_mlp_stack(model):
        state = MLPState.from_model(model, X, y, objective, np.ones(space.n_bits, bool), space,
                                    config.sparsity_penalty, config.tiebreak,
                                    config.temperature)  # fmt: skip
    else:  # every flip a mask for the general evaluator (ranked by the gradient: the loss)
        state = ModuleState(model, X, y, objective, np.ones(space.n_bits, bool), space,
                            config.sparsity_penalty, config.tiebreak, config.temperature,
                            device)  # fmt: skip
    ls = LocalSearch(state, config, val, progress=progress, init_masks=init_masks)
    ckpt = Path(checkpoint) if checkpoint else None
    before_resume_seconds = 0.0
    if resume and ckpt is not None and ckpt.exists():
        ls.load(ckpt, fingerprint)
        before_resume_seconds = ls.pos.seconds
    from threadpoolctl import threadpool_limits

    # small products dominate: BLAS threads only cost (measured). BLAS alone: limiting OpenMP
    # as well made torch report one thread inside, and the compiled kernels took that (from
    # the second search of a process on: moons B 25% slower)
    with threadpool_limits(1, user_api="blas"):
        try:
            with sigterm_as_interrupt(), errors_of_interrupts():  # a scheduler's kill too
                best = ls.run(ckpt, checkpoint_every, fingerprint)
        except KeyboardInterrupt:
            # mid-pass: write the state as of the last pass boundary, so --resume continues there
            if ckpt is not None and ls.last_snapshot is not None:
                write_atomic(ckpt, ls.last_snapshot)
            raise
    pos = ls.pos
    metrics = {
        "passes": pos.total_passes,
        "flips_evaluated": pos.flips_evaluated,
        "flips_accepted": pos.flips_accepted,
        "kicks_kept": pos.kicks_kept,
        "local_seconds": round(pos.seconds, 4),
        "flips_per_second": round(pos.flips_evaluated / max(pos.seconds, 1e-9), 1),
        "ranking": config.ranking,
        "before_resume_seconds": round(before_resume_seconds, 4),
    }
    state.set_mask_bits(best)
    metrics["train_accuracy"] = state.accuracy
    metrics["train_objective"] = state.score  # the ticket's, in the objective's own sign
    if val is not None:
        metrics["val_accuracy"] = pos.val_best
    return LocalResult(torch.from_numpy(best.copy()), metrics, ls.history)
