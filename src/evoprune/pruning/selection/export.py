"""A selection-prune run's network, physically smaller: Linear layers without the removed neurons.

`export_selection` loads ``network.npz``, optionally hard-prunes it further to a fraction of hidden
neurons (lowest masses first, as the run's levels do), folds the surviving masses into the weights
(`evoprune.pruning.selection.masses.shrink_mlp`) and saves a plain ``state_dict`` of an `evoprune.nets.MLP`
(loadable with ``torch.load(path, weights_only=True)``).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from evoprune.errors import EvopruneError
from evoprune.io import write_atomic
from evoprune.nets import MLP
from evoprune.pruning.selection.job import load_network
from evoprune.pruning.selection.masses import Masses, lowest, shrink_mlp


@dataclass(frozen=True)
class Exported:
    path: Path
    layers: list[int]  # the small network's widths
    dense_layers: list[int]
    removed: float  # share of hidden neurons gone
    model: MLP


def export_selection(run: str | Path, out: str | Path, fraction: float | None = None) -> Exported:
    """Write the small network of selection run `run` (its folder or ``network.npz``) to `out`.

    `fraction`: remove this share of hidden neurons (default: only the extinct ones).
    """
    model, masses, header = load_network(run)
    if fraction is not None:
        if not 0.0 <= fraction < 1.0:
            raise EvopruneError(f"--fraction: expected a share in [0, 1), got {fraction}")
        keep = prune_keep(masses, fraction, header.get("fitness"))
        masses.keep(keep)
    small = shrink_mlp(model, masses)
    state = {k: v.contiguous() for k, v in small.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    path = write_atomic(out, buf.getvalue())
    removed = 1.0 - sum(small.layers[1:-1]) / masses.n
    return Exported(path, list(small.layers), list(header["layers"]), removed, small)


def prune_keep(masses: Masses, fraction: float, fitness: torch.Tensor | None) -> torch.Tensor:
    """The flat keep-mask of a run's network at `fraction`, as the run's levels rank units."""
    count = int(round(fraction * masses.n))
    return lowest(masses.flat(), count, masses.flat_alive(), masses.sizes, fitness)


def load_exported(path: str | Path) -> MLP:
    """The small network from an exported file (weights only, no pickle)."""
    state = torch.load(path, weights_only=True)
    n_linear = len([k for k in state if k.endswith(".weight")])
    widths = [state["0.weight"].shape[1]] + [
        state[f"{2 * i}.weight"].shape[0] for i in range(n_linear)
    ]
    model = MLP(widths)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def inference_seconds(model: torch.nn.Module, X: torch.Tensor, repeats: int = 20) -> float:
    """Best-of-`repeats` seconds for one forward pass over `X`."""
    model(X)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(X)
        best = min(best, time.perf_counter() - start)
    return best
