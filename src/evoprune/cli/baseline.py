"""`evoprune baseline edge-popup | backprop` and `evoprune tune-backprop`.

Thin: each command builds a job dict (see `evoprune.baselines.jobs`), runs it through the same
runner as sweeps do, and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evoprune.archs import SKLEARN_ACTIVATIONS
from evoprune.errors import EvopruneError

# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "baseline": "run a baseline: edge-popup or backprop",
    "tune-backprop": "search backprop hyperparameters (RandomizedSearchCV, cv=3)",
}


def register(sub: argparse._SubParsersAction) -> None:
    from evoprune.cli.data import add_data_args, add_network_args

    base = sub.add_parser(
        "baseline",
        help=COMMANDS["baseline"],
        description="Run one of the baselines the paper compares against.",
    )
    methods = base.add_subparsers(dest="baseline", required=True, parser_class=type(base))

    p = methods.add_parser(
        "edge-popup",
        help="edge-popup (Ramanujan et al. 2020) on the same random network",
        description="Train edge-popup scores over a frozen random MLP; write a ticket.",
    )
    add_data_args(p)
    _add_run_args(p)
    add_network_args(p)
    p.add_argument(
        "--sparsity",
        type=float,
        default=0.5,
        help="fraction of weights REMOVED in every layer, in [0, 1) (default 0.5)",
    )
    p.add_argument("--epochs", type=int, help="(default 100)")
    p.add_argument(
        "--lr", type=float, help="initial SGD learning rate, cosine-annealed (default 0.1)"
    )
    p.add_argument("--momentum", type=float, help="(default 0.9)")
    p.add_argument("--weight-decay", type=float, help="on the scores (default 1e-4)")
    p.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum")
    p.add_argument("--batch-size", type=int, help="(default 128)")
    p.add_argument("--threads", type=int, help="torch threads while training (default 1)")
    p.set_defaults(run=run_edge_popup)

    p = methods.add_parser(
        "backprop",
        help="a trained MLP (scikit-learn) with the paper's Table 2 hyperparameters",
        description="Train an MLPClassifier with the Table 2 hyperparameters (or your overrides).",
    )
    add_data_args(p)
    _add_run_args(p)
    _add_backprop_overrides(p)
    p.set_defaults(run=run_backprop)

    p = sub.add_parser(
        "tune-backprop",
        help=COMMANDS["tune-backprop"],
        description="RandomizedSearchCV over the paper's ranges; prints the best row in "
        "Table 2's format.",
    )
    add_data_args(p)
    p.add_argument("--arch", default="B", help="A, B, C, D or a layer list (default B)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the search and the models (default 0)"
    )
    p.add_argument("--n-iter", type=int, default=10, help="settings sampled (default 10)")
    p.add_argument("--cv", type=int, default=3, help="cross-validation folds (default 3)")
    p.add_argument(
        "--jobs", type=int, default=1, help="parallel fits (default 1; progress bar only with 1)"
    )
    p.add_argument("--max-iter", type=int, default=1000, help="epoch cap per fit (default 1000)")
    _add_activation_arg(p)
    p.add_argument("--out", type=Path, help="also write the search's results as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_tune_backprop)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--arch",
        default="B",
        help="A, B, C, D, a layer list like 2,75,2, or conv (conv: edge-popup only; default B)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run seed (network, and the method's own randomness; default 0)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="results folder (default runs/METHOD-DATA-ARCH-sSEED, with a class count other "
        "than the dataset's default and edge-popup's sparsity in the name)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_backprop_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "overrides of the Table 2 row",
        "each defaults to the paper's Table 2 row for the dataset and architecture",
    )
    g.add_argument("--solver", choices=["adam", "sgd"])
    g.add_argument("--learning-rate", choices=["constant", "adaptive", "invscaling"])
    g.add_argument("--learning-rate-init", type=float)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--alpha", type=float, help="L2 penalty")
    g.add_argument("--epsilon", type=float, help="adam only")
    g.add_argument("--momentum", type=float, help="sgd only")
    nest = g.add_mutually_exclusive_group()
    nest.add_argument("--nesterov", dest="nesterovs_momentum", action="store_true", default=None)
    nest.add_argument("--no-nesterov", dest="nesterovs_momentum", action="store_false")
    g.add_argument("--max-iter", type=int, help="epoch cap (default 1000)")
    _add_activation_arg(p)


def _add_activation_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--activation",
        choices=list(SKLEARN_ACTIVATIONS),
        help="between the hidden layers (default relu, Table 2's; tanh or sigmoid: a reference "
        "for a ticket over such a network, with hyperparameters of your own)",
    )


def _job(args: argparse.Namespace, method: str, keys: tuple[str, ...]) -> dict[str, Any]:
    from evoprune.cli.data import data_job

    job = {"method": method, **data_job(args), "arch": args.arch, "seed": args.seed}
    job.update({k: getattr(args, k) for k in keys})
    return {k: v for k, v in job.items() if v is not None}


def _out(args: argparse.Namespace, job: dict[str, Any]) -> Path:
    from evoprune.cli.data import check_out, default_out

    out = args.out if args.out is not None else default_out(job)
    check_out(out)
    return out


def run_edge_popup(args: argparse.Namespace) -> int:
    from evoprune.baselines.edge_popup import EdgePopupConfig
    from evoprune.baselines.jobs import run_edge_popup_job

    keys = (
        "init",
        "activation",
        "sparsity",
        "epochs",
        "lr",
        "momentum",
        "weight_decay",
        "nesterov",
        "batch_size",
        "threads",
    )
    job = _job(args, "edge-popup", keys)
    network = ("init", "activation")  # the random network's; the rest are EdgePopupConfig's
    EdgePopupConfig(**{k: job[k] for k in keys if k in job and k not in network})  # before work
    out = _out(args, job)
    r = run_edge_popup_job(job, out, progress=not args.quiet)
    print(
        f"edge-popup {r['dataset']} {r['arch']} {r['init']} seed {r['seed']}: "
        f"test acc {r['test_accuracy']:.4f} (train {r['train_accuracy']:.4f}), "
        f"sparsity {r['sparsity']:.3f}, {r['epochs']} epochs, {r['wall_seconds']:.1f} s -> {out}"
    )
    return 0


def run_backprop(args: argparse.Namespace) -> int:
    from evoprune.baselines.jobs import run_backprop_job

    keys = (
        "solver",
        "learning_rate",
        "learning_rate_init",
        "batch_size",
        "alpha",
        "epsilon",
        "momentum",
        "nesterovs_momentum",
        "max_iter",
        "activation",
    )
    job = _job(args, "backprop", keys)
    out = _out(args, job)
    r = run_backprop_job(job, out, progress=not args.quiet)
    given = [k for k in keys if k in job and k not in ("max_iter", "activation")]  # row fields
    source = "Table 2 hyperparameters" + f", {', '.join(given)} given" * bool(given)
    if not r["table2_row"]:
        source = "given hyperparameters"
    print(
        f"backprop {r['dataset']} {r['arch']} seed {r['seed']}: "
        f"test acc {r['test_accuracy']:.4f} (train {r['train_accuracy']:.4f}), "
        f"{r['epochs']} epochs, {r['hyperparameters']['solver']} ({source}), "
        f"{r['wall_seconds']:.1f} s -> {out}"
    )
    return 0


def run_tune_backprop(args: argparse.Namespace) -> int:
    from evoprune.baselines.backprop import hidden_layers, tune_backprop
    from evoprune.baselines.table2 import arch_letter, format_row
    from evoprune.cli.data import check_writable_file, data_job
    from evoprune.io import provenance, write_json
    from evoprune.jobkeys import job_dataset
    from evoprune.nets import parse_arch

    for flag, value, least in (("--cv", args.cv, 2), ("--n-iter", args.n_iter, 1),
                               ("--jobs", args.jobs, 1), ("--max-iter", args.max_iter, 1)):  # fmt: skip
        if value < least:
            raise EvopruneError(f"{flag}: expected at least {least}, got {value}")
    if args.out is not None:  # before minutes of fits, not after them
        if args.out.suffix.lower() != ".json":
            raise EvopruneError(f"--out: expected a .json file name, got {str(args.out)!r}")
        check_writable_file(args.out)
    ds = job_dataset({**data_job(args), "seed": args.seed})  # a file: split as the run's
    layers = parse_arch(args.arch, ds.n_features, ds.n_classes)
    hidden_layers(layers[1:-1])
    X = ds.X_train.view(len(ds.X_train), -1).numpy()
    smallest = int(ds.y_train.bincount().min())  # stratified folds need a row of each class each
    if args.cv > smallest:
        raise EvopruneError(
            f"--cv: {args.cv} folds, but the smallest class of the training split has {smallest} "
            f"rows; expected at most {smallest}"
        )
    if not args.quiet:  # minutes of fits; a bar only where they run in this process
        print(
            f"tune-backprop: {args.n_iter} candidates x {args.cv} folds of MLPClassifier on "
            f"{len(X)} samples, {args.jobs} job(s)"
            + ("" if args.jobs == 1 else "; no progress bar across processes (--jobs 1 shows one)"),
            file=sys.stderr,
        )
    tuned = tune_backprop(
        X,
        ds.y_train.numpy(),
        layers[1:-1],
        n_iter=args.n_iter,
        cv=args.cv,
        seed=args.seed,
        n_jobs=args.jobs,
        max_iter=args.max_iter,
        progress=not args.quiet,
        activation=args.activation or "relu",
    )
    name = ds.config.get("name", ds.name)
    letter = arch_letter(layers[1:-1]) or ",".join(map(str, layers))
    if args.out is not None:
        write_json(
            args.out,
            {
                "dataset": ds.config,
                "arch": layers,
                "seed": args.seed,
                "config": {
                    "n_iter": args.n_iter,
                    "cv": args.cv,
                    "max_iter": args.max_iter,
                    "activation": args.activation or "relu",
                },
                "best": tuned.best.sklearn_kwargs(),
                "cv_accuracy": tuned.cv_accuracy,
                "candidates": tuned.candidates,
                **provenance(),
            },
        )
    print(format_row(name, letter, ds.n_classes, tuned.best))
    print(
        f"# the best of {args.n_iter} settings: mean {args.cv}-fold CV accuracy {tuned.cv_accuracy:.4f}"
        + (f"; every setting's score -> {args.out}" if args.out is not None else ""),
        file=sys.stderr,
    )
    return 0
