"""Hyperparameter optimisation of an MLP on digits with Optuna's samplers: TPE (multivariate),
CMA-ES, random search; the objective is either full training (validation macro-F1 after Adam with
early stopping) or the zero-cost SynFlow score of the architecture at initialisation (Tanaka et
al., NeurIPS 2020, arXiv 2006.05467; as a NAS proxy: Abdelfattah et al., ICLR 2021,
arXiv 2101.08134). Hirianskyi & Bulakh (SUNZ 2026) compare the samplers' quality and own time.

The study lives in Optuna storage (a `JournalStorage` file in the run folder by default, or an RDB
URL; `evoprune.studies.hpo_storage`), so several worker processes, or machines sharing the folder
or database, work on one study, and a killed study resumes with the same command. A study ends
with exactly `trials` COMPLETE trials:

- a worker only starts a trial while fewer than `trials` trials are COMPLETE or RUNNING; a trial
  that finds, once numbered, that `trials` trials with lower numbers are already live gives way
  (it is marked FAIL with the user attribute ``surplus``), so no two workers overshoot;
- a trial whose worker is gone (its process, or its heartbeat for `grace` seconds) is marked FAIL,
  and a new trial takes its place (`evoprune.studies.hpo_storage`), unless its own worker, killed
  on this host and started again, finishes it: each worker saves its sampler once a trial's
  parameters are drawn, and a resumed one draws on from there, so that on one worker a killed
  study resumes to the uninterrupted one.

Spaces (ints are suggested as ints, no categoricals, so CMA-ES sees every dimension):
``low`` (6): layers 1-3, width 16-256 (log), lr 1e-4-1e-1 (log), weight decay 1e-6-1e-2 (log),
batch 16-256 (log), dropout 0-0.5. ``high`` (19): 8 hidden layers, each with its own width
(16-256, log) and dropout (0-0.5), and lr, weight decay, batch. With the SynFlow objective only the
architecture is searched (``low``: layers and width; ``high``: the 8 widths); the training
hyperparameters are fixed at `FIXED_TRAINING` for the final training.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from evoprune.errors import EvopruneError
from evoprune.interrupts import errors_of_interrupts, raising, release_sigint, sigint_held
from evoprune.seeding import derive_seed
from evoprune.studies.choices import HPO_OBJECTIVES, SAMPLERS, SPACES
from evoprune.studies.hpo_storage import (
    Heartbeat,
    cut_trial,
    fail_stale_trials,
    load_optuna,
    load_sampler,
    open_storage,
    save_sampler,
    stale_before,
)
from evoprune.studies.training import (
    Splits,
    accuracy,
    digits_splits,
    make_mlp,
    model_macro_f1,
    train_adam,
)

if TYPE_CHECKING:
    from optuna import Study
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, TrialState

HIGH_LAYERS = 8
# the SynFlow objective's training hyperparameters (Adam's usual defaults; no dropout)
FIXED_TRAINING = {"lr": 1e-3, "weight_decay": 1e-4, "batch_size": 64}
STUDY_NAME = "evoprune-hpo"
_SURPLUS = "surplus"


@dataclass(frozen=True)
class HPOConfig:
    sampler: str = "tpe"
    objective: str = "train"
    space: str = "low"
    trials: int = 100
    seed: int = 0
    workers: int = 1
    storage: str | None = None  # an RDB URL (sqlite:///..., postgresql://...); None: journal file
    max_epochs: int = 100  # the train objective's Adam budget per trial (and the final training)
    patience: int = 10  # early stopping on the validation loss
    heartbeat: float = 2.0  # seconds between two heartbeats of a running trial
    grace: float = 30.0  # a trial of another host without a heartbeat for this long is dead

    def __post_init__(self) -> None:
        for name, allowed in (
            ("sampler", SAMPLERS),
            ("objective", HPO_OBJECTIVES),
            ("space", SPACES),
        ):
            if getattr(self, name) not in allowed:
                raise EvopruneError(
                    f"{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        for name in ("trials", "workers", "max_epochs", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise EvopruneError(f"{name}: expected a positive integer, got {v!r}")
        if not self.grace > 2 * self.heartbeat > 0:
            raise EvopruneError("grace: expected more than twice the heartbeat interval")

    def study_settings(self) -> dict[str, Any]:
        """What defines the study (a resumed study must agree); workers/storage may change."""
        return {k: v for k, v in asdict(self).items() if k not in ("workers", "storage", "trials")}


# --- the search space and the objectives ------------------------------------------------------


def suggest(trial: Any, space: str, objective: str) -> dict[str, Any]:
    """The trial's configuration: widths, dropouts, lr, weight_decay, batch_size."""
    if space == "low":
        layers = trial.suggest_int("layers", 1, 3)
        width = trial.suggest_int("width", 16, 256, log=True)
        widths = [width] * layers
    else:
        widths = [trial.suggest_int(f"width_{i}", 16, 256, log=True) for i in range(HIGH_LAYERS)]
    if objective == "synflow":  # the architecture only; training is fixed
        return {"widths": widths, "dropouts": [0.0] * len(widths), **FIXED_TRAINING}
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    wd = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    batch = trial.suggest_int("batch_size", 16, 256, log=True)
    if space == "low":
        dropouts = [trial.suggest_float("dropout", 0.0, 0.5)] * len(widths)
    else:
        dropouts = [trial.suggest_float(f"dropout_{i}", 0.0, 0.5) for i in range(HIGH_LAYERS)]
    return {
        "widths": widths,
        "dropouts": dropouts,
        "lr": lr,
        "weight_decay": wd,
        "batch_size": batch,
    }


