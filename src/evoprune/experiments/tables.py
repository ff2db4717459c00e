"""Results as pandas DataFrames: the runs of one or more sweeps, and mean/std/95% CI summaries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from evoprune.errors import EvopruneError
from evoprune.experiments.store import FINISHED, Store

METRICS = (
    "test_accuracy",
    "train_accuracy",
    "sparsity",
    "test_loss",
    "train_loss",
    "sparsity_before_post_prune",
    "test_accuracy_before_post_prune",
    "wall_seconds",
    "generations",
    "evaluations",
)


def load_results(
    folders: str | Path | Sequence[str | Path], finished_only: bool = True
) -> pd.DataFrame:
    """One row per (spec, arm label, run) over the sweeps in `folders` (a run shared by two specs
    appears once per spec). Columns: spec, label, key, method, dataset, classes, arch_name, seed,
    init, normalize, objective, status, every result.json metric, config (JSON), ...

    >>> # load_results("runs/fig3").groupby(["dataset", "arch_name", "label"]).test_accuracy.mean()
    """
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    frames = []
    for folder in folders:
        with Store(folder, create=False) as store:
            frame = store.runs_frame()
            order = {
                (r.spec, label): i
                for r in store.specs().itertuples()
                for i, label in enumerate(json.loads(r.labels or "[]"))
            }
        frame["folder"] = str(folder)
        # the arms' order in their spec (figures and tables follow it; stage-2 arms run last)
        frame["label_rank"] = [
            order.get((s, lab), len(order))
            for s, lab in zip(frame["spec"], frame["label"], strict=True)
        ]
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df = df.drop_duplicates(subset=["spec", "label", "key"], keep="first").reset_index(drop=True)
    if finished_only:
        df = df[df["status"] == FINISHED].reset_index(drop=True)
    if "classes" in df:
        df["classes"] = pd.to_numeric(df["classes"], errors="coerce").astype("Int64")
    return df


def check_specs_apart(folders: Sequence[str | Path], command: str) -> None:
    """Refuse sweep folders that hold one spec twice (fig3 [quick] in one, fig3 [paper] in
    another): pooled, its runs would mix two budgets or two versions of the spec."""
    seen: dict[str, Path] = {}
    for folder in map(Path, folders):
        for spec in load_meta(folder)["spec"]:
            if spec in seen and seen[spec] != folder:
                raise EvopruneError(
                    f"{command}: spec {spec} is in both {seen[spec]} and {folder}; pass them to "
                    f"{command} separately"
                )
            seen[spec] = folder


def plan_status(folders: str | Path | Sequence[str | Path]) -> list[str]:
    """One line per spec of `folders` that has planned runs not finished, else nothing."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    lines = []
    for folder in folders:
        with Store(folder, create=False) as store:
            status = store.plan_status()
        for r in status.itertuples():
            missing = int(r.planned - r.finished - r.failed)
            if missing or r.failed:
                lines.append(
                    f"{folder}: {r.spec}: {int(r.finished)} of {int(r.planned)} planned runs "
                    f"finished, {int(r.failed)} failed, {missing} not run (sweep again to finish)"
                )
    return lines


def load_history(folders: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The history rows of every run in `folders` (per generation for the GA), with its key."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    frames = []
    for folder in folders:
        with Store(folder, create=False) as store:
            frames.append(store.history_frame())
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).drop_duplicates(["key", "row"])


