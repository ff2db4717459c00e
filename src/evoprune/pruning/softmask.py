"""SoftMask: a gradient-trained soft mask over frozen trained weights, hardened to the budget.

Per-weight logits ``s``, mask ``sigmoid(s / T)`` with the temperature annealed exponentially from
1 to 0.01, loss = cross-entropy of the masked network + ``lam * mean(mask)``; ``lam`` is tuned
during training towards the budget (multiplicative dual ascent on the density gap after every
epoch), and at the end the ``k`` largest logits are kept (exact budget). The weights never
change; fine-tuning, as for every method, is a separate step. (The family of continuous
sparsification / soft-mask methods, e.g. Savarese, Silva & Maire 2020, arXiv 1912.04427.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch

from evoprune.errors import EvopruneError
from evoprune.pruning.dense import Net, Split, forward
from evoprune.pruning.magnitude import topk_masks
from evoprune.seeding import torch_generator


@dataclass(frozen=True)
class SoftMaskConfig:
    epochs: int = 30
    lr: float = 0.05  # Adam on the logits (0.05 and lam_init 1 reach the budget best in 30 epochs)
    batch_size: int = 64
    t_start: float = 1.0  # temperature annealed exponentially t_start -> t_end
    t_end: float = 0.01
    init_logit: float = 2.0  # sigmoid(2) = 0.88: every weight starts mostly on
    lam_init: float = 1.0
    lam_rate: float = 0.5  # lam *= exp(rate * log(density / target)), clipped to e^+-0.5, per epoch

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise EvopruneError("softmask: epochs and batch_size must be positive")
        if not 0 < self.t_end <= self.t_start:
            raise EvopruneError("softmask: expected 0 < t_end <= t_start")


def softmask(
    net: Net, k: int, split: Split, seed: int, config: SoftMaskConfig = SoftMaskConfig()
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Masks keeping exactly `k` weights; and {lam, soft_density, forward_passes}."""
    logits = [torch.full_like(w, config.init_logit).requires_grad_(True) for w in net.weights]
    opt = torch.optim.Adam(logits, lr=config.lr)
    gen = torch_generator(seed, "softmask-batches")
    n, target = len(split.y_train), k / net.n_weights
    steps = config.epochs * math.ceil(n / config.batch_size)
    lam, step, density = config.lam_init, 0, 1.0
    ratio = config.t_end / config.t_start
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, config.batch_size):
            T = config.t_start * ratio ** (step / max(steps - 1, 1))
            rows = order[start : start + config.batch_size]
            masks = [torch.sigmoid(s / T) for s in logits]
            out = forward(
                Net(tuple(w * m for w, m in zip(net.weights, masks, strict=True)), net.biases),
                split.X_train[rows],
            )
            # a tensor: the masks are not empty (typeshed's sum() may give its start, the int 0)
            dens = cast(torch.Tensor, sum(m.sum() for m in masks)) / net.n_weights
            loss = torch.nn.functional.cross_entropy(out, split.y_train[rows]) + lam * dens
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(dens.detach())
            count += 1
            step += 1
        density = total / count
        gap = math.log(max(density, 1e-9) / target)  # > 0: still too dense
        lam *= math.exp(max(-0.5, min(0.5, config.lam_rate * gap)))
        lam = min(max(lam, 1e-6), 1e6)
    hard = topk_masks([s.detach() for s in logits], k)
    return hard, {"lam": lam, "soft_density": density, "forward_passes": step}
