"""Search checkpoints: the whole GA state in one ``.npz`` (no pickle), written atomically.

Saved: the ranked population (packed bits), its scores, the generator state, counters, the
history, the evaluator's cache (so evaluation counts continue exactly), and a fingerprint of the
problem (config, data, network) that must match on resume.
"""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoprune.evaluate import Evaluator
from evoprune.ga.state import GAState
from evoprune.io import read_checkpoint, write_atomic

FORMAT = "evoprune-checkpoint/1"
_SCALARS = (
    "generation",
    "best_fitness",
    "last_improvement",
    "best_sparsity_so_far",
    "evaluations",
    "seconds",
)


def save_checkpoint(path: Path, state: GAState, fingerprint: dict[str, Any], ev: Evaluator) -> Path:
    # The cache only grows, in insertion order, one entry per evaluation: its first
    # `state.evaluations` entries are exactly the cache as it was when `state` was complete
    # (an interrupt may land mid-generation, after new entries went in).
    cache = list(itertools.islice((ev._cache or {}).items(), state.evaluations))
    keys = (
        np.array([np.frombuffer(k, dtype=np.uint8) for k, _ in cache])
        if cache
        else np.zeros((0, 0), np.uint8)
    )
    values = np.stack([v for _, v in cache]) if cache else np.zeros((0, len(ev.metric_names)))
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "n_bits": int(state.population.shape[1]),
        "history": list(state.history),
        "init_info": state.init_info,
        **{name: getattr(state, name) for name in _SCALARS},
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        population=np.packbits(state.population.numpy(), axis=1),
        scores=state.scores.numpy(),
        fitness=state.fitness.numpy(),
        rng_state=state.rng_state.numpy(),
        cache_keys=keys,
        cache_values=values,
    )
    return write_atomic(path, buf.getvalue())


def load_checkpoint(path: Path, fingerprint: dict[str, Any], ev: Evaluator) -> GAState:
    """Read a checkpoint written for the same problem; restore the evaluator's cache."""
    header, arrays = read_checkpoint(path, FORMAT, fingerprint)
    n_bits = header["n_bits"]
    population = np.unpackbits(arrays["population"], axis=1, count=n_bits).astype(bool)
    if ev._cache is not None:
        ev._cache.clear()
        for key, value in zip(arrays["cache_keys"], arrays["cache_values"], strict=True):
            ev._cache[key.tobytes()] = value
    ev.n_evaluations = int(header["evaluations"])
    scalars = {name: header[name] for name in _SCALARS}
    assert {f.name for f in fields(GAState)} >= set(scalars)
    return GAState(
        population=torch.from_numpy(population),
        scores=torch.from_numpy(arrays["scores"]),
        fitness=torch.from_numpy(arrays["fitness"]),
        rng_state=torch.from_numpy(arrays["rng_state"]),
        history=tuple(header["history"]),
        init_info=header["init_info"],
        **scalars,
    )
