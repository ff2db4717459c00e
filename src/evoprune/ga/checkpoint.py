"""Search checkpoints: the whole GA state in one ``.npz`` (no pickle), written atomically.

Saved: the ranked population (packed bits), its scores, the generator state, counters, the
history, the evaluator's cache (each genome's digest and scores, so evaluation counts continue
exactly), and a fingerprint of the problem (config, data, network) that must match on resume,
and the code (git revision, versions) of each run that wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoprune.evaluate import Evaluator
from evoprune.ga.state import GAState
from evoprune.io import checkpoint_bytes, code_lineage, read_checkpoint, write_atomic

FORMAT = "evoprune-checkpoint/1"
# the cache's keys are `genome_key` digests; a checkpoint without this field (written before)
# holds packed genomes, which are hashed on loading: its search resumes the same
CACHE_KEYS = "blake2b-128"
_SCALARS = (
    "generation",
    "best_fitness",
    "last_improvement",
    "best_sparsity_so_far",
    "evaluations",
    "seconds",
)


def save_checkpoint(
    path: Path,
    state: GAState,
    fingerprint: dict[str, Any],
    ev: Evaluator,
    code: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write `state`; `code` is that of the earlier runs it was resumed through."""
    keys, values = ev.cache_arrays(state.evaluations)
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "code": code_lineage(code),
        "n_bits": int(state.population.shape[1]),
        "cache_keys": CACHE_KEYS,
        "history": list(state.history),
        "init_info": state.init_info,
        **{name: getattr(state, name) for name in _SCALARS},
    }
    arrays = {
        "population": np.packbits(state.population.numpy(), axis=1),
        "scores": state.scores.numpy(),
        "fitness": state.fitness.numpy(),
        "rng_state": state.rng_state.numpy(),
        "cache_keys": keys,
        "cache_values": values,
    }
    return write_atomic(path, checkpoint_bytes(header, arrays))


def load_checkpoint(
    path: Path, fingerprint: dict[str, Any], ev: Evaluator
) -> tuple[GAState, list[dict[str, Any]]]:
    """Read a checkpoint written for the same problem; restore the evaluator's cache. Returns
    the state and the code of the runs that wrote it."""
    header, arrays = read_checkpoint(path, FORMAT, fingerprint)
    n_bits = header["n_bits"]
    population = np.unpackbits(arrays["population"], axis=1, count=n_bits).astype(bool)
    ev.restore_cache(arrays["cache_keys"], arrays["cache_values"], int(header["evaluations"]),
                     packed=header.get("cache_keys") != CACHE_KEYS)  # fmt: skip
    scalars = {name: header[name] for name in _SCALARS}
    state = GAState(
        population=torch.from_numpy(population),
        scores=torch.from_numpy(arrays["scores"]),
        fitness=torch.from_numpy(arrays["fitness"]),
        rng_state=torch.from_numpy(arrays["rng_state"]),
        history=tuple(header["history"]),
        init_info=header["init_info"],
        **scalars,
    )
    return state, list(header.get("code", []))
