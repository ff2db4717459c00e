"""`evoprune sweep / results / stats / report`: run the paper's experiments and read them back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evoprune.errors import EvopruneError
from evoprune.io import write_atomic

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import pandas as pd

    from evoprune.experiments.spec import Spec

# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "sweep": "run an experiment spec (a grid of runs), resumable",
    "results": "the runs of a sweep as a table or CSV",
    "stats": "the paper's mixed model (Fig. 6c) per dataset and grid point",
    "report": "one self-contained HTML page: figures, tables, provenance",
}


def register(sub: argparse._SubParsersAction) -> None:
    from evoprune.experiments.executors import EXECUTORS
    from evoprune.experiments.spec import PROFILES

    p = sub.add_parser(
        "sweep",
        help=COMMANDS["sweep"],
        description="Expand SPEC into runs, skip those already finished in --out, run the rest. "
        "SPEC: a shipped spec (fig1 fig3 ... fig11, hessian, ...; `evoprune sweep all --dry-run` "
        "lists every run), 'all', or a YAML file.",
    )
    p.add_argument("spec", nargs="+", help="spec name(s), 'all', or YAML file(s)")
    p.add_argument("--profile", choices=PROFILES, default="quick", help="budget (default: quick)")
    p.add_argument("--out", type=Path, help="sweep folder (default: runs/SPEC-PROFILE)")
    p.add_argument("--executor", choices=list(EXECUTORS), default="local", help="default: local")
    p.add_argument("--workers", type=int, help="parallel runs (default: all cores)")
    p.add_argument("--ray-address", help="join this Ray cluster (with --executor ray)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar (the summary stays)")
    p.add_argument(
        "--seeds",
        help="seeds instead of the profile's: a count (5 = seeds 0-4) or a list (0,3,7)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="AXIS=V1,V2",
        help="keep these values of a grid axis, e.g. --only dataset=moons --only arch=A,B "
        "(replaces the profile's own choice for that axis; repeatable)",
    )
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="LABEL",
        help="keep only the arm with this label, e.g. --arm GA (repeatable)",
    )
    p.set_defaults(run=_sweep)

    p = sub.add_parser("results", help=COMMANDS["results"])
    p.add_argument("folders", nargs="+", type=Path, help="sweep folder(s) (runs/NAME)")
    p.add_argument("--csv", type=Path, help="also write every run (all columns) to this CSV file")
    p.add_argument("--all", action="store_true", help="include failed runs")
    p.add_argument(
        "--metric",
        help="the column to average (default: test_accuracy, or a study's own: test_f1, "
        "best_value)",
    )
    p.set_defaults(run=_results)

    p = sub.add_parser("stats", help=COMMANDS["stats"])
    p.add_argument("folders", nargs="+", type=Path, help="sweep folder(s)")
    p.add_argument(
        "--spec",
        help="only the runs of this spec (default: fig6 if present, else every spec, each apart)",
    )
    p.add_argument(
        "--metric",
        help="the column to compare (default: as for results, test_accuracy, or a study's own: "
        "test_f1, best_value)",
    )
    p.add_argument("--csv", type=Path, help="also write the tables to this CSV file")
    p.set_defaults(run=_stats)

    p = sub.add_parser("report", help=COMMANDS["report"])
    p.add_argument("folders", nargs="+", type=Path, help="sweep folder(s)")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="default: report.html")
    p.set_defaults(run=_report)


def _specs(names: list[str]) -> list[str]:
    from evoprune.experiments.spec import spec_names

    return spec_names() if names == ["all"] else names


def _sweep(args: argparse.Namespace) -> int:
    from evoprune.cli.data import check_out
    from evoprune.experiments.spec import load_spec
    from evoprune.experiments.sweep import check_spec_names, run_sweep

    if args.workers is not None and args.workers < 1:
        raise EvopruneError(f"--workers: expected a positive integer, got {args.workers}")
    if args.ray_address and args.executor != "ray":
        raise EvopruneError("--ray-address: only with --executor ray")
    specs = [_narrowed(load_spec(name), args) for name in _specs(args.spec)]
    check_spec_names(specs)
    out = (
        args.out
        or Path("runs")
        / f"{'+'.join(s.name for s in specs) if len(specs) < 3 else 'all'}-{args.profile}"
    )
    check_out(out, finished_ok=True)  # a sweep folder: resumed, never a single run's
    if args.dry_run:
        for spec in specs:
            for run in spec.runs(args.profile):
                key = "(after its references)" if run.references else run.key
                print(f"{spec.name}\t{run.label}\t{key}\t{run.job}")
        return 0
    summary = run_sweep(
        specs,
        args.profile,
        out,
        executor=args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
        progress=not args.quiet,
    )
    print(
        f"sweep {'+'.join(summary.specs)} [{summary.profile}] -> {summary.out}: {summary.total} runs, "
        f"{summary.skipped} already finished, {summary.recovered} recovered, {summary.ran} ran, "
        f"{summary.failed} failed, {summary.seconds:.0f} s"
    )
    if summary.dropped:
        print(
            f"  {summary.dropped} runs of an earlier version of the spec, of another profile or "
            "outside --seeds/--only/--arm are no longer counted with it (their folders stay in "
            "runs/: sweeping that plan again counts them without running them)"
        )
    for line in summary.errors[:10]:
        print(f"  failed: {line}", file=sys.stderr)
    if len(summary.errors) > 10:
        print(f"  ... and {len(summary.errors) - 10} more failed", file=sys.stderr)
    return 1 if summary.failed else 0


def _narrowed(spec: Spec, args: argparse.Namespace) -> Spec:
    """The spec cut down by --seeds, --only and --arm (itself when none is given)."""
    if args.seeds is None and not args.only and not args.arm:
        return spec
    seeds = None
    if args.seeds is not None:
        parts = [p.strip() for p in args.seeds.split(",")]
        if not all(p.isdigit() for p in parts):
            raise EvopruneError(
                f"--seeds: expected a count (5) or a list of seeds (0,3,7), got {args.seeds!r}"
            )
        seeds = int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]
        if seeds == 0:
            raise EvopruneError("--seeds: expected a positive count, got 0")
    only: dict[str, list[str]] = {}
    for item in args.only:
        axis, sep, values = item.partition("=")
        if not sep or not axis.strip() or not values.strip():
            raise EvopruneError(f"--only: expected AXIS=VALUE[,VALUE...], got {item!r}")
        only.setdefault(axis.strip(), []).append(values)  # split by the spec: 784,300,10 is one
    return spec.narrowed(args.profile, seeds=seeds, only=only, arms=args.arm or None)


# the short names `results` prints, for the fields they stand for
SHORT_NAMES = {"test_acc": "test_accuracy", "train_acc": "train_accuracy"}


def _results(args: argparse.Namespace) -> int:
    from evoprune.experiments.tables import (
        check_specs_apart,
        is_fraction,
        load_results,
        plan_status,
        results_table,
    )

    check_specs_apart(args.folders, "results")
    df = load_results(args.folders, finished_only=not args.all)
    for line in plan_status(args.folders):
        print(line, file=sys.stderr)
    if args.csv:
        write_atomic(args.csv, df.to_csv(index=False))
        print(f"wrote {len(df)} runs to {args.csv}")
    if df.empty:
        print("no finished runs")
        for folder in map(Path, args.folders):  # a store emptied or lost beside its runs
            if n := sum(1 for _ in folder.glob("runs/*/result.json")):
                print(f"{folder}: {n} finished run folders are not in its store; sweeping the "
                      f"spec again into it records them without running them", file=sys.stderr)  # fmt: skip
        return 0
    finished = df[df["status"] == "finished"] if "status" in df else df
    if finished.empty:  # --all, and every run failed: their errors are the table
        failed = df[["spec", "label", "seed", "error"]].fillna("-")
        with _pd_display():
            print(f"no finished runs; {len(failed)} failed:")
            print(failed.to_string(index=False, justify="left"))
        return 0
    metric = _metric(df, args.metric)
    table = results_table(df, metric)
    short = next((k for k, v in SHORT_NAMES.items() if v == metric), metric)
    table = table.rename(columns={"mean": short})
    columns = list(table.columns)
    fraction = "{:.4f}" if is_fraction(metric) else "{:.4g}"
    numbers = {short: fraction, "std": fraction, "sparsity": "{:.4f}",
               "measured_sparsity": "{:.4f}", "n": "{:.0f}"}  # fmt: skip
    cells = {c: _padded(table[c], c, numbers.get(c)) for c in columns}
    with _pd_display():
        print(table.assign(**cells).to_string(index=False, justify="left"))
    return 0


# what `results` and `stats` use when --metric is not given: the first a sweep's runs report
HEADLINE_METRICS = ("test_accuracy", "test_f1", "best_value")
# numeric columns of the results that are the store's bookkeeping, not a run's measurement
BOOKKEEPING = ("seed", "classes", "normalize", "submitted", "finished", "queue_seconds",
               "label_rank")  # fmt: skip


def _metric(df: pd.DataFrame, chosen: str | None) -> str:
    """The column `results` and `stats` use: `chosen` (short names allowed) or the first
    headline metric that the runs report."""
    if chosen is None:
        reported = (m for m in HEADLINE_METRICS if m in df and df[m].notna().any())
        return next(reported, "wall_seconds")
    metric = SHORT_NAMES.get(chosen, chosen)
    if metric not in df or df[metric].dtype.kind not in "fiub" or df[metric].isna().all():
        numeric = [
            c for c in df.select_dtypes("number") if c not in BOOKKEEPING and df[c].notna().any()
        ]
        # those that name what was asked for first, then the headline metrics
        numeric.sort(key=lambda c: (chosen not in c, c not in HEADLINE_METRICS))
        raise EvopruneError(
            f"--metric: no numeric column {chosen!r} in the results; "
            + (f"e.g. {', '.join(numeric[:8])}" if numeric else "these runs report no numbers")
        )
    return metric


def _padded(column: pd.Series, header: str, number: str | None) -> list[str]:
    """A column as strings of one width: text left-aligned, numbers right-aligned, "-" if
    missing (so `to_string(justify="left")` lines the headers up with both)."""
    import pandas as pd

    from evoprune.experiments.tables import axis_text

    values = ["-" if pd.isna(v) else number.format(v) if number else axis_text(v) for v in column]
    width = max(len(header), *map(len, values))
    return [v.rjust(width) if number else v.ljust(width) for v in values]


def _stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from evoprune.experiments.stats import NO_FIT, describe_fit, mixed_model_tables
    from evoprune.experiments.tables import check_specs_apart, load_results

    check_specs_apart(args.folders, "stats")
    df = load_results(args.folders)
    spec = args.spec or ("fig6" if "fig6" in set(df.get("spec", [])) else None)
    if spec is not None:
        df = df[df["spec"] == spec]
    if df.empty:
        raise EvopruneError(f"stats: no finished runs{f' of spec {spec}' if spec else ''}")
    metric = _metric(df, args.metric)
    # each spec's arms in its own order (a rank counts within a spec: one order over all
    # specs put another spec's first arm first)
    fits = mixed_model_tables(df, value=metric)
    if not fits:
        raise EvopruneError(f"stats: {NO_FIT}")
    for fit in fits:
        print(f"\n{describe_fit(fit, metric)}")
        table = fit.table.drop(columns=["dataset"]).rename(columns={"stat": fit.test})
        with _pd_display():
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        write_atomic(args.csv, pd.concat([f.table for f in fits]).to_csv(index=False))
        print(f"\nwrote {args.csv}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from evoprune.cli.data import check_writable_file
    from evoprune.experiments.report import build_report

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise EvopruneError(f"--out: expected an .html file name, got {str(args.out)!r}")
    if args.out.is_dir():
        raise EvopruneError(f"--out {args.out}: is a folder; expected an .html file name")
    check_writable_file(args.out)
    summary = build_report(args.folders, args.out)
    print(
        f"wrote {summary.path}: {_count(len(summary.figures), 'figure')} "
        f"({', '.join(summary.figures) or 'none for these specs'}), "
        f"{_count(summary.tables, 'table')}, {_count(summary.runs, 'run')}"
    )
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _pd_display() -> AbstractContextManager[None]:
    import pandas as pd

    return pd.option_context(
        "display.width", 200, "display.max_columns", 50, "display.max_rows", 500
    )
