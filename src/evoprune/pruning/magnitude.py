"""Exact-budget masks: global or per-layer top-k of a score, magnitude pruning, random pruning.

Every method keeps exactly ``k = round((1 - sparsity) * n_weights)`` weights (`keep_count`). Global
top-k breaks ties by position (a stable sort); per-layer top-k uses ``torch.topk`` (deterministic on
CPU, several times faster), so the same scores always give the same mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from evoprune.errors import EvopruneError
from evoprune.pruning.dense import Net
from evoprune.seeding import torch_generator


def keep_count(n_weights: int, sparsity: float) -> int:
    """Weights kept at `sparsity` (fraction of zeros): ``round((1 - sparsity) * n)``, at least 1."""
    if not 0.0 <= sparsity < 1.0:
        raise EvopruneError(f"sparsity: expected a fraction in [0, 1), got {sparsity}")
    return max(1, int(round((1.0 - sparsity) * n_weights)))


def topk_masks(scores: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Keep the `k` highest scores over all layers together (stable: earlier position wins ties)."""
    flat = torch.cat([s.reshape(-1).double() for s in scores])
    if not 0 < k <= flat.numel():
        raise EvopruneError(f"budget: cannot keep {k} of {flat.numel()} weights")
    order = torch.argsort(flat, descending=True, stable=True)
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[order[:k]] = True
    return _split(keep, scores)


def layer_topk_masks(scores: Sequence[torch.Tensor], counts: Sequence[int]) -> list[torch.Tensor]:
    """Keep ``counts[l]`` highest scores within each layer."""
    out = []
    for s, c in zip(scores, counts, strict=True):
        flat = s.reshape(-1)
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        if int(c) > 0:
            keep[torch.topk(flat, int(c), sorted=False).indices] = True
        out.append(keep.view(s.shape))
    return out


def allocate(fractions: Sequence[float], sizes: Sequence[int], k: int) -> list[int]:
    """Integer counts ``c_l <= sizes[l]`` summing to exactly `k`, closest to ``fractions * sizes``
    (largest remainder; the fractions must already sum to about ``k``)."""
    want = np.asarray(fractions, dtype=np.float64) * np.asarray(sizes, dtype=np.float64)
    counts = np.minimum(np.floor(want).astype(np.int64), sizes)
    rest = k - int(counts.sum())
    remainder = want - counts
    for i in np.argsort(-remainder, kind="stable"):
        if rest <= 0:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
            rest -= 1
    while rest > 0:  # fractions summed to less than k: top up the layers with room
        room = np.flatnonzero(counts < np.asarray(sizes))
        counts[room[0]] += 1
        rest -= 1
    while rest < 0:
        i = int(np.argmax(counts))
        counts[i] -= 1
        rest += 1
    return [int(c) for c in counts]


def magnitude(net: Net, k: int, scope: str = "global") -> list[torch.Tensor]:
    """Keep the `k` largest |w|: over the whole network (``global``) or the same fraction of every
    layer (``layer``)."""
    scores = [w.abs() for w in net.weights]
    if scope == "global":
        return topk_masks(scores, k)
    if scope == "layer":
        sizes = [w.numel() for w in net.weights]
        frac = k / sum(sizes)
        return layer_topk_masks(scores, allocate([frac] * len(sizes), sizes, k))
    raise EvopruneError(f"magnitude_scope: expected global or layer, got {scope!r}")


def random_masks(net: Net, k: int, seed: int) -> list[torch.Tensor]:
    """`k` weights kept uniformly at random over the whole network."""
    gen = torch_generator(seed, "random-prune")
    scores = [torch.rand(w.shape, generator=gen, dtype=torch.float64) for w in net.weights]
    return topk_masks(scores, k)


def _split(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for s in like:
        out.append(flat[start : start + s.numel()].view(s.shape))
        start += s.numel()
    return out


def densities(masks: Sequence[torch.Tensor]) -> list[float]:
    return [float(m.float().mean()) for m in masks]


def mask_sparsity(masks: Sequence[torch.Tensor]) -> float:
    kept = sum(int(m.sum()) for m in masks)
    return 1.0 - kept / sum(m.numel() for m in masks)