def synflow_score(widths: list[int], n_in: int = 64, n_out: int = 10, seed: int = 0) -> float:
    """log sum |theta * dR/dtheta| at initialisation, R = 1^T f_|theta|(1) (float64, all-ones
    input, every parameter replaced by its absolute value; Tanaka et al. 2020, eq. 2)."""
    model = make_mlp(n_in, widths, n_out, seed=seed, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.eval()
    R = model(torch.ones(1, n_in, dtype=torch.float64)).sum()
    grads = torch.autograd.grad(R, list(model.parameters()))
    total = sum(
        float((p.detach() * g).abs().sum()) for p, g in zip(model.parameters(), grads, strict=True)
    )
    return math.log(total) if total > 0 else -math.inf


def train_config(config: dict[str, Any], s: Splits, cfg: HPOConfig, seed: int) -> tuple[Any, float]:
    """The MLP of `config`, trained with early stopping; (model, validation macro-F1)."""
    model = make_mlp(s.n_features, config["widths"], s.n_classes, config["dropouts"], seed=seed)
    r = train_adam(model, s, lr=config["lr"], weight_decay=config["weight_decay"],
                   batch_size=config["batch_size"], max_epochs=cfg.max_epochs,
                   patience=cfg.patience, seed=seed)  # fmt: skip
    return model, r.val_f1


def warm_up_training() -> None:
    """One Adam step on a throwaway weight, untimed: the process's first pays about 0.8 s of
    one-off set-up, which the first trial's objective time carried (12-40x a trial). Draws
    nothing from torch's random generator."""
    w = torch.zeros(3, 4, requires_grad=True)
    opt = torch.optim.Adam([w], weight_decay=1e-3)
    logits = torch.zeros(2, 4) @ w.T
    torch.nn.functional.cross_entropy(logits, torch.zeros(2, dtype=torch.long)).backward()
    opt.step()


def evaluate_trial(config: dict[str, Any], s: Splits, cfg: HPOConfig, index: int) -> float:
    """The objective of `config`, seeded by the trial's `index`: its number, less the trials
    before it that were failed as stale (a trial that replaces one cut short takes its seed)."""
    seed = derive_seed(cfg.seed, f"hpo/trial/{index}")
    if cfg.objective == "synflow":
        return synflow_score(config["widths"], s.n_features, s.n_classes, seed)
    return train_config(config, s, cfg, seed)[1]


# --- samplers, timed --------------------------------------------------------------------------


def make_sampler(cfg: HPOConfig, worker: int, after: int = 0) -> Any:
    """Worker `worker`'s new sampler, on a study that already holds `after` trials. A worker
    that saved none there (it joins a study others began, or a study of an older evoprune) is
    seeded apart, or its random draws would repeat those of the worker that began it."""
    optuna = load_optuna()
    name = f"hpo/sampler/{worker}" + (f"/after/{after}" if after else "")
    seed = derive_seed(cfg.seed, name) % 2**31
    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, seed=seed)
    if cfg.sampler == "cmaes":
        # optuna imports `cmaes` lazily, on the first sample: import it here, so that the
        # per-trial sampler time measures sampling, not a one-off module import (seconds)
        import cmaes  # noqa: F401

        return optuna.samplers.CmaEsSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def timed(sampler: Any) -> Any:
    """`sampler` wrapped so that its own time per trial is recorded (user attr sampler_seconds)."""
    load_optuna()  # optuna present, and quiet
    from optuna.samplers import BaseSampler

    class TimedSampler(BaseSampler):
        def __init__(self, inner: Any):
            self.inner = inner
            self.spent: dict[int, float] = {}

        def _time(self, trial: Any, fn: Any, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.spent[trial.number] = (
                    self.spent.get(trial.number, 0.0) + time.perf_counter() - start
                )

        def infer_relative_search_space(
            self, study: Study, trial: FrozenTrial
        ) -> dict[str, BaseDistribution]:
            return self._time(trial, self.inner.infer_relative_search_space, study, trial)

        def sample_relative(
            self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
        ) -> dict[str, Any]:
            return self._time(trial, self.inner.sample_relative, study, trial, search_space)

        def sample_independent(
            self, study: Study, trial: FrozenTrial, name: str, dist: BaseDistribution
        ) -> Any:
            return self._time(trial, self.inner.sample_independent, study, trial, name, dist)

        def before_trial(self, study: Study, trial: FrozenTrial) -> None:
            self._time(trial, self.inner.before_trial, study, trial)

        def after_trial(
            self,
            study: Study,
            trial: FrozenTrial,
            state: TrialState,
            values: Sequence[float] | None,
        ) -> None:
            self._time(trial, self.inner.after_trial, study, trial, state, values)
            study._storage.set_trial_user_attr(
                trial._trial_id, "sampler_seconds", self.spent.pop(trial.number, 0.0)
            )

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return TimedSampler(sampler)


# --- workers and the study --------------------------------------------------------------------


def _counts(study: Any) -> tuple[int, int]:
    optuna = load_optuna()
    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False, states=(S.COMPLETE, S.RUNNING))
    complete = sum(t.state == S.COMPLETE for t in trials)
    return complete, len(trials)


