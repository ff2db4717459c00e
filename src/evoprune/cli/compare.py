"""`evoprune compare RUN [RUN ...]`: finished runs side by side, one line each.

>>> # evoprune compare runs/demo/ga runs/demo/memetic
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evoprune.errors import EvopruneError

# (result.json field, header, format); text ("{}") is left-aligned, numbers right-aligned
NETWORK = (("dataset", "dataset", "{}"), ("arch", "network", "{}"), ("seed", "seed", "{:d}"))
COLUMNS = (
    ("variant", "method", "{}"),
    ("test_accuracy", "test acc", "{:.4f}"),
    ("train_accuracy", "train acc", "{:.4f}"),
    ("sparsity", "sparsity", "{:.3f}"),
    ("wall_seconds", "seconds", "{:.1f}"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="print finished runs side by side (accuracy, sparsity, seconds)",
        description="Print the result.json of finished runs side by side.",
    )
    p.add_argument("runs", type=Path, nargs="+", help="run folders (each with a result.json)")
    p.set_defaults(run=run_compare)


def load_result(folder: Path) -> dict:
    path = folder / "result.json"
    if not path.is_file() and (folder / "results.sqlite").is_file():
        raise EvopruneError(f"{folder}: a sweep folder; `evoprune results {folder}` sums it up")
    if not path.is_file():
        raise EvopruneError(f"{folder}: no result.json (not a finished run)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvopruneError(f"{path}: not valid JSON ({exc})") from None


def format_table(rows: list[tuple[str, dict]], columns: tuple = COLUMNS) -> str:
    """One header line and one line per run; a missing field shows as "-"."""
    header = ["run", *(h for _, h, _ in columns)]
    text = [True, *(fmt == "{}" for _, _, fmt in columns)]
    cells = [header]
    for name, result in rows:
        line = [name]
        for field, _, fmt in columns:
            value = result.get(field)
            if isinstance(value, list):  # a layer list
                value = "-".join(map(str, value))
            line.append("-" if value is None else fmt.format(value))
        cells.append(line)
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if left else c.rjust(w) for c, w, left in zip(row, widths, text, strict=True)
        ).rstrip()
        for row in cells
    )


def run_compare(args: argparse.Namespace) -> int:
    rows = [(str(folder), load_result(folder)) for folder in args.runs]
    data = {(r.get("dataset"), json.dumps(r.get("arch")), r.get("seed")) for _, r in rows}
    if len(data) == 1:
        dataset, arch, seed = next(iter(data))
        print(f"{dataset}, network {json.loads(arch)}, seed {seed} (the same random network):")
        print(format_table(rows))
    else:  # different networks: each line says which
        print(format_table(rows, NETWORK + COLUMNS))
    return 0
