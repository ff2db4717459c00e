"""Where tensors live: ``cpu`` (the default, bit-for-bit reproducible) or ``cuda[:N]``.

>>> check_device("cpu")
'cpu'
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from evoprune.errors import EvopruneError


def check_device(name: str) -> str:
    """`name` if torch can use it here, else an `EvopruneError` saying why (one line)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise EvopruneError(f"device: expected cpu or cuda[:N], got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EvopruneError(f"device: {name!r} requested but no CUDA device is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EvopruneError(
                f"device: {name!r} requested but only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        raise EvopruneError(f"device: expected cpu or cuda[:N], got {name!r}")
    return name


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch on `n` threads while inside (the setting is process-wide), as before afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
