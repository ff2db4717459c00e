"""Figure data: one `prepare_*` function per figure of the paper, each returning a tidy DataFrame.

The preparation is where the meaning lives (which runs, which metric, which summary), so it is
unit-tested; `evoprune.experiments.draw` only turns these frames into matplotlib figures.

Every summary frame has the columns of `tables.summarise` (mean, std, n, ci_low, ci_high: the 95%
t-interval of the mean over seeds) plus its grouping columns and a ``metric`` column.
Figure numbers follow Schönberger et al., arXiv 2508.08877.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from evoprune.experiments.tables import grid_columns, point_text, summarise, varying_axes

# history.csv column -> the name the paper's Fig. 4 gives the curve (the accuracy, whatever the
# objective: best_performance is the objective's value, a cross-entropy with the loss)
HISTORY_SERIES = {
    "best_accuracy": "accuracy of the fittest",
    "best_sparsity": "sparsity of the fittest",
    "max_sparsity": "highest sparsity in the generation",
    "best_sparsity_so_far": "best sparsity so far",
}


def _runs_of(runs: pd.DataFrame, spec: str) -> pd.DataFrame:
    return runs[runs["spec"] == spec]


def _label_order(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Keep the arms in the order the spec lists them (store order), not alphabetical."""
    ranked = runs.sort_values("label_rank", kind="stable") if "label_rank" in runs else runs
    order = list(dict.fromkeys(ranked["label"]))
    frame = frame.copy()
    frame["label"] = pd.Categorical(frame["label"], categories=order, ordered=True)
    return frame


def prepare_summary(
    runs: pd.DataFrame, spec: str, by: Sequence[str], metrics: Sequence[str]
) -> pd.DataFrame:
    """Mean/std/CI of each metric per group over the runs of `spec`, stacked with a ``metric`` column."""
    sub = _runs_of(runs, spec)
    parts = []
    for metric in metrics:
        if metric not in sub or sub.empty:
            continue
        part = summarise(sub, list(by), metric)
        part.insert(0, "metric", metric)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["metric", *by, "mean", "std", "n", "ci_low", "ci_high"])
    out = pd.concat(parts, ignore_index=True)
    if "label" not in by:
        return out
    out = _label_order(out, sub)
    # rows: metric, then each grouping column in order of first appearance, arms in spec order
    keys = {
        c: (
            out[c].cat.codes
            if c == "label"
            else out[c].map({v: i for i, v in enumerate(dict.fromkeys(out[c]))})
        )
        for c in ["metric", *by]
    }
    order = pd.DataFrame(keys).sort_values(list(keys), kind="stable").index
    return out.loc[order].reset_index(drop=True)


def prepare_fig3(runs: pd.DataFrame, spec: str = "fig3") -> pd.DataFrame:
    """GA vs GA (adaptive AB): test accuracy and sparsity per dataset, architecture and variant."""
    return prepare_summary(
        runs, spec, ["dataset", "arch_name", "label"], ["test_accuracy", "sparsity"]
    )


def prepare_fig4(runs: pd.DataFrame, history: pd.DataFrame, spec: str = "fig4") -> pd.DataFrame:
    """One run's evolution: generation, series, value; long format. The run is the first arm's
    (in spec order) lowest seed that has generations (a local search has none, and a memetic
    run's passes after its GA are left out)."""
    empty = pd.DataFrame(columns=["key", "generation", "series", "value"])
    sub = _runs_of(runs, spec)
    if sub.empty or history.empty or "generation" not in history:
        return empty
    # stores written before empty cells were NULL hold '' in the rows without a generation
    generation = pd.to_numeric(history["generation"], errors="coerce")
    evolved = history.assign(generation=generation)[generation.notna()]
    order = [c for c in ("label_rank", "seed", "key") if c in sub]
    candidates = sub[sub["key"].isin(set(evolved["key"]))].sort_values(order, kind="stable")
    if candidates.empty:
        return empty
    hist = evolved[evolved["key"] == candidates.iloc[0]["key"]]
    cols = [c for c in HISTORY_SERIES if c in hist]
    long = hist.melt(
        id_vars=["key", "generation"], value_vars=cols, var_name="column", value_name="value"
    )
    long["series"] = long["column"].map(HISTORY_SERIES)
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return (  # a curve the run does not log (a memetic run has no max_sparsity) is left out
        long.dropna(subset=["value"])[["key", "generation", "series", "value"]]
        .sort_values(["series", "generation"])
        .reset_index(drop=True)
    )


def prepare_fig5(runs: pd.DataFrame, spec: str = "fig5") -> pd.DataFrame:
    """Edge-popup with each initialisation: test accuracy per dataset, architecture and init."""
    return prepare_summary(runs, spec, ["dataset", "arch_name", "init"], ["test_accuracy"])


