"""Local-search checkpoints: where the search stands between two passes, in one ``.npz`` (no
pickle) with a JSON header. `evoprune.local.search.LocalSearch` saves and loads them.

Saved: the position (start, kick, counters, the incumbents' keys), the generator state, the
history and the masks (the current one, the ILS incumbent, the best over starts and on
validation), a fingerprint of the problem that must match on resume, and the code (git revision,
versions) of each run that wrote it. The search rebuilds its
state from the current mask, so a resumed search continues with the very same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evoprune.io import checkpoint_bytes, code_lineage, read_checkpoint

# Checkpoint file names: a memetic run keeps the GA's and, beside it, one per local phase with
# these prefixes (evoprune.ga.memetic). Here, not there, so that the GA's job can name them all
# without loading the compiled kernels (numba: 0.2 s of every `evoprune search --variant ga`).
LOSS_PREFIX, LOCAL_PREFIX = "local-loss-", "local-"
CHECKPOINT_PREFIXES = ("", LOSS_PREFIX, LOCAL_PREFIX)

FORMAT = "evoprune-local-checkpoint/1"


@dataclass
class Position:
    """Where the search stands between two passes: everything a checkpoint must hold."""

    start: int = 0
    kick: int = -1  # -1: the first descent of this start
    passes: int = 0  # passes of the current descent
    since_val_best: int = 0
    flips_evaluated: int = 0
    flips_accepted: int = 0
    kicks_kept: int = 0
    total_passes: int = 0
    seconds: float = 0.0
    fresh: bool = True  # the current start has no mask yet
    base_key: list[float] | None = None  # (objective, tie-breaker, set bits) of the ILS incumbent
    best_key: list[float] | None = None  # of the best over starts
    val_best: float = -1.0


def snapshot(
    position: Position,
    rng_state: Mapping[str, Any],
    history: list[dict[str, Any]],
    masks: dict[str, np.ndarray | None],
    fingerprint: dict[str, Any] | None,
    code: Sequence[dict[str, Any]] = (),
) -> bytes:
    """The checkpoint file's bytes; `masks` maps a name to a ``(n_bits,)`` bool mask or None;
    `code` is that of the earlier runs the search was resumed through."""
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint or {},
        "code": code_lineage(code),
        "position": asdict(position),
        "rng": rng_state,
        "history": history,
    }
    arrays = {k: np.packbits(v) for k, v in masks.items() if v is not None}
    return checkpoint_bytes(header, arrays)


@dataclass
class Saved:
    """What a checkpoint holds, read back."""

    position: Position
    rng_state: dict[str, Any]
    history: list[dict[str, Any]]
    masks: dict[str, np.ndarray]  # name -> (n_bits,) bool; the masks that were not None
    code: list[dict[str, Any]]  # of the runs that wrote it: git revision, versions


def read(path: Path, fingerprint: dict[str, Any] | None, n_bits: int) -> Saved:
    """The checkpoint at `path`, checked to belong to the search `fingerprint` describes."""
    header, arrays = read_checkpoint(path, FORMAT, fingerprint or {})
    return Saved(
        position=Position(**header["position"]),
        rng_state=header["rng"],
        history=list(header["history"]),
        masks={k: np.unpackbits(a, count=n_bits).astype(bool) for k, a in arrays.items()},
        code=list(header.get("code", [])),
    )
