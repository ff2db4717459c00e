"""The Ray executor: a real local Ray (started by the test, loopback only) gives the same results,
key for key, as the local process pool on a tiny spec of real runs (GA and edge-popup)."""

from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'evoprune[ray]'")

from evoprune.experiments import RayExecutor, load_results, parse_spec, run_sweep  # noqa: E402

TINY = {
    "name": "tiny-real",
    "grid": {
        "dataset": ["moons"],
        "arch": ["A"],
        "init": ["uniform"],
        "arm": [
            {
                "label": "GA",
                "method": "ga",
                "objective": "accuracy",
                "population": 20,
                "min_generations": 3,
                "patience": 2,
                "max_generations": 5,
            },
            {"label": "EP (50%)", "method": "edge-popup", "sparsity": 0.5, "epochs": 1},
        ],
    },
    "profiles": {"quick": {"seeds": 2}},
}

# timing and host fields differ between any two runs; everything else must match
VOLATILE = {
    "wall_seconds",
    "evolution_seconds",
    "search_seconds",
    "post_prune_seconds",
    "seconds",
    "train_seconds",
    "fit_seconds",
}


def _results(folder) -> dict[str, dict]:
    df = load_results(folder)
    out = {}
    for row in df.itertuples():
        result = json.loads(row.result)
        out[row.key] = {
            k: v for k, v in result.items() if k not in VOLATILE and not k.endswith("_seconds")
        }
    return out


def test_ray_executor_matches_the_local_executor(tmp_path):
    spec = parse_spec(TINY)
    local = run_sweep(
        spec, "quick", tmp_path / "local", executor="local", workers=2, progress=False
    )
    assert (local.ran, local.failed) == (4, 0), local.errors
    executor = RayExecutor(workers=2, _node_ip_address="127.0.0.1")  # a local Ray on loopback
    try:
        remote = run_sweep(spec, "quick", tmp_path / "ray", executor=executor, progress=False)
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert (remote.ran, remote.failed) == (4, 0), remote.errors
    a, b = _results(tmp_path / "local"), _results(tmp_path / "ray")
    assert set(a) == set(b) and len(a) == 4
    for key in a:
        assert a[key] == b[key], key
    for key in a:  # the files came back too: the same mask (the header also holds timings)
        masks = [
            np.load(tmp_path / side / "runs" / key / "ticket.npz")["mask"]
            for side in ("local", "ray")
        ]
        assert masks[0].size > 0 and np.array_equal(*masks)
