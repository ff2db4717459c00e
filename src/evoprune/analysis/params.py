"""Which parameters of a ticket an analysis moves, and the ticket's data.

A ticket is a mask over a fixed random network. Its analyses (loss landscapes, Hessian spectra)
vary some of the network's parameters around the ticket's own values ``w^s`` (the masked
network). Which ones is a choice, named by `PARAM_SETS`:

- ``surviving`` (the default): the weights the mask keeps. Biases and pruned weights stay as
  they are. These are the parameters of the strong lottery ticket itself, the subnetwork the
  paper's landscapes and Hessians are about (arXiv 2508.08877); the sparsity pattern is kept.
- ``surviving+bias``: the kept weights and every bias.
- ``all``: every weight (pruned ones move away from zero, so the network is dense off the
  centre) and every bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evoprune.analysis.choices import PARAM_SETS
from evoprune.data.registry import Dataset, dataset_from_config
from evoprune.errors import EvopruneError
from evoprune.masks import MaskSpace
from evoprune.ticket import Ticket


@dataclass(frozen=True)
class Moving:
    """The moving entries of one parameter tensor."""

    name: str
    shape: tuple[int, ...]
    where: torch.Tensor  # (*shape,) bool: True where the analysis moves the entry
    index: torch.Tensor  # (k,) int64: flat positions of the moving entries
    is_weight: bool  # a maskable weight (else a bias or another parameter)


class Selection:
    """The moving parameters of a masked `model`: a flat vector of length `n_params`.

    Flat order: parameters in ``model.named_parameters()`` order, entries row-major.

    >>> from evoprune.nets import build_mlp
    >>> net = build_mlp([2, 3, 2])
    >>> sel = Selection(net, torch.ones(12, dtype=torch.bool), "surviving")
    >>> sel.n_params
    12
    """

    def __init__(self, model: nn.Module, mask: torch.Tensor, params: str = "surviving"):
        if params not in PARAM_SETS:
            raise EvopruneError(f"params: expected one of {', '.join(PARAM_SETS)}, got {params!r}")
        space = MaskSpace(model)
        mask = torch.as_tensor(mask).to(torch.bool).reshape(-1)
        if mask.numel() != space.n_bits:
            raise EvopruneError(
                f"mask: {mask.numel()} bits, but the model has {space.n_bits} maskable weights"
            )
        per_param = space.split(mask)
        self.params = params
        self.moving: list[Moving] = []
        for name, p in model.named_parameters():
            if name in per_param:
                where = per_param[name] if params != "all" else torch.ones_like(per_param[name])
                is_weight = True
            elif params == "surviving":
                continue
            else:
                where = torch.ones(p.shape, dtype=torch.bool)
                is_weight = False
            index = where.reshape(-1).nonzero().squeeze(1)
            if len(index):
                self.moving.append(Moving(name, tuple(p.shape), where, index, is_weight))
        self.n_params = sum(len(m.index) for m in self.moving)
        if self.n_params == 0:
            raise EvopruneError("the ticket keeps no weight: nothing to analyse")

    def take(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The moving entries of `state` as one flat vector ``(n_params,)``."""
        return torch.cat([state[m.name].reshape(-1)[m.index] for m in self.moving])

    def put(self, state: dict[str, torch.Tensor], vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """`state` with its moving entries replaced by `vector` (differentiable in `vector`)."""
        out = dict(state)
        start = 0
        for m in self.moving:
            k = len(m.index)
            flat = state[m.name].reshape(-1).index_copy(0, m.index, vector[start : start + k])
            out[m.name] = flat.reshape(m.shape)
            start += k
        return out


def masked_state(
    model: nn.Module, mask: torch.Tensor, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `model` with the mask applied (``w^s``), cast to `dtype`."""
    per_param = MaskSpace(model).split(torch.as_tensor(mask).to(torch.bool).reshape(-1))
    state = {}
    for name, p in model.named_parameters():
        value = p.detach()
        if name in per_param:
            value = value * per_param[name].to(value.dtype)
        state[name] = value.to(dtype)
    for name, b in model.named_buffers():
        state[name] = b.detach().to(dtype) if b.is_floating_point() else b.detach()
    return state


def ticket_dataset(ticket: Ticket, ds: Dataset | None = None) -> Dataset:
    """`ds`, or the dataset recorded in the ticket."""
    return ds if ds is not None else dataset_from_config(ticket.dataset)


def training_data(model: nn.Module, ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split flattened as the GA saw it, checked against the network's input."""
    X = ds.X_train.reshape(len(ds.X_train), -1)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    first = layers[0] if layers else None  # a conv net's first Linear is its head: not checked
    if isinstance(first, nn.Linear) and first.in_features != X.shape[1]:
        raise EvopruneError(
            f"the network takes {first.in_features} features, the dataset {ds.name!r} has "
            f"{X.shape[1]}"
        )
    last = layers[-1] if layers else None
    if isinstance(last, nn.Linear) and int(ds.y_train.max()) >= last.out_features:
        raise EvopruneError(
            f"the network has {last.out_features} outputs, the dataset {ds.name!r} has "
            f"{int(ds.y_train.max()) + 1} classes"
        )
    return X, ds.y_train


def describe(ticket: Ticket) -> dict[str, Any]:
    """What an analysis output records about its ticket."""
    return {
        "method": ticket.method,
        "layers": ticket.layers,
        "init": ticket.init,
        "activation": ticket.activation,
        "seed": ticket.seed,
        "dataset": ticket.dataset,
        "sparsity": ticket.sparsity,
    }