def prepare_fig6(runs: pd.DataFrame, spec: str = "fig6") -> pd.DataFrame:
    """GA vs EP (50%) vs EP (adapted) vs backprop: accuracy and sparsity with 95% CIs."""
    return prepare_summary(
        runs, spec, ["dataset", "arch_name", "label"], ["test_accuracy", "sparsity"]
    )


def prepare_arms(runs: pd.DataFrame, spec: str) -> pd.DataFrame:
    """A spec without a figure of its own: test accuracy and sparsity per dataset (with its
    class count and the spec's other grid axes that vary for it: ``digits (2 classes,
    normalize=True)``), architecture and arm, so that every cell is one grid point. Runs
    without a dataset (``minimize``: a test function) have neither, and are left out."""
    sub = _runs_of(runs, spec)
    sub = sub[sub["dataset"].notna()] if "dataset" in sub else sub.iloc[:0]
    if not sub.empty:
        classes = pd.to_numeric(sub["classes"], errors="coerce")
        names = [
            f"{d} ({int(c)} classes)" if pd.notna(c) else str(d)
            for d, c in zip(sub["dataset"], classes, strict=True)
        ]
        grid = grid_columns(sub)  # as `evoprune results` groups: every axis of the spec
        grid = grid[[a for a in grid if a not in ("dataset", "classes", "arch")]]
        shown = varying_axes(grid, names)
        for k, (name, i) in enumerate(zip(names, sub.index, strict=True)):
            text = point_text({a: grid.at[i, a] for a in shown[name]})
            if text:
                names[k] = f"{name[:-1]}, {text})" if name.endswith(")") else f"{name} ({text})"
        sub = sub.assign(dataset=names, arch_name=sub["arch_name"].fillna("-"))
    return prepare_summary(
        sub, spec, ["dataset", "arch_name", "label"], ["test_accuracy", "sparsity"]
    )


def prepare_by_classes(
    runs: pd.DataFrame, spec: str, metrics: Sequence[str] = ("test_accuracy",)
) -> pd.DataFrame:
    """Summary per class count and algorithm (blobs on C, digits on B)."""
    return prepare_summary(runs, spec, ["dataset", "classes", "label"], metrics)


def prepare_fig7(runs: pd.DataFrame, spec: str = "fig7") -> pd.DataFrame:
    """Blobs 2-10 classes on C: GA with the accuracy objective vs the loss objective."""
    return prepare_by_classes(runs, spec, ["test_accuracy", "sparsity"])


def prepare_fig9(runs: pd.DataFrame, spec: str = "fig9") -> pd.DataFrame:
    """Blobs 2-10 on C: GA (loss), GA (loss, normalized), EP (50%), backprop: mean and std."""
    return prepare_by_classes(runs, spec, ["test_accuracy"])


def prepare_fig10(runs: pd.DataFrame, spec: str = "fig10") -> pd.DataFrame:
    """Digits {2,3,4,5,10} on B: GA normalized / not, EP (50%), backprop."""
    return prepare_by_classes(runs, spec, ["test_accuracy"])


def prepare_fig11(runs: pd.DataFrame, spec: str = "fig11") -> pd.DataFrame:
    """Sparsity before and after post-evolutionary pruning, per class count and GA variant."""
    sub = _runs_of(runs, spec)
    needed = {"sparsity", "sparsity_before_post_prune"}
    if sub.empty or not needed <= set(sub):
        return pd.DataFrame(
            columns=[
                "metric",
                "dataset",
                "classes",
                "label",
                "stage",
                "mean",
                "std",
                "n",
                "ci_low",
                "ci_high",
            ]
        )
    parts = []
    for stage, column in (("before", "sparsity_before_post_prune"), ("after", "sparsity")):
        part = summarise(sub, ["dataset", "classes", "label"], column)
        part.insert(3, "stage", stage)
        part.insert(0, "metric", "sparsity")
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["stage"] = pd.Categorical(out["stage"], categories=["before", "after"], ordered=True)
    return _label_order(out, sub).sort_values(["label", "classes", "stage"]).reset_index(drop=True)


@dataclass(frozen=True)
class Figure:
    """How to prepare and draw one figure of the paper, and what it shows."""

    title: str
    prepare: Callable[..., pd.DataFrame]
    kind: str  # the renderer in evoprune.experiments.catalogue.RENDERERS
    caption: str
    needs_history: bool = False
    # the report adds the mixed-model comparison (Fig. 6c), or says why there is none
    mixed_model: bool = False
    # the report's table from the frame (default: mean, std and CI per cell)
    table: Callable[[pd.DataFrame], pd.DataFrame] | None = None
