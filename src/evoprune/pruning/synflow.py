"""SynFlow: the data-free synaptic-flow score and iterative SynFlow pruning.

Tanaka, Kunin, Yamins & Ganguli 2020, "Pruning neural networks without any data by iteratively
conserving synaptic flow", arXiv 2006.05467. With every weight replaced by its absolute value
and an all-ones input, the network's summed output is the path norm (their Eq. 2, biases left
out: an empty layer disconnects every path)::

    R_SF = 1^T |W_L . M_L| ... |W_1 . M_1| 1

and the score of a weight is ``dR/dw * w = g_{l+1,i} |w_ij| f_{l,j}``, with ``f_l`` the forward
vector (ones pushed through the layers below) and ``g_{l+1}`` the backward one. We compute both
in closed form in float64 (one matrix-vector chain each way), which equals the autograd
definition (tested). Iterative SynFlow re-scores and prunes over 100 rounds with the keep
fraction shrinking exponentially, ``(k / n) ** (r / rounds)`` (their Algorithm 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from evoprune.pruning.dense import Net
from evoprune.pruning.magnitude import topk_masks


def _abs_masked(net: Net, masks: Sequence[torch.Tensor] | None) -> list[torch.Tensor]:
    ws = [w.detach().double().abs() for w in net.weights]
    if masks is None:
        return ws
    return [w * m.double() for w, m in zip(ws, masks, strict=True)]


def synflow_scores(net: Net, masks: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Per-weight SynFlow scores ``(out, in)`` per layer, float64 (zero where masked)."""
    A = _abs_masked(net, masks)
    f = [torch.ones(A[0].shape[1], dtype=torch.float64)]
    for a in A:
        f.append(a @ f[-1])
    g = torch.ones(A[-1].shape[0], dtype=torch.float64)
    out: list[torch.Tensor] = [torch.empty(0)] * len(A)
    for i in range(len(A) - 1, -1, -1):
        out[i] = g[:, None] * A[i] * f[i][None, :]
        g = A[i].T @ g
    return out


def log_synflow(net: Net, masks: Sequence[torch.Tensor] | None = None) -> float:
    """``log R_SF`` of the masked network (``-inf`` when no path connects input and output).

    Each forward vector is renormalised by its maximum and the log of the scale accumulated,
    so deep or wide nets do not overflow float64.
    """
    A = _abs_masked(net, masks)
    f = torch.ones(A[0].shape[1], dtype=torch.float64)
    log_scale = 0.0
    for a in A:
        f = a @ f
        top = float(f.max())
        if top <= 0.0:
            return -math.inf
        f = f / top
        log_scale += math.log(top)
    return log_scale + math.log(float(f.sum()))


def iterative_synflow(net: Net, k: int, rounds: int = 100) -> list[torch.Tensor]:
    """Iterative SynFlow to exactly `k` kept weights (100 rounds, exponential schedule)."""
    return iterative_synflow_order(net, k, rounds, with_keys=False)[0]


def iterative_synflow_order(
    net: Net, k: int, rounds: int = 100, with_keys: bool = True
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Iterative SynFlow's masks and each weight's survival key: the round it was pruned in plus
    half its relative score in that round (survivors: ``rounds + 1`` plus their final score).

    Ranking a layer by this key and keeping iterative SynFlow's count in every layer gives back
    its mask exactly; the CMA-ES genome starts from there. Without `with_keys` the keys are
    None (one scoring pass and a few tensor operations per round less; the same masks).
    """
    n = net.n_weights
    masks = [torch.ones_like(w, dtype=torch.bool) for w in net.weights]
    key = [torch.zeros_like(w, dtype=torch.float64) for w in net.weights]
    for r in range(1, rounds + (2 if with_keys else 1)):
        scores = synflow_scores(net, masks)
        if not with_keys:
            keep = k if r == rounds else max(k, int(round(n * (k / n) ** (r / rounds))))
            live = [torch.where(m, s, -1.0) for s, m in zip(scores, masks, strict=True)]
            masks = topk_masks(live, keep)
            continue
        top = max(float(s.max()) for s in scores)
        rel = [0.5 * s / top if top > 0 else torch.zeros_like(s) for s in scores]
        if r == rounds + 1:  # the survivors, ranked by their final score
            key = [torch.where(m, r + q, kk) for m, q, kk in zip(masks, rel, key, strict=True)]
            break
        keep = k if r == rounds else max(k, int(round(n * (k / n) ** (r / rounds))))
        # pruned weights score -1 so they stay pruned even when every live score is 0
        live = [
            torch.where(m, s, torch.full_like(s, -1.0)) for s, m in zip(scores, masks, strict=True)
        ]
        new = topk_masks(live, keep)
        key = [
            torch.where(m & ~nm, r + q, kk)
            for m, nm, q, kk in zip(masks, new, rel, key, strict=True)
        ]
        masks = new
    return masks, key if with_keys else None
