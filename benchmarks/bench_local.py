"""Speed of the exact local search: flips/s, incremental vs full forward, memetic vs paper GA.

    python benchmarks/bench_local.py [--data-dir ../shared/data] [--skip-ga] [--skip-general]
                                     [--passes 1]

Prints, side by side in one process:
1. exact flip evaluations per second on 784-300-10 (mnist10k, signed-constant, random 50% mask):
   one pass of the local search with each ranking, on one core and on all cores;
2. one candidate's exact objective change: incremental (`MLPState.unit_deltas`, per flip) against a
   full float64 forward of the flipped mask (per flip);
3. the paper's GA against the memetic variant on digits-10 B (loss) and moons B (accuracy), seed 0:
   test accuracy, sparsity, seconds;
4. the memetic search on moons B, seed 4, through the incremental state (`MLPState`) and through
   the general path (`ModuleState`, the same network wrapped in a module of its own): whether
   they end at the same ticket, and the seconds of each.
The CPU is shared: the load average is printed; compare ratios, not absolute seconds.
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np
import torch

from evoprune.data.registry import load_dataset
from evoprune.local import kernels
from evoprune.local.config import LocalConfig
from evoprune.local.incremental import MLPState
from evoprune.local.search import LocalSearch
from evoprune.nets import build_mlp


def flips_per_second(st: MLPState, ranking: str, threads: int, passes: int) -> tuple[float, float]:
    numba.set_num_threads(threads)
    keep = kernels.THREAD_WORK
    kernels.THREAD_WORK = 0 if threads > 1 else float("inf")
    bits = st.mask_bits().copy()
    ls = LocalSearch(st, LocalConfig(ranking=ranking, max_passes=passes))
    start = time.perf_counter()
    for _ in range(passes):
        ls.one_pass()
    seconds = time.perf_counter() - start
    kernels.THREAD_WORK = keep
    st.set_mask_bits(bits)
    return ls.pos.flips_evaluated / seconds, seconds / passes


def incremental_vs_full(st: MLPState, n_flips: int = 20) -> tuple[float, float]:
    start = time.perf_counter()
    for o in range(n_flips):
        st.unit_deltas(0, o, "none")
    incremental = (time.perf_counter() - start) / (n_flips * st.W[0].shape[1])
    start = time.perf_counter()
    for o in range(n_flips):
        st.mask[0][o, 0] = ~st.mask[0][o, 0]
        st.full_value()
        st.mask[0][o, 0] = ~st.mask[0][o, 0]
    full = (time.perf_counter() - start) / n_flips
    return incremental, full


def ga_vs_memetic(dataset: str, classes: int | None, objective: str) -> None:
    from evoprune.ga.api import search
    from evoprune.ga.config import GAConfig

    ds = load_dataset(dataset, classes, None, None)
    layers = [ds.n_features, 75, ds.n_classes]
    for variant in ("ga", "memetic"):
        net = build_mlp(layers, "uniform", 0)
        start = time.perf_counter()
        t = search(net, ds.X_train, ds.y_train, objective, GAConfig(variant=variant, seed=0),
                   X_test=ds.X_test, y_test=ds.y_test)  # fmt: skip
        m = t.metrics
        print(f"  {dataset:7s} {variant:8s} test {m['test_accuracy']:.4f} sparsity "
              f"{m['sparsity']:.3f} {time.perf_counter() - start:6.1f} s")  # fmt: skip


class Wrapped(torch.nn.Module):
    """A network behind a forward of its own: not an MLP stack, so the general path."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def general_vs_incremental(seed: int = 4) -> None:
    from evoprune.ga.api import search
    from evoprune.ga.config import GAConfig

    ds = load_dataset("moons", None, None, None)
    tickets, seconds = [], []
    for path, wrap in (("incremental", lambda n: n), ("general", Wrapped)):
        net = wrap(build_mlp([2, 75, 2], "uniform", seed))
        start = time.perf_counter()
        t = search(net, ds.X_train, ds.y_train, "accuracy", GAConfig(variant="memetic", seed=seed),
                   X_test=ds.X_test, y_test=ds.y_test)  # fmt: skip
        seconds.append(time.perf_counter() - start)
        tickets.append(t)
        m = t.metrics
        print(f"  {path:11s} test {m['test_accuracy']:.4f} sparsity {m['sparsity']:.3f} "
              f"{m['passes']} passes {seconds[-1]:6.1f} s")  # fmt: skip
    same = torch.equal(tickets[0].mask, tickets[1].mask)
    print(f"  same ticket: {same}; the general path takes {seconds[1] / seconds[0]:.1f}x the time")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--data-dir", default=os.path.join(os.path.dirname(__file__), "../../shared/data")
    )
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--skip-ga", action="store_true")
    p.add_argument("--skip-general", action="store_true")
    args = p.parse_args()
    print(f"load average {os.getloadavg()}, numba threads {numba.config.NUMBA_NUM_THREADS}")
    ds = load_dataset("mnist", None, False, args.data_dir)
    net = build_mlp([784, 300, 10], "signed-constant", 0)
    bits = np.random.default_rng(0).random(784 * 300 + 300 * 10) < 0.5
    st = MLPState.from_model(net, ds.X_train, ds.y_train, "loss", torch.from_numpy(bits))
    print("784-300-10, mnist10k (7,500 train), one pass, exact flip evaluations per second:")
    for ranking in ("expansion", "none"):
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            rate, sec = flips_per_second(st, ranking, threads, args.passes)
            print(
                f"  ranking {ranking:9s} threads {threads}: {rate:12,.0f} flips/s ({sec:.1f} s/pass)"
            )
    inc, full = incremental_vs_full(st)
    print(f"one flip: incremental {inc * 1e6:.1f} us, full forward {full * 1e3:.1f} ms "
          f"-> {full / inc:,.0f}x")  # fmt: skip
    if not args.skip_ga:
        print("paper GA vs memetic, seed 0:")
        ga_vs_memetic("digits", 10, "loss")
        ga_vs_memetic("moons", None, "accuracy")
    if not args.skip_general:
        print("memetic on moons B, seed 4, through the incremental state and the general path:")
        general_vs_incremental()
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
