"""`evoprune search | evaluate | export | datasets | archs`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evoprune.cli.data import (
    add_data_args,
    add_init_arg,
    check_out,
    data_job,
    default_out,
    set_threads,
)
from evoprune.errors import EvopruneError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="find a strong lottery ticket with the GA",
        description="Find a strong lottery ticket with the genetic algorithm.",
    )
    add_data_args(p)
    p.add_argument(
        "--arch", default="B", help="A, B, C, D, a layer list like 2,75,2, or conv (default B)"
    )
    p.add_argument("--seed", type=int, default=0, help="run seed (network and search; default 0)")
    p.add_argument(
        "--variant",
        default="ga",
        choices=["ga", "ga-adaptive", "memetic", "local"],
        help="ga: the paper's GA; memetic: the GA, then exact local search on its best; "
        "local: exact local search from random masks (default ga)",
    )
    p.add_argument(
        "--objective",
        default="accuracy",
        choices=["accuracy", "loss", "f1"],
        help="what the search optimises (default accuracy, the paper's)",
    )
    add_init_arg(p)
    p.add_argument("--population", type=int, help="population size N (default 100)")
    p.add_argument("--min-generations", type=int, help="never stop before (default 100)")
    p.add_argument(
        "--patience",
        type=int,
        help="stop after this many generations without improvement (default 50)",
    )
    p.add_argument(
        "--max-generations",
        type=int,
        help="generation cap (default 1000 for ga, 200 for ga-adaptive)",
    )
    for rate in ("rec-rate", "par-rate", "mut-rate", "mig-rate"):
        p.add_argument(f"--{rate}", type=float, help="(default: the paper's Table 1)")
    p.add_argument("--no-post-prune", action="store_true", help="skip post-evolutionary pruning")
    p.add_argument(
        "--post-prune-criterion",
        choices=["accuracy", "accuracy-loss", "no-new-errors", "holdout"],
        help="when post-pruning may drop a weight (default accuracy-loss: the training accuracy "
        "must not drop nor the cross-entropy rise; accuracy: the paper's)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    add_local_args(p)
    p.add_argument(
        "--out",
        type=Path,
        help="results folder (default runs/VARIANT-DATA-ARCH-sSEED, with "
        "the classes and a non-default objective in the name when given)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="K",
        help="write the search state every K generations, atomically; a kill or Ctrl-C then "
        "leaves one to --resume from (default 0: none; removed when the run finishes)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in OUT")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads (default: one per core, which MNIST-sized networks use: 5.7 s "
        "against 10.2 s for 10 generations; with other jobs on the cores 1 is faster: moons B "
        "took 3.7 s with 1 thread, 5.1 s with 2, while another process kept a core busy)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_search)

    p = sub.add_parser("evaluate", help="score a ticket on its dataset (or another)")
    p.add_argument("ticket", type=Path, help="a ticket.npz written by a run, or its folder")
    add_data_args(p, required=False)
    p.add_argument(
        "--fresh",
        type=int,
        metavar="N",
        help="moons / circles: also score N new samples from the dataset's distribution, "
        "with the error rate's 95%% interval (a 16,000-point test set resolves rates only to "
        "about 1e-4)",
    )
    p.add_argument("--fresh-seed", type=int, default=7, help="their seed (default: 7)")
    p.set_defaults(run=run_evaluate)

    p = sub.add_parser("export", help="write a ticket's masked network as a torch state_dict")
    p.add_argument("ticket", type=Path, help="a ticket.npz written by a run, or its folder")
    p.add_argument(
        "--out",
        type=Path,
        help="output .pt file (default: network.pt beside the ticket, or small.pt in the "
        "selection-prune run's folder)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        help="for a selection-prune run (its folder): remove this share of hidden neurons, "
        "lowest masses first (default: only the extinct ones)",
    )
    p.set_defaults(run=run_export)

    p = sub.add_parser("datasets", help="list the built-in datasets")
    p.set_defaults(run=run_datasets)
    p = sub.add_parser("archs", help="list the architecture shorthands")
    p.set_defaults(run=run_archs)


def add_local_args(p: argparse.ArgumentParser) -> None:
    """Flags of the exact local search (--variant memetic or local)."""
    g = p.add_argument_group("local search (--variant memetic | local)")
    g.add_argument(
        "--ranking",
        choices=["expansion", "none"],
        help="order flips by the softmax expansion (mask-gradient based; every acceptance still "
        "exact) or use exact evaluation only, no derivative (default expansion)",
    )
    g.add_argument(
        "--sparsity-penalty",
        type=float,
        help="objective + P * density; with the tie-breaker, loss + P * density breaks the "
        "objective's ties (default 0.1 for memetic, 0 for local)",
    )
    g.add_argument("--local-density", type=float, help="density of random starts (default 0.5)")
    g.add_argument(
        "--starts", type=int, dest="local_starts", metavar="N", help="random starts (default 1)"
    )
    g.add_argument(
        "--kicks",
        type=int,
        help="iterated local search kicks (memetic: 5 for the loss, else 3; local 0)",
    )
    g.add_argument("--kick-bits", type=int, help="bits flipped per kick (default 16)")
    g.add_argument("--max-passes", type=int, help="passes over all units per descent (default 50)")
    g.add_argument(
        "--val-fraction", type=float, help="held-out training slice for early stopping (default 0)"
    )
    g.add_argument(
        "--local-patience",
        type=int,
        help="with --val-fraction: passes without a better validation accuracy before a descent "
        "stops (default 2)",
    )
    g.add_argument(
        "--min-gain",
        type=float,
        help="a descent stops after a pass that lowers the objective by less (default 1e-3 for "
        "the loss, 0 for accuracy and F1)",
    )
    g.add_argument(
        "--fixed-sparsity", type=float, help="keep exactly this sparsity per layer (swap moves)"
    )
    g.add_argument(
        "--temperature",
        type=float,
        help="the local search's cross-entropy is of logits / T; below 1 it weighs the samples "
        "near the boundary more (default 1)",
    )
    g.add_argument(
        "--exact-top",
        type=int,
        help="with --ranking expansion: re-score each unit's N best-ranked flips exactly before "
        "choosing (default 0: off)",
    )
    g.add_argument(
        "--memetic-generations", type=int, help="GA phase cap (default: 50 for loss, else none)"
    )
    g.add_argument(
        "--elites",
        type=int,
        dest="memetic_elites",
        metavar="N",
        help="GA elites searched (default 1)",
    )
    g.add_argument(
        "--no-tiebreak",
        dest="tiebreak",
        action="store_const",
        const=False,
        help="accuracy/F1: judge flips by the objective alone (default: ties are broken by the "
        "cross-entropy + penalty * density)",
    )
    g.add_argument(
        "--loss-first",
        action="store_const",
        const=True,
        help="memetic with accuracy/F1: run the GA and a first local search on the "
        "cross-entropy, then the local search on the objective",
    )


LOCAL_FLAGS = ("ranking", "sparsity_penalty", "local_density", "local_starts", "kicks", "kick_bits",
               "max_passes", "val_fraction", "local_patience", "min_gain", "fixed_sparsity",
               "memetic_generations", "memetic_elites", "tiebreak", "loss_first",
               "temperature", "exact_top")  # fmt: skip


MEMETIC_ONLY = ("memetic_generations", "memetic_elites", "loss_first")
OPTIONS = {"local_starts": "--starts", "memetic_elites": "--elites", "tiebreak": "--no-tiebreak"}


def _check_variant_flags(args: argparse.Namespace) -> None:
    """A local-search flag given to a variant without a local search is an error, not ignored."""
    allowed = {"memetic": LOCAL_FLAGS, "local": tuple(set(LOCAL_FLAGS) - set(MEMETIC_ONLY))}
    for dest in LOCAL_FLAGS:
        if getattr(args, dest) is not None and dest not in allowed.get(args.variant, ()):
            option = OPTIONS.get(dest, "--" + dest.replace("_", "-"))
            where = "memetic" if dest in MEMETIC_ONLY else "memetic or local"
            raise EvopruneError(f"{option}: only with --variant {where}, not {args.variant}")


def run_search(args: argparse.Namespace) -> int:
    from evoprune.ga.job import ga_config, run_ga_job

    job = {
        "method": args.variant,
        **data_job(args),
        "arch": args.arch,
        "seed": args.seed,
        "init": args.init,
        "objective": args.objective,
        "population": args.population,
        "min_generations": args.min_generations,
        "patience": args.patience,
        "max_generations": args.max_generations,
        "rec_rate": args.rec_rate,
        "par_rate": args.par_rate,
        "mut_rate": args.mut_rate,
        "mig_rate": args.mig_rate,
        "post_prune": not args.no_post_prune,
        "post_prune_criterion": args.post_prune_criterion,
        "device": args.device,
        **{k: getattr(args, k) for k in LOCAL_FLAGS},
    }
    job = {k: v for k, v in job.items() if v is not None}
    _check_variant_flags(args)
    config = ga_config(job)  # validate before touching the disk
    if args.max_generations is not None and args.max_generations < config.min_generations:
        print(f"note: --max-generations {args.max_generations} is below --min-generations "
              f"{config.min_generations}; the search stops at {args.max_generations}",
              file=sys.stderr)  # fmt: skip
    if args.checkpoint_every < 0:
        raise EvopruneError(f"--checkpoint-every: expected K >= 0, got {args.checkpoint_every}")
    set_threads(args.threads)
    out = args.out or default_out(job)
    if args.resume and (out / "result.json").exists():
        print(f"{out}: already finished, nothing to resume (its result.json is unchanged)")
        return 0
    check_out(out)
    checkpoints = _checkpoints(out, args.resume)
    try:
        r = run_ga_job(
            job,
            out,
            progress=not args.quiet,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
        )
    except KeyboardInterrupt:
        if any(c.exists() for c in checkpoints):
            print(f"{out}: checkpoint saved; the same command with --resume continues it",
                  file=sys.stderr)  # fmt: skip
        else:
            print("nothing saved (--checkpoint-every K keeps a state to --resume from)",
                  file=sys.stderr)  # fmt: skip
        raise
    print(_summary(r, out))
    return 0


def _checkpoints(out: Path, resume: bool) -> list[Path]:
    """The checkpoint files a run in `out` writes (the GA's, each local phase's). Those of an
    unfinished run are continued only with --resume; --resume without any starts afresh, said."""
    from evoprune.ga.job import checkpoint_files

    files = checkpoint_files(out)
    found = any(f.exists() for f in files)
    if found and not resume:
        raise EvopruneError(
            f"{out}: holds the checkpoint of an unfinished run; add --resume to continue it, "
            "or choose another --out"
        )
    if resume and not found:
        print(f"{out}: no checkpoint to resume from; starting from the beginning", file=sys.stderr)
    return files


def _summary(r: dict[str, Any], out: Path) -> str:
    """The line a finished search prints: what ran, its scores and cost, where it went."""
    parts = [f"test acc {r['test_accuracy']:.4f} (train {r['train_accuracy']:.4f})"]
    sparsity = f"sparsity {r['sparsity']:.3f}"
    if r["variant"] in ("ga", "ga-adaptive") and r.get("post_prune", True) is not False:
        sparsity += (f" (before post-prune {r['sparsity_before_post_prune']:.3f}, "
                     f"test acc {r['test_accuracy_before_post_prune']:.4f})")  # fmt: skip
    parts.append(sparsity)
    if r["variant"] != "local":  # the local search alone has passes, not generations
        parts.append(f"{r['generations']} generations")
    if "passes" in r:
        parts.append(f"{r['passes']} local passes")
    parts += [f"{r['evaluations']} evaluations", f"{r['wall_seconds']:.1f} s -> {out}"]
    return f"{r['dataset']} {r['arch']} seed {r['seed']} {r['variant']}: " + ", ".join(parts)


def run_evaluate(args: argparse.Namespace) -> int:
    from evoprune.data.registry import dataset_from_config
    from evoprune.evaluate import score, score_splits
    from evoprune.ticket import Ticket

    ticket = Ticket.load(args.ticket)
    if args.fresh is not None:
        _check_fresh(args, ticket)
    model = ticket.build_model()
    n_in = 784 if ticket.arch == "conv" else model[0].in_features
    n_out = _n_classes(ticket, model)
    if args.data is not None:  # new data: every row, preprocessed as the ticket's training data
        X, y = _new_data(args, ticket, n_out)
        _check_width(args.ticket, n_in, X[0].numel(), ticket.dataset.get("columns"))
        _check_classes(model, ticket, args.data.name, X, y)
        m = score_splits(model, ticket.mask, {"all": (X, y)})
        print(
            f"{args.data.name}: {len(y)} rows, acc {m['all_accuracy']:.4f}, "
            f"loss {m['all_loss']:.4f}, sparsity {ticket.sparsity:.3f}"
        )
        return 0
    if args.dataset is None:
        ds = dataset_from_config(ticket.dataset)
        _note_changed(ticket.dataset, ds.config)
    else:
        ds = _named_dataset(args, ticket.dataset)
    _check_width(args.ticket, n_in, ds.n_features)
    _check_classes(model, ticket, ds.name, ds.X_train, ds.y_train, ds.X_test, ds.y_test)
    m = score(model, ticket.mask, ds)
    print(
        f"{ds.name}: train acc {m['train_accuracy']:.4f}, test acc {m['test_accuracy']:.4f}, "
        f"train loss {m['train_loss']:.4f}, test loss {m['test_loss']:.4f}, "
        f"sparsity {ticket.sparsity:.3f}"
    )
    if args.fresh:
        _print_fresh(model, ticket, args.fresh, args.fresh_seed)
    return 0


def _check_fresh(args: argparse.Namespace, ticket: Any) -> None:
    from evoprune.data.registry import GENERATORS

    if args.fresh < 1:
        raise EvopruneError(f"--fresh: expected a positive number of samples, got {args.fresh}")
    name = ticket.dataset.get("name")
    if name not in GENERATORS:
        raise EvopruneError(
            f"--fresh: only for a ticket found on a generated dataset ({', '.join(GENERATORS)}); "
            f"this one was found on {name or ticket.dataset.get('path', 'a data file')}"
        )
    if args.data is not None or args.dataset not in (None, name):
        raise EvopruneError(f"--fresh: draws from the ticket's own dataset ({name}); "
                            "leave out --data / --dataset")  # fmt: skip


def _print_fresh(model: Any, ticket: Any, n: int, seed: int) -> None:
    """The ticket's accuracy on `n` fresh samples of its generated dataset, with the error
    rate's exact (Clopper-Pearson) 95% interval."""
    from scipy.stats import beta

    from evoprune.data import fresh_sample
    from evoprune.data.newdata import trained_normalize
    from evoprune.evaluate import score_splits

    X, y = fresh_sample(ticket.dataset.get("name"), n, seed, trained_normalize(ticket.dataset))
    accuracy = score_splits(model, ticket.mask, {"fresh": (X, y)})["fresh_accuracy"]
    errors = round((1 - accuracy) * n)
    low = beta.ppf(0.025, errors, n - errors + 1) if errors else 0.0
    high = beta.ppf(0.975, errors + 1, n - errors) if errors < n else 1.0
    print(
        f"{ticket.dataset.get('name')}: {n:,} fresh samples (seed {seed}): acc {accuracy:.6f}, "
        f"{errors:,} errors, error rate {errors / n:.3g} (95% CI {low:.3g} to {high:.3g})"
    )


