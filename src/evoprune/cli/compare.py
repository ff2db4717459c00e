"""`evoprune compare RUN [RUN ...]`: finished runs side by side, one line each.

>>> # evoprune compare runs/demo/ga runs/demo/memetic
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evoprune.cli.data import add_fresh_args, check_fresh, fresh_samples, fresh_seed
from evoprune.errors import EvopruneError

# (result.json field, header, format); text ("{}") is left-aligned, numbers right-aligned
# the data and the random network: dataset, layers, seed and init draw it, the scaling feeds it
SETTING = (
    ("dataset", "dataset", "{}"),
    ("arch", "network", "{}"),
    ("seed", "seed", "{:d}"),
    ("init", "init", "{}"),
    ("activation", "activation", "{}"),
    ("normalize", "scaled", "{}"),
    ("objective", "objective", "{}"),
    ("function", "function", "{}"),  # a minimisation study's
    ("dim", "dim", "{:d}"),
)
# the methods that search a mask over a fixed random network (the others train weights)
RANDOM_NETWORK = ("ga", "ga-adaptive", "memetic", "local", "edge-popup")
COLUMNS = (
    ("variant", "method", "{}"),
    ("test_accuracy", "test acc", "{:.4f}"),
    ("train_accuracy", "train acc", "{:.4f}"),
    ("sparsity", "sparsity", "{:.3f}"),
    ("wall_seconds", "seconds", "{:.1f}"),
)
# the headline of the methods that have no test accuracy or sparsity: a column where a run has it
OPTIONAL_COLUMNS = (
    ("test_f1", "test F1", "{:.4f}"),
    ("best_value", "best value", "{:.3g}"),
)

# where a method's columns mean something else than a ticket's, a line under the table says so
COLUMN_NOTES = {
    "selection": "selection runs: sparsity is the share of hidden units extinct (of weights "
    "for the others)",
    **dict.fromkeys(
        # `evoprune.jobs.METHODS`' pruning methods (importing it here would load scikit-learn
        # for every command's --help; a test holds the two alike)
        ("cmaes-synflow", "cmaes-trainfit", "magnitude", "synflow", "softmask", "random"),
        "prune runs: test acc before fine-tuning (after: test_accuracy_finetuned in result.json);"
        " seconds include the dense training when it was not cached",
    ),
}

# what `register` adds, with the line `evoprune --help` shows for each
COMMANDS = {
    "compare": "finished runs side by side; two tickets paired on the same samples (McNemar)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help=COMMANDS["compare"],
        description="Print the result.json of finished runs side by side.",
    )
    p.add_argument("runs", type=Path, nargs="+",
                   help="run folders (each with a result.json), or a folder of them")  # fmt: skip
    add_fresh_args(p, "compare two tickets on")
    p.set_defaults(run=run_compare)


def load_result(folder: Path) -> dict:
    path = folder / "result.json"
    if not folder.exists():
        raise EvopruneError(f"{folder}: no such folder")
    if not path.is_file() and (folder / "results.sqlite").is_file():
        raise EvopruneError(f"{folder}: a sweep folder; `evoprune results {folder}` sums it up")
    if not path.is_file():
        raise EvopruneError(f"{folder}: no result.json (not a finished run)")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvopruneError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(result, dict):
        raise EvopruneError(
            f"{path}: expected a JSON object of results, got {type(result).__name__}"
        )
    return result


def format_table(rows: list[tuple[str, dict]], columns: tuple = COLUMNS) -> str:
    """One header line and one line per run; a missing field shows as "-"."""
    header = ["run", *(h for _, h, _ in columns)]
    text = [True, *(fmt == "{}" for _, _, fmt in columns)]
    cells = [header]
    for name, result in rows:
        line = [name]
        line += [_cell(result.get(field), fmt) for field, _, fmt in columns]
        cells.append(line)
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if left else c.rjust(w) for c, w, left in zip(row, widths, text, strict=True)
        ).rstrip()
        for row in cells
    )


def run_compare(args: argparse.Namespace) -> int:
    rows = [(str(folder), _named(load_result(folder))) for folder in _run_folders(args.runs)]
    # what the runs share goes in the header line, what differs gets a column
    shared: list[tuple[str, str, str]] = []
    differ: list[tuple[str, str, str]] = []
    for field in SETTING:
        values = {json.dumps(r.get(field[0])) for _, r in rows}
        (shared if len(values) == 1 else differ).append(field)
    said = ", ".join(
        _cell(value, fmt) if field == "dataset" else f"{header} {_cell(value, fmt)}"
        for field, header, fmt in shared
        if (value := rows[0][1].get(field)) is not None
        and (field, value) != ("activation", "relu")  # the paper's, said only when others differ
    )
    # one random network only when it is drawn alike and every run masks it
    drawn = {"dataset", "arch", "seed", "init", "activation", "normalize"}
    same_network = not any(f[0] in drawn for f in differ) and all(
        r.get("method") in RANDOM_NETWORK for _, r in rows
    )
    folders = [Path(name) for name, _ in rows]
    paired: list[str] = []  # before anything is printed: its errors stand alone
    seed = fresh_seed(args)
    if len(folders) == 2 and all((f / "ticket.npz").is_file() for f in folders):
        paired = paired_lines(folders, args.fresh, seed)
    elif args.fresh is not None:
        raise EvopruneError("--fresh: compares two runs that have a ticket.npz each")
    if said:
        print(f"{said}{' (the same random network)' if same_network else ''}:")
    optional = tuple(c for c in OPTIONAL_COLUMNS if any(r.get(c[0]) is not None for _, r in rows))
    print(format_table(rows, tuple(differ) + COLUMNS + optional))
    methods = {r.get("method") for _, r in rows}
    for note in dict.fromkeys(text for method, text in COLUMN_NOTES.items() if method in methods):
        print(note)
    for line in paired:
        print(line)
    return 0


def paired_lines(folders: list[Path], fresh: int | None, seed: int) -> list[str]:
    """Two tickets on the same samples: where they predict differently, which is right there,
    and the exact McNemar p-value of "equally accurate"; on the test set, and on `fresh` new
    samples of a generated dataset. Nothing when the tickets were found on different data."""
    from evoprune.data.registry import dataset_from_config
    from evoprune.experiments.stats import mcnemar_exact
    from evoprune.ticket import Ticket

    a, b = (Ticket.load(f / "ticket.npz") for f in folders)
    if a.dataset != b.dataset:
        if fresh is not None:
            raise EvopruneError("--fresh: the two tickets were found on different data")
        return []
    if fresh is not None:
        check_fresh(a.dataset, fresh)  # before the test set is built
    splits = {}
    ds = dataset_from_config(a.dataset)
    if ds.X_test is not None and len(ds.y_test):
        splits[f"the test set ({len(ds.y_test):,} points)"] = (ds.X_test, ds.y_test)
    if fresh is not None:
        X, y = fresh_samples(a.dataset, fresh, seed)
        splits[f"{fresh:,} fresh samples (seed {seed})"] = (X, y)
    lines = []
    for where, (X, y) in splits.items():
        pa, pb = a.predict(X), b.predict(X)
        differ = pa != pb
        a_only, b_only = (int((p[differ] == y[differ]).sum()) for p in (pa, pb))
        lines.append(
            f"paired on {where}: they disagree on {int(differ.sum()):,}; {folders[0]} right on "
            f"{a_only:,}, {folders[1]} on {b_only:,}; exact McNemar p "
            f"{_p(mcnemar_exact(a_only, b_only))}"
        )
    return lines


def _p(value: float) -> str:
    """ "= 0.0067", or "< 1e-300" where a double holds no smaller number."""
    return f"= {value:.3g}" if value >= 1e-300 else "< 1e-300"


def _run_folders(paths: list[Path]) -> list[Path]:
    """The run folders named: a folder of finished runs stands for the runs in it, and a
    file among them (``compare runs/*``) is passed over with a note."""
    out = []
    for path in paths:
        if (path / "result.json").is_file() or (path / "results.sqlite").is_file():
            out.append(path)
        elif path.is_dir() and (inner := sorted(p.parent for p in path.glob("*/result.json"))):
            out += inner
            skipped = sorted(p.parent.name for p in path.glob("*/results.sqlite"))
            skipped += sorted({p.parent.parent.name for p in path.glob("*/*/result.json")} -
                              {p.name for p in inner} - set(skipped))  # fmt: skip
            if skipped:
                print(f"note: {path}: passed over {', '.join(skipped)} (sweep folders or "
                      "folders of runs; name them to compare their runs)", file=sys.stderr)  # fmt: skip
        elif path.exists() and not path.is_dir() and len(paths) > 1:
            print(f"note: {path} is a file, not a run folder; passed over", file=sys.stderr)
        else:
            out.append(path)  # load_result says what is missing
    return out


def _named(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its method in ``variant``, the column's field (a run folder written
    before every method recorded a variant has the studies' optimizer or sampler), and a random
    network's activation (a run's from before it was recorded is ReLU)."""
    if not isinstance(result, dict):
        return result
    name = next((result[k] for k in ("variant", "optimizer", "sampler") if result.get(k)), None)
    named = {**result, "variant": name or result.get("method")}
    if result.get("method") in RANDOM_NETWORK:  # one written before it was recorded: ReLU
        named.setdefault("activation", "relu")
    return named


def _cell(value: object, fmt: str) -> str:
    if isinstance(value, list):  # a layer list
        value = "-".join(map(str, value))
    if isinstance(value, bool):
        value = "yes" if value else "no"
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):  # a hand-edited result.json: show it as it is
        return str(value)