def work(cfg: HPOConfig, out: Path, worker: int = 0, bar: Any = None) -> int:
    """One worker: run trials until the study has `cfg.trials` COMPLETE trials; returns how many
    this worker completed. Safe to run in any number of processes at once. A worker that was
    killed before draws on with the sampler it saved, and first finishes the trial it was cut
    short in (`evoprune.studies.hpo_storage.cut_trial`)."""
    optuna = load_optuna()
    S = optuna.trial.TrialState
    torch.set_num_threads(1)
    storage = open_storage(out, cfg.storage)
    held = storage.get_all_trials(storage.get_study_id_from_name(STUDY_NAME), deepcopy=False)
    saved = load_sampler(out, worker, held)
    sampler = timed(saved["sampler"] if saved else make_sampler(cfg, worker, len(held)))
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler)
    splits = digits_splits()
    if cfg.objective == "train":
        warm_up_training()
    beat = Heartbeat(storage, cfg.heartbeat)
    done = 0
    try:
        cut = cut_trial(held, saved)
        if cut is not None and _counts(study)[0] < cfg.trials:  # its parameters and its seed
            assert saved is not None
            sampler.spent[cut.number] = saved["sampler_seconds"]
            with beat.owning(cut), contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                config = suggest(optuna.trial.FixedTrial(cut.params), cfg.space, cfg.objective)
                done += _finish(study, cut, config, splits, cfg)
        while True:
            fail_stale_trials(study, cfg.grace)
            complete, live = _counts(study)
            if bar is not None:
                bar.update(complete - bar.n)
            if complete >= cfg.trials:
                return done
            if live >= cfg.trials:  # the rest are running elsewhere: wait for them (or their death)
                time.sleep(min(1.0, cfg.heartbeat))
                continue
            trial = study.ask()
            # declared dead by another worker while slow (no heartbeat for `grace`): go on
            with (
                beat.owning(trial),
                contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError),
            ):
                live_now = study.get_trials(deepcopy=False, states=(S.COMPLETE, S.RUNNING))
                earlier = [t for t in live_now if t.number < trial.number]
                if len(earlier) >= cfg.trials:  # another worker took the last slot first
                    storage.set_trial_user_attr(trial._trial_id, _SURPLUS, True)
                    study.tell(trial, state=S.FAIL)
                    continue
                config = suggest(trial, cfg.space, cfg.objective)
                save_sampler(out, worker, trial, sampler.inner, sampler.spent.get(trial.number, 0))
                done += _finish(study, trial, config, splits, cfg)
    finally:
        beat.close()


