"""What the paper states, to print beside our numbers in the report.

Schönberger et al., "Towards Scalable Lottery Ticket Networks using Genetic Algorithms",
arXiv 2508.08877 (conference version: Altmann et al., arXiv 2411.04658). Each value and claim
names the figure (or section) of arXiv 2508.08877 it is read from; add a row only with its
figure, table or section.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from evoprune.experiments.sections.analyses import CLAIM_ROWS
from evoprune.experiments.sections.pruning import CLAIM_ROWS as PRUNING_CLAIMS
from evoprune.experiments.sections.selection import SELECTION_CLAIMS
from evoprune.experiments.sections.studies import STUDY_CLAIMS

GA_METHODS = ("ga", "ga-adaptive")


@dataclass(frozen=True)
class PaperValue:
    """A number the paper gives: `relation` is "=" (a reported mean) or ">" (a lower bound)."""

    figure: str
    dataset: str
    arch: str
    methods: tuple[str, ...]  # which of our methods it describes
    metric: str
    value: float
    relation: str
    source: str


PAPER_VALUES: tuple[PaperValue, ...] = (
    PaperValue(
        "fig3",
        "circles",
        "D",
        GA_METHODS,
        "test_accuracy",
        0.916,
        "=",
        "arXiv 2508.08877, Fig. 3: GA on circles, architecture D, 91.6% test accuracy",
    ),
    PaperValue(
        "fig6",
        "circles",
        "D",
        GA_METHODS,
        "test_accuracy",
        0.916,
        "=",
        "arXiv 2508.08877, Fig. 6: GA on circles, architecture D, 91.6% test accuracy",
    ),
    PaperValue(
        "fig3",
        "moons",
        "B",
        GA_METHODS,
        "test_accuracy",
        0.97,
        ">",
        "arXiv 2508.08877, Fig. 3: GA on moons, architecture B, mean test accuracy above 97%",
    ),
    PaperValue(
        "fig3",
        "moons",
        "B",
        GA_METHODS,
        "sparsity",
        0.50,
        ">",
        "arXiv 2508.08877, Fig. 3: GA on moons, architecture B, sparsity above 50%",
    ),
)


@dataclass(frozen=True)
class Claim:
    """A qualitative finding of the paper and how to check it on our runs."""

    figure: str
    text: str
    check: Callable[[pd.DataFrame], tuple[str, bool | None]]  # runs of the figure -> (ours, holds)


def _ep_uniform_best(runs: pd.DataFrame) -> tuple[str, bool | None]:
    ep = runs[runs["method"] == "edge-popup"]
    if ep.empty or ep["init"].nunique() < 2:
        return "no edge-popup runs with several inits", None
    means = ep.groupby("init")["test_accuracy"].mean().sort_values(ascending=False)
    text = ", ".join(f"{k} {v:.1%}" for k, v in means.items())
    return text, bool(means.index[0] == "uniform")


def _kaiming_chance_on_circles(runs: pd.DataFrame) -> tuple[str, bool | None]:
    ep = runs[(runs["method"] == "edge-popup") & (runs["dataset"] == "circles")]
    kaiming = ep[ep["init"].isin(["kaiming-normal", "signed-constant"])]
    if kaiming.empty:
        return "no Kaiming-initialised edge-popup runs on circles", None
    means = kaiming.groupby("init")["test_accuracy"].mean()
    text = ", ".join(f"{k} {v:.1%}" for k, v in means.items())
    return text, bool((means < 0.6).all())


def _ga_above_ep(runs: pd.DataFrame) -> tuple[str, bool | None]:
    ga = runs[runs["method"].isin(GA_METHODS)]
    ep = runs[(runs["method"] == "edge-popup") & (runs["init"] == "uniform")]
    if ga.empty or ep.empty:
        return "needs GA and edge-popup runs", None
    a, b = ga["test_accuracy"].mean(), ep["test_accuracy"].mean()
    return f"GA {a:.1%} vs EP {b:.1%}", bool(a > b)


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "fig5",
        "EP (50%) with uniform init is the best of the three inits (arXiv 2508.08877, Fig. 5)",
        _ep_uniform_best,
    ),
    Claim(
        "fig5",
        "Kaiming-normal and signed-constant inits are at chance level on circles "
        "(arXiv 2508.08877, Fig. 5)",
        _kaiming_chance_on_circles,
    ),
    Claim(
        "fig6",
        "The GA is more accurate than EP (50%) on moons and circles (arXiv 2508.08877, Fig. 6)",
        _ga_above_ep,
    ),
    *(Claim(figure, text, check) for figure, text, check in CLAIM_ROWS),
    *(Claim(figure, text, check) for figure, text, check in PRUNING_CLAIMS),
    *(Claim(figure, text, check) for figure, text, check in SELECTION_CLAIMS),
    *(Claim(figure, text, check) for figure, text, check in STUDY_CLAIMS),
)


def paper_vs_ours(runs: pd.DataFrame, figure: str) -> pd.DataFrame:
    """Rows: every paper value of `figure` with our mean per matching arm (NaN when not run)."""
    rows = []
    for pv in (p for p in PAPER_VALUES if p.figure == figure):
        match = runs[
            (runs["dataset"] == pv.dataset)
            & (runs["arch_name"] == pv.arch)
            & (runs["method"].isin(pv.methods))
        ]
        if match.empty or pv.metric not in match:
            rows.append(
                {
                    "dataset": pv.dataset,
                    "arch": pv.arch,
                    "label": "-",
                    "metric": pv.metric,
                    "paper": _fmt(pv),
                    "ours": float("nan"),
                    "n": 0,
                    "holds": None,
                    "source": pv.source,
                }
            )
            continue
        for label, group in match.groupby("label", sort=False):
            ours = float(group[pv.metric].mean())
            holds = ours > pv.value if pv.relation == ">" else None
            note = ""
            configs = group.get("config", [None])
            if pv.metric.startswith("sparsity") and not any(map(_post_pruned, configs)):
                holds, note = None, "no post-pruning in these runs: the sparsity is the GA's"
            rows.append(
                {
                    "dataset": pv.dataset,
                    "arch": pv.arch,
                    "label": label,
                    "metric": pv.metric,
                    "paper": _fmt(pv),
                    "ours": ours,
                    "n": len(group),
                    "holds": holds,
                    "source": pv.source,
                    "note": note,
                }
            )
    columns = ["dataset", "arch", "label", "metric", "paper", "ours", "n", "holds", "source"]
    return pd.DataFrame(rows, columns=[*columns, "note"]).fillna({"note": ""})


def _post_pruned(config: Any) -> bool:
    """Whether a run's job (its config JSON) ran post-pruning (the GA's default: yes)."""
    job = json.loads(config) if isinstance(config, str) else dict(config or {})
    return bool(job.get("post_prune", True))


def _fmt(pv: PaperValue) -> str:
    return f"{'> ' if pv.relation == '>' else ''}{pv.value:.1%}"
