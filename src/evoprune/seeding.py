"""Explicit randomness: one generator per (seed, purpose), never a global RNG.

Every random choice in evoprune draws from a generator made here, so a run is a pure function
of its seed (bit for bit on CPU), and adding a new random purpose never shifts the streams of
the existing ones.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for `purpose`, derived from the run seed by hashing (stable across runs)."""
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def torch_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU `torch.Generator` for one purpose of one run."""
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, purpose))
    return gen


def numpy_generator(seed: int, purpose: str) -> np.random.Generator:
    """A NumPy generator for one purpose of one run."""
    return np.random.default_rng(derive_seed(seed, purpose))
