"""Whole-search and post-pruning benchmarks (targets from the core issue, 2-core CPU).

1. A whole default `evoprune search` on moons B (GA, paper defaults, post-pruning included):
   target <= 10 s.
2. Post-pruning a digits-10 B mask (5,550 bits): our batched walk vs the plain walk of the
   paper's code (copy the model, mask it, forward, score — one candidate at a time), same
   mask, same result checked; target <= 5 s for ours.

Run: .venv/bin/python benchmarks/bench_search.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import evoprune
from evoprune.data import load_dataset
from evoprune.evaluate import Evaluator
from evoprune.ga import GAConfig, post_prune
from evoprune.nets import build_mlp


def whole_search(seed: int = 0) -> tuple[float, dict]:
    ds = load_dataset("moons")
    start = time.perf_counter()
    t = evoprune.search(build_mlp([2, 75, 2], seed=seed), ds.X_train, ds.y_train,
                        config=GAConfig(seed=seed), X_test=ds.X_test, y_test=ds.y_test)
    return time.perf_counter() - start, t.metrics


def plain_walk(model, mask, X, y, limit_seconds: float) -> tuple[torch.Tensor, int, float]:
    """The paper's way: one candidate at a time, a masked copy of the model each time."""
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    sizes = [m.weight.numel() for m in linears]

    def accuracy(bits: torch.Tensor) -> float:
        net = copy.deepcopy(model)
        chunks = torch.split(bits, sizes)
        with torch.no_grad():
            for layer, chunk in zip([m for m in net if isinstance(m, torch.nn.Linear)], chunks, strict=True):
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


def prune_bench(quick: bool) -> None:
    ds = load_dataset("digits")
    net = build_mlp([64, 75, 10], seed=0)
    ev = Evaluator(net, ds.X_train, ds.y_train, cache=False, metrics=("accuracy",))
    # A realistic mask to prune: the best of a short GA run.
    t = evoprune.search(net, ds.X_train, ds.y_train,
                        config=GAConfig(min_generations=30, max_generations=30, post_prune=False))
    start = time.perf_counter()
    pruned, report = post_prune(ev, t.mask)
    ours = time.perf_counter() - start
    set_bits = int(t.mask.sum())
    limit = 20.0 if quick else 600.0
    plain, done, plain_s = plain_walk(net, t.mask, ds.X_train, ds.y_train, limit)
    plain_full = plain_s / max(done, 1) * set_bits
    if done == set_bits:
        assert torch.equal(plain, pruned), "batched walk differs from the plain walk"
    print(f"post-pruning digits-10 B: {set_bits} set bits -> {report.bits_after} "
          f"(train acc {report.accuracy_before:.4f} -> {report.accuracy_after:.4f})")
    print(f"  ours  {ours:8.2f} s   ({report.evaluations} candidate evaluations)")
    extrapolated = "" if done == set_bits else f" (extrapolated from {done} bits)"
    print(f"  plain {plain_full:8.2f} s{extrapolated}")
    print(f"  ratio {plain_full / ours:8.1f}x   target ours <= 5 s: {'PASS' if ours <= 5 else 'MISS'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cap the plain walk at 20 s")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    seconds, m = whole_search()
    print(f"whole default search, moons B (seed 0): {seconds:.2f} s, {m['generations']} generations, "
          f"{m['evaluations']} evaluations, test acc {m['test_accuracy']:.4f}, sparsity "
          f"{m['sparsity']:.3f} (post-prune {m['post_prune_seconds']:.2f} s)   "
          f"target <= 10 s: {'PASS' if seconds <= 10 else 'MISS'}")
    prune_bench(args.quick)


if __name__ == "__main__":
    main()
