"""Analyses as part of a job: a GA job with ``analyze: [hessian, landscape]`` analyses its ticket
right after the search, on the job's training data, and writes the outputs into its run folder
(before ``result.json``, so a finished run has them). Specs use this to run the paper's
comparisons in a sweep (``hessian.yaml``, ``fig8.yaml``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evoprune.data.registry import Dataset
from evoprune.errors import EvopruneError
from evoprune.ticket import Ticket

ANALYSES = ("hessian", "landscape")
JOB_TOP = 20  # eigenvalues a job keeps (Lanczos): the report compares the top of the spectrum


def check_analyses(value: Any) -> list[str]:
    """The analysis names of a job's ``analyze`` value (a list of names)."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or any(n not in ANALYSES for n in names):
        raise EvopruneError(f"analyze: expected a list of {', '.join(ANALYSES)}, got {value!r}")
    return list(dict.fromkeys(names))


def analyze_ticket(
    ticket: Ticket, ds: Dataset, names: list[str], out: Path | None, seed: int = 0
) -> dict[str, Any]:
    """Run the named analyses on `ticket`; write their files to `out`; the fields for result.json."""
    fields: dict[str, Any] = {}
    start = time.perf_counter()
    if "hessian" in names:
        from evoprune.analysis.hessian import ticket_hessian, write_hessian

        h = ticket_hessian(ticket, ds, top=JOB_TOP, seed=seed)
        if out is not None:
            write_hessian(h, out)
        fields.update(
            hessian_top_eigenvalue=float(h.eigenvalues[0]),
            hessian_eigenvalues=[float(v) for v in h.eigenvalues],
            hessian_n_params=h.n_params,
            hessian_method=h.method,
        )
    if "landscape" in names:
        from evoprune.analysis.landscape import LandscapeConfig, ticket_landscape, write_landscape

        L = ticket_landscape(ticket, ds, LandscapeConfig(seed=seed))
        if out is not None:
            write_landscape(L, out)
        loss, acc = L.centre
        fields.update(
            landscape_centre_loss=loss,
            landscape_centre_accuracy=acc,
            landscape_n_params=L.n_params,
        )
    fields["analysis_seconds"] = round(time.perf_counter() - start, 4)
    return fields
