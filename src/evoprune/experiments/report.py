"""`evoprune report`: one self-contained HTML page from one or more sweeps.

Figures are embedded as base64 PNG (and also written as PNG and SVG beside the page), tables are
plain HTML tables, the paper's stated values sit beside ours, and every run's provenance (seed,
config, versions, git revision) is listed at the end. No script, no external resource.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evoprune.errors import EvopruneError
from evoprune.experiments.catalogue import FIGURES, GENERIC, RENDERERS
from evoprune.experiments.draw import save
from evoprune.experiments.paper import CLAIMS, paper_vs_ours
from evoprune.experiments.stats import NO_FIT, MixedModelFit, describe_fit, mixed_model_tables
from evoprune.experiments.tables import check_specs_apart, load_history, load_meta, load_results
from evoprune.io import write_atomic

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1150px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:.9em}.ok{color:#17803d}.bad{color:#b42318}
.scroll{overflow-x:auto;max-width:100%;margin:.6em 0 1.2em}.scroll table{margin:0}
details{margin:.2em 0}code,pre{font-size:.8em}pre{white-space:pre-wrap;margin:.2em 0}
"""


# the figures of Schönberger et al. (arXiv 2508.08877) and its digits Hessian analysis
PAPER_FIGURES = {f"fig{i}" for i in range(1, 12)} | {"hessian"}
# beside the paper's values and findings, for a spec swept with the quick profile
QUICK_NOTE = (
    "Quick profile: fewer seeds and generations than the paper's (and, where the spec says so, "
    "no post-pruning), so the numbers and comparisons in this section are indicative only "
    "(verdicts marked \u201cquick\u201d); the paper profile runs the paper's budgets."
)
VS_NOTE = (
    "holds: yes or no where the paper states a bound (\u201c> 97%\u201d); \u201c-\u201d where "
    "it reports a value to compare by eye, or where our runs cannot test it (note)."
)
# what the report calls the columns of a fit's table
STATS_HEADERS = {"std_err": "std. error", "p_holm": "p (Holm)", "ci_low": "95% CI low",
                 "ci_high": "95% CI high"}  # fmt: skip
# a text cell that reads as a number ("0.952 ± 0.010", "97.0%"): its column is right-aligned
_NUMBER = re.compile(r"^[\s\d.,%±+\-−\[\]e<>]*$")


@dataclass(frozen=True)
class ReportSummary:
    path: Path
    figures: tuple[str, ...]
    tables: int
    runs: int


