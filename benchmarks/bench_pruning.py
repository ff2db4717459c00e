"""Cost of each pruning method at 98% sparsity on digits (MLP 64-128-64-10), side by side.

Every method prunes the same cached dense checkpoint of seed 0 in this one process, one torch
thread. Prints wall seconds (best of --repeats), evaluations, seconds per evaluation, forward
passes and the ratios against CMA-ES + SynFlow, plus test macro-F1 (no fine-tuning, lsq EC for the
CMA-ES rows, none for the baselines). The default's lsq-ce fitness runs twice: scoring each
generation in one batched pass (the default) and genome by genome (the reference it replaced;
same masks). The training-based fitness runs once at our budget (16 x 10) and once at the
specification's (16 x 100; skip it with --no-full).

    python benchmarks/bench_pruning.py [--repeats 3] [--no-full]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from evoprune.data import load_dataset  # noqa: E402
from evoprune.pruning.cmaes import CMAConfig, cmaes_search  # noqa: E402
from evoprune.pruning.dense import DenseConfig, dense_network, scores, split_70_15_15  # noqa: E402
from evoprune.pruning.energy import compensate  # noqa: E402
from evoprune.pruning.job import default_cache_dir  # noqa: E402
from evoprune.pruning.magnitude import keep_count, magnitude  # noqa: E402
from evoprune.pruning.softmask import softmask  # noqa: E402
from evoprune.pruning.synflow import iterative_synflow_order, log_synflow  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-full", action="store_true", help="skip trainfit with 16 x 100")
    ap.add_argument("--sparsity", type=float, default=0.98)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("digits", 10)
    split = split_70_15_15(ds)
    net, _ = dense_network(split, DenseConfig(), 0, default_cache_dir(), ds.config)
    k = keep_count(net.n_weights, args.sparsity)
    C = split.n_classes

    def synflow_start():
        masks, key = iterative_synflow_order(net, k)
        return masks, key, [float(m.float().mean()) for m in masks]

    def cma(config: CMAConfig):
        def run():
            masks, key, dens = synflow_start()
            found = cmaes_search(net, k, split, config, 0, dens, survival=key)
            return found.masks, found.evaluations + 1, found.forward_passes + 101

        return run

    methods = {
        "magnitude (global)": lambda: (magnitude(net, k), 1, 0),
        "SynFlow (iterative, 100 rounds)": lambda: (synflow_start()[0], 1, 101),
        "SoftMask (30 epochs)": lambda: (lambda m, i: (m, 1, int(i["forward_passes"])))(*softmask(net, k, split, 0)),
        "CMA-ES + SynFlow, default (lsq-ce, 16 x 10)": cma(CMAConfig()),
        "CMA-ES + SynFlow, default, genome by genome (before)": cma(CMAConfig(batched=False)),
        "CMA-ES + SynFlow, SynFlow fitness (16 x 100)": cma(CMAConfig(genome="layer-density", fitness="synflow", order="iterative", generations=100)),
        "CMA-ES trainfit (16 x 10)": cma(CMAConfig(fitness="trainfit", generations=10)),
    }  # fmt: skip
    if not args.no_full:
        methods["CMA-ES trainfit (16 x 100, the spec)"] = cma(
            CMAConfig(fitness="trainfit", generations=100)
        )
    rows = []
    for name, fn in methods.items():
        repeats = 1 if "trainfit" in name else args.repeats
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            masks, evaluations, passes = fn()
            ec = "lsq" if name.startswith("CMA") else "none"
            pruned = compensate(net, masks, ec, split.X_train)
            best = min(best, time.perf_counter() - start)
        f1 = scores(pruned, split.X_test, split.y_test, C)["f1"]
        rows.append((name, best, evaluations, passes, f1, log_synflow(net, masks), ec))
        print(f"  {name}: {best:.3f} s", flush=True)
    ours = rows[3][1]
    load = os.getloadavg()[0]
    print(
        f"\nsparsity {args.sparsity}, {k} weights kept; 1 torch thread; load average {load:.1f} on {os.cpu_count()} cores"
    )
    print(
        "| method | seconds | evaluations | s/evaluation | forward passes | x ours | F1 no FT (EC) | log R_SF |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, sec, ev, fp, f1, logr, ec in rows:
        print(
            f"| {name} | {sec:.3f} | {ev} | {sec / ev * 1000:.2f} ms | {fp} | {sec / ours:.1f} | {f1:.3f} ({ec}) | {logr:.2f} |"
        )


if __name__ == "__main__":
    main()
