"""Run a GA job (see `evoprune.jobkeys`): build data and network, search, write the run folder."""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from evoprune.analysis.jobs import analyze_ticket, check_analyses
from evoprune.ga.api import search
from evoprune.ga.config import GAConfig
from evoprune.jobkeys import check_keys, job_dataset
from evoprune.local.checkpoint import CHECKPOINT_PREFIXES, LOCAL_PREFIX, LOSS_PREFIX
from evoprune.nets import build_network
from evoprune.results import base_result, write_run_dir

# Job keys that map one to one onto GAConfig fields: all but the variant (the job's method)
# and the seed (the job's seed, which also seeds the network)
CONFIG_KEYS = {f.name for f in fields(GAConfig)} - {"variant", "seed"}
CHECKPOINT = "checkpoint.npz"  # the GA's, in the run folder; each local phase adds its prefix


def checkpoint_files(
    out: Path, variant: str | None = None, loss_phase: bool = False
) -> list[Path]:
    """The checkpoints a run of `variant` in folder `out` writes: the GA's (ga, ga-adaptive,
    memetic), the local phase's (memetic, local) and, with `loss_phase` (memetic with
    loss_first on another objective), the loss phase's; every one of them without a variant."""
    if variant is None:
        prefixes = CHECKPOINT_PREFIXES
    else:
        prefixes = ("",) * (variant != "local") + (LOSS_PREFIX,) * (
            variant == "memetic" and loss_phase
        ) + (LOCAL_PREFIX,) * (variant in ("memetic", "local"))  # fmt: skip
    return [out / f"{prefix}{CHECKPOINT}" for prefix in prefixes]


def job_checkpoints(out: Path, job: dict[str, Any]) -> list[Path]:
    """The checkpoints the run of `job` writes in `out`."""
    config = ga_config(job)
    loss_phase = bool(config.loss_first) and job.get("objective", "accuracy") != "loss"
    return checkpoint_files(out, config.variant, loss_phase)


GA_KEYS = CONFIG_KEYS | {"objective", "analyze"}  # analyze: see evoprune.analysis.jobs


def ga_config(job: dict[str, Any]) -> GAConfig:
    """The GAConfig a job describes (variant from its method, seed from its seed)."""
    check_keys(job, GA_KEYS)
    settings = {k: job[k] for k in CONFIG_KEYS if job.get(k) is not None}
    return GAConfig(variant=job["method"], seed=int(job.get("seed", 0)), **settings)


def run_ga_job(
    job: dict[str, Any],
    out: Path | None,
    progress: bool = False,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> dict[str, Any]:
    """Run a GA job; with `out`, write result.json, ticket.npz and history.csv there."""
    start = time.perf_counter()
    config = ga_config(job)
    analyses = check_analyses(job.get("analyze"))
    ds = job_dataset(job)
    init, seed = job.get("init", "uniform"), int(job.get("seed", 0))
    model, layers = build_network(job.get("arch", "B"), ds.n_features, ds.n_classes, init, seed)
    checkpoint = out / CHECKPOINT if out is not None and (checkpoint_every or resume) else None
    ticket = search(
        model,
        ds.X_train.view(len(ds.X_train), -1),
        ds.y_train,
        objective=job.get("objective", "accuracy"),
        config=config,
        X_test=ds.X_test.view(len(ds.X_test), -1),
        y_test=ds.y_test,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
        fingerprint={"dataset": ds.config, "layers": layers, "init": init},
    )
    ticket.dataset = ds.config  # the network's init and seed it took from the model
    result = {
        **base_result(job, ds, layers),
        "variant": config.variant,
        **ticket.metrics,
        # a resumed run counts the time its interrupted runs spent searching, too
        "wall_seconds": round(
            time.perf_counter() - start + ticket.metrics.get("before_resume_seconds", 0.0), 4
        ),
        "ga_config": config.to_dict(),
    }
    # Timings stay out of the ticket, so the same seed writes the same ticket file.
    ticket.metrics = {
        k: v
        for k, v in result.items()
        if isinstance(v, int | float | str) and not k.endswith(("seconds", "per_second"))
    }
    if analyses:  # after the ticket's metrics: the ticket file does not depend on them
        result.update(analyze_ticket(ticket, ds, analyses, out, seed))
    if out is not None:
        write_run_dir(out, result, ticket, ticket.history)
    if checkpoint is not None:  # finished: result.json and ticket.npz replace its checkpoints
        for path in job_checkpoints(out, job):
            path.unlink(missing_ok=True)
    return result
