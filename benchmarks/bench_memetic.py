"""The memetic variant against the paper's GA on the same networks, seed by seed, in one process.

    python benchmarks/bench_memetic.py [--cases moons digits] [--seeds 0 1 2 3 4]
        [--set kicks=3 temperature=0.5 ...]

For each case and seed the paper's GA (`--variant ga`, post-pruning included) and then the
memetic variant run back to back through `evoprune.jobs.run_job`, as `evoprune search` runs
them. Prints one row per seed (test accuracy, sparsity, wall seconds of each) and per case the
mean test accuracy, the seeds on which the memetic ticket scores below the GA's, and the memetic
search's wall time as a multiple of the GA's (total over the seeds, and the range per seed).
``--set`` passes settings to the memetic runs only (job keys, e.g. ``kicks=3``). The targets:
moons B (accuracy) mean >= 97.5%, no seed below the GA, >= 70% sparse, wall <= 2x the GA's;
digits-10 B (loss) >= 97.5% at >= 60% sparsity, below the GA's wall time.
The CPU is shared: the load average is printed; compare ratios, not absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from evoprune.jobs import run_job

CASES = {
    "moons": {"dataset": "moons", "arch": "B", "objective": "accuracy"},
    "digits": {"dataset": "digits", "classes": 10, "arch": "B", "objective": "loss"},
}


def setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, json.loads(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--set", nargs="*", type=setting, default=[], help="memetic job key=value")
    args = ap.parse_args()
    extra = dict(args.set)
    print(f"load average {os.getloadavg()[0]:.2f}; memetic settings {extra or 'default'}")
    print(f"{'case':7} seed  {'paper GA':>26}  {'memetic':>26}  ratio")
    for case in args.cases:
        ga_s, me_s, me_acc, below, sparse = [], [], [], [], []
        for seed in args.seeds:
            job = {**CASES[case], "seed": seed}
            ga = run_job({**job, "method": "ga"})
            me = run_job({**job, **extra, "method": "memetic"})
            ga_s.append(ga["wall_seconds"])
            me_s.append(me["wall_seconds"])
            me_acc.append(me["test_accuracy"])
            sparse.append(me["sparsity"])
            if me["test_accuracy"] < ga["test_accuracy"] - 1e-9:
                below.append(seed)
            print(f"{case:7} {seed:4}  {100 * ga['test_accuracy']:6.2f}% {100 * ga['sparsity']:4.1f}% "
                  f"sparse {ga['wall_seconds']:5.1f} s  {100 * me['test_accuracy']:6.2f}% "
                  f"{100 * me['sparsity']:4.1f}% sparse {me['wall_seconds']:5.1f} s  "
                  f"{me['wall_seconds'] / ga['wall_seconds']:4.2f}x", flush=True)  # fmt: skip
        ratios = [m / g for m, g in zip(me_s, ga_s, strict=True)]
        print(f"{case:7} memetic mean {100 * statistics.mean(me_acc):.2f}%, below the GA on seeds "
              f"{below or 'none'}, sparsity min {100 * min(sparse):.1f}%; wall {sum(me_s) / sum(ga_s):.2f}x "
              f"the GA's in total ({min(ratios):.2f}-{max(ratios):.2f}x per seed); "
              f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
