"""`search`: find a strong lottery ticket in any ``nn.Module`` with the GA."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoprune.errors import EvopruneError
from evoprune.evaluate import Evaluator
from evoprune.ga.config import CONV_LOCAL_FIELDS, READ_BY, GAConfig, conv_reads
from evoprune.ga.genetic import GeneticSearch
from evoprune.ga.prune import post_prune
from evoprune.inputs import check_data, problem_digest
from evoprune.masks import MaskSpace
from evoprune.nets import ConvNet
from evoprune.objectives import Objective, ObjectiveFn, get_objective
from evoprune.scores import score_fit, ticket_scores
from evoprune.ticket import Ticket, layout_fields


def search(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    objective: str | Objective | ObjectiveFn = "accuracy",
    config: GAConfig | None = None,
    *,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    maximize: bool | None = None,
    space: MaskSpace | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = False,
    fingerprint: dict[str, Any] | None = None,
) -> Ticket:
    """Evolve a mask over `model`'s fixed weights that scores well on (X, y).

    - `X` ``(samples, features...)`` and `y` (class labels 0..C-1 for a network with C
      outputs), tensors or arrays; checked before anything runs (`evoprune.inputs`).
    - `objective`: "accuracy", "loss", "f1" or a callable ``(logits (P,d,C), y (d,)) -> (P,)``
      with `maximize` giving its direction (default True; the GA variants only: memetic and
      local search take the three names, on an MLP stack of Linear and ReLU layers by its
      incremental state, on any other module flip by flip with the general evaluator). A
      name has its own direction: a `maximize` against it is an error.
    - `config`: the variant and its settings; the defaults are the paper's Table 1, except
      the post-pruning criterion (``post_prune_criterion``, see `evoprune.ga.prune`).
      Post-pruning judges the training accuracy (and by default the loss); with the "f1"
      objective or a callable, a removal must not worsen that objective either.
    - `space`: which weights are maskable (default: every Linear and Conv weight).
    - `checkpoint` / `checkpoint_every` / `resume`: save the search every that many
      generations and continue from the file (a missing file starts afresh). A checkpoint
      belongs to one problem: by default its fingerprint holds digests of the data and the
      network, so resuming on other data or another network is an error.
    - `progress`: a progress bar.

    The model's weights are never changed (nor its train/eval mode). The returned ticket
    carries the mask, metrics (train, and test when given), the per-generation history
    (``ticket.history``) and, for a network from `build_mlp` / `build_convnet`, the init and
    seed that rebuild it (``ticket.masked_model()``).

    >>> from evoprune.nets import build_mlp
    >>> X = torch.randn(200, 2); y = (X[:, 0] > 0).long()
    >>> cfg = GAConfig(population=20, min_generations=3, max_generations=3)
    >>> t = search(build_mlp([2, 20, 2], seed=3), X, y, config=cfg)
    >>> t.metrics["train_accuracy"] > 0.5, t.seed
    (True, 3)
    """
    X, y, X_test, y_test = check_data(model, X, y, X_test, y_test)
    if maximize is not None and not isinstance(maximize, bool):
        raise EvopruneError(f"maximize: expected True, False or None, got {maximize!r}")
    if isinstance(objective, str | Objective) and maximize is not None:
        named = get_objective(objective)
        if maximize != named.maximize:
            raise EvopruneError(
                f"maximize: {named.name} is {'maximised' if named.maximize else 'minimised'} "
                f"by definition; maximize= gives a callable objective's direction"
            )
    maximize = True if maximize is None else maximize
    every_ok = isinstance(checkpoint_every, int) and not isinstance(checkpoint_every, bool)
    if not every_ok or checkpoint_every < 0:
        raise EvopruneError(
            f"checkpoint_every: expected generations >= 0 (0: at the end only), got {checkpoint_every!r}"
        )
    if space is not None:
        _check_space(space, model)
    if checkpoint is not None and fingerprint is None:
        fingerprint = problem_digest(model, X, y)
    config = config or GAConfig()
    if not isinstance(config, GAConfig):  # a dict of settings: GAConfig(**settings)
        raise EvopruneError(f"config: expected a GAConfig, got a {type(config).__name__}")
    with _mode_kept(model):  # evaluation puts the module in eval mode
        if config.variant == "local" and isinstance(model, ConvNet):  # the conv net's own search
            from evoprune.local.conv import conv_search_ticket

            _check_conv_local(objective, config, space, checkpoint_every, resume)

            return conv_search_ticket(model, X, y, config, X_test=X_test, y_test=y_test,
                                      progress=progress)  # fmt: skip
        if config.variant in ("memetic", "local"):  # the GA with exact local search, or it alone
            from evoprune.ga.memetic import memetic_search

            name = (
                objective if isinstance(objective, str) else getattr(objective, "name", objective)
            )
            return memetic_search(model, X, y, name, config, X_test=X_test, y_test=y_test,
                                  space=space, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                  resume=resume, progress=progress, fingerprint=fingerprint)  # fmt: skip
        objective = get_objective(objective, maximize)
        metrics = tuple(dict.fromkeys((objective.name, "accuracy")))
        ev = Evaluator(
            model,
            X,
            y,
            objective,
            space=space,
            device=config.device,
            memory_mb=config.memory_mb,
            metrics=metrics,
        )
        ga = GeneticSearch(ev, config, checkpoint=checkpoint,
                           checkpoint_every=checkpoint_every, fingerprint=fingerprint,
                           progress=progress)  # fmt: skip
        start = time.perf_counter()
        state = ga.run(resume=resume)
        evolve_seconds = time.perf_counter() - start

        scored = partial(score_fit, model, X=X, y=y, X_test=X_test, y_test=y_test,
                         objective=objective.name, space=ev.space, device=config.device,
                         memory_mb=config.memory_mb)  # fmt: skip
        best = state.population[0].clone()
        before = scored(best)
        info: dict[str, Any] = {
            "generations": state.generation,
            "evaluations": state.evaluations,
            "evolution_seconds": round(state.seconds, 4),
            "objective": objective.name,
            "best_performance": float(state.scores[0, ev.metric_names.index(objective.name)]),
            **state.init_info,
        }
        mask, after = best, before
        prune_start = time.perf_counter()
        if config.post_prune:
            pruner = Evaluator(
                model,
                X,
                y,
                "accuracy",
                space=ev.space,
                device=config.device,
                memory_mb=config.memory_mb,
                cache=False,
                metrics=("accuracy",),
            )
            # a macro-F1 or the user's own objective, which the criteria do not see, must not
            # get worse either (the accuracy and the loss are the criteria's own)
            keep = None if objective.name in ("accuracy", "loss") else objective
            mask, report = post_prune(
                pruner, best, config.post_prune_criterion, config.seed, progress, keep
            )
            after = scored(mask)
            info["post_prune_evaluations"] = report.evaluations
            info["post_prune_criterion"] = report.criterion
            if keep is not None:
                info["post_prune_keeps"] = keep.name
        info["post_prune_seconds"] = round(time.perf_counter() - prune_start, 4)
        info["search_seconds"] = round(evolve_seconds, 4)
        if ga.before_resume_seconds:  # a resumed run: the time its earlier runs took
            info["before_resume_seconds"] = round(ga.before_resume_seconds, 4)
        metrics_out = {
            **ticket_scores(after, mask, before, best),
            **info,
        }
        return Ticket(
            mask=mask,
            **layout_fields(model, space),
            metrics=metrics_out,
            method=config.variant,
            history=list(state.history),
        )


def _check_conv_local(
    objective: str | Objective | ObjectiveFn,
    config: GAConfig,
    space: MaskSpace | None,
    checkpoint_every: int,
    resume: bool,
) -> None:
    """The conv net's local search (`evoprune.local.conv`) descends the training loss over
    its own mask space and keeps no checkpoints: refuse what it would otherwise ignore (the
    local settings but `CONV_LOCAL_FIELDS`; ranking "none", exact scores only, is what it does)."""
    defaults = GAConfig()
    changed = [
        k for k, readers in READ_BY.items()
        if "local" in readers and getattr(config, k) != getattr(defaults, k)
        and not conv_reads(k, getattr(config, k))
    ]  # fmt: skip
    if changed:
        raise EvopruneError(
            f"local on the conv net: {changed[0]} is not read by its search (it reads "
            f"{', '.join(CONV_LOCAL_FIELDS)}, the seed and the device)"
        )
    if objective != "loss":
        raise EvopruneError(
            f"local on the conv net: it descends the training cross-entropy; pass objective "
            f"'loss' (--objective loss), got {getattr(objective, 'name', objective)!r}"
        )
    if space is not None or checkpoint_every or resume:
        raise EvopruneError(
            "local on the conv net: no custom space, checkpoints or resume (its search is a "
            "few passes; use variant 'ga' or 'memetic' on an MLP for those)"
        )


@contextmanager
def _mode_kept(model: nn.Module) -> Iterator[None]:
    """Give `model` back in the train/eval mode it came in."""
    training = model.training
    try:
        yield
    finally:
        model.train(training)


def _check_space(space: MaskSpace, model: nn.Module) -> None:
    """A `space` must lay out weights of `model` (one built from another network would
    misplace every bit)."""
    shapes = {
        name: tuple(t.shape) for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    for p in space.params:
        if shapes.get(p.name) != tuple(p.shape):
            raise EvopruneError(
                f"space: {p.name} {list(p.shape)} is not a weight of this model; build the "
                "space with MaskSpace(model)"
            )