def _finish(study: Any, trial: Any, config: dict[str, Any], splits: Splits, cfg: HPOConfig) -> int:
    """Evaluate `trial`'s `config` and tell the study (FAIL for a value that is not finite)."""
    S = load_optuna().trial.TrialState
    index = trial.number - stale_before(study.get_trials(deepcopy=False), trial.number)
    start = time.perf_counter()
    value = evaluate_trial(config, splits, cfg, index)
    study._storage.set_trial_user_attr(
        trial._trial_id, "objective_seconds", time.perf_counter() - start
    )
    study._storage.set_trial_user_attr(trial._trial_id, "config", config)
    ok = math.isfinite(value)
    study.tell(trial.number, value if ok else None, state=S.COMPLETE if ok else S.FAIL)
    return 1


def _worker_main(cfg_dict: dict[str, Any], out: str, worker: int) -> None:
    """A worker process: started with Ctrl-C held back (`sigint_held`), it lets it through
    here; a Ctrl-C then ends it quietly (the driver says so; the journal resumes the study)."""
    with raising(signal.SIGINT, KeyboardInterrupt):
        try:
            release_sigint()
            with errors_of_interrupts():  # Ctrl-C inside Optuna's journal lock, made its own error
                work(HPOConfig(**cfg_dict), Path(out), worker)
        except KeyboardInterrupt:
            sys.exit(130)


def run_study(cfg: HPOConfig, out: str | Path, progress: bool = False) -> dict[str, Any]:
    """Create or resume the study in `out`, run it with `cfg.workers` processes until it has
    exactly `cfg.trials` COMPLETE trials, train the best configuration once, and return the
    summary (best_val_f1, test_f1, n_trials, wall_seconds, sampler_seconds_per_trial, ...)."""
    import multiprocessing as mp

    from evoprune.progress import progress_bar

    optuna = load_optuna()
    out = Path(out)
    started = time.perf_counter()
    if not cfg.storage:
        out.mkdir(parents=True, exist_ok=True)  # the journal lives there
    storage = open_storage(out, cfg.storage)  # a bad URL fails here, before anything is written
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize",
                                load_if_exists=True)  # fmt: skip
    settings = study.user_attrs.get("evoprune:settings")
    if settings is None:
        study.set_user_attr("evoprune:settings", cfg.study_settings())
    elif settings != json.loads(json.dumps(cfg.study_settings())):
        diff = sorted(k for k in settings if settings.get(k) != cfg.study_settings().get(k))
        where, other = (cfg.storage, "--storage") if cfg.storage else (out, "--out")
        raise EvopruneError(  # a database holds one study: another --out would not help there
            f"{where}: holds a study with other settings ({', '.join(diff)}); use another {other}"
        )
    ctx = mp.get_context("spawn")
    others = [ctx.Process(target=_worker_main, args=(asdict(cfg), str(out), w), daemon=True)
              for w in range(1, cfg.workers)]  # fmt: skip
    with sigint_held():  # a worker importing its modules must not die of Ctrl-C mid-way
        for p in others:
            p.start()
    bar = progress_bar(total=cfg.trials, desc=f"hpo {cfg.sampler}/{cfg.objective}/{cfg.space}",
                       unit="trial", enabled=progress)  # fmt: skip
    try:
        with errors_of_interrupts():  # a Ctrl-C that Optuna made its own error is one too
            work(cfg, out, 0, bar)
    except KeyboardInterrupt:
        _interrupt(others)
        raise
    finally:
        for p in others:
            p.join()
        bar.close()
    return summarise_study(study, cfg, time.perf_counter() - started)


