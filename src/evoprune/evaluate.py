"""Population evaluation: binary masks ``(P, n_bits)`` -> per-mask metrics, batched and chunked.

Two paths compute the same numbers:

- a fast path for MLP stacks (``nn.Sequential`` of ``Linear`` and ``ReLU``): every mask's
  masked weights are stacked and the population runs through batched matrix products, the
  first layer as one large GEMM over all masks at once;
- a general path for any ``nn.Module``: ``torch.func.functional_call`` under ``vmap`` over
  the population.

Both chunk over population and samples so one activation tensor stays under ``memory_mb``.
A genome evaluated once is never evaluated again: results are cached by its packed bits.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from evoprune.masks import MaskSpace, pack_rows
from evoprune.objectives import Objective, get_objective

# Metrics every evaluation reports; `objective` is added when it is something else.
BASE_METRICS = ("accuracy", "loss")


def _is_mlp_stack(model: nn.Module) -> bool:
    if not isinstance(model, nn.Sequential):
        return False
    kinds = [type(m) for m in model]
    if not kinds or kinds[-1] is not nn.Linear:
        return False
    # Linear (ReLU Linear)*: strictly alternating, so the fast path mirrors the module exactly.
    return all(k is (nn.Linear if i % 2 == 0 else nn.ReLU) for i, k in enumerate(kinds))


class Evaluator:
    """Scores populations of masks over one fixed model on one data split.

    >>> from evoprune.nets import build_mlp
    >>> net = build_mlp([2, 20, 2], seed=0)
    >>> X, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    >>> ev = Evaluator(net, X, y)
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
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.space = space or MaskSpace(model)
        self.n_bits = self.space.n_bits
        self.X = torch.as_tensor(X, dtype=torch.float32).to(self.device)
        self.y = torch.as_tensor(y, dtype=torch.long).to(self.device)
        self.objective = get_objective(objective)
        self.memory_bytes = memory_mb * 2**20
        self.fast = _is_mlp_stack(model) if fast is None else fast
        if self.fast and not _is_mlp_stack(model):
            raise ValueError("fast=True needs an nn.Sequential of Linear and ReLU layers")
        self.params = {k: v.detach() for k, v in model.named_parameters()}
        self.buffers = {k: v.detach() for k, v in model.named_buffers()}
        self.metric_names = tuple(dict.fromkeys((*BASE_METRICS, self.objective.name)))
        self._cache: dict[bytes, np.ndarray] | None = {} if cache else None
        self.n_evaluations = 0  # distinct genomes actually evaluated (cache misses)

    # -- public ------------------------------------------------------------------------------

    def evaluate(self, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metrics of every mask: ``(P, n_bits)`` bool -> ``{name: (P,) float64}``."""
        masks = torch.as_tensor(masks).to(torch.bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_bits:
            raise ValueError(f"masks: expected shape (P, {self.n_bits}), got {tuple(masks.shape)}")
        out = np.empty((masks.shape[0], len(self.metric_names)))
        if self._cache is None:
            out[:] = self._compute(masks)
            self.n_evaluations += masks.shape[0]
        else:
            keys = [row.tobytes() for row in pack_rows(masks)]
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

    def fitness(self, metrics: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective in the one direction: higher is better, NaN the worst."""
        return self.objective.fitness(metrics[self.objective.name])

    def logits(self, masks: torch.Tensor) -> torch.Tensor:
        """Logits of every mask on every sample: ``(P, n_bits)`` -> ``(P, d, C)`` float32."""
        masks = torch.as_tensor(masks).to(torch.bool)
        return torch.cat(
            [
                torch.cat(list(self._logit_chunks(masks[p0:p1], p1 - p0)), dim=1)
                for p0, p1 in self._pop_chunks(masks.shape[0])
            ]
        )

    # -- internals ---------------------------------------------------------------------------

    def _widest(self) -> int:
        return max(max(p.shape[0] for p in self.space.params), self.X[0].numel())

    def _pop_chunks(self, P: int) -> Iterable[tuple[int, int]]:
        per_mask = 4 * self.n_bits * 2  # masked weights, float32, with headroom
        step = max(1, min(P, int(self.memory_bytes // max(per_mask, 1))))
        return [(p0, min(P, p0 + step)) for p0 in range(0, P, step)]

    def _sample_step(self, p: int) -> int:
        per_sample = 4 * p * self._widest() * 2  # activation plus its ReLU/bias copy
        if not self.fast:
            per_sample *= 4  # vmap keeps more intermediates alive
        return max(1, min(len(self.X), int(self.memory_bytes // per_sample)))

    def _logit_chunks(self, masks: torch.Tensor, p: int) -> Iterable[torch.Tensor]:
        weights = self._masked_weights(masks.to(self.device))
        step = self._sample_step(p)
        with torch.no_grad():
            for s0 in range(0, len(self.X), step):
                yield self._forward(weights, self.X[s0 : s0 + step])

    def _masked_weights(self, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        per_param = self.space.split(masks)  # name -> (p, *shape) bool
        return {
            name: self.params[name].unsqueeze(0) * m.to(self.params[name].dtype)
            for name, m in per_param.items()
        }

    def _forward(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits ``(p, s, C)`` of the masks in `weights` on samples `x` ``(s, ...)``."""
        if self.fast:
            return self._forward_mlp(weights, x)
        params = {**self.params, **weights}
        batched = {k: v for k, v in params.items() if k in weights}
        shared = {k: v for k, v in params.items() if k not in weights}

        def one(w: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.model, ({**shared, **w}, self.buffers), (x,))

        return vmap(one)(batched)

    def _forward_mlp(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        linears = [m for m in self.model if isinstance(m, nn.Linear)]
        names = [p.name for p in self.space.params]
        h: torch.Tensor | None = None
        for i, (layer, name) in enumerate(zip(linears, names, strict=True)):
            w = weights[name]  # (p, out, in)
            p, n_out, n_in = w.shape
            if h is None:
                # One GEMM for the whole population: (s, in) @ (in, p*out) -> (p, s, out).
                z = (x @ w.reshape(p * n_out, n_in).T).view(len(x), p, n_out).transpose(0, 1)
                if layer.bias is not None:
                    z = z + layer.bias
            elif layer.bias is not None:
                z = torch.baddbmm(layer.bias.view(1, 1, -1), h, w.transpose(1, 2))
            else:
                z = torch.bmm(h, w.transpose(1, 2))
            h = z.relu_() if i < len(linears) - 1 else z
        assert h is not None
        return h

    def _compute(self, masks: torch.Tensor) -> np.ndarray:
        """Metrics ``(P, n_metrics)`` for masks not in the cache."""
        rows = []
        additive = all(self._metric(n).additive for n in self.metric_names)
        for p0, p1 in self._pop_chunks(masks.shape[0]):
            chunk = masks[p0:p1]
            if additive:
                rows.append(self._streamed(chunk, p1 - p0))
            else:
                logits = torch.cat(list(self._logit_chunks(chunk, p1 - p0)), dim=1)
                rows.append(self._from_logits(logits, self.y))
        return np.concatenate(rows) if rows else np.empty((0, len(self.metric_names)))

    def _metric(self, name: str) -> Objective:
        return get_objective(name) if name in BASE_METRICS else self.objective

    def _from_logits(self, logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        cols = [self._metric(n).fn(logits, y).double().cpu() for n in self.metric_names]
        return torch.stack(cols, dim=1).numpy()

    def _streamed(self, masks: torch.Tensor, p: int) -> np.ndarray:
        """Means of additive metrics: per-sample values summed one sample chunk at a time."""
        total = torch.zeros(p, len(self.metric_names), dtype=torch.float64)
        start = 0
        for logits in self._logit_chunks(masks, p):
            s = logits.shape[1]
            y = self.y[start : start + s]
            for j, name in enumerate(self.metric_names):
                per_sample = self._metric(name).per_sample
                assert per_sample is not None
                total[:, j] += per_sample(logits, y).sum(dim=-1).cpu()
            start += s
        return (total / max(len(self.X), 1)).numpy()


def forward_one(model: nn.Module, space: MaskSpace, mask: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Logits of one masked copy of `model` (the plain, unbatched reference: copy, mask, forward)."""
    import copy

    clone = copy.deepcopy(model)
    per_param = space.split(mask.to(torch.bool))
    with torch.no_grad():
        for name, param in clone.named_parameters():
            if name in per_param:
                param.mul_(per_param[name].to(param.dtype))
        return clone(X)


