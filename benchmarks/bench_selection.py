"""Selection dynamics: one training epoch on mnist10k with and without the dynamics, side by side,
and inference of the physically smaller network against the dense one.

    .venv/bin/python benchmarks/bench_selection.py [--data-dir ../shared/data] [--threads 1]

Targets (for "Pruning as Evolution", Shah & Khan): one epoch ≤ 1 s on this machine, the dynamics adding
≤ 15%. Each configuration runs `--repeats` epochs interleaved with the others; the best epoch of
each is reported (the machine is shared: best-of is the least noisy figure).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from evoprune.data import load_dataset
from evoprune.nets import MLP
from evoprune.pruning.selection.dynamics import SelectionConfig, SelectionDynamics
from evoprune.pruning.selection.export import inference_seconds
from evoprune.pruning.selection.masses import Masses, shrink_mlp
from evoprune.pruning.selection.run import small_widths
from evoprune.pruning.selection.training import TrainConfig, init_default, steps_per_epoch, train


def one_epoch(X, y, dynamics: str | None, seed: int, augment: str) -> tuple[float, float]:
    """Wall and CPU seconds for one epoch of a fresh 784-512-256-10 (plain, or with masses and a dynamic)."""
    model = init_default(MLP([784, 512, 256, 10]), seed)
    step = None
    if dynamics is not None:
        masses = Masses(model)
        updates = steps_per_epoch(len(X), 128) * 20
        cfg = SelectionConfig(dynamics="logistic" if dynamics == "frozen" else dynamics)
        step = SelectionDynamics(masses, cfg, updates, frozen=dynamics == "frozen").step
    start, cpu = time.perf_counter(), time.process_time()
    train(model, X, y, TrainConfig(epochs=1, augment=augment), seed, after_step=step)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist", data_dir=args.data_dir, normalize=False)
    X, y = ds.X_train.view(len(ds.X_train), -1), ds.y_train
    load = os.getloadavg()[0]
    print(f"mnist10k: {len(X)} training images, batch 128, Adam, torch threads {args.threads}, "
          f"load average {load:.1f}")  # fmt: skip
    for augment in ("shift", "none"):
        configs = [None, "frozen", "replicator", "exponential", "logistic"]
        best = dict.fromkeys(configs, float("inf"))
        best_cpu = dict.fromkeys(configs, float("inf"))
        for r in range(args.repeats):  # interleaved, so load changes hit every configuration
            for c in configs:
                wall, cpu = one_epoch(X, y, c, r, augment)
                best[c], best_cpu[c] = min(best[c], wall), min(best_cpu[c], cpu)
        base, base_cpu = best[None], best_cpu[None]
        print(f"\none epoch, augment {augment} (best of {args.repeats}):")
        print(
            f"  {'configuration':31s} {'s/epoch':>8s} {'vs plain':>9s} {'cpu s':>7s} {'vs plain':>9s}"
        )
        for c in configs:
            name = {None: "plain MLP (no masses)", "frozen": "masses frozen, fitness tracked"}.get(
                c, f"dynamics: {c}"
            )
            print(
                f"  {name:31s} {best[c]:8.3f} {best[c] / base:8.2f}x "
                f"{best_cpu[c]:7.3f} {best_cpu[c] / base_cpu:8.2f}x"
            )
    print("\ninference on the 2,500 test images (best of 30 forward passes):")
    Xt = ds.X_test.view(len(ds.X_test), -1)
    dense = init_default(MLP([784, 512, 256, 10]), 0).eval()
    t_dense = inference_seconds(dense, Xt, repeats=30)
    print(f"  {'network':36s} {'ms':>8s} {'speed-up':>9s}")
    print(f"  {'dense [784, 512, 256, 10]':36s} {t_dense * 1e3:8.3f} {1.0:8.2f}x")
    for p in (0.5, 0.7, 0.8, 0.9):
        model = init_default(MLP([784, 512, 256, 10]), 0)
        masses = Masses(model)
        keep = torch.ones(masses.n, dtype=torch.bool)
        for i, (w, start) in enumerate(zip(masses.sizes, (0, masses.sizes[0]), strict=True)):
            keep[start + small_widths([784, 512, 256, 10], p)[i + 1] : start + w] = False
        masses.keep(keep)
        small = shrink_mlp(model, masses).eval()
        t = inference_seconds(small, Xt, repeats=30)
        name = f"{small.layers} ({p:.0%} removed)"
        print(f"  {name:36s} {t * 1e3:8.3f} {t_dense / t:8.2f}x")


if __name__ == "__main__":
    main()
