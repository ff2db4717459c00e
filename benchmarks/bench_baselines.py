"""Throughput of the baselines on the paper's moons data (50,000 training samples).

Prints edge-popup seconds per epoch (fast MLP path vs the general functional_call path, and per
torch thread count) and, with --backprop, the wall time of one backprop run. Run:

    python benchmarks/bench_baselines.py [--arch B] [--epochs 3] [--backprop]
"""

from __future__ import annotations

import argparse
import time

from evoprune.baselines.edge_popup import EdgePopupConfig, ScoredNetwork, train_edge_popup
from evoprune.data.registry import load_dataset
from evoprune.nets import build_mlp, parse_arch


def seconds_per_epoch(layers: list[int], ds, epochs: int, threads: int, fast: bool) -> float:
    net = build_mlp(layers, seed=0)
    res = train_edge_popup(
        net,
        ds.X_train,
        ds.y_train,
        EdgePopupConfig(epochs=epochs, threads=threads),
        seed=0,
        fast=fast,
    )
    times = [
        b["seconds"] - a["seconds"] for a, b in zip(res.history, res.history[1:], strict=False)
    ]
    return min(times) if times else res.history[0]["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="B")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--backprop", action="store_true")
    args = ap.parse_args()
    ds = load_dataset("moons")
    layers = parse_arch(args.arch, ds.n_features, ds.n_classes)
    steps = -(-len(ds.X_train) // 128)
    print(f"moons {layers}: {len(ds.X_train)} samples, {steps} steps/epoch at batch 128")
    assert ScoredNetwork(build_mlp(layers), 0.5, 0).linears is not None
    for fast in (True, False):
        for threads in (1, 2):
            s = seconds_per_epoch(layers, ds, args.epochs, threads, fast)
            print(
                f"  edge-popup {'fast MLP path ' if fast else 'functional_call'} threads={threads}: "
                f"{s:.3f} s/epoch, {steps / s:,.0f} steps/s, 100 epochs ~ {100 * s:.0f} s"
            )
    if args.backprop:
        from evoprune.jobs import run_job

        start = time.perf_counter()
        r = run_job({"method": "backprop", "dataset": "moons", "arch": args.arch, "seed": 0})
        print(
            f"  backprop (Table 2 row): {time.perf_counter() - start:.1f} s, {r['epochs']} epochs, "
            f"test acc {r['test_accuracy']:.4f}"
        )


if __name__ == "__main__":
    main()
