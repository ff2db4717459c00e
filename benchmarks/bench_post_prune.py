"""Post-pruning criteria against each other: test accuracy and sparsity they give the same ticket.

For each case (dataset, architecture, objective, seed) the GA runs once without post-pruning
(the paper's defaults otherwise); then every criterion prunes that same best mask on the
training set. Printed per criterion: the mean change of test accuracy and of sparsity against
the unpruned ticket, the worst single change, and the seconds spent pruning.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_post_prune.py [--quick] [--csv F]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tabular import write_tabular  # noqa: E402

from evoprune.data import load_dataset, load_file  # noqa: E402
from evoprune.evaluate import Evaluator  # noqa: E402
from evoprune.ga import GAConfig, post_prune  # noqa: E402
from evoprune.ga.api import search  # noqa: E402
from evoprune.ga.config import POST_PRUNE_CRITERIA  # noqa: E402
from evoprune.nets import build_mlp, parse_arch  # noqa: E402
from evoprune.scores import score_splits  # noqa: E402

# (label, dataset loader kwargs, arch, objective); the paper's datasets, then small tables
CASES = [
    ("moons B", {"name": "moons"}, "B", "accuracy"),
    ("circles B", {"name": "circles"}, "B", "accuracy"),
    ("digits-2 B", {"name": "digits", "classes": 2}, "B", "loss"),
    ("digits-5 B", {"name": "digits", "classes": 5}, "B", "loss"),
    ("digits-10 B", {"name": "digits", "classes": 10}, "B", "loss"),
    ("wine B", {"file": "wine"}, "B", "loss"),
    ("breast_cancer B", {"file": "breast_cancer"}, "B", "loss"),
]


def dataset(kwargs, tables, seed):
    if "file" in kwargs:
        return load_file(tables[kwargs["file"]], "target", seed=seed)
    return load_dataset(kwargs["name"], kwargs.get("classes"))


def run_case(label, kwargs, arch, objective, seed, tables):
    ds = dataset(kwargs, tables, seed)
    layers = parse_arch(arch, ds.n_features, ds.n_classes)
    net = build_mlp(layers, "uniform", seed)
    cfg = GAConfig(seed=seed, post_prune=False)
    t0 = time.perf_counter()
    ticket = search(net, ds.X_train, ds.y_train, objective, cfg)
    ga_seconds = time.perf_counter() - t0
    splits = {"test": (ds.X_test, ds.y_test)}
    base = score_splits(net, ticket.mask, splits)["test_accuracy"]
    rows = []
    for criterion in POST_PRUNE_CRITERIA:
        ev = Evaluator(net, ds.X_train, ds.y_train, "accuracy", cache=False, metrics=("accuracy",))
        t0 = time.perf_counter()
        pruned, report = post_prune(ev, ticket.mask, criterion, seed)
        seconds = time.perf_counter() - t0
        test = score_splits(net, pruned, splits)["test_accuracy"]
        rows.append(
            {
                "case": label,
                "seed": seed,
                "criterion": criterion,
                "test_before": base,
                "test_after": test,
                "delta_test": test - base,
                "sparsity_before": 1 - float(ticket.mask.float().mean()),
                "sparsity_after": 1 - float(pruned.float().mean()),
                "prune_seconds": seconds,
                "ga_seconds": ga_seconds,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seeds 0-1 and no circles")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--csv", type=Path, help="also write every row here")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    seeds = range(2 if args.quick else args.seeds)
    cases = [c for c in CASES if not (args.quick and c[0].startswith("circles"))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tables = write_tabular(tmp, ("wine", "breast_cancer"))
        for label, kwargs, arch, objective in cases:
            for seed in seeds:
                rows += run_case(label, kwargs, arch, objective, seed, tables)
                last = rows[-len(POST_PRUNE_CRITERIA) :]
                print(
                    f"{label} s{seed}: "
                    + ", ".join(f"{r['criterion']} {r['delta_test']:+.4f}" for r in last),
                    flush=True,
                )
                if args.csv:
                    pd.DataFrame(rows).to_csv(args.csv, index=False)
    frame = pd.DataFrame(rows)
    frame["delta_sparsity"] = frame["sparsity_after"] - frame["sparsity_before"]
    print("\nmean change against the unpruned ticket (test accuracy in points, sparsity in points)")
    per_case = frame.pivot_table(index="case", columns="criterion", values="delta_test") * 100
    print(per_case.round(2).to_string())
    summary = frame.groupby("criterion").agg(
        delta_test=("delta_test", "mean"),
        worst_test=("delta_test", "min"),
        delta_sparsity=("delta_sparsity", "mean"),
        prune_seconds=("prune_seconds", "mean"),
    )
    summary[["delta_test", "worst_test", "delta_sparsity"]] *= 100
    print(summary.loc[list(POST_PRUNE_CRITERIA)].round(3).to_string())


if __name__ == "__main__":
    main()
