"""Whole-search and post-pruning benchmarks (our speed targets, 2-core CPU).

1. A whole default `evoprune search` on moons B (GA, paper defaults, post-pruning included):
   target <= 10 s.
2. Post-pruning a digits-10 B mask (5,550 bits; the best of a short GA run): our incremental
   walk vs the plain walk of the paper's code (copy the model, mask it, forward, score — one
   candidate at a time), same mask checked; target <= 5 s for ours.
3. The same for a moons-2 D mask (2,600 bits, 50,000 samples; the best of 64 seeded random
   half-masks, to keep the benchmark cheap). The plain walk is capped and extrapolated; the
   bits it did walk are checked against ours.

Run: .venv/bin/python benchmarks/bench_search.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch

import evoprune
from evoprune.data import load_dataset
from evoprune.evaluate import Evaluator
from evoprune.ga import GAConfig, post_prune
from evoprune.nets import build_mlp, parse_arch


def whole_search(seed: int = 0) -> tuple[float, dict]:
    ds = load_dataset("moons")
    start = time.perf_counter()
    t = evoprune.search(
        build_mlp([2, 75, 2], seed=seed),
        ds.X_train,
        ds.y_train,
        config=GAConfig(seed=seed),
        X_test=ds.X_test,
        y_test=ds.y_test,
    )
    return time.perf_counter() - start, t.metrics


def plain_walk(model, mask, X, y, limit_seconds: float) -> tuple[torch.Tensor, int, float]:
    """The paper's way: one candidate at a time, a masked copy of the model each time.

    Returns the mask, how many set bits were walked before `limit_seconds`, and the time."""
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    sizes = [m.weight.numel() for m in linears]

    def accuracy(bits: torch.Tensor) -> float:
        net = copy.deepcopy(model)
        chunks = torch.split(bits, sizes)
        with torch.no_grad():
            for layer, chunk in zip(
                [m for m in net if isinstance(m, torch.nn.Linear)], chunks, strict=True
            ):
                layer.weight.mul_(chunk.view_as(layer.weight).float())
            return float((net(X).argmax(1) == y).double().mean())

    mask, current = mask.clone(), accuracy(mask)
    start, done = time.perf_counter(), 0
    for bit in torch.nonzero(mask).flatten():
        trial = mask.clone()
        trial[bit] = False
        acc = accuracy(trial)
        if acc >= current:
            mask, current = trial, acc
        done += 1
        if time.perf_counter() - start > limit_seconds:
            break
    return mask, done, time.perf_counter() - start


def prune_case(label: str, net, X, y, mask: torch.Tensor, limit: float, repeats: int = 3) -> None:
    """Ours (best of `repeats`, fresh evaluator each time) vs the plain walk, side by side."""
    times = []
    for _ in range(repeats):
        ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
        start = time.perf_counter()
        pruned, report = post_prune(ev, mask)
        times.append(time.perf_counter() - start)
    ours = min(times)
    set_bits = int(mask.sum())
    plain, done, plain_s = plain_walk(net, mask, X, y, limit)
    plain_full = plain_s / max(done, 1) * set_bits
    # The walk is sequential: after `done` set bits both masks must agree up to that bit.
    cut = int(torch.nonzero(mask).flatten()[done - 1]) + 1 if done else 0
    same = torch.equal(plain[:cut], pruned[:cut])
    print(
        f"post-pruning {label}: {set_bits} set bits -> {report.bits_after} "
        f"(train acc {report.accuracy_before:.4f} -> {report.accuracy_after:.4f})"
    )
    print(
        f"  ours  {ours:8.3f} s   (best of {repeats}: "
        f"{', '.join(f'{t:.3f}' for t in times)}; {report.evaluations} evaluations)"
    )
    walked = "" if done == set_bits else f" (extrapolated from {done} bits in {plain_s:.1f} s)"
    print(f"  plain {plain_full:8.3f} s{walked}")
    agree = "same mask" if done == set_bits else f"same decisions on the {done} bits walked"
    print(
        f"  ratio {plain_full / ours:8.1f}x   {agree}: {'yes' if same else 'NO'}   "
        f"target ours <= 5 s: {'PASS' if ours <= 5 else 'MISS'}"
    )
    assert same, f"{label}: our walk differs from the plain walk"


def prune_bench(quick: bool) -> None:
    ds = load_dataset("digits")
    net = build_mlp([64, 75, 10], seed=0)
    # A realistic mask to prune: the best of a short GA run.
    t = evoprune.search(
        net,
        ds.X_train,
        ds.y_train,
        config=GAConfig(min_generations=30, max_generations=30, post_prune=False),
    )
    prune_case("digits-10 B", net, ds.X_train, ds.y_train, t.mask, 20.0 if quick else 600.0)

    ds = load_dataset("moons")
    net = build_mlp(parse_arch("D", ds.n_features, ds.n_classes), seed=0)
    ev = Evaluator(net, ds.X_train, ds.y_train, cache=False, metrics=("accuracy",))
    masks = torch.rand(64, ev.n_bits, generator=torch.Generator().manual_seed(0)) < 0.5
    mask = masks[ev.evaluate(masks)["accuracy"].argmax()]  # the best of 64 random half-masks
    prune_case("moons-2 D", net, ds.X_train, ds.y_train, mask, 10.0 if quick else 600.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="cap the plain walks at 20 s (digits) and 10 s (moons D)",
    )
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    seconds, m = whole_search()
    print(
        f"whole default search, moons B (seed 0): {seconds:.2f} s, {m['generations']} generations, "
        f"{m['evaluations']} evaluations, test acc {m['test_accuracy']:.4f}, sparsity "
        f"{m['sparsity']:.3f} (post-prune {m['post_prune_seconds']:.2f} s)   "
        f"target <= 10 s: {'PASS' if seconds <= 10 else 'MISS'}"
    )
    prune_bench(args.quick)


if __name__ == "__main__":
    main()
