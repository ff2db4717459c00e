"""`evoprune hpo`, `evoprune minimize`, `evoprune train-weights`: the optimiser studies of
Hirianskyi & Bulakh (SUNZ 2026). Thin: parse, call `evoprune.studies`, print one line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from evoprune.cli.data import check_out
from evoprune.errors import EvopruneError

DEFAULT_METHODS = "cmaes,ga,adam,sgd,random"


def _positive_int(text: str, most: int = 10**9) -> int:
    """A whole number from 1 to `most`, written as one (1e30 is not a count of anything)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {most:,}, got {text!r}")
    return value


def _workers(text: str) -> int:
    """Worker processes: at most 4 per core of this machine."""
    return _positive_int(text, 4 * (os.cpu_count() or 1))


def _seeds(text: str) -> int:
    return _positive_int(text, 100_000)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "hpo": "hyperparameter optimisation of an MLP on digits with Optuna (TPE, CMA-ES, random)",
    "minimize": "minimise a test function with CMA-ES, a GA, Adam, SGD, random search",
    "train-weights": "train an MLP 64-32-10 on digits with Adam, sep-CMA-ES or a GA",
}


def register(sub: argparse._SubParsersAction) -> None:
    from evoprune.studies.choices import HPO_OBJECTIVES, SAMPLERS, SPACES

    p = sub.add_parser(
        "hpo",
        help=COMMANDS["hpo"],
        description="Search an MLP's hyperparameters on digits (70/15/15) with an Optuna sampler. "
        "The study lives in Optuna storage (a journal file in --out, or --storage URL): several "
        "--workers share it, and after a kill the same command resumes it. It ends with exactly "
        "--trials COMPLETE trials; the best configuration is then trained once and tested.",
    )
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default tpe")
    p.add_argument("--objective", choices=HPO_OBJECTIVES, default="train",
                   help="train: validation macro-F1 after training; synflow: the zero-cost "
                   "SynFlow score of the architecture at initialisation (default train)")  # fmt: skip
    p.add_argument("--space", choices=SPACES, default="low",
                   help="low: 6 dimensions; high: 8 layers with their own width and dropout, 19 (default low)")  # fmt: skip
    p.add_argument(
        "--trials", type=_positive_int, default=100, help="COMPLETE trials (default 100)"
    )
    p.add_argument("--workers", type=_workers, default=1,
                   help="worker processes, at most 4 per core (default 1)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument(
        "--storage", help="an RDB URL (e.g. sqlite:///study.db) instead of the journal file"
    )
    p.add_argument("--max-epochs", type=_positive_int, default=100,
                   help="Adam epochs per trial and for the final training (default 100)")  # fmt: skip
    p.add_argument("--patience", type=_positive_int, default=10,
                   help="early-stopping patience on the validation loss (default 10)")  # fmt: skip
    p.add_argument("--out", type=Path,
                   help="the study's folder (default runs/hpo-SAMPLER-OBJECTIVE-SPACE-sSEED)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_hpo)

    from evoprune.studies.functions import FUNCTIONS

    p = sub.add_parser(
        "minimize",
        help=COMMANDS["minimize"],
        description="Minimise a classic test function with each method at the same number of "
        "evaluations, over several seeds; report median best, success rate (f < 1e-6) and "
        "the median evaluations to success.",
    )
    p.add_argument("--function", choices=list(FUNCTIONS), required=True)
    p.add_argument(
        "--dim", type=_positive_int, default=10, help="dimensions, e.g. 2, 10, 30 (default 10)"
    )
    p.add_argument("--method", default=DEFAULT_METHODS,
                   help="one method or several, comma-separated: cmaes, ga, adam, sgd, random "
                   "(default: all five)")  # fmt: skip
    p.add_argument("--budget", type=_positive_int, help="evaluations per run (default 10^4 * dim)")
    p.add_argument("--seeds", type=_seeds, default=10, help="seeds 0..K-1 (default 10)")
    p.add_argument(
        "--out",
        type=Path,
        help="results folder (default runs/minimize-FUNCTION-DIM, and the methods when given)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_minimize)

    from evoprune.studies.choices import WEIGHT_METHODS

    p = sub.add_parser(
        "train-weights",
        help=COMMANDS["train-weights"],
        description="Train the weights of an MLP 64-32-10 on digits (70/15/15): Adam (lr 1e-3, "
        "batch 64, weight decay 1e-3, 200 epochs, early stopping), sep-CMA-ES (population 64, full-batch "
        "cross-entropy) or a GA over the weights; the same budget of CPU seconds with --seconds, "
        "or of evaluations with --evaluations (the same weights for the same seed on any machine).",
    )
    p.add_argument("--method", choices=WEIGHT_METHODS, default="adam", help="default adam")
    p.add_argument("--dataset", default="digits", help="digits (the only one today; default)")
    p.add_argument("--seconds", type=_positive_float,
                   help="training CPU seconds (default 30; Adam ends at its 200-epoch cap, within this; "
                   "a GA or sep-CMA-ES run that the budget stops differs a little from run to "
                   "run, as the machine's speed does)")  # fmt: skip
    p.add_argument("--evaluations", type=_positive_int,
                   help="a budget of loss evaluations (Adam: mini-batch steps) instead of, or "
                   "beside, the seconds: the same seed gives the same weights on any machine")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--out", type=Path,
                   help="results folder (default runs/train-weights-METHOD-sSEED)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_train_weights)


def run_hpo(args: argparse.Namespace) -> int:
    from evoprune.studies.jobs import run_hpo_job

    job = {"method": "hpo", "sampler": args.sampler, "objective": args.objective,
           "space": args.space, "trials": args.trials, "workers": args.workers, "seed": args.seed,
           "storage": args.storage, "max_epochs": args.max_epochs, "patience": args.patience}  # fmt: skip
    job = {k: v for k, v in job.items() if v is not None}
    out = (
        args.out or Path("runs") / f"hpo-{args.sampler}-{args.objective}-{args.space}-s{args.seed}"
    )
    check_out(out, finished_ok=True)  # a finished study reports again
    _no_other_run(out)
    r = run_hpo_job(job, out, progress=not args.quiet)
    if r["n_trials"] > args.trials:
        print(f"note: the study in {out} already held {r['n_trials']} COMPLETE trials, more "
              f"than --trials {args.trials}; the summary covers all of them", file=sys.stderr)  # fmt: skip
    print(
        f"hpo {r['sampler']}/{r['objective']}/{r['space']} seed {r['seed']}: {r['n_trials']} trials, "
        + (
            f"best val F1 {r['best_val_f1']:.4f}"
            if r["objective"] == "train"
            else f"best {r['objective']} score {r['best_objective']:.4g} (its final training: val F1 "
            f"{r['final_val_f1']:.4f})"
        )
        + f", test F1 {r['test_f1']:.4f}, "
        f"sampler {r['sampler_seconds_per_trial'] * 1e3:.2f} ms/trial, "
        f"objective {r['objective_seconds_per_trial']:.3f} s/trial, {r['wall_seconds']:.1f} s -> {out}"
    )
    return 0


def _no_other_run(out: Path) -> None:
    """An hpo study's --out holds its own study or nothing: not another run, nor a sweep."""
    if (out / "results.sqlite").exists():
        raise EvopruneError(f"--out {out}: a sweep folder; choose another --out")
    if (out / "result.json").is_file():
        from evoprune.cli.compare import load_result

        method = load_result(out).get("method")
        if method != "hpo":
            raise EvopruneError(
                f"--out {out}: already holds a finished {method} run; choose another --out"
            )


def run_minimize(args: argparse.Namespace) -> int:
    from evoprune.io import provenance
    from evoprune.jobkeys import comma_parts
    from evoprune.progress import progress_bar
    from evoprune.results import write_run_dir
    from evoprune.studies.minimize import METHODS, check, minimize_seeds, summarise

    methods = comma_parts(args.method, "--method")
    if not methods or len(set(methods)) != len(methods):
        raise EvopruneError(
            f"--method: expected distinct names from {', '.join(METHODS)}, got {args.method!r}"
        )
    for m in methods:
        check(args.function, args.dim, m, args.budget)
    name = f"minimize-{args.function}-{args.dim}"
    if args.method != DEFAULT_METHODS:
        name += "-" + "+".join(methods)
    out = args.out or Path("runs") / name
    check_out(out)
    wall = time.perf_counter()
    seeds = list(range(args.seeds))
    summary, runs, history = {}, [], []
    bar = progress_bar(methods, desc=f"minimize {args.function}-{args.dim}", unit="method",
                       enabled=not args.quiet)  # fmt: skip
    for m in bar:
        results = minimize_seeds(args.function, args.dim, m, args.budget, seeds)
        summary[m] = summarise(results)
        for r in results:
            runs.append({"method": m, "seed": r.seed, "best": r.best, "success": r.success,
                         "evaluations_to_success": r.evaluations_to_success,
                         "seconds": r.seconds})  # fmt: skip
            history += [{"method": m, "seed": r.seed, "evaluations": e, "best_so_far": b}
                        for e, b in r.trace]  # fmt: skip
    budget = results[0].budget
    # the shared fields of every run folder: this one holds every optimizer's runs, seeds 0..n-1
    result = {"method": "minimize", "variant": "+".join(methods), "seed": seeds[0],
              "function": args.function, "dim": args.dim, "budget": budget,
              "seeds": args.seeds, "success_threshold": 1e-6, "methods": summary, "runs": runs,
              "config": vars(args) | {"out": str(out), "run": None},
              "wall_seconds": round(time.perf_counter() - wall, 4), **provenance()}  # fmt: skip
    write_run_dir(out, result, history=history)
    for m, s in summary.items():
        evals = s["median_evaluations_to_success"]
        print(
            f"{args.function}-{args.dim} {m:<6} median best {s['median_best']:.3g}, success "
            f"{s['success_rate']:.2f}, median evaluations to success "
            f"{'-' if evals is None else f'{evals:.0f}'} ({args.seeds} seed{'s' * (args.seeds != 1)}, budget {budget})"
        )
    print(f"-> {out}")
    return 0


def run_train_weights(args: argparse.Namespace) -> int:
    from evoprune.studies.jobs import run_weights_job

    if args.dataset != "digits":
        raise EvopruneError(f"--dataset: expected digits, got {args.dataset!r}")
    out = args.out or Path("runs") / f"train-weights-{args.method}-s{args.seed}"
    check_out(out)
    job = {"method": "train-weights", "optimizer": args.method, "dataset": "digits",
           "seed": args.seed, "seconds": args.seconds, "evaluations": args.evaluations}  # fmt: skip
    job = {k: v for k, v in job.items() if v is not None}
    r = run_weights_job(job, out, progress=not args.quiet)
    print(
        f"train-weights {r['optimizer']} digits seed {r['seed']}: test F1 {r['test_f1']:.4f}, "
        f"test acc {r['test_accuracy']:.4f}, {r['seconds']:.1f} s, {r['evaluations']} evaluations "
        f"-> {out}"
    )
    return 0