def _new_data(args: argparse.Namespace, ticket: Any, n_out: int) -> tuple[Any, Any]:
    """A --data file for a ticket: every row, its classes numbered as in the ticket's training
    data, its features preprocessed as the training data's were (pixels / 255 for mnist, the
    recorded global or per-feature ranges, or none), unless --normalize/--no-normalize says
    otherwise (said on stderr)."""
    from evoprune.data.newdata import load_like

    job = data_job(args)
    X, y, notes = load_like(job["data"], job.get("target"), ticket.dataset, n_out, args.normalize)
    for note in notes:
        print(note, file=sys.stderr)
    return X, y


def _named_dataset(args: argparse.Namespace, trained: dict[str, Any]):
    """--dataset NAME for a ticket: its class count and scaling by default those the ticket was
    trained with; an explicit --normalize/--no-normalize that differs is said on stderr."""
    from evoprune.data.newdata import trained_normalize
    from evoprune.jobkeys import job_dataset

    job = data_job(args)
    if args.classes is None and args.dataset == trained.get("name") and trained.get("classes"):
        job["classes"] = int(trained["classes"])
    if trained.get("name"):
        was = trained_normalize(trained)
        if args.normalize is None:
            job["normalize"] = was
        elif args.normalize != was:
            print(f"note: the ticket was trained on {'scaled' if was else 'raw'} features; "
                  f"{'--normalize' if args.normalize else '--no-normalize'} overrides that",
                  file=sys.stderr)  # fmt: skip
    return job_dataset(job)


