"""The optimiser studies (specs ``hpo``, ``minimize``, ``weights``): tidy frames (tested), thin
renderers, the report's tables, and the findings of Hirianskyi & Bulakh, "Effectiveness of
evolutionary algorithms in neural network optimization tasks", SUNZ 2026
(doi 10.26906/SUNZ.2026.1.045), abstract, checked on our runs.

Every frame is long: a ``part`` column says which panel a row belongs to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

SUCCESS = 1e-6
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]


def _sub(runs: pd.DataFrame, spec: str, method: str) -> pd.DataFrame:
    sub = runs[(runs["spec"] == spec) & (runs["method"] == method)].copy()
    return sub


def _num(frame: pd.DataFrame, col: str) -> pd.Series:
    return (
        pd.to_numeric(frame[col], errors="coerce")
        if col in frame
        else pd.Series(np.nan, index=frame.index)
    )


def _cell(table: pd.DataFrame, key: object, col: str) -> float:
    """table.at[key, col], NaN where pivot_table dropped an all-NaN column."""
    return float(table.at[key, col]) if col in table.columns and key in table.index else np.nan


# --- HPO ----------------------------------------------------------------------------------------

HPO_COLUMNS = ["part", "space", "objective", "sampler", "x", "value", "std", "n"]


def prepare_hpo(runs: pd.DataFrame, history: pd.DataFrame, spec: str = "hpo") -> pd.DataFrame:
    """Parts: ``curve`` (mean best-so-far objective per trial, x = trial index), ``summary``
    (per space/objective/sampler: best_val_f1, test_f1, sampler_ms, objective_s, wall_s as
    x = metric name, value = mean over seeds)."""
    sub = _sub(runs, spec, "hpo")
    if sub.empty:
        return pd.DataFrame(columns=HPO_COLUMNS)
    rows = []
    metrics = {"best_val_f1": 1.0, "test_f1": 1.0, "sampler_seconds_per_trial": 1e3,
               "objective_seconds_per_trial": 1.0, "wall_seconds": 1.0}  # fmt: skip
    for (space, objective, sampler), g in sub.groupby(
        ["space", "objective", "sampler"], sort=False
    ):
        for metric, scale in metrics.items():
            v = _num(g, metric).dropna() * scale
            rows.append({"part": "summary", "space": space, "objective": objective, "sampler": sampler,
                         "x": metric, "value": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else np.nan,
                         "n": len(v)})  # fmt: skip
        if not history.empty and "best_so_far" in history:
            h = history[history["key"].isin(g["key"])].copy()
            h["best_so_far"] = pd.to_numeric(h["best_so_far"], errors="coerce")
            h["i"] = h.groupby("key").cumcount() + 1  # the i-th COMPLETE trial
            for i, part in h.groupby("i"):
                rows.append({"part": "curve", "space": space, "objective": objective, "sampler": sampler,
                             "x": i, "value": part["best_so_far"].mean(),
                             "std": part["best_so_far"].std(ddof=1), "n": len(part)})  # fmt: skip
    return pd.DataFrame(rows, columns=HPO_COLUMNS)


def table_hpo(frame: pd.DataFrame) -> pd.DataFrame:
    s = frame[frame["part"] == "summary"]
    if s.empty:
        return pd.DataFrame()
    wide = s.pivot_table(
        index=["space", "objective", "sampler"], columns="x", values="value", sort=False
    )
    sd = s.pivot_table(
        index=["space", "objective", "sampler"], columns="x", values="std", sort=False
    )
    n = s.pivot_table(index=["space", "objective", "sampler"], columns="x", values="n", sort=False)
    rows = []
    for key in wide.index:
        rows.append({"space": key[0], "objective": key[1], "sampler": key[2],
                     "best val F1": f"{_cell(wide, key, 'best_val_f1'):.4f} ± {_cell(sd, key, 'best_val_f1'):.4f}",
                     "test F1": f"{_cell(wide, key, 'test_f1'):.4f} ± {_cell(sd, key, 'test_f1'):.4f}",
                     "sampler ms/trial": f"{_cell(wide, key, 'sampler_seconds_per_trial'):.2f}",
                     "objective s/trial": f"{_cell(wide, key, 'objective_seconds_per_trial'):.4f}",
                     "wall s": f"{_cell(wide, key, 'wall_seconds'):.0f}",
                     "seeds": int(_cell(n, key, "test_f1"))})  # fmt: skip
    return pd.DataFrame(rows)


def draw_hpo(frame: pd.DataFrame, title: str) -> Figure:
    """(a, b) best-so-far objective per sampler in each space (train objective); (c) sampler
    milliseconds per trial (log); (d) SynFlow vs train: objective seconds per trial (log) and
    (e) the final test F1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(17, 3.8), layout="constrained")
    axes = fig.subplots(1, 5)
    # one colour per sampler in every panel
    color = {s: COLORS[i % len(COLORS)] for i, s in enumerate(dict.fromkeys(frame["sampler"]))}
    curve = frame[(frame["part"] == "curve") & (frame["objective"] == "train")]
    for ax, space in zip(axes[:2], ["low", "high"], strict=True):
        for sampler, line in curve[curve["space"] == space].groupby("sampler", sort=False):
            ax.plot(
                line["x"].astype(float),
                line["value"],
                color=color[sampler],
                label=str(sampler),
            )
        ax.set_title(f"{space} space: best val F1 so far", fontsize=9)
        ax.set_xlabel("trial")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7, loc="lower right")
    summary = frame[frame["part"] == "summary"]
    for ax, metric, name, log in (
        (axes[2], "sampler_seconds_per_trial", "sampler ms per trial", True),
        (axes[3], "objective_seconds_per_trial", "objective s per trial", True),
        (axes[4], "test_f1", "test F1 of the chosen config", False),
    ):
        part = summary[summary["x"] == metric]
        if metric == "sampler_seconds_per_trial":
            part = part[part["objective"] == "train"]
        labels = [f"{r.space}/{r.objective}/{r.sampler}" for r in part.itertuples()]
        ax.barh(np.arange(len(part)), part["value"].to_numpy(dtype=float),
                xerr=part["std"].fillna(0).to_numpy(dtype=float),
                color=[color[r.sampler] for r in part.itertuples()])  # fmt: skip
        ax.set_yticks(np.arange(len(part)), labels, fontsize=7)
        ax.set_title(name, fontsize=9)
        if log and len(part):
            ax.set_xscale("log")
            # plain-number labels: at 1, 2 and 5 times a power of ten within about a decade,
            # at whole decades beyond; no minor labels (they overlapped)
            values = part["value"].to_numpy(dtype=float)
            values = values[values > 0]
            decades = np.log10(values.max() / values.min()) if len(values) else 0.0
            subs = (1.0, 2.0, 5.0) if decades <= 1.5 else (1.0,)
            ax.xaxis.set_major_locator(LogLocator(subs=subs))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return fig


