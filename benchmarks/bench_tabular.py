"""Small tables with the defaults for user data: evoprune's searches against a trained MLP.

For each table (from scikit-learn's bundled data, written to CSV on the fly): a backprop
``MLPClassifier((75,))`` scored by 5-fold cross-validation on the same per-feature scaling
(min-max to [-0.7, 0.7] fitted on each training fold), and the job that
``evoprune search --data F --target target --variant V --objective loss --seed S`` runs
(the per-feature scaling is its default), test accuracy on its 25% split, seeds 0-2.
Target: the memetic search within 3 points of the MLP's CV accuracy.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tabular.py [--variants ga,memetic]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

sys.path.insert(0, str(Path(__file__).parent))

from tabular import LOADERS, write_tabular  # noqa: E402

from evoprune.jobs import run_job  # noqa: E402


def mlp_cv(path: Path) -> float:
    frame = pd.read_csv(path)
    X, y = frame.drop(columns=["target"]).to_numpy(), frame["target"].to_numpy()
    model = make_pipeline(
        MinMaxScaler(feature_range=(-0.7, 0.7)),
        MLPClassifier((75,), max_iter=2000, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return float(np.mean(cross_val_score(model, X, y, cv=5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="ga,memetic")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tables", default=",".join(LOADERS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = args.variants.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tables = write_tabular(tmp, tuple(args.tables.split(",")))
        for name, path in tables.items():
            row = {"table": name, "mlp_cv": mlp_cv(path)}
            for variant in variants:
                accs, secs, sparsity = [], [], []
                for seed in range(args.seeds):
                    job = {"method": variant, "dataset": "file", "data": str(path),
                           "target": "target", "arch": "B", "seed": seed, "objective": "loss"}  # fmt: skip
                    t0 = time.perf_counter()
                    r = run_job(job)
                    secs.append(time.perf_counter() - t0)
                    accs.append(r["test_accuracy"])
                    sparsity.append(r["sparsity"])
                row[variant] = float(np.mean(accs))
                row[f"{variant}_seeds"] = " / ".join(f"{a:.3f}" for a in accs)
                row[f"{variant}_sparsity"] = float(np.mean(sparsity))
                row[f"{variant}_seconds"] = float(np.mean(secs))
            rows.append(row)
            print(row, flush=True)
    frame = pd.DataFrame(rows)
    for variant in variants:
        frame[f"{variant}_gap"] = (frame["mlp_cv"] - frame[variant]) * 100
    print()
    print(frame.round(4).to_string(index=False))
    print("\ngoal: memetic within 3 points of the MLP's 5-fold CV accuracy (gap <= 3)")


if __name__ == "__main__":
    main()
