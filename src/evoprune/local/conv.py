"""Exact local search over single-bit flips for the conv net (`evoprune.nets.ConvNet`).

No gradients: every flip is scored by its *exact* change of the training cross-entropy, and
every accepted step is judged exactly again. What makes it affordable:

- the head (Linear 1024 -> classes): flipping connection (o, i) changes one logit column by
  ``+-W[o, i] * f[:, i]``; all 1,024 flips of unit o are scored at once from the current logits;
- conv2, one output channel c at a time: flipping weight (c, ci, kh, kw) changes only channel
  c's pre-activation map, by ``+-W * a1[:, ci, kh:kh+8, kw:kw+8]`` (a1: the pooled conv1 maps,
  fixed while conv2 is searched), hence only channel c's 16 pooled features and, through the
  head's 16 matching columns, the logits. Candidates are scored in blocks (``(k, n, 8, 8)``);
- conv1 (800 of the 62,240 weights) stays at its random start mask: a conv1 flip changes every
  conv2 channel, i.e. costs a whole forward per candidate.

For a unit or channel, the flips that lower the loss (or that remove a weight and leave the
loss unchanged) are sorted, and the list is walked: the next ``batch`` of them are tried
together, exactly, and accepted when the loss improves, else the batch is halved (a flip that
fails alone is skipped), for at most ``tries`` exact evaluations. conv2 flips are ranked on
``rank_samples`` random training samples (redrawn every pass). Candidates are ranked in float32, accepted on the
float64 state, which is recomputed from the mask after every pass. A pass visits the head's
units, then conv2's channels, in a seeded random order. It stops after ``max_passes``, a pass
without an accepted step, or ``time_limit`` seconds. Runs on ``device`` (CPU or CUDA).

>>> from evoprune.nets import build_convnet
>>> X, y = torch.rand(64, 784), torch.randint(0, 10, (64,))
>>> net = build_convnet(seed=0, init="signed-constant")
>>> res = conv_local_search(net, X, y, ConvSearchConfig(max_passes=1))
>>> res.metrics["train_loss"] <= res.metrics["start_train_loss"]
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from evoprune.devices import check_device
from evoprune.errors import EvopruneError
from evoprune.inputs import both_or_neither
from evoprune.masks import MaskSpace
from evoprune.nets import ConvNet
from evoprune.scores import score_fit, ticket_scores
from evoprune.seeding import torch_generator
from evoprune.ticket import Ticket, layout_fields


@dataclass(frozen=True)
class ConvSearchConfig:
    start_density: float = 0.5  # P(bit = 1) of the random start (edge-popup's 50%)
    max_passes: int = 20  # passes over the head's units and conv2's channels
    batch: int = 64  # most flips of one unit/channel tried together
    tries: int = 24  # exact evaluations per unit/channel and pass (walking its ranked flips)
    rank_samples: int = 512  # training samples that rank conv2 flips (acceptance uses all;
    # memory: rank_samples * 800 * 64 floats)
    chunk: int = 64  # samples per block when ranking (temporaries: chunk * 800 * 64 floats)
    time_limit: float | None = None  # seconds; None: no limit
    cpu_limit: float | None = None  # CPU seconds of this process (a fair budget on a shared box)
    temperature: float = 1.0  # the cross-entropy of logits / temperature (see LocalConfig)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not 0.0 < self.start_density <= 1.0:
            raise EvopruneError(
                f"start_density: expected a fraction in (0, 1], got {self.start_density}"
            )
        for name in ("max_passes", "batch", "tries", "rank_samples", "chunk"):
            if getattr(self, name) < 1:
                raise EvopruneError(
                    f"{name}: expected a positive integer, got {getattr(self, name)}"
                )
        check_device(self.device)
        if not self.temperature > 0:
            raise EvopruneError(f"temperature: expected a positive number, got {self.temperature}")
        for name in ("time_limit", "cpu_limit"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise EvopruneError(f"{name}: expected seconds > 0, got {getattr(self, name)}")


@dataclass
class ConvSearchResult:
    mask: torch.Tensor  # (n_bits,) bool, `MaskSpace` order: conv1, conv2, head
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per pass


class _State:
    """Float64 activations of the current mask on the training set, on one device."""

    def __init__(
        self,
        model: ConvNet,
        X: torch.Tensor,
        y: torch.Tensor,
        masks: Sequence[torch.Tensor],
        device: torch.device,
        t: float = 1.0,
    ) -> None:
        dt = torch.float64
        self.y = y.to(device)
        # detached: a network whose weights require grad (any ConvNet a user builds) would
        # otherwise record every step for autograd (3.3x the memory, 17% slower)
        w = {name: p.detach().to(device, dt) for name, p in model.named_parameters()}
        self.w1, self.b1 = w["conv1.weight"], w["conv1.bias"]
        self.w2, self.b2 = w["conv2.weight"], w["conv2.bias"]
        # the head scaled by 1 / temperature: the loss changes, the predictions do not
        self.w3, self.b3 = w["fc.weight"] / t, w["fc.bias"] / t
        self.m1, self.m2, self.m3 = (m.to(device) for m in masks)
        x = X.to(device, dt).reshape(-1, 1, 28, 28)
        self.a1 = F.max_pool2d(
            torch.relu(F.conv2d(x, self.w1 * self.m1, self.b1)), 2
        )  # (n,32,12,12)
        self.a1_32 = self.a1.float()  # for ranking
        self.refresh()

    def refresh(self) -> None:
        """Recompute everything above conv1 from the masks (no drift between passes)."""
        self.z2 = F.conv2d(self.a1, self.w2 * self.m2, self.b2)  # (n, 64, 8, 8)
        self.f = F.max_pool2d(torch.relu(self.z2), 2).flatten(1)  # (n, 1024)
        self.logits = self.f @ (self.w3 * self.m3).T + self.b3  # (n, C)

    def loss(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Summed cross-entropy; `logits` ``(..., n, C)`` gives one value per leading index."""
        lg = self.logits if logits is None else logits
        true = lg.gather(-1, self.y.expand(lg.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return (torch.logsumexp(lg, -1) - true).sum(-1)

    # -- the head --------------------------------------------------------------------------------

    def head_deltas(self, o: int) -> torch.Tensor:
        """Exact loss change of flipping each incoming bit of head unit o: ``(1024,)``."""
        sign = 1.0 - 2.0 * self.m3[o].double()  # +1 adds a weight, -1 removes it
        step = sign * self.w3[o]  # (1024,)
        others = torch.cat([self.logits[:, :o], self.logits[:, o + 1 :]], 1)
        lse_others = torch.logsumexp(others, 1, keepdim=True)  # (n, 1)
        col = self.logits[:, o : o + 1] + self.f * step  # (n, 1024): the new logit column o
        true = torch.where(
            (self.y == o).unsqueeze(1), col, self.logits.gather(1, self.y.unsqueeze(1))
        )
        return (torch.logaddexp(lse_others, col) - true).sum(0) - self.loss()

    def try_head(self, o: int, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sign = 1.0 - 2.0 * self.m3[o, inputs].double()
        logits = self.logits.clone()
        logits[:, o] += self.f[:, inputs] @ (sign * self.w3[o, inputs])
        return self.loss(logits), logits

    def apply_head(self, o: int, inputs: torch.Tensor, logits: torch.Tensor) -> None:
        self.m3[o, inputs] = ~self.m3[o, inputs]
        self.logits = logits

    # -- conv2, one output channel ------------------------------------------------------------

    def _channel_logits(self, c: int, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(n, C)`` and pooled features ``(n, 16)`` with channel c's pre-activation
        replaced by `z` ``(n, 8, 8)``."""
        f_c = _pool_relu(z.reshape(-1, 64))  # (n, 16)
        cols = slice(16 * c, 16 * c + 16)
        head = self.w3[:, cols] * self.m3[:, cols]  # (C, 16)
        return self.logits + (f_c - self.f[:, cols]) @ head.T, f_c

    def channel_deltas(
        self, c: int, rows: torch.Tensor, patches: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        """Loss change on the samples `rows` of flipping each of channel c's 800 weights
        ``(800,)``, in float32: a ranking (acceptance is exact, on every sample).
        `patches` ``(r, 800, 64)``: what each conv2 weight sees on those samples."""
        sign = 1.0 - 2.0 * self.m2[c].float()  # (32, 5, 5)
        coef = (sign * self.w2[c].float()).reshape(1, 800, 1)
        cols = slice(16 * c, 16 * c + 16)
        head_t = (self.w3[:, cols] * self.m3[:, cols]).float().T  # (16, C)
        z_c = self.z2[rows, c].float().reshape(-1, 1, 64)
        f_c = self.f[rows, cols].float().unsqueeze(1)
        logits0, y = self.logits[rows].float(), self.y[rows]
        base = (torch.logsumexp(logits0, 1) - logits0.gather(1, y.view(-1, 1)).squeeze(1)).sum()
        out = torch.zeros(800, dtype=torch.float32, device=self.y.device)
        for r0 in range(0, len(rows), chunk):
            r = slice(r0, r0 + chunk)
            z = z_c[r] + coef * patches[r]  # (m, 800, 64)
            df = _pool_relu(z) - f_c[r]  # (m, 800, 16)
            logits = logits0[r].unsqueeze(1) + df @ head_t  # (m, 800, C)
            true = logits.gather(2, y[r].view(-1, 1, 1).expand(-1, 800, 1)).squeeze(2)
            out += (torch.logsumexp(logits, 2) - true).sum(0)
        return out - base

    def try_channel(
        self, c: int, flat: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Exact loss with channel c's bits `flat` (indices into its 800) flipped together."""
        mask_c = self.m2[c].clone().reshape(-1)
        sign = 1.0 - 2.0 * mask_c[flat].double()
        mask_c[flat] = ~mask_c[flat]
        z = self.z2[:, c].clone()  # (n, 8, 8)
        coef = (sign * self.w2[c].reshape(-1)[flat]).tolist()
        for j, w in zip(flat.tolist(), coef, strict=True):
            a, b, d = j // 25, (j % 25) // 5, j % 5
            z += w * self.a1[:, a, b : b + 8, d : d + 8]
        logits, f_c = self._channel_logits(c, z)
        return self.loss(logits), (mask_c, z, logits, f_c)

    def apply_channel(
        self, c: int, found: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> None:
        mask_c, z, logits, f_c = found
        self.m2[c] = mask_c.view(32, 5, 5)
        self.z2[:, c] = z
        self.f[:, 16 * c : 16 * c + 16] = f_c
        self.logits = logits


def _out_of_time(config: ConvSearchConfig, start: float, cpu_start: float) -> bool:
    wall = config.time_limit is not None and time.perf_counter() - start > config.time_limit
    cpu = config.cpu_limit is not None and time.process_time() - cpu_start > config.cpu_limit
    return wall or cpu


def _accuracy(state: _State, X: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the current masks on other data (float64, in chunks)."""
    correct = 0
    for i in range(0, len(X), 1024):
        x = X[i : i + 1024].to(state.y.device, torch.float64).reshape(-1, 1, 28, 28)
        a1 = F.max_pool2d(torch.relu(F.conv2d(x, state.w1 * state.m1, state.b1)), 2)
        z2 = F.conv2d(a1, state.w2 * state.m2, state.b2).flatten(2)  # (m, 64, 64)
        logits = _pool_relu(z2).flatten(1) @ (state.w3 * state.m3).T + state.b3
        correct += int((logits.argmax(1).cpu() == y[i : i + 1024]).sum())
    return correct / len(X)


def _pool_relu(z: torch.Tensor) -> torch.Tensor:
    """relu(max-pool 2x2) of 8x8 maps stored flat ``(..., 64)`` -> ``(..., 16)``; the same as
    pooling after the ReLU (both monotone), four times cheaper than ``max_pool2d`` here."""
    q = z.reshape(*z.shape[:-1], 4, 2, 4, 2)
    top = torch.maximum(q[..., 0, :, 0], q[..., 0, :, 1])
    bottom = torch.maximum(q[..., 1, :, 0], q[..., 1, :, 1])
    return torch.maximum(top, bottom).relu_().flatten(-2)


def _descend_unit(
    deltas: torch.Tensor,
    mask_row: torch.Tensor,
    batch: int,
    try_fn: Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...]]],
    apply_fn: _Acceptor,
    tries: int,
) -> int:
    """Accept good flips of one unit: sort the improving ones (and the free removals) by their
    single-flip score, then walk that list: try the next `batch` together, exactly; on success
    move past them, else halve the batch (a candidate that fails alone is skipped). At most
    `tries` exact evaluations. Returns the flips accepted."""
    free_removal = (deltas <= 0) & mask_row  # removes a weight, loss not worse (ranked)
    promising = torch.nonzero((deltas < 0) | free_removal).flatten()
    order = promising[torch.argsort(deltas[promising], stable=True)]
    pos, k, accepted = 0, batch, 0
    for _ in range(tries):
        if pos >= len(order):
            break
        chosen = order[pos : pos + k]
        loss, found = try_fn(chosen)
        removals_only = bool(mask_row[chosen].all())  # before applying flips them
        if bool(loss < apply_fn.current) or (removals_only and bool(loss <= apply_fn.current)):
            apply_fn(chosen, found)
            pos, accepted = pos + len(chosen), accepted + len(chosen)
        elif len(chosen) == 1:
            pos += 1
        else:
            k = max(1, len(chosen) // 2)
    return accepted


class _Acceptor:
    """Holds the current exact loss; calling it applies a found step."""

    def __init__(self, state: _State, apply: Callable[..., None]) -> None:
        self.state, self.apply = state, apply
        self.current = state.loss()

    def __call__(self, chosen: torch.Tensor, found: tuple[torch.Tensor, ...]) -> None:
        self.apply(chosen, found)
        self.current = self.state.loss()


def conv_local_search(
    model: ConvNet,
    X: torch.Tensor,
    y: torch.Tensor,
    config: ConvSearchConfig | None = None,
    *,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    progress: bool = False,
) -> ConvSearchResult:
    """Search a mask over `model`'s fixed weights that lowers the training cross-entropy.
    With `X_test`, `y_test`, every history row also has the test accuracy after that pass."""
    config = config or ConvSearchConfig()
    if not isinstance(model, ConvNet):
        raise EvopruneError("conv_local_search: expected an evoprune.nets.ConvNet")
    test = both_or_neither(X_test, y_test)
    start, cpu_start = time.perf_counter(), time.process_time()
    device = torch.device(config.device)
    space = MaskSpace(model)
    gen = torch_generator(config.seed, "local/conv")
    mask = torch.rand(space.n_bits, generator=gen) < config.start_density
    parts = space.split(mask)
    masks = [parts[f"{name}.weight"].clone() for name in ("conv1", "conv2", "fc")]
    y = torch.as_tensor(y, dtype=torch.long)
    state = _State(
        model, torch.as_tensor(X, dtype=torch.float32), y, masks, device, config.temperature
    )
    start_loss = float(state.loss())
    history: list[dict[str, Any]] = []
    n, flips_scored, accepted = len(y), 0, 0
    from evoprune.progress import progress_bar

    # counted in units (head units and conv2 channels): one pass can take most of a minute
    per_pass = state.m3.shape[0] + 64
    bar = progress_bar(total=config.max_passes * per_pass, desc="conv local search",
                       unit="unit", enabled=progress, leave=False)  # fmt: skip
    for p in range(config.max_passes):
        accepted_before = accepted
        head_units = torch.randperm(state.m3.shape[0], generator=gen).tolist()
        channels = torch.randperm(64, generator=gen).tolist()
        for o in head_units:
            acc = _Acceptor(state, lambda chosen, found, o=o: state.apply_head(o, chosen, found[1]))
            accepted += _descend_unit(
                state.head_deltas(o), state.m3[o], config.batch,
                lambda chosen, o=o: (lambda r: (r[0], r))(state.try_head(o, chosen)), acc,
                config.tries,
            )  # fmt: skip
            flips_scored += state.m3.shape[1]
            bar.update(1)
        rows = torch.randperm(n, generator=gen)[: config.rank_samples].to(device)
        patches = F.unfold(state.a1_32[rows], 5)  # (r, 800, 64), fixed while conv2 is walked
        for c in channels:
            if _out_of_time(config, start, cpu_start):
                break
            acc = _Acceptor(state, lambda chosen, found, c=c: state.apply_channel(c, found))
            accepted += _descend_unit(
                state.channel_deltas(c, rows, patches, config.chunk).double(),
                state.m2[c].reshape(-1),
                config.batch, lambda chosen, c=c: state.try_channel(c, chosen), acc,
                config.tries,
            )  # fmt: skip
            flips_scored += 800
            bar.update(1)
        state.refresh()
        train_acc = float((state.logits.argmax(1) == state.y).double().mean())
        seconds = time.perf_counter() - start
        history.append(
            {
                "pass": p + 1,
                "train_loss": float(state.loss()) / n,
                "train_accuracy": train_acc,
                "accepted": accepted - accepted_before,
                "flips_scored": flips_scored,
                "seconds": round(seconds, 4),
                "cpu_seconds": round(time.process_time() - cpu_start, 4),  # this process only
            }
            | ({"test_accuracy": _accuracy(state, *test)} if test is not None else {})
        )
        shown = f" test acc {history[-1]['test_accuracy']:.4f}" if test is not None else ""
        bar.set_postfix_str(
            f"pass {p + 1}: train acc {train_acc:.4f}{shown} flips/s {flips_scored / seconds:,.0f}",
            refresh=False,
        )
        if accepted == accepted_before or _out_of_time(config, start, cpu_start):
            break
    bar.close()
    final = space.join(
        {
            "conv1.weight": state.m1.cpu(),
            "conv2.weight": state.m2.cpu(),
            "fc.weight": state.m3.cpu(),
        }
    )
    metrics = {
        "start_train_loss": start_loss / n,
        "train_loss": float(state.loss()) / n,
        "passes": len(history),
        "flips_scored": flips_scored,
        "flips_accepted": accepted,
        "search_seconds": round(time.perf_counter() - start, 4),
        "conv_search_config": asdict(config),
    }
    return ConvSearchResult(final, metrics, history)


def conv_search_ticket(
    model: ConvNet,
    X: torch.Tensor,
    y: torch.Tensor,
    config: Any,  # a GAConfig (local sits below ga: no import of it here)
    *,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    progress: bool = False,
) -> Ticket:
    """``--variant local`` on the conv net: `conv_local_search` from a `GAConfig` (its seed,
    device, ``local_density`` as the start density, ``max_passes``), as a scored `Ticket`.
    Flips are ranked by their exact single-flip loss change, with no derivative, whatever
    ``ranking`` says; the objective is the training cross-entropy."""
    cfg = ConvSearchConfig(
        start_density=config.local_density,
        max_passes=config.max_passes,
        temperature=config.temperature,
        seed=config.seed,
        device=config.device,
    )
    found = conv_local_search(model, X, y, cfg, X_test=X_test, y_test=y_test, progress=progress)
    space = MaskSpace(model)
    scores = score_fit(model, found.mask, X, y, X_test, y_test, objective="loss", space=space,
                       device=config.device, memory_mb=config.memory_mb)  # fmt: skip
    metrics = {
        **ticket_scores(scores, found.mask),  # no post-pruning: removals are accepted anyway
        "objective": "loss",
        "best_performance": scores["train_loss"],
        "ranking": "none",  # exact single-flip scores only
        "generations": 0,
        "evaluations": found.metrics["flips_scored"],
        **{k: v for k, v in found.metrics.items() if k != "conv_search_config"},
        "post_prune_seconds": 0.0,
    }
    return Ticket(mask=found.mask, metrics=metrics, method="local", history=found.history,
                  **layout_fields(model, None))  # fmt: skip