# --- minimisation -------------------------------------------------------------------------------

MIN_COLUMNS = ["part", "function", "dim", "optimizer", "x", "value", "n"]


def prepare_minimize(
    runs: pd.DataFrame, history: pd.DataFrame, spec: str = "minimize"
) -> pd.DataFrame:
    """Parts: ``summary`` (x in median_best, success_rate, median_evaluations_to_success) and
    ``curve`` (median best-so-far at x evaluations, over seeds; the last value carried forward)."""
    sub = _sub(runs, spec, "minimize")
    if sub.empty:
        return pd.DataFrame(columns=MIN_COLUMNS)
    rows = []
    for (fn, dim, opt), g in sub.groupby(["function", "dim", "optimizer"], sort=False):
        best = _num(g, "best_value")
        evals = _num(g, "evaluations_to_success").dropna()
        for x, v in (
            ("median_best", best.median()),
            ("success_rate", float((best < SUCCESS).mean())),
            ("median_evaluations_to_success", evals.median() if len(evals) else np.nan),
        ):
            rows.append({"part": "summary", "function": fn, "dim": dim, "optimizer": opt, "x": x,
                         "value": v, "n": len(g)})  # fmt: skip
        if not history.empty and "best_so_far" in history:
            h = history[history["key"].isin(g["key"])]
            if h.empty:
                continue
            grid = np.unique(np.geomspace(1, max(_num(h, "evaluations").max(), 1), 40).astype(int))
            curves = []
            for _, one in h.groupby("key"):
                e = _num(one, "evaluations").to_numpy()
                b = _num(one, "best_so_far").to_numpy()
                idx = np.searchsorted(e, grid, side="right") - 1
                curves.append(np.where(idx >= 0, b[np.clip(idx, 0, None)], np.nan))
            med = np.nanmedian(np.array(curves), axis=0)
            for x, v in zip(grid, med, strict=True):
                rows.append({"part": "curve", "function": fn, "dim": dim, "optimizer": opt,
                             "x": int(x), "value": v, "n": len(curves)})  # fmt: skip
    return pd.DataFrame(rows, columns=MIN_COLUMNS)


