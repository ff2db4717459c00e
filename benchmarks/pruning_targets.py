"""Print the pruning targets from a finished `pruning` sweep (5 seeds per cell).

evoprune sweep pruning --profile quick --out runs/pruning-quick
python benchmarks/pruning_targets.py runs/pruning-quick
"""

from __future__ import annotations

import sys

import pandas as pd

from evoprune.experiments.sections.pruning import CLAIM_ROWS, crossover
from evoprune.experiments.tables import load_results


def main() -> None:
    runs = load_results(sys.argv[1] if len(sys.argv) > 1 else "runs/pruning-quick")
    runs = runs[runs["spec"] == "pruning"].copy()
    runs["sparsity_target"] = pd.to_numeric(runs["target_sparsity"])
    cell = runs.groupby(["method", "ec", "sparsity_target"])
    t = cell.agg(
        f1=("test_f1", "mean"), f1_sd=("test_f1", "std"), ft=("test_f1_finetuned", "mean"),
        ft_sd=("test_f1_finetuned", "std"), log_R=("log_synflow", "mean"),
        seconds=("seconds", "mean"), seconds_max=("seconds", "max"), n=("seed", "count"),
    ).reset_index()  # fmt: skip
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    for s in (0.98, 0.95):
        print(
            f"\n== sparsity {s}: test macro-F1 without / after 30 epochs fine-tuning (mean, sd, n)"
        )
        print(t[t["sparsity_target"] == s].round(3).to_string(index=False))
    print("\n== where magnitude (same EC) stops being the best method, by EC")
    for metric, name in (("test_f1", "no FT"), ("test_f1_finetuned", "after FT")):
        print(f"{name}: {crossover(runs, metric)}")
    print("\n== the abstract's claims")
    for _, text, check in CLAIM_ROWS:
        ours, holds = check(runs)
        print(f"- {text}\n    ours: {ours}; holds: {holds}")


if __name__ == "__main__":
    main()
