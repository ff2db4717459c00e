"""`evoprune search | datasets | archs`: find a ticket."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evoprune.archs import ACTIVATIONS
from evoprune.cli.data import (
    add_data_args,
    add_network_args,
    check_out,
    data_job,
    default_out,
    set_threads,
)
from evoprune.errors import EvopruneError

# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "search": "find a strong lottery ticket: the paper's GA, memetic or local search",
    "datasets": "list the built-in datasets",
    "archs": "list the architecture shorthands",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help=COMMANDS["search"],
        description="Find a strong lottery ticket: a mask over a fixed random network, by the "
        "paper's genetic algorithm (--variant ga, the default), the GA with the adaptive "
        "accuracy bound (ga-adaptive), the GA with exact local search (memetic) or the local "
        "search alone (local).",
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
        help="ga: the paper's GA; ga-adaptive: the GA with the paper's adaptive accuracy "
        "bound; memetic: the GA, then exact local search on its best; local: exact local "
        "search from random masks (default ga)",
    )
    p.add_argument(
        "--objective",
        default="accuracy",
        choices=["accuracy", "loss", "f1"],
        help="what the search optimises (default accuracy, the paper's)",
    )
    add_network_args(p)
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
    from evoprune.ga.config import GAConfig

    rates = {
        "rec-rate": "share of the population that becomes a first parent",
        "par-rate": "mates come from the best N * this",
        "mut-rate": "share of the population that yields a one-bit mutant",
        "mig-rate": "random migrants per generation: N * this",
    }
    for rate, meaning in rates.items():
        default = getattr(GAConfig, rate.replace("-", "_"))
        p.add_argument(
            f"--{rate}", type=float, help=f"{meaning} (default {default}, the paper's Table 1)"
        )
    p.add_argument("--no-post-prune", action="store_true", help="skip post-evolutionary pruning")
    p.add_argument(
        "--post-prune-criterion",
        choices=["accuracy", "accuracy-loss", "no-new-errors", "holdout"],
        help="when post-pruning may drop a weight (default accuracy-loss: the training accuracy "
        "must not drop nor the cross-entropy rise; accuracy: the paper's)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    add_local_args(p)
    p.add_argument(
        "--out",
        type=Path,
        help="results folder (default runs/VARIANT-DATA-ARCH-sSEED, with a class count other "
        "than the dataset's default and an objective other than accuracy in the name)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="K",
        help="write the search state every K generations, atomically; a kill or Ctrl-C then "
        "leaves one to --resume from (default 0: none; removed when the run finishes). The state "
        "holds the evaluation cache, which grows with the run: a long search is best saved every "
        "25-100 generations (K=1 made a 170 s digits-10 search take 547 s)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in OUT")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads (default: one per core, which MNIST-sized networks use: 5.7 s "
        "against 10.2 s for 10 generations; with other jobs on the cores 1 is faster: moons B "
        "took 3.7 s with 1 thread, 5.1 s with 2, while another process kept a core busy; a search "
        "as small as iris's runs on one thread by itself)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_search)

    p = sub.add_parser("datasets", help=COMMANDS["datasets"])
    p.set_defaults(run=run_datasets)
    p = sub.add_parser("archs", help=COMMANDS["archs"])
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
        help="iterated local search kicks (memetic: 5 for the loss, else 4; local 0)",
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


OPTIONS = {"local_starts": "--starts", "memetic_elites": "--elites", "tiebreak": "--no-tiebreak",
           "post_prune": "--no-post-prune"}  # fmt: skip


def _flag(key: str) -> str:
    """The option that sets job key `key`."""
    return OPTIONS.get(key, "--" + key.replace("_", "-"))


def run_search(args: argparse.Namespace) -> int:
    data = data_job(args)  # a misspelt dataset is told before torch loads
    from evoprune.ga.job import ga_config, job_checkpoints, run_ga_job

    if args.no_post_prune and args.post_prune_criterion is not None:
        raise EvopruneError(
            "--post-prune-criterion: not read with --no-post-prune (no post-pruning runs)"
        )
    job = {
        "method": args.variant,
        **data,
        "arch": args.arch,
        "seed": args.seed,
        "init": args.init,
        "activation": args.activation,
        "objective": args.objective,
        "population": args.population,
        "min_generations": args.min_generations,
        "patience": args.patience,
        "max_generations": args.max_generations,
        "rec_rate": args.rec_rate,
        "par_rate": args.par_rate,
        "mut_rate": args.mut_rate,
        "mig_rate": args.mig_rate,
        "post_prune": False if args.no_post_prune else None,
        "post_prune_criterion": args.post_prune_criterion,
        "device": args.device,
        **{k: getattr(args, k) for k in LOCAL_FLAGS},
    }
    job = {k: v for k, v in job.items() if v is not None}
    config = ga_config(job, _flag)  # before touching the disk; unread flags named as given
    if args.max_generations is not None and args.max_generations < config.min_generations:
        print(f"note: --max-generations {args.max_generations} is below --min-generations "
              f"{config.min_generations}; the search stops at {args.max_generations}",
              file=sys.stderr)  # fmt: skip
    if args.checkpoint_every < 0:
        raise EvopruneError(f"--checkpoint-every: expected K >= 0, got {args.checkpoint_every}")
    if args.variant == "local" and args.arch == "conv" and (args.resume or args.checkpoint_every):
        raise EvopruneError(
            f"{'--resume' if args.resume else '--checkpoint-every'}: the conv net's local "
            "search keeps no checkpoints (a few passes; rerun it)"
        )
    set_threads(args.threads)
    out = args.out or default_out(job)
    if args.resume and (out / "result.json").exists():
        print(f"{out}: already finished, nothing to resume (its result.json is unchanged)")
        return 0
    check_out(out)
    checkpoints = _checkpoints(out, args.resume, job_checkpoints(out, config, args.objective))
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
    for code in r.get("resumed_from", []):
        print(f"note: resumed a checkpoint written by other code ({_code_text(code)}); this "
              "result may differ from an uninterrupted run's (result.json: resumed_from)",
              file=sys.stderr)  # fmt: skip
    print(_summary(r, out))
    return 0


def _code_text(code: dict[str, Any]) -> str:
    """Where `code` (a checkpoint's git revision and versions) differs from this process's."""
    from evoprune.io import code_identity

    now = code_identity()
    parts = [f"revision {code.get('git_revision')}"] * (
        code.get("git_revision") != now["git_revision"]
    )
    theirs = code.get("versions") or {}
    parts += [f"{k} {v}" for k, v in theirs.items() if now["versions"].get(k) != v]
    return ", ".join(parts) or "unknown"


def _checkpoints(out: Path, resume: bool, files: list[Path]) -> list[Path]:
    """`files`, the checkpoints this run writes in `out` (the GA's, each local phase's), back.
    Those of an unfinished run are continued only with --resume; --resume without any starts
    afresh, said. Another variant's checkpoint is refused, not deleted when this run ends."""
    from evoprune.ga.job import checkpoint_files

    foreign = [f.name for f in checkpoint_files(out) if f.exists() and f not in files]
    if foreign:
        raise EvopruneError(
            f"{out}: holds {', '.join(foreign)}, a checkpoint this run does not read (another "
            f"variant's or objective's); choose another --out, or delete it to start afresh"
        )
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
    post_pruned = (r.get("ga_config") or {}).get("post_prune", True)
    if r["variant"] in ("ga", "ga-adaptive") and post_pruned:
        sparsity += (f" (before post-prune {r['sparsity_before_post_prune']:.3f}, "
                     f"test acc {r['test_accuracy_before_post_prune']:.4f})")  # fmt: skip
    parts.append(sparsity)
    if r["variant"] != "local":  # the local search alone has passes, not generations
        parts.append(f"{r['generations']} generations")
    if "passes" in r:
        parts.append(f"{r['passes']} local passes")
    parts += [f"{r['evaluations']} evaluations", f"{r['wall_seconds']:.1f} s -> {out}"]
    return f"{r['dataset']} {r['arch']} seed {r['seed']} {r['variant']}: " + ", ".join(parts)


def run_datasets(args: argparse.Namespace) -> int:
    from evoprune.data.builtin import DATASETS

    for name, info in DATASETS.items():
        classes = ",".join(str(c) for c in sorted(info.classes))
        print(
            f"{name:8s} classes {classes:18s} normalize={'on' if info.normalize else 'off':3s}  "
            f"{info.description}"
        )
    return 0


def run_archs(args: argparse.Namespace) -> int:
    from evoprune.archs import ARCHS

    for name, hidden in ARCHS.items():
        print(f"{name}  [in, {', '.join(map(str, hidden))}, out]")
    print("or an explicit layer list, e.g. --arch 2,75,2")
    print("conv  MNIST's conv net: conv 1->32, conv 32->64, Linear 1024->10 (--dataset mnist)")
    print(f"activations between an MLP's layers (--activation): {', '.join(ACTIVATIONS)}")
    return 0