def summarise(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean, std (ddof 1), n and the 95% t-interval of the mean of `value` per group (clipped
    to [0, 1] for a fraction: accuracy, sparsity, F1; at 0 for a time or a count).

    >>> d = pd.DataFrame({"g": ["a", "a", "b"], "v": [1.0, 3.0, 5.0]})
    >>> summarise(d, ["g"], "v")[["g", "mean", "n"]].values.tolist()
    [['a', 2.0, 2], ['b', 5.0, 1]]
    """
    rows = []
    for keys, group in df.groupby(list(by), sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        values = pd.to_numeric(group[value], errors="coerce").dropna().to_numpy(dtype=float)
        stats = mean_ci(values)
        # a t-interval of few runs can pass 0 or 1; a fraction cannot, nor a time or count 0
        low, high = (0.0, 1.0) if is_fraction(value) else (0.0, np.inf) if is_nonnegative(value) else (None, None)  # fmt: skip
        if low is not None:
            stats["ci_low"], stats["ci_high"] = (
                float(np.clip(stats["ci_low"], low, high)), float(np.clip(stats["ci_high"], low, high)))  # fmt: skip
        rows.append({**dict(zip(by, keys, strict=True)), **stats})
    return pd.DataFrame(rows, columns=[*by, "mean", "std", "n", "ci_low", "ci_high"])


def results_table(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`evoprune results`' table: per spec, arm and grid point (every axis of the spec but the
    seed), the mean and std of `metric`, the mean sparsity where runs report one, and n. Rows
    in the order of `df` (the plan's); an axis a spec does not have is None.

    >>> d = pd.DataFrame({"spec": ["s"] * 3, "label": ["GA"] * 3, "v": [1.0, 3.0, 5.0],
    ...                   "axes": ['{"arch": "A"}', '{"arch": "A"}', '{"arch": "B"}']})
    >>> results_table(d, "v")[["arch", "mean", "n"]].values.tolist()
    [['A', 2.0, 2], ['B', 5.0, 1]]
    """
    grid = grid_columns(df)
    axes = list(grid.columns)
    frame = pd.concat([df[["spec", "label"]], grid, df[[metric]]], axis=1)
    by = ["spec", "label", *axes]
    table = summarise(frame, by, metric)[[*by, "mean", "std", "n"]]
    if "sparsity" in df and metric != "sparsity":  # the runs' own (an axis may be a target)
        name = "sparsity" if "sparsity" not in axes else "measured_sparsity"
        frame[name] = df["sparsity"]
        table.insert(len(by) + 2, name, summarise(frame, by, name)["mean"].to_numpy())
    return table


def grid_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The grid point of each run (its ``axes`` column, JSON) as one column per axis, in the
    order the axes first appear; lists and mappings (an explicit arch) as their JSON text, so
    that they can be grouped; None where a run's spec has no such axis.

    >>> grid = grid_columns(pd.DataFrame({"axes": ['{"arch": "A", "classes": 10}', '{"arch": [2, 4]}']}))
    >>> grid["arch"].tolist(), grid["classes"].tolist()[0]
    (['A', '[2, 4]'], 10.0)
    """
    points = [json.loads(a) for a in df["axes"]] if "axes" in df else [{} for _ in range(len(df))]
    axes = list(dict.fromkeys(name for point in points for name in point))
    return pd.DataFrame(
        {name: [_cell(point.get(name)) for point in points] for name in axes}, index=df.index
    )


def varying_axes(grid: pd.DataFrame, groups: Sequence[Any]) -> dict[Any, list[str]]:
    """Per group (`groups`: one per row of `grid`, the frame of `grid_columns`), the axes that
    take more than one value in it: the ones that tell its grid points apart.

    >>> grid = pd.DataFrame({"classes": [2, 10, 2], "normalize": [True, True, False]})
    >>> varying_axes(grid, ["digits", "digits", "blobs"])
    {'digits': ['classes'], 'blobs': []}
    """
    return {
        group: [a for a in grid if part[a].nunique(dropna=False) > 1]
        for group, part in grid.groupby(pd.Series(list(groups), index=grid.index), sort=False)
    }


def point_text(point: dict[str, Any]) -> str:
    """A grid point as text, ``classes=10, normalize=True``; an axis without a value (the spec's
    other grid lacks it) is left out.

    >>> point_text({"classes": 10.0, "sparsity": None, "normalize": True})
    'classes=10, normalize=True'
    """
    return ", ".join(f"{a}={axis_text(v)}" for a, v in point.items() if not pd.isna(v))


def axis_text(value: object) -> str:
    """An axis value as text: 10, not the 10.0 a column with gaps turns it into.

    >>> axis_text(10.0), axis_text(0.9), axis_text("B")
    ('10', '0.9', 'B')
    """
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _cell(value: Any) -> Any:
    """An axis value as a group key: lists and mappings (an explicit arch) as their JSON text."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def is_fraction(metric: str) -> bool:
    """Whether a result field lies in [0, 1] (accuracies, sparsities, F1 scores).

    >>> is_fraction("test_accuracy"), is_fraction("wall_seconds")
    (True, False)
    """
    return metric.endswith(("accuracy", "sparsity", "_f1")) or metric in ("f1", "sparsity")


def is_nonnegative(metric: str) -> bool:
    """Whether a result field is a time or a count (never below 0).

    >>> is_nonnegative("wall_seconds"), is_nonnegative("coef")
    (True, False)
    """
    return metric.endswith(("seconds", "evaluations", "generations", "passes", "trials"))


def mean_ci(values: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean, sample std, count and the t-based `level` interval (NaN half-width for n < 2)."""
    n = len(values)
    if n == 0:
        return {"mean": np.nan, "std": np.nan, "n": 0, "ci_low": np.nan, "ci_high": np.nan}
    mean = float(np.mean(values))
    if n < 2:
        return {"mean": mean, "std": np.nan, "n": 1, "ci_low": np.nan, "ci_high": np.nan}
    std = float(np.std(values, ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * std / np.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def load_meta(folders: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The specs swept into `folders`: spec, profile, source, figure, title."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    frames = []
    for folder in folders:
        with Store(folder, create=False) as store:
            frames.append(store.specs())
    if not frames:
        return pd.DataFrame(columns=["spec", "profile", "source", "figure", "title", "first_swept"])
    return pd.concat(frames, ignore_index=True).drop_duplicates(["spec", "profile"])
