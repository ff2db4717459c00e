"""The MNIST-scale local search against edge-popup on the same random networks, in one process.

    python benchmarks/bench_scale.py [--data-dir ../shared/data] [--arch 784,300,10 ...]
        [--seeds 0 1 2] [--temperature 0.25] [--ranking expansion] [--exact-top N]
        [--max-passes N] [--min-gain 1e-4]

For each network and seed, edge-popup (50%, 100 epochs) and then the local search
(``--variant local --objective loss --temperature 0.25 --min-gain 1e-4``) run one after the
other, as `evoprune baseline edge-popup` and `evoprune search` would (both through
`evoprune.jobs.run_job`, signed-constant init, mnist10k, pixels / 255). Prints one row per pair (test accuracy, sparsity, seconds) and per
network the mean gain in points and the local search's share of edge-popup's wall time. The
targets of the MNIST comparison: a gain of at least 0.5 points in no more time. The load average
is printed: on a shared machine compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics

from evoprune.jobs import run_job


def pair(arch: str, seed: int, args: argparse.Namespace) -> tuple[dict, dict]:
    common = {"dataset": "mnist", "data_dir": args.data_dir, "normalize": False, "arch": arch,
              "init": "signed-constant", "seed": seed}  # fmt: skip
    ep = run_job({**common, "method": "edge-popup", "sparsity": 0.5, "epochs": args.epochs})
    local = {"method": "local", "objective": "loss", "ranking": args.ranking,
             "temperature": args.temperature, "exact_top": args.exact_top}  # fmt: skip
    if args.max_passes:
        local["max_passes"] = args.max_passes
    local["min_gain"] = args.min_gain
    return ep, run_job({**common, **local})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--arch", nargs="+", default=["784,300,10", "784,300,100,10"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--temperature", type=float, default=0.25)
    ap.add_argument("--ranking", default="expansion", choices=["expansion", "none"])
    ap.add_argument("--exact-top", type=int, default=0, help="re-score the N best flips exactly")
    ap.add_argument("--max-passes", type=int, default=0, help="0: the local search's default")
    ap.add_argument(
        "--min-gain",
        type=float,
        default=1e-4,
        help="a descent ends after a pass "
        "that gains less (the library's default for the loss: 1e-3)",
    )
    ap.add_argument("--epochs", type=int, default=100, help="edge-popup epochs")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; local search: ranking {args.ranking}, "
          f"temperature {args.temperature}, exact top {args.exact_top}, "
          f"min gain {args.min_gain}")  # fmt: skip
    print(f"{'network':16} seed  {'edge-popup':>18}  {'local search':>28}  gain")
    for arch in args.arch:
        gains, ep_s, local_s = [], [], []
        for seed in args.seeds:
            ep, ls = pair(arch, seed, args)
            gain = 100 * (ls["test_accuracy"] - ep["test_accuracy"])
            gains.append(gain)
            ep_s.append(ep["wall_seconds"])
            local_s.append(ls["wall_seconds"])
            print(f"{arch:16} {seed:4}  {100 * ep['test_accuracy']:6.2f}% {ep['wall_seconds']:7.1f} s  "
                  f"{100 * ls['test_accuracy']:6.2f}% {100 * ls['sparsity']:4.1f}% sparse "
                  f"{ls['wall_seconds']:6.1f} s  {gain:+.2f}", flush=True)  # fmt: skip
        print(f"{arch:16} mean gain {statistics.mean(gains):+.2f} points (target >= +0.50); "
              f"local search in {sum(local_s) / sum(ep_s):.0%} of edge-popup's wall time "
              f"(target <= 100%); load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