def _note_changed(recorded: dict[str, Any], rebuilt: dict[str, Any]) -> None:
    """A note (not an error: the scores are right for the data as read, and the same images
    re-saved differ in bytes) when the ticket's data file no longer has the digest it had."""
    before, now = recorded.get("sha256"), rebuilt.get("sha256")
    if before and now and before != now:
        where = recorded.get("path") or recorded.get("data_dir") or recorded.get("name")
        print(f"note: {where} has changed since the ticket was made (sha256 {before} then, "
              f"{now} now); scoring the data as it is now", file=sys.stderr)  # fmt: skip


def _check_classes(model: Any, ticket: Any, name: str, *tensors: Any) -> None:
    """Labels the network cannot output (a 3-class ticket on 10 classes): one line saying how
    many classes the ticket has, instead of an index error inside torch."""
    from evoprune.inputs import check_data

    try:
        check_data(model, *tensors)
    except EvopruneError as exc:
        n_out = _n_classes(ticket, model)
        if ticket.dataset.get("name") in (None, "file"):
            hint = f"; the ticket has {n_out} classes"
        else:
            hint = (f"; the ticket has {n_out} classes (trained with --classes {n_out}); "
                    f"pass --classes {n_out}")  # fmt: skip
        raise EvopruneError(f"{name}: {exc}{hint}") from None


