"""Population evaluation: binary masks ``(P, n_bits)`` -> per-mask metrics, batched and chunked.

Two paths compute the same numbers:

- a fast path for MLP stacks (``nn.Sequential`` of ``Linear`` layers with ReLU, Tanh, Sigmoid
  or GELU between them), see `evoprune.fastmlp`: feature-major batched products over sample
  chunks sized to stay in the CPU cache, with the first layer tabulated when it has few inputs;
- a general path for any ``nn.Module``: ``torch.func.functional_call`` under ``vmap`` over
  the population.

Both are exact (float32 forward; accuracy and macro-F1's confusion counts counted in integers,
cross-entropy summed in float64); they differ from a plain per-mask forward only in float32
summation order. Every built-in metric streams over chunks of samples, macro-F1 by per-class
counts summed over them (moons B, 53 masks, F1 and accuracy: 75 -> 10 ms a generation, the
accuracy alone 8 ms). Only the requested metrics are computed: by default the objective and
accuracy. A genome evaluated once is never evaluated again: results are cached by a 128-bit
BLAKE2b digest of its packed bits (`genome_key`), 16 bytes an entry however large the network
(the packed bits took 30 KB on 784-300-10, 224 KB on 784-1000-1000-10); two genomes of one run
share a digest with probability about ``evaluations**2 / 2**129`` (1e-27 after a million).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from evoprune.devices import check_device, placed, torch_threads
from evoprune.errors import EvopruneError
from evoprune.fastmlp import FastMLP, MaskedChunk, stack_activation
from evoprune.inputs import check_data
from evoprune.masks import MaskSpace, pack_rows
from evoprune.objectives import OBJECTIVES, Objective, confusion_counts, get_objective

__all__ = ["Evaluator", "each_copy", "genome_key"]

# Sample chunks of the fast path aim for activations of about this size, so one chunk's
# intermediates stay in L2/L3 instead of streaming through DRAM (measured on the 2-core EPYC:
# 1-4 MB is best, 0.25 MB pays per-op overhead, 16 MB is 1.5-2x slower).
CACHE_BYTES = 2 << 20
# Below this much work per population chunk the sample chunks run on the calling thread: a
# handoff to the pool costs a scheduler time slice when another process holds a core, more than
# such a chunk's work (iris, 120 samples, at load 2: 9.8 s a search with the pool, 4.3 s with
# --threads 1). The arithmetic is the same, so the results are too, bit for bit.
POOL_MIN_BYTES = 4 * CACHE_BYTES
ACCURACY = OBJECTIVES["accuracy"]
T = TypeVar("T")


def genome_key(packed: np.ndarray) -> bytes:
    """The evaluation cache's key of one genome's packed bits (`evoprune.masks.pack_rows`)."""
    return hashlib.blake2b(packed.tobytes(), digest_size=16).digest()


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (workers, pool), shared by all evaluators
_POOL_LOCK = threading.Lock()


def _map_single_threaded(fn: Callable[[int], T], items: list[int]) -> list[T]:
    """`fn` over `items` on one worker per core, each running single-threaded torch ops.

    Why not torch's own threads: the fast path runs thousands of small (~0.1 ms) ops, each an
    OpenMP region ending in a barrier. When another process holds a core, every barrier waits a
    scheduler time slice and a generation gets 3-10x slower (measured on the shared 2-core box);
    independent chunks pulled from a queue keep going. Results come back in `items` order, so
    sums over chunks are bit-for-bit reproducible. Torch's thread count is set to 1 for the
    duration of the call and then restored (it is process-wide).
    """
    global _POOL
    n = torch.get_num_threads()
    if n <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != n:
            _POOL = (n, ThreadPoolExecutor(n, initializer=torch.set_num_threads, initargs=(1,)))
        pool = _POOL[1]
    with torch_threads(1):
        return list(pool.map(fn, items))


class Evaluator:
    """Scores populations of masks over one fixed model on one data split.

    `metrics` names what `evaluate` computes (registered objectives or the custom objective's
    name); by default the objective and accuracy.

    >>> from evoprune.nets import build_mlp
    >>> net = build_mlp([2, 20, 2], seed=0)
    >>> X, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    >>> ev = Evaluator(net, X, y, objective="loss")
    >>> ev.evaluate(torch.ones(3, ev.n_bits, dtype=torch.bool))["accuracy"].shape
    torch.Size([3])
    """

    def __init__(
        self,
        model: nn.Module,
        X: torch.Tensor,
        y: torch.Tensor,
        objective: str | Objective = "accuracy",
        space: MaskSpace | None = None,
        device: str | torch.device = "cpu",
        memory_mb: float = 64.0,
        cache: bool = True,
        fast: bool | None = None,
        metrics: Sequence[str] | None = None,
    ):
        self.device = torch.device(check_device(str(device)))
        self.model = placed(model, self.device)
        self.space = space or MaskSpace(model)
        self.n_bits = self.space.n_bits
        X, y, _, _ = check_data(self.model, X, y)  # labels the network can output, finite rows
        self.X, self.y = X.to(self.device), y.to(self.device)
        self.objective = get_objective(objective)
        self.memory_bytes = memory_mb * 2**20
        stack = stack_activation(model) is not None
        self.fast = stack if fast is None else fast
        self._one_by_one = False  # the general path: True once vmap could not batch the model
        if self.fast and not stack:
            raise EvopruneError(
                "fast: True needs an nn.Sequential of Linear layers with ReLU, Tanh, Sigmoid or "
                f"GELU between them, got a {type(model).__name__}"
            )

        names = (self.objective.name, "accuracy") if metrics is None else tuple(metrics)
        self.metric_names: tuple[str, ...] = tuple(dict.fromkeys(names))
        self._metrics = [self._resolve(name) for name in self.metric_names]
        self._streams = all(m.streams for m in self._metrics)
        # metrics of the confusion counts (macro-F1): per-class counts are summed over chunks
        self._counts = any(m.from_counts is not None for m in self._metrics)
        # Only predictions wanted (accuracy, F1): the fast path may compare logits without
        # keeping them.
        self._predictions_only = all(
            m is ACCURACY or m.from_counts is not None for m in self._metrics
        )

        # the weights as they are (the general path's, and any caller's, e.g. a gradient)
        self.params = {k: v.detach() for k, v in self.model.named_parameters()}
        self.buffers = {k: v.detach() for k, v in self.model.named_buffers()}
        if self.fast:
            self._XT = self.X.reshape(len(self.X), -1).T.contiguous()  # (in, n) feature-major
            # Only ever asked about X: first-layer units zero on all of it can be skipped.
            self._mlp = FastMLP(self.model, self.space, support=self._XT)
            self.n_classes = self._mlp.n_classes
            self._widest = max(layer.weight.shape[0] for layer in self._mlp.layers)
        else:
            self._widest, self.n_classes = self._probe()
        # Two classes: "argmax is class 1" is "logit 1 > logit 0" (a tie goes to class 0).
        self._y_bool = self.y.bool() if self.n_classes == 2 else None
        self._true_n = torch.bincount(self.y.cpu(), minlength=self.n_classes)
        self._cache: dict[bytes, np.ndarray] | None = {} if cache else None
        self.n_evaluations = 0  # distinct genomes actually evaluated (cache misses)

    # -- public ------------------------------------------------------------------------------

    def evaluate(self, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metrics of every mask: ``(P, n_bits)`` bool -> ``{name: (P,) float64}``."""
        masks = self._check(masks)
        out = np.empty((masks.shape[0], len(self.metric_names)))
        if self._cache is None:
            out[:] = self._compute(masks)
            self.n_evaluations += masks.shape[0]
        else:
            keys = [genome_key(row) for row in pack_rows(masks)]
            todo: dict[bytes, int] = {}
            for i, key in enumerate(keys):
                if key not in self._cache and key not in todo:
                    todo[key] = i
            if todo:
                fresh = self._compute(masks[list(todo.values())])
                for key, row in zip(todo, fresh, strict=True):
                    self._cache[key] = row
                self.n_evaluations += len(todo)
            for i, key in enumerate(keys):
                out[i] = self._cache[key]
        return {name: torch.from_numpy(out[:, j]) for j, name in enumerate(self.metric_names)}

    def cache_arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `n` cache entries as ``(keys (n, 16) uint8, metrics (n, M))``, for a
        checkpoint. The cache only grows, in insertion order, one entry per evaluation: its
        first ``state.evaluations`` entries are exactly the cache as it was when a GA state was
        complete (an interrupt may land mid-generation, after new entries went in)."""
        cache = list(itertools.islice((self._cache or {}).items(), n))
        if not cache:
            return np.zeros((0, 0), np.uint8), np.zeros((0, len(self.metric_names)))
        keys = np.array([np.frombuffer(k, dtype=np.uint8) for k, _ in cache])
        return keys, np.stack([v for _, v in cache])

    def restore_cache(
        self, keys: np.ndarray, values: np.ndarray, n_evaluations: int, packed: bool = False
    ) -> None:
        """Put back a checkpoint's cache (`cache_arrays`) and evaluation count. `packed`: the
        keys are packed genomes (a checkpoint written before the cache kept digests)."""
        if self._cache is not None:
            self._cache.clear()
            for key, value in zip(keys, values, strict=True):
                self._cache[genome_key(key) if packed else key.tobytes()] = value
        self.n_evaluations = n_evaluations

    def fitness(self, metrics: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective in the one direction: higher is better, NaN the worst."""
        return self.objective.fitness(metrics[self.objective.name])

    def logits(self, masks: torch.Tensor) -> torch.Tensor:
        """Logits of every mask on every sample: ``(P, n_bits)`` -> ``(P, d, C)`` float32."""
        masks = self._check(masks)
        parts = []
        for p0, p1 in self._pop_chunks(masks.shape[0]):
            chunks = [lg.transpose(1, 2) for _, lg in self._logit_chunks(masks[p0:p1], False)]
            parts.append(torch.cat(chunks, dim=1))
        return torch.cat(parts)

    # -- internals ---------------------------------------------------------------------------

    def _resolve(self, name: str) -> Objective:
        if name == self.objective.name:
            return self.objective
        if name in OBJECTIVES:
            return OBJECTIVES[name]
        allowed = ", ".join(dict.fromkeys((*OBJECTIVES, self.objective.name)))
        raise EvopruneError(f"metrics: expected names from {allowed}, got {name!r}")

    def _check(self, masks: torch.Tensor) -> torch.Tensor:
        masks = torch.as_tensor(masks).to(device=self.device, dtype=torch.bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_bits:
            raise EvopruneError(
                f"masks: expected shape (P, {self.n_bits}), got {tuple(masks.shape)}"
            )
        return masks

    def _probe(self) -> tuple[int, int]:
        """Largest per-sample activation of any submodule, and the number of classes."""
        sizes: list[int] = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, out: sizes.append(_row_size(out)))
            for m in self.model.modules()
            if m is not self.model
        ]
        try:
            with torch.no_grad():
                out = self.model(self.X[:1])
        finally:
            for h in hooks:
                h.remove()
        return max([*sizes, out[0].numel(), self.X[0].numel()]), out.shape[-1]

    def _pop_chunks(self, P: int) -> list[tuple[int, int]]:
        per_mask = 4 * self.n_bits * 2  # masked weights, float32, with headroom
        if not self._streams:  # whole-data metrics keep every logit of the chunk
            per_mask += 4 * len(self.X) * self.n_classes
        step = max(1, min(P, int(self.memory_bytes // per_mask)))
        return [(p0, min(P, p0 + step)) for p0 in range(0, P, step)]

    def is_small(self, p: int) -> bool:
        """Whether scoring `p` masks is too little work to share among threads (a search this
        small runs on one: when another process holds a core, every hand-off between threads
        waits a scheduler time slice; see `POOL_MIN_BYTES`)."""
        return len(self.X) * 4 * p * self._widest < POOL_MIN_BYTES

    def _sample_step(self, chunk: MaskedChunk | dict[str, torch.Tensor], p: int) -> int:
        if isinstance(chunk, MaskedChunk):
            mlp = self._mlp
            per_sample = 4 * p * chunk.width  # (p, width, s) float32 activations
            if mlp.one_hidden_table:  # table (K, s) and logits (p*C, s)
                per_sample = 4 * (mlp.table_rows + p * mlp.n_classes)
            budget = min(CACHE_BYTES, self.memory_bytes)
        else:
            per_sample = 4 * p * self._widest * 4  # vmap keeps several intermediates alive
            budget = self.memory_bytes
        return max(1, min(len(self.X), int(budget // per_sample)))

    def _prepare(self, masks: torch.Tensor, margin: bool) -> MaskedChunk | dict[str, torch.Tensor]:
        """One chunk of masks made ready to score: the fast path's `MaskedChunk`, else masked weights.

        With `margin` (two classes, fast path) logits become ``(p, 1, s)`` margins, logit 1
        minus logit 0, which is all accuracy needs.
        """
        with torch.no_grad():
            if not self.fast:
                return self._masked_weights(masks)
            # Small ops, run on one thread: a two-thread OpenMP region here leaves its helper
            # spinning while the pool's workers start on the sample chunks (measured under load
            # on the 2-core box: moons D ~1.4x slower per generation).
            with torch_threads(1):
                return self._mlp.prepare(masks, margin=margin)

    def _chunk_logits(
        self, chunk: MaskedChunk | dict[str, torch.Tensor], rows: slice
    ) -> torch.Tensor:
        """Logits ``(p, C, s)`` (or margins ``(p, 1, s)``) on the samples `rows`."""
        with torch.no_grad():  # grad mode is per thread: set it where the work runs
            if isinstance(chunk, MaskedChunk):
                return self._mlp.logits(chunk, self._XT[:, rows])  # x is (in, s)
            return self._vmapped(chunk, self.X[rows]).transpose(1, 2)

    def _logit_chunks(
        self, masks: torch.Tensor, margin: bool
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        chunk = self._prepare(masks, margin)
        step = self._sample_step(chunk, masks.shape[0])
        for s0 in range(0, len(self.X), step):
            rows = slice(s0, min(len(self.X), s0 + step))
            yield rows, self._chunk_logits(chunk, rows)

    def _masked_weights(self, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        per_param = self.space.split(masks)  # name -> (p, *shape) bool
        return {name: self.params[name] * m for name, m in per_param.items()}

    def _vmapped(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """General path: logits ``(p, s, C)`` of every masked copy on samples ``x (s, ...)``."""
        shared = {k: v for k, v in self.params.items() if k not in weights}

        def one(w: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.model, ({**shared, **w}, self.buffers), (x,))

        if not self._one_by_one:
            try:
                return vmap(one)(weights)
            except RuntimeError as exc:
                # a forward vmap cannot batch (a branch on a tensor's value, .item()): each
                # masked copy on its own from now on, the same numbers as a plain forward pass.
                # Any other error (memory) falls back for this chunk only; a real error in
                # the model is raised again by the plain pass.
                self._one_by_one = "vmap" in str(exc)
        return each_copy(one, weights)

    def _compute(self, masks: torch.Tensor) -> np.ndarray:
        """Metrics ``(P, n_metrics)`` float64 for masks not in the cache."""
        rows = [self._compute_chunk(masks[p0:p1]) for p0, p1 in self._pop_chunks(len(masks))]
        return np.concatenate(rows) if rows else np.empty((0, len(self.metric_names)))

    def _compute_chunk(self, masks: torch.Tensor) -> np.ndarray:
        p, n = masks.shape[0], len(self.X)
        chunk = self._prepare(masks, margin=self._predictions_only and self.n_classes == 2)
        step = self._sample_step(chunk, p)
        starts = list(range(0, n, step))
        if self.fast:
            tally = lambda s0: self._tally(chunk, slice(s0, s0 + step))  # noqa: E731
            if self.is_small(p):
                with torch_threads(1):  # the pool workers' arithmetic: the same numbers
                    parts = [tally(s0) for s0 in starts]
            else:
                parts = _map_single_threaded(tally, starts)
        else:  # few large vmapped calls: torch's own threads serve them well
            parts = [self._tally(chunk, slice(s0, s0 + step)) for s0 in starts]
        # Reduce in chunk order: the same sums in the same order on every run.
        correct = torch.zeros(p, dtype=torch.long)
        sums = torch.zeros(p, len(self._metrics), dtype=torch.float64)
        tp, pred_n = (torch.zeros(p, self.n_classes, dtype=torch.long) for _ in range(2))
        kept = []
        for part in parts:
            correct += part.correct
            sums += part.sums
            if part.counts is not None:
                tp += part.counts[0]
                pred_n += part.counts[1]
            if part.logits is not None:
                kept.append(part.logits)
        all_logits = torch.cat(kept, dim=1) if kept else None  # (p, n, C)
        cols = []
        for j, metric in enumerate(self._metrics):
            if metric is ACCURACY:
                cols.append(correct.double() / max(n, 1))
            elif all_logits is None and metric.from_counts is not None:
                cols.append(metric.from_counts(tp, pred_n, self._true_n).double())
            elif all_logits is None:
                cols.append(sums[:, j] / max(n, 1))
            else:
                values = _checked(metric, metric.fn(all_logits, self.y), all_logits, (p,))
                cols.append(values.double().cpu())
        return torch.stack(cols, dim=1).numpy()

    def _tally(self, chunk: MaskedChunk | dict[str, torch.Tensor], rows: slice) -> _Tally:
        """One sample chunk's counts and sums (see `_Tally`)."""
        rows = slice(rows.start, min(rows.stop, len(self.X)))
        logits = self._chunk_logits(chunk, rows)  # (p, C or 1, s)
        p, y = logits.shape[0], self.y[rows]
        tally = _Tally(torch.zeros(p, dtype=torch.long),
                       torch.zeros(p, len(self._metrics), dtype=torch.float64))  # fmt: skip
        with torch.no_grad():
            if ACCURACY in self._metrics or self._counts:
                tally.correct, tally.counts = self._count_predictions(logits, rows)
            if not self._streams:
                tally.logits = logits.transpose(1, 2)
                return tally
            for j, metric in enumerate(self._metrics):
                if metric is not ACCURACY and metric.per_sample is not None:
                    values = metric.per_sample(logits.transpose(1, 2), y)
                    values = _checked(metric, values, logits.transpose(1, 2), (p, len(y)))
                    tally.sums[:, j] = values.sum(-1).cpu()
        return tally

    def _count_predictions(
        self, logits: torch.Tensor, rows: slice
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Correct predictions per mask in one chunk, ``(p, C or 1, s)`` -> ``(p,)`` int64, and
        with a metric of the confusion counts ``(tp, pred_n)``, both ``(p, C)`` int64.

        The prediction is the first largest logit, as ``argmax``; it is found with a running
        maximum over classes because ``argmax`` over the middle dimension is ~10x slower
        (measured). Unlike ``argmax``, a NaN logit never wins.
        """
        if logits.shape[1] == 1:  # margins of a two-class net
            pred = logits[:, 0] > 0
        elif self._y_bool is not None:
            pred = logits[:, 1] > logits[:, 0]  # a tie goes to class 0, as with argmax
        else:
            best, pred = logits[:, 0], torch.zeros_like(logits[:, 0], dtype=torch.long)
            for c in range(1, logits.shape[1]):
                better = logits[:, c] > best  # strict: the first maximum is kept
                best = torch.where(better, logits[:, c], best)
                pred.masked_fill_(better, c)
        two = pred.dtype == torch.bool  # two classes: "is class 1"
        if two:
            assert self._y_bool is not None  # a two-class net: __init__ set it
            y = self._y_bool[rows]
        else:
            y = self.y[rows]
        correct = (pred == y).sum(dim=1)
        if not self._counts:
            return correct.cpu(), None
        if two:  # class 1's counts, and class 0's from them
            tp1, pred1 = (pred & y).sum(dim=1), pred.sum(dim=1)
            tp = torch.stack([correct - tp1, tp1], dim=1)
            pred_n = torch.stack([pred.shape[1] - pred1, pred1], dim=1)
        else:
            tp, pred_n = confusion_counts(pred, y, self.n_classes)
        return correct.cpu(), (tp.cpu(), pred_n.cpu())


@dataclass
class _Tally:
    """One sample chunk's share of the metrics: correct predictions ``(p,)``, sums of the
    per-sample metrics ``(p, m)``, with a metric of the confusion counts the chunk's true
    positives and predictions ``(p, C)`` each, and the logits ``(p, s, C)`` when some metric
    needs the whole data at once."""

    correct: torch.Tensor
    sums: torch.Tensor
    counts: tuple[torch.Tensor, torch.Tensor] | None = None
    logits: torch.Tensor | None = None


def _checked(
    metric: Objective, values: object, logits: torch.Tensor, shape: tuple[int, ...]
) -> torch.Tensor:
    """A user objective's output as a tensor of `shape`, or one clear error at its first call
    (a wrong shape would otherwise fail, or silently broadcast, far from its cause)."""
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != shape:
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise EvopruneError(
            f"objective {metric.name}: expected a tensor of shape {shape} for logits of shape "
            f"{tuple(logits.shape)}, got {got}"
        )
    return values


def each_copy(one: Any, weights: dict[str, torch.Tensor], *args: Any) -> torch.Tensor:
    """``vmap(one)(weights, *args)`` one copy at a time: for a forward vmap cannot batch (a
    branch on a tensor's value, ``.item()``); `weights` hold the copies along dimension 0."""
    p = next(iter(weights.values())).shape[0]
    return torch.stack([one({k: v[i] for k, v in weights.items()}, *args) for i in range(p)])


def _row_size(out: Any) -> int:
    """Values per sample in a submodule's output: a tensor's first row, the largest of a tuple's,
    list's or dict's tensors; 0 for anything else (a scalar, None: nothing per sample)."""
    if isinstance(out, torch.Tensor):
        return out[0].numel() if out.ndim else 0
    if isinstance(out, tuple | list):
        return max([_row_size(o) for o in out], default=0)
    if isinstance(out, dict):
        return max([_row_size(o) for o in out.values()], default=0)
    return 0
