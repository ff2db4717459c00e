"""The ticket graph (arXiv 2508.08877, Fig. 1): how often each connection survives.

Over a set of tickets of one architecture (the tickets of one cell of a sweep: one dataset,
architecture and arm, different seeds), the frequency of a connection is the fraction of
tickets whose mask keeps it. Drawn layer by layer: connections kept in more than half of the
tickets in one colour, the rest in another, the width growing with the frequency; beside it one
example ticket. A single ticket is the same with frequencies 0 and 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from evoprune.errors import EvopruneError
from evoprune.io import write_atomic
from evoprune.masks import MaskSpace
from evoprune.nets import MLP
from evoprune.ticket import Ticket

KEPT_THRESHOLD = 0.5  # "kept in most tickets"


@dataclass
class TicketGraph:
    layers: list[int]
    frequency: list[np.ndarray]  # per Linear layer (out, in): fraction of tickets keeping it
    n_tickets: int
    example: list[np.ndarray] | None = None  # per layer (out, in) bool: one ticket's mask

    def frame(self) -> pd.DataFrame:
        """One row per connection: layer, source unit, target unit, frequency, tickets keeping it."""
        rows = []
        for li, f in enumerate(self.frequency):
            out_n, in_n = f.shape
            tgt, src = np.meshgrid(np.arange(out_n), np.arange(in_n), indexing="ij")
            rows.append(
                pd.DataFrame(
                    {
                        "layer": li,
                        "source": src.ravel(),
                        "target": tgt.ravel(),
                        "frequency": f.ravel(),
                        "kept_in": np.rint(f.ravel() * self.n_tickets).astype(int),
                        "n_tickets": self.n_tickets,
                    }
                )
            )
        return pd.concat(rows, ignore_index=True)


def layer_masks(ticket: Ticket) -> list[np.ndarray]:
    """The mask of an MLP ticket per Linear layer, each ``(out, in)`` bool."""
    if ticket.layers is None:
        raise EvopruneError(
            "ticket graph: the ticket has no layer list (a custom module); the graph is drawn "
            "for MLP tickets"
        )
    space = MaskSpace(MLP(ticket.layers))
    per_param = space.split(torch.as_tensor(ticket.mask, dtype=torch.bool))
    return [per_param[p.name].numpy().astype(bool) for p in space.params]


def ticket_graph(tickets: Sequence[Ticket], example: int | None = 0) -> TicketGraph:
    """Survival frequencies of every connection over `tickets` (all of one architecture).

    >>> from evoprune.ticket import Ticket
    >>> a = Ticket(mask=torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool), layers=[1, 2, 2])
    >>> b = Ticket(mask=torch.tensor([1, 1, 0, 1, 0, 0], dtype=torch.bool), layers=[1, 2, 2])
    >>> ticket_graph([a, b]).frequency[0].ravel().tolist()
    [1.0, 0.5]
    """
    if not tickets:
        raise EvopruneError("ticket graph: no tickets")
    layers = tickets[0].layers
    masks = []
    for t in tickets:
        if t.layers != layers:
            raise EvopruneError(
                f"ticket graph: tickets of different architectures ({layers} and {t.layers})"
            )
        masks.append(layer_masks(t))
    freq = [np.mean([m[li] for m in masks], axis=0) for li in range(len(masks[0]))]
    return TicketGraph(
        layers=list(layers or []),
        frequency=freq,
        n_tickets=len(tickets),
        example=masks[example] if example is not None else None,
    )


def write_graph(
    g: TicketGraph, out: str | Path, title: str = "", example_name: str | None = None
) -> dict[str, Path]:
    """The figure at `out` (``.png``) and the frequencies beside it (same name, ``.csv``);
    `example_name` says which ticket the example is (default: the lowest seed's)."""
    from evoprune.analysis.plots import draw_ticket_graph, save_png

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise EvopruneError(f"--out: expected a .png file name, got {str(out)!r}")
    example = g.example if g.n_tickets > 1 else None
    named = {"example_name": example_name} if example_name else {}
    fig = draw_ticket_graph(
        g.layers, g.frequency, example, g.n_tickets, KEPT_THRESHOLD, title, **named
    )
    return {
        "csv": write_atomic(out.with_suffix(".csv"), g.frame().to_csv(index=False)),
        "png": save_png(fig, out),
    }
