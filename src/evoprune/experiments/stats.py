"""The paper's linear mixed model (Schönberger et al., arXiv 2508.08877, Fig. 6c).

Per dataset: standardised test accuracy ~ algorithm (fixed effect), with architecture and
initialisation as crossed random effects (variance components), fitted by REML with Powell's
method (statsmodels `MixedLM`). Crossed effects in statsmodels: one group holding every run and a
variance component per factor. A factor with a single level carries no variance and is left out.

The table compares every pair of algorithms (reference, target): the coefficient is
E[target] - E[reference] on the standardised scale, with its standard error from the fixed-effect
covariance, the Wald z, the two-sided p and the 95% interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from evoprune.errors import EvopruneError
from evoprune.experiments.tables import grid_columns, point_text, varying_axes

RANDOM_EFFECTS = ("arch_name", "init")
# why `mixed_model_tables` found nothing to fit (the `stats` command's error, the report's note)
NO_FIT = (
    "no dataset has runs of two or more algorithms with more than one run between them at a "
    "grid point (a test needs the seeds' noise: sweep with more seeds)"
)
TABLE_COLUMNS = ["dataset", "reference", "target", "coef", "std_err", "stat", "p", "p_holm",
                 "ci_low", "ci_high"]  # fmt: skip


@dataclass(frozen=True)
class MixedModelFit:
    dataset: str
    table: pd.DataFrame  # TABLE_COLUMNS, one row per pair of algorithms
    random_effects: tuple[str, ...]  # factors fitted as variance components
    variances: dict[str, float]  # their estimated variances, plus "residual"
    n: int
    converged: bool
    note: str = ""
    # the test of each pair: "z" (the mixed model's Wald z, large-sample) or "t" (least squares,
    # `df` residual degrees of freedom); `p_holm` adjusts p for the pairs' number (Holm)
    test: str = "z"
    df: float | None = None


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar test of two classifiers on the same samples: `a_only` samples
    only the first gets right, `b_only` only the second; the p-value of "equally accurate"
    (a binomial test of the discordant pairs at 1/2; 1.0 when there are none).

    >>> round(mcnemar_exact(30, 56), 4), mcnemar_exact(1, 0)
    (0.0067, 1.0)
    """
    n = a_only + b_only
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * sps.binom.cdf(min(a_only, b_only), n, 0.5)))


def standardise(values: pd.Series) -> pd.Series:
    """z-scores (population std); a constant column becomes zeros."""
    std = float(values.std(ddof=0))
    return (values - values.mean()) / (std if std > 0 else 1.0)


def fit_mixed_model(
    df: pd.DataFrame,
    dataset: str = "",
    value: str = "test_accuracy",
    algorithm: str = "label",
    random: Sequence[str] = RANDOM_EFFECTS,
    order: Sequence[str] | None = None,
    standardised: bool = True,
) -> MixedModelFit:
    """Fit ``value ~ algorithm`` with `random` factors as variance components on the rows of `df`.

    `order` fixes which algorithm is the reference of which (earlier ones are references).

    >>> # fit_mixed_model(load_results("runs/fig6").query("dataset == 'moons'"), "moons").table
    """
    import statsmodels.formula.api as smf

    random = [r for r in random if r in df]  # a frame without one has nothing to pool
    data = df[[value, algorithm, *random]].dropna(subset=[value, algorithm]).copy()
    levels = [a for a in (order or []) if a in set(data[algorithm])]
    levels += [a for a in dict.fromkeys(data[algorithm]) if a not in levels]
    if len(levels) < 2:
        raise EvopruneError(
            f"stats: {dataset or 'data'}: need at least two algorithms, got {levels}"
        )
    codes = {name: f"a{i}" for i, name in enumerate(levels)}
    data["algo"] = pd.Categorical(data[algorithm].map(codes), categories=list(codes.values()))
    data["y"] = (
        standardise(data[value].astype(float)) if standardised else data[value].astype(float)
    )
    for r in random:
        if r in data:
            data[r] = data[r].fillna("none").astype(str)  # backprop has no init of ours
    # a factor is a random effect only where it varies within an algorithm; otherwise it is
    # confounded with the algorithm (backprop's "none" init) and carries no variance of its own
    effects = tuple(
        r
        for r in random
        if r in data and data.groupby("algo", observed=True)[r].nunique().max() > 1
    )
    note = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; `converged` reports the outcome
        if effects:
            data["all"] = 1
            vc = {r: f"0 + C({r})" for r in effects}
            model = smf.mixedlm("y ~ C(algo)", data, groups="all", re_formula="0", vc_formula=vc)
            fit = model.fit(reml=True, method="powell")
            fe = fit.fe_params
            cov = fit.cov_params().loc[fe.index, fe.index]
            variances = {r: float(v) for r, v in zip(model.exog_vc.names, fit.vcomp, strict=True)}
            variances["residual"] = float(fit.scale)
            converged = bool(fit.converged)
        else:
            note = "no random effect varies here: ordinary least squares"
            fit = smf.ols("y ~ C(algo)", data).fit()
            fe, cov = fit.params, fit.cov_params()
            variances, converged = {"residual": float(fit.scale)}, True
    # least squares has exact t tests on its residual degrees of freedom; the mixed model's
    # Wald z is large-sample (with few runs per algorithm it is optimistic)
    df = float(fit.df_resid) if not effects else None
    dist = sps.t(df) if df is not None and df > 0 else sps.norm
    crit = float(dist.ppf(0.975))
    names = {code: f"C(algo)[T.{code}]" for code in codes.values()}
    rows = []
    for i, ref in enumerate(levels):
        for tgt in levels[i + 1 :]:
            c = pd.Series(0.0, index=fe.index)
            if names[codes[tgt]] in c.index:
                c[names[codes[tgt]]] += 1.0
            if names[codes[ref]] in c.index:
                c[names[codes[ref]]] -= 1.0
            coef = float(c @ fe)
            se = float(np.sqrt(max(c @ cov.to_numpy() @ c, 0.0)))
            stat = coef / se if se > 0 else np.nan
            p = float(2 * dist.sf(abs(stat))) if se > 0 else np.nan
            rows.append([dataset, ref, tgt, coef, se, stat, p, np.nan, coef - crit * se,
                         coef + crit * se])  # fmt: skip
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["p_holm"] = holm(table["p"].to_numpy())
    return MixedModelFit(
        dataset=dataset,
        table=table,
        random_effects=effects,
        variances=variances,
        n=len(data),
        converged=converged,
        note=note,
        test="t" if df is not None else "z",
        df=df,
    )