def build_report(folders: str | Path | Sequence[str | Path], out: str | Path) -> ReportSummary:
    """Write the report of the sweeps in `folders` to `out` (HTML); figures go to ``<out stem>_figures/``."""
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    if not folders:
        raise EvopruneError("report: give at least one sweep folder")
    out = Path(out)
    check_specs_apart(folders, "report")
    runs = load_results(folders)
    everything = load_results(folders, finished_only=False)
    if everything.empty:
        raise EvopruneError(f"report: no runs in {', '.join(map(str, folders))}")
    history = load_history(folders)
    meta = load_meta(folders)
    fig_dir = out.with_name(out.stem + "_figures")
    parts = [_header(folders, everything, meta)]
    titles = dict(zip(meta["spec"], meta["title"], strict=True))
    profiles = dict(zip(meta["spec"], meta["profile"], strict=True))
    figures: list[str] = []
    n_tables = 0
    for spec, figure_name in _figures_to_draw(meta, runs):
        fig = FIGURES[figure_name]
        try:
            frame = (
                fig.prepare(runs, history, spec) if fig.needs_history else fig.prepare(runs, spec)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _unfit(spec, figure_name, exc) from None
        sub = runs[runs["spec"] == spec]
        if figure_name == GENERIC:  # the spec's own title
            title = titles.get(spec) or spec
        else:
            title = f"{fig.title}" + (f" ({spec})" if spec != figure_name else "")
        parts.append(f"<h2 id='{html.escape(spec)}'>{html.escape(title)}</h2>")
        quick = profiles.get(spec) == "quick"
        if quick:
            parts.append(f"<p class='note'>{QUICK_NOTE}</p>")
        if frame.empty:
            parts.append("<p class='note'>No finished runs to draw.</p>")
            continue
        fits: list[MixedModelFit] = []
        if fig.mixed_model:
            order = list(dict.fromkeys(sub.sort_values("label_rank", kind="stable")["label"]))
            fits = mixed_model_tables(sub, order=order)
        try:
            drawn = RENDERERS[fig.kind](frame, title)
        except (KeyError, TypeError, ValueError) as exc:
            raise _unfit(spec, figure_name, exc) from None
        png, _ = save(drawn, fig_dir / _slug(spec))  # one file per spec, whatever its name
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
        caption = fig.caption + (" The mixed-model comparison is below." if fits else "")
        parts.append(
            f"<p class='note'>{html.escape(caption)} Runs: {len(sub)}"
            f"{html.escape(_coverage(sub))}, seeds per cell: {_seeds_per_cell(frame)}.</p>"
        )
        if figure_name == GENERIC and (left_out := _without_dataset(sub)):
            parts.append(f"<p class='note'>{html.escape(left_out)}</p>")
        if fig.kind != "history" and (ceiling := _bayes_note(sub)):
            parts.append(f"<p class='note'>{html.escape(ceiling)}</p>")
        figures.append(spec)
        if fig.table is not None or fig.kind != "history":
            table = fig.table(frame) if fig.table is not None else _summary_table(frame)
            parts.append(_table(table, f"summary-{spec}"))
            n_tables += 1
        vs = paper_vs_ours(sub, figure_name)
        claims = [c for c in CLAIMS if c.figure == figure_name]
        if not vs.empty:
            parts.append("<h3>The paper's values beside ours</h3>")
            parts.append(f"<p class='note'>{VS_NOTE}</p>")
            parts.append(_table(_format_vs(vs, quick), f"paper-{spec}"))
            n_tables += 1
        if claims:
            rows = []
            for claim in claims:
                ours, holds = claim.check(sub)
                rows.append({"the paper": claim.text, "ours": ours, "holds": _holds(holds, quick)})
            parts.append("<h3>The paper's findings, checked</h3>")
            parts.append(_table(pd.DataFrame(rows), f"claims-{spec}"))
            n_tables += 1
        if fig.mixed_model and not fits:
            parts.append(f"<p class='note'>No mixed-model comparison: {html.escape(NO_FIT)}.</p>")
        for mm in fits:
            parts.append(f"<h3>Mixed model (Fig. 6c): {html.escape(mm.dataset)}</h3>")
            parts.append(f"<p class='note'>{html.escape(describe_fit(mm))}</p>")
            parts.append(_table(_format_stats(mm), _slug(f"stats-{spec}-{mm.dataset}")))
            n_tables += 1
    failed = everything[everything["status"] != "finished"]
    if not failed.empty:
        parts.append("<h2 id='failures'>Failed runs</h2>")
        parts.append(_table(failed[["spec", "label", "key", "seed", "error"]], "failures"))
        n_tables += 1
    parts.append("<h2 id='provenance'>Provenance of every run</h2>")
    parts.append(_provenance(everything))
    n_tables += 1
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>evoprune report</title><style>"
        + CSS
        + "</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    write_atomic(out, page)
    return ReportSummary(out, tuple(figures), n_tables, len(everything))


def _unfit(spec: str, figure: str, exc: Exception) -> EvopruneError:
    """The error of a figure that cannot draw a spec's runs (a spec of GA runs that names
    ``figure: pruning``), in one line instead of a traceback."""
    why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return EvopruneError(
        f"report: {spec}: figure {figure} cannot draw these runs ({type(exc).__name__}: {why}); "
        "leave `figure:` out of the spec for its arms side by side"
    )


def _figures_to_draw(meta: pd.DataFrame, runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(spec, figure) pairs in the catalogue's order; a spec without a known figure gets the
    generic one (its arms side by side)."""
    pairs = {}
    for row in meta.itertuples():
        figure = row.figure if row.figure in FIGURES else row.spec
        pairs[row.spec] = figure if figure in FIGURES else GENERIC
    for spec in dict.fromkeys(runs["spec"]):  # stores without meta rows
        if spec not in pairs:
            pairs[spec] = spec if spec in FIGURES else GENERIC
    order = list(FIGURES)
    return sorted(pairs.items(), key=lambda kv: (order.index(kv[1]), kv[0]))


def _header(folders: Sequence[str | Path], runs: pd.DataFrame, meta: pd.DataFrame) -> str:
    n_ok = int((runs["status"] == "finished").sum())
    compute = (
        pd.to_numeric(runs.get("wall_seconds"), errors="coerce").sum()
        if "wall_seconds" in runs
        else 0.0
    )
    revisions = sorted(set(runs["git_revision"].dropna()))
    versions = sorted(set(runs["versions"].dropna()))
    machines = sorted({_machine(r) for r in runs.get("result", pd.Series(dtype=object)).dropna()})
    profiles = ", ".join(f"{r.spec} [{r.profile}]" for r in meta.itertuples())
    items = [
        f"<li>sweeps: {html.escape(', '.join(map(str, folders)))}</li>",
        f"<li>specs: {html.escape(profiles)}</li>",
        f"<li>runs: {len(runs.drop_duplicates('key'))} distinct, {n_ok} finished rows, "
        f"{len(runs) - n_ok} failed; compute: {compute / 60:.1f} min</li>",
        f"<li>git revisions: {html.escape(', '.join(revisions) or 'unknown')}</li>",
        f"<li>versions: {html.escape('; '.join(versions) or 'unknown')}</li>",
        f"<li>machines: {html.escape('; '.join(m for m in machines if m) or 'unknown')}</li>",
        f"<li>generated: {dt.datetime.now().isoformat(timespec='seconds')}</li>",
    ]
    titles = list(dict.fromkeys(t for t in meta["title"] if t))
    heading = "; ".join(titles) if len(titles) <= 2 else f"evoprune: {len(titles)} experiments"
    paper = any(f in PAPER_FIGURES for f in meta["figure"])
    return (
        f"<h1>{html.escape(heading)}</h1>"
        + (
            "<p>Reproducing Schönberger et al. (arXiv 2508.08877); figure numbers are the "
            "paper's.</p>"
            if paper
            else ""
        )  # fmt: skip
        + "<ul>"
        + "".join(items)
        + "</ul>"
    )


def _bayes_note(runs: pd.DataFrame) -> str:
    """The test-accuracy ceiling of the generated datasets among `runs`: the Bayes rule's."""
    from evoprune.data.bayes import bayes_test_accuracy
    from evoprune.data.registry import GENERATORS

    names = [n for n in GENERATORS if n in set(runs.get("dataset", []))]
    if not names:
        return ""
    scores = " and ".join(f"{bayes_test_accuracy(n):.2%} on {n}" for n in names)
    return (
        f"The ceiling: the Bayes rule, the most accurate classifier there is, scores {scores}, "
        "on the test sets of these runs (evoprune.data.bayes_predict)."
    )


def _without_dataset(runs: pd.DataFrame) -> str:
    """What the generic figure leaves out: the runs without a dataset (a test function's)."""
    missing = runs[runs["dataset"].isna()] if "dataset" in runs else runs
    if missing.empty:
        return ""
    labels = ", ".join(map(str, dict.fromkeys(missing["label"])))
    return (
        f"Not in the figure: {len(missing)} runs without a dataset ({labels}); "
        "`evoprune results` lists them."
    )


def _seeds_per_cell(frame: pd.DataFrame) -> str:
    """The runs per cell that have a value, as "3" or "2-3" (cells without one are left out)."""
    if "n" not in frame:
        return "1 run"
    n = frame["n"].astype(int)
    n = n[n > 0]
    if n.empty:
        return "none with a value"
    return str(n.min()) if n.min() == n.max() else f"{n.min()}-{n.max()}"


def _summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell, three columns per metric: mean ± std, the 95% CI of the mean and n
    (the runs with a value); one n column where it is the same for every metric."""
    group = [
        c for c in frame.columns if c not in ("metric", "mean", "std", "n", "ci_low", "ci_high")
    ]
    pieces = frame.assign(**{c: frame[c].astype(str) for c in group})
    out = None
    for metric, part in (
        pieces.groupby("metric", sort=False) if "metric" in frame else [("value", pieces)]
    ):
        name = str(metric).replace("_", " ")
        cols = part[group].copy()
        cols[f"{name}: mean ± std"] = [
            "-" if pd.isna(m) else f"{m:.3f} ± {s:.3f}" if pd.notna(s) else f"{m:.3f}"
            for m, s in zip(part["mean"], part["std"], strict=True)
        ]
        cols[f"{name}: 95% CI"] = [
            f"[{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else "-"
            for lo, hi in zip(part["ci_low"], part["ci_high"], strict=True)
        ]
        cols[f"{name}: n"] = part["n"].astype(int).astype(str).to_numpy()
        out = cols if out is None else out.merge(cols, on=group, how="left", sort=False)
    assert out is not None
    counts = [c for c in out.columns if c.endswith(": n")]
    if all(out[c].equals(out[counts[0]]) for c in counts):
        out = out.drop(columns=counts[1:]).rename(columns={counts[0]: "n"})
    return out.rename(columns={"arch_name": "arch"})


def _format_vs(vs: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    out = vs.copy()
    out["ours"] = [f"{v:.1%}" if pd.notna(v) else "not run" for v in vs["ours"]]
    out["holds"] = [_holds(h, quick) for h in vs["holds"]]
    return out


def _format_stats(fit: MixedModelFit) -> pd.DataFrame:
    out = fit.table.drop(columns=["dataset"]).copy()
    for col in ("coef", "std_err", "stat", "ci_low", "ci_high"):
        out[col] = out[col].map(lambda v: f"{v:.3f}")
    for col in ("p", "p_holm"):
        out[col] = out[col].map(lambda v: f"{v:.3g}")
    return out.rename(columns={**STATS_HEADERS, "stat": fit.test})


def _holds(value: object, quick: bool = False) -> str:
    """yes / no / - ; under the quick profile "yes (quick)": a hint, not a verdict."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return ("yes" if value else "no") + (" (quick)" if quick else "")


def _coverage(runs: pd.DataFrame) -> str:
    """The datasets and architectures the runs cover (a sweep narrowed by --only covers fewer
    than the figure's caption names): " (moons; A, B)"."""
    parts = [
        ", ".join(map(str, dict.fromkeys(runs[c].dropna())))
        for c in ("dataset", "arch_name")
        if c in runs and runs[c].notna().any()
    ]
    return f" ({'; '.join(parts)})" if parts else ""


def _machine(result: str) -> str:
    """A run's machine as text (its result's ``machine``), "" for runs that record none."""
    m = json.loads(result).get("machine") or {}
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores" if m else ""


def _slug(text: str) -> str:
    """`text` as an HTML id: runs of anything but letters, digits, - and _ become one -."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _table(frame: pd.DataFrame, table_id: str) -> str:
    """A table in its own box: a table wider than the page scrolls inside it, not the page.
    Numbers are right-aligned (the page's default), columns of text left-aligned."""
    table_id = _slug(table_id)  # a spec's name may hold quotes, & or / (pandas writes it raw)
    inner = frame.to_html(index=False, border=0, table_id=table_id, na_rep="-", escape=True)
    where = f"table[id='{table_id}']"
    left = [i + 1 for i, c in enumerate(frame.columns) if not _numbers(frame[c])]
    css = "".join(
        f"{where} td:nth-child({k}),{where} th:nth-child({k}){{text-align:left}}" for k in left
    )
    return (f"<style>{css}</style>" if css else "") + f"<div class='scroll'>{inner}</div>"


def _numbers(column: pd.Series) -> bool:
    """Whether a column holds numbers: numeric, or text such as "0.952 ± 0.010", "[0.9, 1.0]",
    "97.0%" or "-"."""
    if pd.api.types.is_numeric_dtype(column):
        return True
    return all(_NUMBER.match(str(v)) for v in column if pd.notna(v))


def _text(value: object) -> str:
    """A text cell as text; "" where it is missing (None, or NaN: what pandas puts in a text
    column for a run that records none, such as a failed one)."""
    return value if isinstance(value, str) else ""


def _short_revision(revision: object) -> str:
    """A git revision as 12 hex digits, keeping ``-dirty`` (the full one is in result.json)."""
    revision = _text(revision)
    if not revision:
        return "unknown"
    commit, dirty, _ = revision.partition("-dirty")
    return commit[:12] + ("-dirty" if dirty else "")


def _provenance(runs: pd.DataFrame) -> str:
    rows = []
    for r in runs.sort_values(["spec", "label", "dataset", "seed"]).itertuples():
        config = html.escape(json.dumps(json.loads(r.config), sort_keys=True))
        acc = getattr(r, "test_accuracy", None)
        sparsity = getattr(r, "sparsity", None)
        wall = getattr(r, "wall_seconds", None)
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape('-' if v is None or pd.isna(v) else str(v))}</td>"
                for v in (
                    r.spec,
                    r.label,
                    r.key,
                    r.seed,
                    r.dataset,
                    r.classes,
                    r.arch_name,
                    r.status,
                    _num(acc, "{:.4f}"),
                    _num(sparsity, "{:.4f}"),
                    _num(wall, "{:.1f}"),
                    _short_revision(r.git_revision),
                )
            )
            + f"<td><details><summary>config</summary><pre>{config}</pre>"
            + f"<pre>{html.escape(_text(r.versions))}</pre></details></td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "spec",
            "label",
            "key",
            "seed",
            "dataset",
            "classes",
            "arch",
            "status",
            "test acc.",
            "sparsity",
            "wall s",
            "git revision",
            "config and versions",
        )
    )
    return (
        f"<div class='scroll'><table id='provenance-table'><thead><tr>{head}</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _num(value: Any, fmt: str) -> str:
    try:
        return fmt.format(float(value)) if value is not None and pd.notna(value) else "-"
    except (TypeError, ValueError):
        return "-"