def _n_classes(ticket: Any, model: Any) -> int:
    """The ticket's class count: its network's outputs."""
    from evoprune.nets import ConvNet

    return ConvNet.classes_for(ticket.n_bits) if ticket.arch == "conv" else model[-1].out_features


def _check_width(
    ticket: Path, n_in: int, n_features: int, columns: list[str] | None = None
) -> None:
    from evoprune.data.registry import describe_columns

    if n_features != n_in:
        raise EvopruneError(
            f"{ticket}: the network takes {n_in} features{describe_columns(columns)}, "
            f"the data has {n_features}"
        )


def run_export(args: argparse.Namespace) -> int:
    from evoprune.ticket import Ticket, export_state_dict, ticket_path

    if (args.ticket / "network.npz").is_file() or args.ticket.name == "network.npz":
        # a selection-prune run: its own, physically smaller export
        from evoprune.cli.selection import run_export_selection

        run_dir = args.ticket if args.ticket.is_dir() else args.ticket.parent
        args.out = args.out or run_dir / "small.pt"
        return run_export_selection(args)
    args.ticket = ticket_path(args.ticket)
    args.out = args.out or args.ticket.parent / "network.pt"
    if args.out.suffix.lower() not in (".pt", ".pth"):
        raise EvopruneError(f"--out: expected a .pt file name, got {str(args.out)!r}")
    if args.fraction is not None:
        raise EvopruneError("--fraction: only for a selection-prune run")
    ticket = Ticket.load(args.ticket)
    export_state_dict(ticket, args.out)
    print(f"wrote {args.out} (layers {ticket.layers}, sparsity {ticket.sparsity:.3f})")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from evoprune.data import DATASETS

    for name, info in DATASETS.items():
        classes = ",".join(str(c) for c in sorted(info.classes))
        print(
            f"{name:8s} classes {classes:18s} normalize={'on' if info.normalize else 'off':3s}  "
            f"{info.description}"
        )
    return 0


def run_archs(args: argparse.Namespace) -> int:
    from evoprune.nets import ARCHS

    for name, hidden in ARCHS.items():
        print(f"{name}  [in, {', '.join(map(str, hidden))}, out]")
    print("or an explicit layer list, e.g. --arch 2,75,2")
    return 0
