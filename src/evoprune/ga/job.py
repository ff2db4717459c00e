"""Run a GA job (see `evoprune.jobkeys`): build data and network, search, write the run folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any

from evoprune.analysis.jobs import analyze_ticket, check_analyses
from evoprune.errors import EvopruneError
from evoprune.ga.api import search
from evoprune.ga.config import CONV_LOCAL_FIELDS, READ_BY, GAConfig, conv_reads
from evoprune.io import resumed_from
from evoprune.jobkeys import check_keys, job_dataset
from evoprune.local.checkpoint import CHECKPOINT_PREFIXES, LOCAL_PREFIX, LOSS_PREFIX
from evoprune.nets import build_network, check_activation
from evoprune.results import base_result, write_run_dir, writing_run_dir

# Job keys that map one to one onto GAConfig fields: all but the variant (the job's method)
# and the seed (the job's seed, which also seeds the network)
CONFIG_KEYS = {f.name for f in fields(GAConfig)} - {"variant", "seed"}
CHECKPOINT = "checkpoint.npz"  # the GA's, in the run folder; each local phase adds its prefix


def checkpoint_files(out: Path, variant: str | None = None, loss_phase: bool = False) -> list[Path]:
    """The checkpoints a run of `variant` in folder `out` writes: the GA's (ga, ga-adaptive,
    memetic), the local phase's (memetic, local) and, with `loss_phase` (memetic with
    loss_first on another objective), the loss phase's; every one of them without a variant."""
    prefixes: tuple[str, ...]
    if variant is None:
        prefixes = CHECKPOINT_PREFIXES
    else:
        prefixes = ("",) * (variant != "local") + (LOSS_PREFIX,) * (
            variant == "memetic" and loss_phase
        ) + (LOCAL_PREFIX,) * (variant in ("memetic", "local"))  # fmt: skip
    return [out / f"{prefix}{CHECKPOINT}" for prefix in prefixes]


def job_checkpoints(out: Path, config: GAConfig, objective: str) -> list[Path]:
    """The checkpoints a run of `config` on `objective` writes in `out`."""
    loss_phase = config.loss_first and objective != "loss"
    return checkpoint_files(out, config.variant, loss_phase)


# analyze: see evoprune.analysis.jobs; activation: the MLP's nonlinearity (`build_network`)
GA_KEYS = CONFIG_KEYS | {"objective", "analyze", "activation"}


def ga_config(job: dict[str, Any], name: Callable[[str], str] = str) -> GAConfig:
    """The GAConfig a job describes (variant from its method, seed from its seed): its values
    checked, then what its variant reads (`check_variant_keys`, keys named by `name`)."""
    check_keys(job, GA_KEYS)
    if job.get("activation") is not None:
        check_activation(job["activation"], job.get("arch"))
    settings = {k: job[k] for k in CONFIG_KEYS if job.get(k) is not None}
    config = GAConfig(variant=job["method"], seed=int(job.get("seed", 0)), **settings)
    check_variant_keys(job, name)
    return config


def check_ga_job(job: dict[str, Any]) -> None:
    """A GA-family job's objective, settings and analyses, checked without its data."""
    from evoprune.objectives import get_objective

    get_objective(job.get("objective", "accuracy"))
    ga_config(job)
    if "analyze" in job:
        check_analyses(job["analyze"])


def check_variant_keys(job: dict[str, Any], name: Callable[[str], str] = str) -> None:
    """Refuse a setting the job's variant does not read, or one that does nothing beside the
    others (`name`: how the user wrote a key, e.g. the CLI's flag)."""
    variant, objective = job["method"], job.get("objective", "accuracy")
    conv = variant == "local" and job.get("arch") == "conv"
    for key in sorted(set(job) & set(READ_BY), key=list(READ_BY).index):
        if job[key] is None:
            continue
        if conv and not conv_reads(key, job[key]):
            readable = ", ".join(name(k) for k in CONV_LOCAL_FIELDS)
            raise EvopruneError(f"{name(key)}: not read by the conv net's local search (it "
                                f"reads {readable})")  # fmt: skip
        readers = READ_BY[key]
        if variant not in readers:
            where = " or ".join(
                [", ".join(readers[:-1]), readers[-1]] if len(readers) > 1 else readers
            )
            raise EvopruneError(f"{name(key)}: only with {name('variant')} {where}, not {variant}")
    if job.get("exact_top") and (objective != "loss" or job.get("ranking") == "none"):
        raise EvopruneError(
            f"{name('exact_top')}: only with {name('objective')} loss and the expansion ranking "
            "(it re-scores the expansion's best-ranked flips of the loss)"
        )
    if job.get("fixed_sparsity") is not None and job.get("sparsity_penalty"):
        raise EvopruneError(
            f"{name('sparsity_penalty')}: does nothing with {name('fixed_sparsity')} (every swap "
            "keeps the density)"
        )
    if job.get("local_patience") is not None and not job.get("val_fraction"):
        raise EvopruneError(
            f"{name('local_patience')}: only with {name('val_fraction')} (it counts passes "
            "without a better validation accuracy)"
        )
    if job.get("loss_first") and objective == "loss":
        raise EvopruneError(
            f"{name('loss_first')}: only with {name('objective')} accuracy or f1 (with loss every "
            "phase already follows the loss)"
        )


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
    activation = job.get("activation") or "relu"
    model, layers = build_network(
        job.get("arch", "B"), ds.n_features, ds.n_classes, init, seed, activation=activation
    )
    checkpoint = out / CHECKPOINT if out is not None and (checkpoint_every or resume) else None
    objective = job.get("objective", "accuracy")
    # other code resumed here: the result is not that of one revision (read before the search
    # rewrites the checkpoints)
    earlier = (
        resumed_from(job_checkpoints(out, config, objective))
        if out is not None and checkpoint and resume
        else []
    )
    ticket = search(
        model,
        ds.X_train.view(len(ds.X_train), -1),
        ds.y_train,
        objective=objective,
        config=config,
        X_test=ds.X_test.view(len(ds.X_test), -1),
        y_test=ds.y_test,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
        fingerprint={
            "dataset": ds.config,
            "layers": layers,
            "init": init,
            **({"activation": activation} if activation != "relu" else {}),  # as before for ReLU
        },
    )
    ticket.dataset = ds.config  # the network's init and seed it took from the model
    result = {
        **base_result(job, ds, layers),
        "activation": activation,
        "variant": config.variant,
        **ticket.metrics,
        # a resumed run counts the time its interrupted runs spent searching, too
        "wall_seconds": round(
            time.perf_counter() - start + ticket.metrics.get("before_resume_seconds", 0.0), 4
        ),
        "ga_config": config.to_dict(),
        **({"resumed_from": earlier} if earlier else {}),
    }
    # the scalars (the file leaves the timings out: `Ticket.header`)
    ticket.metrics = {k: v for k, v in result.items() if isinstance(v, int | float | str)}
    # an interrupt before result.json removes what this wrote (the checkpoints stay)
    with writing_run_dir(out) if out is not None else nullcontext():
        if analyses:  # after the ticket's metrics: the ticket file does not depend on them
            result.update(analyze_ticket(ticket, ds, analyses, out, seed))
        if out is not None:
            write_run_dir(out, result, ticket, ticket.history)
    # finished: result.json and ticket.npz replace its checkpoints (there is one only with `out`)
    if out is not None and checkpoint is not None:
        for path in job_checkpoints(out, config, objective):
            path.unlink(missing_ok=True)
    return result