def _interrupt(workers: list[Any], seconds: float = 5.0) -> None:
    """After an interrupt of this process: Ctrl-C in a terminal reached the workers too, and
    they end by themselves; a SIGTERM sent to this process alone did not, and the workers that
    are still there after `seconds` get Ctrl-C (their trials are failed and replaced when the
    study resumes). Waiting for them instead would wait for the whole study."""
    deadline = time.monotonic() + seconds
    for p in workers:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in workers:
        if p.is_alive():
            os.kill(p.pid, signal.SIGINT)


def summarise_study(study: Any, cfg: HPOConfig, seconds: float) -> dict[str, Any]:
    optuna = load_optuna()
    S = optuna.trial.TrialState
    all_trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in all_trials if t.state == S.COMPLETE), key=lambda t: t.number)
    best = max(complete, key=lambda t: (t.value, -t.number))
    splits = digits_splits()
    seed = derive_seed(cfg.seed, "hpo/final")
    config = best.user_attrs["config"]
    t0 = time.perf_counter()
    model, final_val = train_config(config, splits, cfg, seed)
    final_seconds = time.perf_counter() - t0
    history, best_so_far = [], -math.inf
    for t in complete:
        best_so_far = max(best_so_far, t.value)
        history.append({"trial": t.number, "value": t.value, "best_so_far": best_so_far,
                        "sampler_seconds": t.user_attrs.get("sampler_seconds", math.nan),
                        "objective_seconds": t.user_attrs.get("objective_seconds", math.nan),
                        **{f"param_{k}": v for k, v in t.params.items()}})  # fmt: skip
    starts = [t.datetime_start.timestamp() for t in complete if t.datetime_start]
    ends = [t.datetime_complete.timestamp() for t in complete if t.datetime_complete]
    stale = sum(bool(t.system_attrs.get("evoprune:stale")) for t in all_trials)
    surplus = sum(bool(t.user_attrs.get(_SURPLUS)) for t in all_trials)
    return {
        "best_val_f1": best.value if cfg.objective == "train" else final_val,
        "best_objective": best.value,
        "test_f1": model_macro_f1(model, splits.X_test, splits.y_test),
        "test_accuracy": accuracy(model, splits.X_test, splits.y_test),
        "final_val_f1": final_val,
        "n_trials": len(complete),
        "failed_trials": len(all_trials) - len(complete),
        "stale_trials": stale,
        "surplus_trials": surplus,
        "best_trial": best.number,
        "best_params": best.params,
        "best_config": config,
        # this run's time, as every method's wall_seconds (the final training included); the
        # study's trials, over all the runs that made them, span trials_span_seconds
        "wall_seconds": seconds + final_seconds,
        "trials_span_seconds": (max(ends) - min(starts)) if starts and ends else seconds,
        "seconds_this_run": seconds,
        "final_training_seconds": final_seconds,
        "sampler_seconds_per_trial": float(np.mean([h["sampler_seconds"] for h in history])),
        "objective_seconds_per_trial": float(np.mean([h["objective_seconds"] for h in history])),
        "history": history,
    }
