"""`evoprune selection-prune`: prune during training by selection dynamics on neuron masses.

Thin: builds a job dict (see `evoprune.pruning.selection.job`), runs it through the same runner as
sweeps do, prints a summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evoprune.errors import EvopruneError

# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "selection-prune": "prune during training: neuron masses under selection dynamics (Shah & Khan)",
}


def register(sub: argparse._SubParsersAction) -> None:
    from evoprune.cli.data import add_data_args

    p = sub.add_parser(
        "selection-prune",
        help=COMMANDS["selection-prune"],
        description="Train an MLP whose hidden neurons carry masses evolving under selection "
        "dynamics (Shah & Khan, arXiv 2601.10765), hard-prune the lowest-mass neurons at each "
        "level, and compare with post-hoc controls on the same trained network and with "
        "networks trained small.",
    )
    add_data_args(p)
    p.add_argument(
        "--arch",
        help="layer list like 784,512,256,10 (default [in,512,256,out]; digits [in,128,64,out])",
    )
    p.add_argument(
        "--dynamics",
        default="logistic",
        choices=["replicator", "exponential", "logistic"],
        help="how masses grow with fitness (default logistic)",
    )
    p.add_argument(
        "--fitness", choices=["taylor", "signed"], help="|dL/dm| or -dL/dm (default taylor)"
    )
    p.add_argument("--eta", type=float, help="step size per update (default: --rate / updates)")
    p.add_argument(
        "--rate", type=float, help="total selection pressure eta x updates (default per dynamic)"
    )
    p.add_argument(
        "--eta-schedule",
        choices=["cosine", "constant"],
        help="eta over training: cosine-annealed like the learning rate (default) or constant",
    )
    p.add_argument("--smoothing", type=float, help="F <- s F + (1-s) f (default 0.9)")
    p.add_argument(
        "--normalization",
        choices=["mean", "zscore"],
        help="per-layer fitness normalisation over the living units (default mean)",
    )
    p.add_argument("--extinction", type=float, help="mass below which a unit dies (default 0.01)")
    p.add_argument("--max-mass", type=float, help="logistic's upper clip (default 4)")
    p.add_argument(
        "--levels",
        help="fractions of hidden neurons to remove (default 0.35,0.5,0.7,0.8,0.9; with "
        "--target-fraction: that fraction)",
    )
    p.add_argument(
        "--target-fraction",
        type=float,
        help="steer the dynamics so that exactly this share is extinct by --target-epoch",
    )
    p.add_argument("--target-epoch", type=int, help="(default: half the epochs)")
    p.add_argument(
        "--ranking",
        choices=["global", "layer"],
        help="target mode: lowest mass overall or per layer (default global)",
    )
    p.add_argument(
        "--augment", choices=["shift", "none"], help="(default: shift for mnist, none otherwise)"
    )
    p.add_argument("--max-shift", type=int, help="pixels per axis for --augment shift (default 1)")
    p.add_argument("--epochs", type=int, help="(default 20)")
    p.add_argument("--batch-size", type=int, help="(default 128)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--lr-schedule", choices=["cosine", "constant"], help="(default cosine)")
    p.add_argument(
        "--controls",
        help="comma list of frozen-fitness,random,magnitude-in,magnitude-out,train-small, "
        "or all (default) or none",
    )
    p.add_argument("--threads", type=int, help="torch threads (default 1)")
    p.add_argument(
        "--seed", type=int, default=0, help="run seed (init, batches, shifts, controls; default 0)"
    )
    p.add_argument(
        "--out", type=Path, help="results folder (default runs/selection-DATASET-DYNAMICS-sSEED)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_selection_prune)


KEYS = (
    "arch", "dynamics", "fitness", "eta", "rate", "eta_schedule", "smoothing", "normalization", "extinction",
    "max_mass", "levels", "target_fraction", "target_epoch", "ranking", "augment", "max_shift",
    "epochs", "batch_size", "lr", "lr_schedule", "controls", "threads",
)  # fmt: skip


def run_selection_prune(args: argparse.Namespace) -> int:
    from evoprune.cli.data import check_out, data_job
    from evoprune.pruning.selection.job import run_selection_job, selection_settings

    job: dict[str, Any] = {"method": "selection", **data_job(args), "seed": args.seed}
    job.update({k: getattr(args, k) for k in KEYS})
    job = {k: v for k, v in job.items() if v is not None}
    selection_settings(job)  # validate before any work
    if args.threads is not None and args.threads < 1:
        raise EvopruneError(f"--threads: expected a positive integer, got {args.threads}")
    out = args.out
    if out is None:
        data = Path(str(job.get("data") or job["dataset"])).stem
        out = Path("runs") / f"selection-{data}-{job['dynamics']}-s{args.seed}"
    check_out(out)
    r = run_selection_job(job, out, progress=not args.quiet)
    print(
        f"selection-prune {r['dataset']} {r['arch']} {r['dynamics']} seed {r['seed']}: "
        f"dense {_fmt(r['test_accuracy_dense'])}, trained with dynamics {r['test_accuracy']:.4f}, "
        f"{r['extinct']}/{r['units']} extinct, {r['wall_seconds']:.1f} s -> {out}"
    )
    rows: dict[str, dict[float, str]] = {}
    beyond = 0.0  # the most a level of the dynamics removed beyond its share: units extinct
    for e in r["pruned"]:
        removed = e.get("removed", e["fraction"])
        over = e["method"] == r["dynamics"] and removed - e["fraction"] > 0.5 / r["units"]
        beyond = max(beyond, removed) if over else beyond
        rows.setdefault(e["method"], {})[e["fraction"]] = f"{e['test_accuracy']:.4f}" + "*" * over
    levels = r["levels"]
    print(f"  {'removed':>15s} " + " ".join(f"{p:>7.0%}" for p in levels))
    for method, accs in rows.items():
        print(f"  {method:>15s} " + " ".join(f"{accs.get(p, '-'):>7s}" for p in levels))
    if beyond:
        print(f"  * more than the level: the dynamics had made that many units extinct "
              f"(up to {beyond:.0%} removed)")  # fmt: skip
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def run_export_selection(args: argparse.Namespace) -> int:
    """`evoprune export RUN_DIR --out small.pt [--fraction F]` for a selection-prune run: the
    physically smaller network, checked against the masked one on the run's test split, and its
    inference time against the dense one."""
    import json

    import torch

    from evoprune.data.registry import dataset_from_config
    from evoprune.pruning.selection.export import export_selection, inference_seconds, prune_keep
    from evoprune.pruning.selection.job import load_network

    exported = export_selection(args.ticket, args.out, args.fraction)
    model, masses, header = load_network(args.ticket)
    if args.fraction is not None:
        masses.keep(prune_keep(masses, args.fraction, header.get("fitness")))
    ds = dataset_from_config(header["dataset"])
    X, y = ds.X_test.view(len(ds.X_test), -1), ds.y_test
    with torch.no_grad():
        small_logits, masked_logits = exported.model(X), model(X)
    acc_small = int((small_logits.argmax(1) == y).sum()) / len(y)
    acc_masked = int((masked_logits.argmax(1) == y).sum()) / len(y)
    masses.remove()  # the dense network: every neuron, no masses
    dense_s = inference_seconds(model, X)
    small_s = inference_seconds(exported.model, X)
    print(
        f"wrote {exported.path}: layers {exported.layers} (dense {exported.dense_layers}, "
        f"{exported.removed:.1%} of hidden neurons removed); test accuracy small {acc_small:.4f}, "
        f"masked {acc_masked:.4f}, max |logit difference| "
        f"{float((small_logits - masked_logits).abs().max()):.2e}; inference on {len(X)} samples: "
        f"small {small_s * 1e3:.2f} ms, dense {dense_s * 1e3:.2f} ms ({dense_s / small_s:.1f}x)"
    )
    summary = {"layers": exported.layers, "test_accuracy_small": acc_small,
               "test_accuracy_masked": acc_masked}  # fmt: skip
    if acc_small != acc_masked:
        raise SystemExit(f"export: accuracy differs ({json.dumps(summary)})")
    return 0
