"""`evoprune prune`: prune a trained network to a sparsity (CMA-ES + SynFlow, or a baseline).

Thin: builds a job dict (see `evoprune.pruning.job`), runs it through the same runner as sweeps
do, prints a one-line summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evoprune.errors import EvopruneError

METHODS = ("cmaes-synflow", "magnitude", "synflow", "softmask", "cmaes-trainfit", "random")
ECS = ("none", "l2_row", "l2_layer", "activation", "affine", "lsq")


# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "prune": "prune a trained network: CMA-ES + SynFlow + energy compensation, or a baseline",
}


def register(sub: argparse._SubParsersAction) -> None:
    from evoprune.cli.data import add_data_args

    p = sub.add_parser(
        "prune",
        help=COMMANDS["prune"],
        description="Train (or load) a dense MLP, prune it to --sparsity with --method, "
        "compensate the surviving weights (--ec), fine-tune (--finetune-epochs); write "
        "result.json, model.pt, model_finetuned.pt and the CMA-ES history to --out.",
    )
    add_data_args(p)
    p.add_argument(
        "--method",
        required=True,
        choices=METHODS,
        help="cmaes-synflow: CMA-ES over a SynFlow-ranked pruning genome; magnitude: global "
        "|w|; synflow: iterative SynFlow (Tanaka et al. 2020); softmask: learned soft masks; "
        "cmaes-trainfit: CMA-ES with a training-based fitness; random",
    )
    p.add_argument("--sparsity", type=float, help="fraction of weights removed (default 0.98)")
    p.add_argument(
        "--ec", choices=ECS, help="energy compensation (default: lsq for cmaes-synflow, else none)"
    )
    p.add_argument("--genome", choices=["layer-density", "layer-mix", "neuron"],
                   help="CMA-ES genome (default layer-mix)")  # fmt: skip
    p.add_argument("--fitness", choices=["synflow", "lsq-ce", "trainfit"],
                   help="CMA-ES fitness (default: lsq-ce; trainfit for cmaes-trainfit)")  # fmt: skip
    p.add_argument("--order", choices=["synflow", "magnitude", "iterative"],
                   help="ranking within a layer for layer-density/neuron (default synflow)")  # fmt: skip
    p.add_argument("--population", type=int, help="CMA-ES population (default 16)")
    p.add_argument("--generations", type=int,
                   help="CMA-ES generations (default 10; 100 for cmaes-trainfit)")  # fmt: skip
    p.add_argument("--ipop", action="store_true", default=None, help="IPOP restarts")
    p.add_argument(
        "--calibration", type=int, help="rows scored by the lsq-ce fitness (default 256)"
    )
    p.add_argument("--finetune-epochs", type=int, help="masked fine-tuning epochs (default 30)")
    p.add_argument("--finetune-curve", help="extra fine-tuning checkpoints, e.g. 10,100")
    p.add_argument("--magnitude-scope", choices=["global", "layer"], help="(default global)")
    p.add_argument("--hidden", help="hidden widths of the dense MLP (default 128,64)")
    p.add_argument("--model", type=Path,
                   help="your trained MLP: a torch file with {layers, state_dict} or a state dict")  # fmt: skip
    p.add_argument("--cache-dir", type=Path,
                   help="where dense checkpoints are cached (default $EVOPRUNE_CACHE or ~/.cache/evoprune/dense)")  # fmt: skip
    p.add_argument("--threads", type=int, help="torch threads (default 1)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the dense network and the search (default 0)"
    )
    p.add_argument("--out", type=Path,
                   help="results folder (default runs/prune-METHOD-DATA-pSPARSITY-sSEED)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_prune)


KEYS = ("sparsity", "ec", "genome", "fitness", "order", "population", "generations", "ipop", "calibration",
        "finetune_epochs", "finetune_curve", "magnitude_scope", "hidden", "model", "cache_dir",
        "threads")  # fmt: skip


def prune_job(args: argparse.Namespace) -> dict[str, Any]:
    from evoprune.cli.data import data_job

    job: dict[str, Any] = {"method": args.method, **data_job(args), "seed": args.seed}
    for key in KEYS:
        value = getattr(args, key)
        if value is not None:
            job[key] = str(value) if isinstance(value, Path) else value
    return {k: v for k, v in job.items() if v is not None}


def default_prune_out(job: dict[str, Any]) -> Path:
    """``runs/prune-METHOD-DATA[-cCLASSES][-pSPARSITY]-sSEED``."""
    from evoprune.cli.data import data_parts

    parts = ["prune", job["method"], *data_parts(job)]
    if job.get("sparsity") is not None:
        parts.append(f"p{job['sparsity']:g}")
    return Path("runs") / "-".join([*parts, f"s{job['seed']}"])


def run_prune(args: argparse.Namespace) -> int:
    from evoprune.cli.data import check_out
    from evoprune.pruning.job import _choices, applied, run_prune_job

    job = prune_job(args)
    used = applied(_choices(job), job["method"])  # validate before any work
    unused = [k for k in KEYS if getattr(args, k) is not None and k not in used]
    if unused:  # as search refuses --kicks without memetic: a flag never silently ignored
        raise EvopruneError(
            f"--{unused[0].replace('_', '-')}: not used by --method {job['method']} with these "
            "settings (its genome, fitness, compensation or --model)"
        )
    out = args.out or default_prune_out(job)
    check_out(out)
    r = run_prune_job(job, out, progress=not args.quiet)
    print(
        f"{r['variant']} {r['dataset']} seed {r['seed']}: sparsity {r['sparsity']:.4f}, "
        f"ec {r['ec']}: test macro-F1 {r['test_f1']:.3f} (acc {r['test_accuracy']:.3f}), after "
        f"{r['finetune_epochs']} epochs FT {r['test_f1_finetuned']:.3f}; dense {r['dense_test_f1']:.3f}; "
        f"pruning {r['seconds']:.2f} s, {r['forward_passes']} forward passes -> {out}"
    )
    return 0