def describe_fit(fit: MixedModelFit, value: str = "test accuracy") -> str:
    """One sentence on a fit: the model, its random effects and the test of each pair."""
    names = {"arch_name": "architecture"}
    effects = ", ".join(names.get(r, r) for r in fit.random_effects)
    model = (
        f"a mixed model (REML) with random effects {effects}; Wald z tests (large-sample: with "
        "few runs per algorithm they are optimistic)"
        if fit.random_effects
        else f"ordinary least squares (no random effect varies here); t tests on "
        f"{fit.df:.0f} degrees of freedom"
    )
    converged = "" if fit.converged else " The fit did not converge."
    return (
        f"{fit.dataset}: standardised {value} ~ algorithm, n = {fit.n}: {model}. p (Holm) "
        f"adjusts each p for the {len(fit.table)} pair{'s' * (len(fit.table) != 1)} tested "
        f"together.{converged}"
    )


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of `p` for testing them all at once (NaN stays NaN).

    >>> holm(np.array([0.01, 0.04, 0.03])).round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def mixed_model_tables(
    df: pd.DataFrame, value: str = "test_accuracy", order: Sequence[str] | None = None
) -> list[MixedModelFit]:
    """One fit per dataset of `df`, and within a dataset per point of the spec's other grid
    axes (its ``axes`` column): a 2-class digits run is not pooled with a 10-class one, nor a
    90% pruning target with a 98% one. The architecture and the initialisation stay pooled:
    they are the model's random effects (Fig. 6c). A fit's name gives the axes that vary, e.g.
    ``digits (classes=10)``; points with fewer than two algorithms, or with one run of each
    (no noise to test against), are skipped, as are runs without `value`. Each spec is fitted
    apart (two specs' arms may share a label and differ in all else; a fit's name then starts
    with its spec's, ``fig10: digits``); runs without a dataset (``minimize``) are fitted by
    their spec's name. `order`: the labels' order, the first the reference; by default each
    spec's own arm order (``label_rank``), else the order of appearance.

    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"dataset": "digits", "label": ["GA", "memetic"] * 8,
    ...                   "axes": ['{"classes": 2}'] * 8 + ['{"classes": 10}'] * 8,
    ...                   "test_accuracy": rng.normal(0.9, 0.01, 16)})
    >>> [fit.dataset for fit in mixed_model_tables(d)]
    ['digits (classes=2)', 'digits (classes=10)']
    """
    pooled = {"dataset", "arch", *RANDOM_EFFECTS}
    if value not in df:
        return []
    df = df.dropna(subset=[value])
    if "spec" not in df:
        df = df.assign(spec="")
    df = df.assign(dataset=df["dataset"].fillna(df["spec"]))
    if "key" in df:
        df = df.drop_duplicates(subset=["spec", "key", "label"])
    several = df["spec"].nunique() > 1
    grid = grid_columns(df)
    axes = [a for a in grid if a not in pooled]
    df = df.assign(**{f"axis:{a}": grid[a] for a in axes})  # beside same-named result columns
    # the axes a fit's name gives: those with more than one value in its spec and dataset
    varying = varying_axes(grid[axes], list(zip(df["spec"], df["dataset"], strict=True)))
    fits = []
    by = ["spec", "dataset", *(f"axis:{a}" for a in axes)]
    for keys, group in df.groupby(by, sort=False, dropna=False):
        if group["label"].nunique() < 2 or len(group) <= group["label"].nunique():
            continue  # one algorithm, or one run each: nothing to test, no noise to measure
        spec, dataset, *point = keys
        values = dict(zip(axes, point, strict=True))
        shown = point_text({a: values[a] for a in varying[spec, dataset]})
        name = f"{dataset} ({shown})" if shown else str(dataset)
        if several and dataset != spec:
            name = f"{spec}: {name}"
        group_order = order
        if group_order is None and "label_rank" in group:  # the spec's own arm order
            ranked = group.sort_values("label_rank", kind="stable")["label"]
            group_order = list(dict.fromkeys(ranked))
        fits.append(fit_mixed_model(group, name, value=value, order=group_order))
    return fits
