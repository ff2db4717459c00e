"""Local-search checkpoints: where the search stands between two passes, in one ``.npz`` (no
pickle) with a JSON header, written atomically by the caller.

Saved: the position (start, kick, counters, the incumbents' keys), the generator state, the
history and the masks (current, ILS incumbent, best over starts, best on validation), and a
fingerprint of the problem that must match on resume. The state is rebuilt from the current
mask, so a resumed search continues with the very same numbers, bit for bit.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evoprune.errors import EvopruneError
from evoprune.io import jsonable

if TYPE_CHECKING:
    from evoprune.local.search import LocalSearch

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
    base_key: list[float] | None = None  # (objective, set bits) of the ILS incumbent
    best_key: list[float] | None = None  # of the best over starts
    val_best: float = -1.0


def snapshot(search: LocalSearch, fingerprint: dict[str, Any] | None) -> bytes:
    """The checkpoint file's bytes for `search` as it stands (between two passes)."""
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint or {},
        "position": asdict(search.pos),
        "rng": search.rng.bit_generator.state,
        "history": search.history,
    }
    arrays = {k: np.packbits(v) for k, v in search.bits.items() if v is not None}
    arrays["current"] = np.packbits(search.st.mask_bits())
    buf = io.BytesIO()
    raw = json.dumps(header, default=jsonable).encode()
    np.savez_compressed(buf, header=np.frombuffer(raw, np.uint8), **arrays)
    return buf.getvalue()


def restore(search: LocalSearch, path: Path, fingerprint: dict[str, Any] | None) -> None:
    """Put `search` back where the checkpoint at `path` left it."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        header = json.loads(arrays.pop("header").tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        raise EvopruneError(
            f"{path}: not a readable checkpoint; delete it or run without --resume"
        ) from None
    if header.get("format") != FORMAT:
        raise EvopruneError(f"{path}: unknown checkpoint format {header.get('format')!r}")
    if _canonical(header["fingerprint"]) != _canonical(fingerprint or {}):
        raise EvopruneError(
            f"{path}: the checkpoint belongs to a different search; use another --out or drop --resume"
        )
    n_bits = search.st.n_maskable
    unpack = lambda a: np.unpackbits(a, count=n_bits).astype(bool)  # noqa: E731
    search.pos = Position(**header["position"])
    search.rng.bit_generator.state = header["rng"]
    search.history = list(header["history"])
    for k in search.bits:
        search.bits[k] = unpack(arrays[k]) if k in arrays else None
    if not search.pos.fresh:
        search.st.set_mask_bits(unpack(arrays["current"]))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
