"""Where tensors live: ``cpu`` (the default, bit-for-bit reproducible) or ``cuda[:N]``.

>>> check_device("cpu")
'cpu'
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy

import torch
from torch import nn

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


def placed(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` in eval mode on `device`, the caller's module left as it was: the module itself
    where it is already there and in eval mode, else a copy (``nn.Module.to`` and ``eval`` act
    in place, and a search on ``cuda`` would move the user's network off the CPU).

    >>> net = nn.Linear(2, 2)
    >>> placed(net, torch.device("meta")).weight.is_meta, net.weight.is_meta, net.training
    (True, False, True)
    """

    def there(t: torch.Tensor) -> bool:  # "cuda" is any CUDA device, "cuda:1" that one
        return t.device.type == device.type and device.index in (None, t.device.index)

    if not model.training and all(map(there, [*model.parameters(), *model.buffers()])):
        return model
    return deepcopy(model).to(device).eval()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch on `n` threads while inside (the setting is process-wide), as before afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
