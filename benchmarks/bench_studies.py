"""The optimiser studies' speed figures, measured side by side in one process:

1. the samplers' own time per trial (TPE multivariate, CMA-ES, random) in the low (6-dim) and the
   high (19-dim) HPO space, over `--trials` trials of a cheap stand-in objective (the sampler's
   work does not depend on what a trial costs), in memory and in the journal file the CLI uses;
2. the SynFlow objective against the training objective: seconds per trial over the same
   configurations (random draws from the low space), at the lean and the default epoch cap.

Run: python benchmarks/bench_studies.py [--trials 100] [--configs 8]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import warnings

import torch


def sampler_ms(sampler_name: str, space: str, trials: int, journal: bool) -> float:
    import optuna

    from evoprune.studies.hpo import HPOConfig, make_sampler, suggest, timed
    from evoprune.studies.hpo_storage import open_storage

    cfg = HPOConfig(sampler=sampler_name, space=space)
    sampler = timed(make_sampler(cfg, 0))
    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(__import__("pathlib").Path(tmp)) if journal else None
        study = optuna.create_study(sampler=sampler, storage=storage, direction="maximize")
        for _ in range(trials):
            trial = study.ask()
            config = suggest(trial, space, "train")
            # a smooth stand-in for validation F1 (deterministic in the parameters)
            value = -abs(math.log10(config["lr"]) + 2.5) - abs(config["batch_size"] - 64) / 256
            value -= sum(abs(w - 100) for w in config["widths"]) / 1000 + sum(config["dropouts"])
            study.tell(trial, value)
        spent = [t.user_attrs["sampler_seconds"] for t in study.trials]
    return 1e3 * sum(spent) / len(spent)


def objective_seconds(configs: int, max_epochs: int, patience: int) -> tuple[float, float]:
    import optuna

    from evoprune.studies.hpo import HPOConfig, evaluate_trial, suggest
    from evoprune.studies.training import digits_splits

    s = digits_splits()
    out = {}
    for objective in ("synflow", "train"):
        cfg = HPOConfig(objective=objective, max_epochs=max_epochs, patience=patience)
        warm = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
        evaluate_trial(suggest(warm, "low", objective), s, cfg, -1)  # first-call costs, untimed
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        start = time.perf_counter()
        for i in range(configs):
            trial = study.ask()  # the same draws for both objectives (same sampler seed)
            evaluate_trial(suggest(trial, "low", objective), s, cfg, i)
            study.tell(trial, 0.0)
        out[objective] = (time.perf_counter() - start) / configs
    return out["synflow"], out["train"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--configs", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import cmaes  # noqa: F401  (imported once, before any timing)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"load: {os.getloadavg()[0]:.1f} (2 cores); {args.trials} trials per study")
    print("| space | storage | TPE ms/trial | CMA-ES ms/trial | random ms/trial | TPE / CMA-ES |")
    print("|---|---|---:|---:|---:|---:|")
    for space in ("low", "high"):
        for journal in (False, True):
            ms = {s: sampler_ms(s, space, args.trials, journal) for s in ("tpe", "cmaes", "random")}
            print(f"| {space} | {'journal' if journal else 'memory'} | {ms['tpe']:.2f} | "
                  f"{ms['cmaes']:.2f} | {ms['random']:.2f} | {ms['tpe'] / ms['cmaes']:.1f}x |")  # fmt: skip
    print("\n| objective cap | SynFlow s/trial | train s/trial | train / SynFlow |")
    print("|---|---:|---:|---:|")
    for max_epochs, patience in ((10, 3), (100, 10)):
        sf, tr = objective_seconds(args.configs, max_epochs, patience)
        print(
            f"| {max_epochs} epochs, patience {patience} | {sf:.4f} | {tr:.3f} | {tr / sf:.0f}x |"
        )


if __name__ == "__main__":
    main()
