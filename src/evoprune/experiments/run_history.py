"""One run's history as a figure (`evoprune plot history`; the paper's Fig. 4 for a single run).

`prepare_run_history` turns a run folder (``history.csv`` and ``result.json``) into a tidy long
frame, one row per (phase, step, panel, series): the GA's generations, then the local search's
passes (memetic and local runs) on the same x axis, and the final ticket that ``result.json``
reports (after post-pruning for the GA) as the last point of each panel. The drawing is
`evoprune.experiments.draw.draw_history`.

Panels: the training accuracy (what the history holds: the GA scores the training split), the
sparsity, and the optimised objective when it is not the accuracy (the training cross-entropy for
``--objective loss``, the macro-F1 for ``f1``).

Every other method's history (edge-popup, backprop, pruning, selection, the studies) is drawn as
it is: a panel per numeric column against its step (generation, epoch, trial or evaluation), its
phases one after the other (`_other_history`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from numpy.typing import ArrayLike

from evoprune.errors import EvopruneError

ACCURACY = "training accuracy"
SPARSITY = "sparsity"
OBJECTIVE_PANEL = {"loss": "training loss (cross-entropy)", "f1": "training macro-F1"}

# the GA's history.csv columns: (panel, series)
GA_SERIES = {
    "best_accuracy": (ACCURACY, "fittest of the generation"),
    "best_sparsity": (SPARSITY, "fittest of the generation"),
    "max_sparsity": (SPARSITY, "highest in the generation"),
    "best_sparsity_so_far": (SPARSITY, "highest so far"),
}
LOCAL_SERIES = "local search (after each pass)"
VARIANT_NAMES = {
    "ga": "GA",
    "ga-adaptive": "GA (adaptive accuracy bound)",
    "memetic": "memetic (GA, then local search)",
    "local": "local search",
}
PHASE_NAMES = {"ga": "GA", "local": "local search", "local-loss": "local search (loss)"}
COLUMNS = ["phase", "step", "panel", "series", "value", "final"]

# another method's history: the first of these its rows fill is the x axis
STEP_COLUMNS = ("generation", "epoch", "trial", "evaluations", "seconds")
# bookkeeping columns, not curves (``param_*`` too: a trial's hyperparameters)
NOT_CURVES = {"restart", "population", "sampler_seconds", "objective_seconds"}
MAX_PANELS = 8


def _read_history(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise EvopruneError(f"{path}: not a readable CSV ({type(exc).__name__})") from None


def _read_result(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "result.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EvopruneError(f"{path}: not a readable JSON file") from None
    return data if isinstance(data, dict) else {}


def _local_objective(rows: pd.DataFrame, objective: str, result: dict[str, Any]) -> pd.Series:
    """The objective in its own sign from the local search's rows: their ``objective`` column.

    A history written before the ``cost`` column held there what the search minimises: the
    loss plus ``sparsity_penalty * density``, or minus the accuracy / F1 (with the tie-breaker
    the penalty sits in the second key, not there); such a history is converted back.
    """
    from evoprune.ga.config import GAConfig

    value = pd.to_numeric(rows["objective"], errors="coerce")
    if "cost" in rows and rows["cost"].notna().any():
        return value
    try:
        lcfg = GAConfig.from_dict(result["ga_config"]).local_config(objective)
    except (KeyError, TypeError, EvopruneError):  # a result without its config: the raw value
        return value if objective == "loss" else -value
    if objective == "loss" or not lcfg.tiebreak:
        density = 1.0 - pd.to_numeric(rows["sparsity"], errors="coerce")
        value = value - lcfg.sparsity_penalty * density
    return value if objective == "loss" else -value


def _final_label(result: dict[str, Any]) -> str:
    variant = result.get("variant", result.get("method"))
    post_pruned = variant in ("ga", "ga-adaptive") and (result.get("config") or {}).get(
        "post_prune", True
    )
    return "final ticket, after post-pruning" if post_pruned else "final ticket"


def prepare_run_history(run_dir: str | Path) -> pd.DataFrame:
    """The tidy frame of one run folder's history (columns `COLUMNS`).

    ``step`` is the GA's generation, then (memetic and local runs) the local search's pass counted
    on after the last generation. Rows with ``final`` True hold the run's result (``result.json``:
    training accuracy, sparsity, the objective) at the last step. ``attrs``: ``result`` (the
    run's result.json, {} when there is none) and ``final_label``.
    """
    run_dir = Path(run_dir)
    path = run_dir / "history.csv"
    if not path.is_file():
        raise EvopruneError(f"{run_dir}: no history.csv here (expected a run folder)")
    hist = _read_history(path)
    result = _read_result(run_dir)
    objective = result.get("objective", "accuracy")
    if not (set(GA_SERIES) & set(hist)) and "pass" not in hist:
        return _other_history(path, hist, result)  # not a GA, memetic or local run
    if "phase" not in hist:  # a GA run: generations only
        hist = hist.assign(phase="ga")
    ga = hist[hist["phase"] == "ga"] if "generation" in hist else hist.iloc[:0]
    parts: list[pd.DataFrame] = []

    def add(
        phase: str,
        steps: ArrayLike,
        panel: str,
        series: str,
        values: ArrayLike,
        final: bool = False,
    ) -> None:
        parts.append(
            pd.DataFrame(
                {
                    "phase": phase,
                    "step": steps,
                    "panel": panel,
                    "series": series,
                    "value": pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(),
                    "final": final,
                }
            )  # fmt: skip
        )

    last = 0
    if len(ga):
        steps = pd.to_numeric(ga["generation"]).to_numpy()
        for column, (panel, series) in GA_SERIES.items():
            if column in ga and ga[column].notna().any():
                add("GA", steps, panel, series, ga[column].to_numpy())
        if objective in OBJECTIVE_PANEL and "best_performance" in ga:
            add("GA", steps, OBJECTIVE_PANEL[objective], "fittest of the generation",
                ga["best_performance"].to_numpy())  # fmt: skip
        last = int(steps.max())
    for phase, rows in hist[hist["phase"] != "ga"].groupby("phase", sort=False):
        passes = pd.to_numeric(rows["pass"], errors="coerce").to_numpy()
        steps = last + passes
        name = PHASE_NAMES.get(str(phase), str(phase))
        add(name, steps, ACCURACY, LOCAL_SERIES, rows["train_accuracy"].to_numpy())
        add(name, steps, SPARSITY, LOCAL_SERIES, rows["sparsity"].to_numpy())
        # the loss-first phase optimises the loss whatever the run's objective: drawn only
        # where it is the run's objective, so a panel holds one quantity
        phase_objective = "loss" if str(phase) == "local-loss" else objective
        if objective in OBJECTIVE_PANEL and phase_objective == objective:
            values = _local_objective(rows, objective, result)
            add(name, steps, OBJECTIVE_PANEL[objective], LOCAL_SERIES, values.to_numpy())
        last = int(max(last, steps.max()))
    if not parts:
        raise EvopruneError(f"{path}: no rows to draw")
    label = _final_label(result)
    finals = {ACCURACY: result.get("train_accuracy"), SPARSITY: result.get("sparsity")}
    if objective in OBJECTIVE_PANEL:
        finals[OBJECTIVE_PANEL[objective]] = result.get(f"train_{objective}")
    for panel, value in finals.items():
        if isinstance(value, int | float) and math.isfinite(value):
            add("final", [last], panel, label, [value], final=True)
    frame = pd.concat(parts, ignore_index=True)[COLUMNS]
    units = {phase: "generation" if phase == "GA" else "pass" for phase in frame["phase"]}
    frame.attrs.update(result=result, final_label=label, units=units)
    return frame


def _other_history(path: Path, hist: pd.DataFrame, result: dict[str, Any]) -> pd.DataFrame:
    """A history of no GA and no local search, in the frame of `prepare_run_history`: a panel per
    numeric column, against the first step column its rows fill; phases (pruning: the search's
    generations, the pruned network, the fine-tuning epochs) one after another on the x axis.
    A folder of several runs (``minimize``: a ``method`` and a ``seed`` column) draws a line per
    method, the median over its seeds at each step."""
    if "phase" in hist.columns and hist["phase"].notna().all():
        groups = list(hist.groupby("phase", sort=False))
    else:
        groups = [(str(result.get("method") or "run"), hist)]
    parts: list[pd.DataFrame] = []
    units: dict[str, str] = {}
    spans: dict[str, str] = {}  # per phase, for the command's line: "5 rows, epoch 1 to 5"
    panels: list[str] = []
    left_out: list[str] = []  # columns beyond MAX_PANELS
    last = None
    for phase, rows in groups:
        numeric = rows.apply(pd.to_numeric, errors="coerce")
        step = next((c for c in STEP_COLUMNS if c in rows and numeric[c].notna().all()), None)
        if step is None or not len(rows):
            continue
        lines, seeds = _lines(rows, numeric, step, str(phase))
        offset = 0.0 if last is None else last - numeric[step].min() + 1  # counted on from 1
        for series, line in lines:
            steps = line.index.to_numpy(dtype=float) + offset
            for column in line.columns:
                values = line[column]
                if (column in NOT_CURVES or column.startswith("param_")
                        or values.isna().all()):  # fmt: skip
                    continue
                panel = column.replace("_", " ") + (
                    f" (median of {seeds} seeds)" if seeds > 1 else ""
                )
                if panel not in panels:
                    if len(panels) == MAX_PANELS:
                        left_out += [column] if column not in left_out else []
                        continue
                    panels.append(panel)
                parts.append(pd.DataFrame({"phase": str(phase), "step": steps, "panel": panel,
                                           "series": series, "value": values.to_numpy(),
                                           "final": False}))  # fmt: skip
            if len(steps):  # a method whose values are all empty draws nothing
                last = max(last or 0.0, float(steps.max()))
        units[str(phase)] = "evaluation" if step == "evaluations" else step
        first, final = numeric[step].min(), numeric[step].max()
        spans[str(phase)] = f"{len(rows)} row{'s' * (len(rows) != 1)}, {step} " + (
            f"{first:g}" if first == final else f"{first:g} to {final:g}"
        )
    if not parts:
        raise EvopruneError(
            f"{path}: no rows with a step column ({', '.join(STEP_COLUMNS)}) and a number to draw"
        )
    frame = pd.concat(parts, ignore_index=True)[COLUMNS]
    unit_interval = {p for p, v in frame.groupby("panel")["value"]
                     if v.between(0, 1).all() and any(w in p for w in ("accuracy", "f1", "sparsity"))}  # fmt: skip
    frame.attrs.update(result=result, final_label="result", units=units, spans=spans,
                       unit_interval=unit_interval, left_out=left_out)  # fmt: skip
    return frame


def _lines(rows: pd.DataFrame, numeric: pd.DataFrame, step: str,
           phase: str) -> tuple[list[tuple[str, pd.DataFrame]], int]:  # fmt: skip
    """A phase's curves: ``(series, frame indexed by step)`` per method of a several-run folder,
    else the phase itself; and the number of seeds. Several seeds give the median at each step
    of any seed's, each seed's value carried on to the steps where only others record one."""
    curves = numeric.drop(columns=[c for c in (*STEP_COLUMNS, "phase", "method", "seed")
                                   if c in numeric]).set_axis(numeric[step], axis=0)  # fmt: skip
    seeds = int(rows["seed"].nunique()) if "seed" in rows else 1
    if "method" not in rows and seeds == 1:
        return [(phase, curves)], 1
    methods = rows["method"].astype(str).to_numpy() if "method" in rows else [phase] * len(rows)
    seed_of = rows["seed"].to_numpy() if "seed" in rows else [0] * len(rows)
    lines = []
    for name in dict.fromkeys(methods):
        mine = curves[[m == name for m in methods]].copy()
        mine["seed"] = [s for m, s in zip(methods, seed_of, strict=True) if m == name]
        mine.index.name = "step"
        columns = {
            column: mine.pivot_table(
                index="step", columns="seed", values=column, aggfunc="last", dropna=False
            )
            .sort_index()
            .ffill()
            .median(axis=1)  # fmt: skip
            for column in curves.columns
            if mine[column].notna().any()
        }
        lines.append((str(name), pd.DataFrame(columns)))
    return lines, seeds


def run_title(result: dict[str, Any], fallback: str) -> str:
    """``digits (10 classes), B [64, 75, 10], memetic (...), objective loss, seed 0``."""
    if result.get("function"):  # a minimisation: its function, dimension and optimizers
        parts = [str(result["function"]), f"dim {result.get('dim')}", result.get("variant")]
        return ", ".join(p for p in parts if p)
    if not result.get("dataset"):
        return fallback
    data = str(result["dataset"])
    if result.get("classes") not in (None, ""):
        data += f" ({int(result['classes'])} classes)"
    arch_name = (result.get("config") or {}).get("arch")
    layers = result.get("arch")
    arch = " ".join(
        str(a) for a in (arch_name if isinstance(arch_name, str) else None, layers) if a
    )
    variant = result.get("variant", result.get("method", ""))
    parts = [data, arch, VARIANT_NAMES.get(variant, str(variant)),
             f"objective {result.get('objective', 'accuracy')}", f"seed {result.get('seed', 0)}"]  # fmt: skip
    return ", ".join(p for p in parts if p)


def final_caption(result: dict[str, Any], label: str) -> str:
    """One line with the run's reported result, e.g. ``final ticket, after post-pruning: test
    accuracy 0.922, training accuracy 0.923, sparsity 0.730``."""
    tuned = isinstance(result.get("test_accuracy_finetuned"), int | float)  # a pruning run's
    bits = [
        f"{name} {result[key]:.3f}" if key != "best_value" else f"{name} {result[key]:.4g}"
        for key, name in (
            ("test_accuracy", "test accuracy" + (" before fine-tuning" if tuned else "")),
            ("test_accuracy_finetuned", "after"),
            ("train_accuracy", "training accuracy" + (" before" if tuned else "")),
            ("sparsity", "sparsity"),
            ("best_value", "best value"),  # a minimisation's
        )
        if isinstance(result.get(key), int | float)
    ]
    return f"{label}: {', '.join(bits)}" if bits else ""