def table_minimize(frame: pd.DataFrame) -> pd.DataFrame:
    s = frame[frame["part"] == "summary"]
    if s.empty:
        return pd.DataFrame()
    wide = s.pivot_table(
        index=["function", "dim", "optimizer"], columns="x", values="value", sort=False
    )
    n = s.groupby(["function", "dim", "optimizer"], sort=False)["n"].first()
    rows = []
    for key in wide.index:
        e = (
            wide.at[key, "median_evaluations_to_success"]
            if "median_evaluations_to_success" in wide
            else np.nan
        )
        rows.append({"function": key[0], "d": key[1], "method": key[2],
                     "median best": f"{_cell(wide, key, 'median_best'):.3g}",
                     "success rate": f"{_cell(wide, key, 'success_rate'):.2f}",
                     "median evaluations to success": "-" if pd.isna(e) else f"{e:.0f}",
                     "seeds": int(n[key])})  # fmt: skip
    return pd.DataFrame(rows)


def draw_minimize(frame: pd.DataFrame, title: str) -> Figure:
    """One panel per function (and dimension): median best-so-far against evaluations, log-log."""
    curve = frame[frame["part"] == "curve"]
    panels = list(dict.fromkeys(zip(curve["function"], curve["dim"], strict=True)))
    cols = max(min(len(panels), 3), 1)
    rows = max((len(panels) + cols - 1) // cols, 1)
    from evoprune.experiments.draw import legend_below

    fig = Figure(figsize=(4.6 * cols, 3.2 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    # one colour per method in every panel
    color = {o: COLORS[i % len(COLORS)] for i, o in enumerate(dict.fromkeys(curve["optimizer"]))}
    for ax, (fn, dim) in zip(axes, panels, strict=False):
        part = curve[(curve["function"] == fn) & (curve["dim"] == dim)]
        for opt, line in part.groupby("optimizer", sort=False):
            y = np.maximum(line["value"].to_numpy(dtype=float), 1e-12)
            ax.plot(line["x"].astype(float), y, color=color[opt], label=str(opt))
        ax.axhline(SUCCESS, color="grey", lw=0.8, ls="--", label=f"success (f < {SUCCESS:g})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{fn}, d = {dim}", fontsize=9)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("median best f")
        ax.grid(alpha=0.3)
    if panels:
        legend_below(fig, axes[0])
    fig.suptitle(title)
    return fig


# --- weight training ----------------------------------------------------------------------------

W_COLUMNS = ["part", "optimizer", "x", "value", "std", "n"]


def prepare_weights(
    runs: pd.DataFrame, history: pd.DataFrame, spec: str = "weights"
) -> pd.DataFrame:
    """Parts: ``summary`` (x in test_f1, test_accuracy, seconds, evaluations; mean over seeds)
    and ``curve`` (validation F1 against training CPU seconds, mean over seeds on a common grid)."""
    sub = _sub(runs, spec, "train-weights")
    if sub.empty:
        return pd.DataFrame(columns=W_COLUMNS)
    rows = []
    for opt, g in sub.groupby("optimizer", sort=False):
        for x in ("test_f1", "test_accuracy", "seconds", "evaluations"):
            v = _num(g, x).dropna()
            rows.append({"part": "summary", "optimizer": opt, "x": x, "value": v.mean(),
                         "std": v.std(ddof=1) if len(v) > 1 else np.nan, "n": len(v)})  # fmt: skip
        if not history.empty and "val_f1" in history:
            h = history[history["key"].isin(g["key"])]
            if h.empty:
                continue
            top = _num(h, "seconds").max()
            grid = np.linspace(0, top, 30)[1:]
            curves = []
            for _, one in h.groupby("key"):
                t, f = _num(one, "seconds").to_numpy(), _num(one, "val_f1").to_numpy()
                idx = np.searchsorted(t, grid, side="right") - 1
                curves.append(np.where(idx >= 0, f[np.clip(idx, 0, None)], np.nan))
            arr = np.array(curves)
            for x, m, s in zip(grid, np.nanmean(arr, 0), np.nanstd(arr, 0), strict=True):
                rows.append({"part": "curve", "optimizer": opt, "x": x, "value": m, "std": s,
                             "n": len(curves)})  # fmt: skip
    return pd.DataFrame(rows, columns=W_COLUMNS)


def table_weights(frame: pd.DataFrame) -> pd.DataFrame:
    s = frame[frame["part"] == "summary"]
    if s.empty:
        return pd.DataFrame()
    rows = []
    for opt, g in s.groupby("optimizer", sort=False):
        v = g.set_index("x")
        rows.append({"method": opt,
                     "test F1": f"{v.at['test_f1', 'value']:.4f} ± {v.at['test_f1', 'std']:.4f}",
                     "test accuracy": f"{v.at['test_accuracy', 'value']:.4f}",
                     "training CPU s": f"{v.at['seconds', 'value']:.1f}",
                     "evaluations": f"{v.at['evaluations', 'value']:.0f}",
                     "seeds": int(v.at["test_f1", "n"])})  # fmt: skip
    return pd.DataFrame(rows)


def draw_weights(frame: pd.DataFrame, title: str) -> Figure:
    """(a) validation macro-F1 against training CPU seconds; (b) test macro-F1 per method."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    curve = frame[frame["part"] == "curve"]
    for j, (opt, line) in enumerate(curve.groupby("optimizer", sort=False)):
        c = COLORS[j % len(COLORS)]
        x, m, s = line["x"].astype(float), line["value"].astype(float), line["std"].astype(float)
        ax.plot(x, m, color=c, label=str(opt))
        ax.fill_between(x, m - s, m + s, color=c, alpha=0.15, linewidth=0)
    ax.set_xlabel("training CPU seconds")
    ax.set_ylabel("validation macro-F1")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8, loc="lower right")
    s = frame[(frame["part"] == "summary") & (frame["x"] == "test_f1")]
    bx.bar(np.arange(len(s)), s["value"].to_numpy(dtype=float), yerr=s["std"].fillna(0).to_numpy(dtype=float),
           color=[COLORS[i % len(COLORS)] for i in range(len(s))], capsize=3)  # fmt: skip
    bx.set_xticks(np.arange(len(s)), [str(o) for o in s["optimizer"]])
    bx.axhline(0.97, color="grey", ls="--", lw=0.8)
    bx.set_ylabel("test macro-F1")
    bx.set_ylim(0, 1.02)
    bx.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return fig


# --- the abstract's findings, checked -----------------------------------------------------------


def _hpo_means(runs: pd.DataFrame, metric: str) -> pd.Series:
    sub = runs[runs["method"] == "hpo"]
    if sub.empty:
        return pd.Series(dtype=float)
    return sub.assign(v=_num(sub, metric)).groupby(["space", "objective", "sampler"])["v"].mean()


def _cmaes_matches_tpe(runs: pd.DataFrame) -> tuple[str, bool | None]:
    m = _hpo_means(runs, "best_val_f1")
    try:
        c, t = m[("low", "train", "cmaes")], m[("low", "train", "tpe")]
    except KeyError:
        return "needs low-space train-objective studies with cmaes and tpe", None
    return f"best val F1: CMA-ES {c:.4f}, TPE {t:.4f} (gap {t - c:+.4f}; goal within 0.01)", bool(
        abs(t - c) <= 0.01 or c > t
    )


def _cmaes_sampler_cheaper(runs: pd.DataFrame) -> tuple[str, bool | None]:
    m = _hpo_means(runs, "sampler_seconds_per_trial")
    keys = [k for k in m.index if k[0] == "high" and k[2] in ("cmaes", "tpe")]
    objectives = {k[1] for k in keys}
    for obj in ("train", *sorted(objectives)):
        if ("high", obj, "cmaes") in m and ("high", obj, "tpe") in m:
            c, t = m[("high", obj, "cmaes")], m[("high", obj, "tpe")]
            return (
                f"high space ({obj}): TPE {t * 1e3:.2f} ms, CMA-ES {c * 1e3:.2f} ms per trial ({t / c:.0f}x; goal >= 10x)",
                bool(t / c >= 10),
            )
    return "needs high-space studies with cmaes and tpe", None


def _synflow_faster(runs: pd.DataFrame) -> tuple[str, bool | None]:
    m = _hpo_means(runs, "objective_seconds_per_trial")
    pairs = [(k[0], k[2]) for k in m.index if k[1] == "synflow" and (k[0], "train", k[2]) in m]
    if not pairs:
        return "needs synflow and train studies with the same space and sampler", None
    ratios = {f"{s}/{p}": m[(s, "train", p)] / m[(s, "synflow", p)] for s, p in pairs}
    low = min(ratios.values())
    return ", ".join(f"{k} {v:.0f}x" for k, v in ratios.items()) + " (goal > 250x)", bool(low > 250)


def _synflow_less_accurate(runs: pd.DataFrame) -> tuple[str, bool | None]:
    m = _hpo_means(runs, "test_f1")
    pairs = [(k[0], k[2]) for k in m.index if k[1] == "synflow" and (k[0], "train", k[2]) in m]
    if not pairs:
        return "needs synflow and train studies with the same space and sampler", None
    text = ", ".join(
        f"{s}/{p}: train {m[(s, 'train', p)]:.4f} vs synflow {m[(s, 'synflow', p)]:.4f}"
        for s, p in pairs
    )
    return text, bool(all(m[(s, "synflow", p)] < m[(s, "train", p)] for s, p in pairs))


def _minimize_rates(runs: pd.DataFrame) -> pd.Series:
    sub = runs[(runs["method"] == "minimize")]
    if sub.empty:
        return pd.Series(dtype=float)
    return (
        sub.assign(ok=_num(sub, "best_value") < SUCCESS)
        .groupby(["function", "dim", "optimizer"])["ok"]
        .mean()
    )


def _gradient_trapped(runs: pd.DataFrame) -> tuple[str, bool | None]:
    r = _minimize_rates(runs)
    keys = [
        k
        for k in r.index
        if k[0] in ("rastrigin", "ackley", "griewank", "schwefel") and k[2] in ("adam", "sgd")
    ]
    if not keys:
        return "needs Adam/SGD runs on multimodal functions", None
    text = ", ".join(f"{k[2]} {k[0]}-{k[1]} {r[k]:.2f}" for k in keys)
    return f"success rates: {text}", bool(all(r[k] <= 0.1 for k in keys))


def _cmaes_solves(runs: pd.DataFrame) -> tuple[str, bool | None]:
    r = _minimize_rates(runs)
    keys = [
        k
        for k in r.index
        if k[2] == "cmaes" and k[0] in ("sphere", "rosenbrock", "rastrigin", "ackley")
    ]
    if not keys:
        return "needs CMA-ES runs on sphere, rosenbrock, rastrigin, ackley", None
    text = ", ".join(f"{k[0]}-{k[1]} {r[k]:.2f}" for k in keys)
    return f"CMA-ES success: {text} (goal >= 0.9)", bool(all(r[k] >= 0.9 for k in keys))


def _adam_prevails(runs: pd.DataFrame) -> tuple[str, bool | None]:
    sub = runs[runs["method"] == "train-weights"]
    if sub.empty or "adam" not in set(sub["optimizer"]):
        return "needs Adam weight-training runs", None
    m = sub.assign(v=_num(sub, "test_f1")).groupby("optimizer")["v"].mean()
    text = ", ".join(f"{k} {v:.4f}" for k, v in m.items())
    return f"test macro-F1: {text} (goal: Adam >= 0.97 and best)", bool(
        m["adam"] >= 0.97 and m["adam"] == m.max()
    )


# (figure, the abstract's finding, check) rows for `evoprune.experiments.paper.CLAIMS`
STUDY_CLAIMS = (
    ("hpo", "CMA-ES matches TPE in solution quality (low space; Hirianskyi & Bulakh, SUNZ 2026, abstract)", _cmaes_matches_tpe),
    ("hpo", "In high-dimensional spaces CMA-ES needs orders of magnitude less sampler time than TPE (Hirianskyi & Bulakh, SUNZ 2026, abstract)", _cmaes_sampler_cheaper),
    ("hpo", "SynFlow as the HPO objective makes the search more than 250x faster (Hirianskyi & Bulakh, SUNZ 2026, abstract)", _synflow_faster),
    ("hpo", "... but the configurations it chooses are less accurate than with full training (Hirianskyi & Bulakh, SUNZ 2026, abstract)", _synflow_less_accurate),
    ("minimize", "Gradient methods get trapped in local minima on multimodal functions (Hirianskyi & Bulakh, SUNZ 2026, abstract)", _gradient_trapped),
    ("minimize", "Evolutionary methods do not: CMA-ES (IPOP) solves them (Hirianskyi & Bulakh, SUNZ 2026, abstract)", _cmaes_solves),
    ("weights", "For differentiable training Adam prevails, macro-F1 about 0.97 on digits (Hirianskyi & Bulakh, SUNZ 2026, abstract)", _adam_prevails),
)  # fmt: skip
