"""Run a pruning job: prune the seed's trained network, compensate, fine-tune, write the folder.

Methods (`evoprune.jobs.METHODS`): ``cmaes-synflow``, ``cmaes-trainfit``, ``magnitude``,
``synflow``, ``softmask``, ``random``. Besides the common keys (`evoprune.jobkeys`), a job takes
the keys in `PRUNE_KEYS`, each with its default in `DEFAULTS` (``result.json`` records under
``choices`` those the method used, `applied`). Every method of a seed prunes the same dense
checkpoint (`evoprune.pruning.dense.dense_network`, cached in ``cache_dir``: by default
``$EVOPRUNE_CACHE`` or ``~/.cache/evoprune/dense``, one file per data + config + seed).

Files: ``result.json`` (last), ``model.pt`` (the pruned, compensated network before
fine-tuning) and ``model_finetuned.pt``: ``{"layers", "state_dict", "masks"}``, loadable with
``torch.load(..., weights_only=True)``; ``history.csv``: the CMA-ES generations (``phase``
``search``), the pruned network (``prune``, epoch 0) and each fine-tuning epoch (``finetune``),
scored on the validation rows.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import torch

from evoprune.data.registry import Dataset
from evoprune.data.scaling import FeatureScaling
from evoprune.devices import torch_threads
from evoprune.errors import EvopruneError
from evoprune.io import write_atomic
from evoprune.jobkeys import check_keys, comma_parts, job_dataset, job_threads
from evoprune.progress import progress_bar
from evoprune.pruning.cmaes import CMAConfig, cmaes_search
from evoprune.pruning.dense import (
    DenseConfig,
    Net,
    Split,
    dense_network,
    load_model_file,
    scores,
    split_70_15_15,
    train,
)
from evoprune.pruning.energy import EC_METHODS, compensate
from evoprune.pruning.magnitude import keep_count, magnitude, mask_sparsity, random_masks
from evoprune.pruning.softmask import SoftMaskConfig, softmask
from evoprune.pruning.synflow import iterative_synflow_order, log_synflow
from evoprune.results import base_result

PRUNE_METHODS = ("cmaes-synflow", "magnitude", "synflow", "softmask", "cmaes-trainfit", "random")

# The defaults, recorded with every result. cmaes-synflow's: the layer-mix genome scored by the
# calibration loss after the lsq compensation, 16 x 10 evaluations (within 2 s on a loaded CPU);
# the baselines are published without compensation, so their default EC is none.
DEFAULTS: dict[str, Any] = {
    "sparsity": 0.98,
    "ec": None,  # method default: lsq for cmaes-synflow, none otherwise
    "finetune_epochs": 30,
    "finetune_curve": None,  # extra fine-tuning checkpoints, e.g. [10, 100]
    "finetune_lr": 1e-3,
    "genome": None,  # method default: layer-mix
    "fitness": None,  # cmaes-synflow: lsq-ce; cmaes-trainfit: trainfit
    "order": "synflow",
    "population": 16,
    "generations": None,  # cmaes-synflow: 10; cmaes-trainfit: 100
    "sigma": 1.0,
    "ipop": False,
    "start": "synflow",
    "calibration": 256,  # rows scored by the data-aware fitness
    "trainfit_epochs": 3,
    "synflow_rounds": 100,
    "magnitude_scope": "global",
    "softmask_epochs": 30,
    "ridge": 1e-3,
    "lsq_prior": "dense",
    "ec_rows": 0,  # calibration rows of the energy compensation; 0: the whole training split
    "hidden": "128,64",
    "dense_max_epochs": 300,
    "dense_patience": 30,
    "model": None,
    "cache_dir": None,
    "threads": 1,
}
PRUNE_KEYS = set(DEFAULTS)
CMA_KEYS = ("genome", "fitness", "order", "population", "generations", "sigma", "ipop", "start",
            "calibration", "trainfit_epochs")  # fmt: skip
DATA_EC = ("activation", "affine", "lsq")  # the compensations fitted on calibration rows
DENSE_KEYS = ("hidden", "dense_max_epochs", "dense_patience", "cache_dir")


def applied(c: dict[str, Any], method: str) -> dict[str, Any]:
    """The choices `c` that `method` uses: what ``result.json`` records under ``choices``
    (magnitude pruning has no CMA-ES population, a trained ``--model`` no dense schedule).

    >>> sorted(set(DEFAULTS) - set(applied(_choices({"method": "magnitude"}), "magnitude")))[:3]
    ['calibration', 'ec_rows', 'fitness']
    """
    drop: set[str] = set()
    cma = method.startswith("cmaes")
    if not cma:
        drop.update(CMA_KEYS)
    else:
        if c["fitness"] != "trainfit":
            drop.add("trainfit_epochs")
        if c["fitness"] != "lsq-ce":  # the only fitness on calibration rows
            drop.add("calibration")
        if c["genome"] == "layer-mix":  # mixes magnitude and SynFlow itself: no static order
            drop.add("order")
    if not cma and method != "synflow":
        drop.add("synflow_rounds")
    if method != "magnitude":
        drop.add("magnitude_scope")
    if method != "softmask":
        drop.add("softmask_epochs")
    lsq_fitness = cma and c["fitness"] == "lsq-ce"  # the search compensates each candidate
    if c["ec"] not in DATA_EC:
        drop.add("ec_rows")
    if c["ec"] not in DATA_EC and not lsq_fitness:
        drop.add("ridge")
    if c["ec"] != "lsq" and not lsq_fitness:
        drop.add("lsq_prior")
    drop.update(DENSE_KEYS if c["model"] else ("model",))
    return {k: v for k, v in c.items() if k not in drop}


def _choices(job: dict[str, Any]) -> dict[str, Any]:
    method = job["method"]
    if method not in PRUNE_METHODS:
        raise EvopruneError(f"method: expected one of {', '.join(PRUNE_METHODS)}, got {method!r}")
    c = {k: job.get(k, v) if job.get(k) is not None else v for k, v in DEFAULTS.items()}
    trainfit = method == "cmaes-trainfit"
    c["ec"] = c["ec"] or ("lsq" if method == "cmaes-synflow" else "none")
    c["genome"] = c["genome"] or "layer-mix"
    c["fitness"] = c["fitness"] or ("trainfit" if trainfit else "lsq-ce")
    if c["generations"] is None:  # 0 stays 0, for the range check below to name it
        c["generations"] = 100 if trainfit else 10
    try:
        for key in ("sparsity", "finetune_lr", "sigma", "ridge"):
            c[key] = float(c[key])
        for key in ("finetune_epochs", "population", "generations", "calibration", "trainfit_epochs",
                    "synflow_rounds", "softmask_epochs", "ec_rows", "dense_max_epochs",
                    "dense_patience", "threads"):  # fmt: skip
            if isinstance(c[key], bool) or float(c[key]) != int(float(c[key])):
                raise ValueError(key)
            c[key] = int(float(c[key]))
    except (TypeError, ValueError):
        raise EvopruneError(f"prune job: {key}: expected a number, got {c[key]!r}") from None
    if c["ec"] not in EC_METHODS:
        raise EvopruneError(f"ec: expected one of {', '.join(EC_METHODS)}, got {c['ec']!r}")
    if c["lsq_prior"] not in ("dense", "zero"):
        raise EvopruneError(f"lsq_prior: expected dense or zero, got {c['lsq_prior']!r}")
    if c["ridge"] < 0:
        raise EvopruneError(f"ridge: expected a number >= 0, got {c['ridge']}")
    if not 0.0 <= c["sparsity"] < 1.0:
        raise EvopruneError(f"sparsity: expected a fraction in [0, 1), got {c['sparsity']}")
    c["threads"] = job_threads(c)
    for name, least in (("finetune_epochs", 0), ("synflow_rounds", 1)):
        if c[name] < least:
            raise EvopruneError(f"{name}: expected an integer >= {least}, got {c[name]}")
    curve = c["finetune_curve"] or []
    if isinstance(curve, str):
        curve = comma_parts(curve, "finetune_curve") if curve.strip() else []
    try:
        c["finetune_curve"] = sorted({int(e) for e in curve})
    except (TypeError, ValueError):
        raise EvopruneError(f"finetune_curve: expected epoch counts, got {curve!r}") from None
    if any(e < 1 for e in c["finetune_curve"]):  # epoch 0 is the pruned network's own score
        raise EvopruneError(f"finetune_curve: expected epoch counts >= 1, got {curve!r}")
    if isinstance(c["ipop"], str):
        c["ipop"] = c["ipop"].lower() == "true"
    return c


def default_cache_dir() -> Path:
    """Where dense checkpoints are cached: ``$EVOPRUNE_CACHE`` or ``~/.cache/evoprune/dense``
    (a sweep runs every job in a temporary folder, so the cache cannot live beside it)."""
    root = os.environ.get("EVOPRUNE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "evoprune" / "dense"


def _hidden(text: Any) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in comma_parts(text, "hidden"))
    except ValueError:
        widths = ()
    if not widths or any(w < 1 for w in widths):
        raise EvopruneError(f"hidden: expected hidden widths like 128,64, got {text!r}")
    return widths


def _save_model(path: Path, net: Net, masks: list[torch.Tensor]) -> None:
    names = [f"{2 * i}.weight" for i in range(len(masks))]
    blob = {
        "layers": net.layers,
        "state_dict": net.state_dict(),
        "masks": {n: m.clone() for n, m in zip(names, masks, strict=True)},
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    write_atomic(path, buf.getvalue())


def prune_settings(job: dict[str, Any]) -> tuple[dict[str, Any], CMAConfig | None]:
    """The job's choices and its CMA-ES config (None for the one-shot methods), checked
    without its data: `evoprune.jobs` runs this on every arm of a spec at load."""
    check_keys(job, PRUNE_KEYS)
    c = _choices(job)
    if not job["method"].startswith("cmaes"):
        return c, None
    return c, CMAConfig(
        genome=c["genome"], fitness=c["fitness"], order=c["order"], population=c["population"],
        generations=c["generations"], sigma=c["sigma"], ipop=bool(c["ipop"]), start=c["start"],
        calibration=c["calibration"], trainfit_epochs=c["trainfit_epochs"], ridge=c["ridge"],
        lsq_prior=c["lsq_prior"],
    )  # fmt: skip


def check_prune_job(job: dict[str, Any]) -> None:
    """A pruning job's keys and values, checked without its data (a sparsity given as a
    reference to other runs is checked once filled in)."""
    prune_settings({k: v for k, v in job.items() if not isinstance(v, dict)})


def run_prune_job(job: dict[str, Any], out: Path | None, progress: bool = False) -> dict[str, Any]:
    """Run one pruning job; with `out`, write the run folder. Returns the result dict."""
    wall = time.perf_counter()
    c, cma = prune_settings(job)
    method, seed = job["method"], int(job.get("seed", 0))
    with torch_threads(c["threads"]):
        result, net, pruned, tuned, masks, history = _run(job, c, cma, method, seed, out, progress)
    result["wall_seconds"] = round(time.perf_counter() - wall, 4)
    if out is not None:
        from evoprune.results import write_run_dir, writing_run_dir

        with writing_run_dir(out) as out:
            _save_model(out / "model.pt", pruned, masks)
            _save_model(out / "model_finetuned.pt", tuned, masks)
            write_run_dir(out, result, None, history)
    return result


def prune_data(job: dict[str, Any]) -> tuple[Dataset, Split]:
    """The job's dataset and its split 70/15/15, the same rows for every seed (a user's file
    too: it is read with split seed 0, so that its rows pool in one order). A file's
    per-feature scaling is fitted on the 70% it trains on (the file's own 75/25 split would
    have taken ranges from rows that become test rows here); the dataset's config records it."""
    ds = job_dataset({**job, "seed": 0})
    if ds.config.get("name") != "file" or not isinstance(ds.config.get("scaling"), dict):
        return ds, split_70_15_15(ds)
    raw = split_70_15_15(job_dataset({**job, "seed": 0, "normalize": False}))
    fitted = FeatureScaling.fit(raw.X_train.numpy())
    ds.config["scaling"] = fitted.to_config()

    def scaled(X: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(fitted.apply(X.numpy()), dtype=X.dtype)

    split = Split(scaled(raw.X_train), raw.y_train, scaled(raw.X_val), raw.y_val,
                  scaled(raw.X_test), raw.y_test, raw.n_classes)  # fmt: skip
    return ds, split


def _run(  # the steps of run_prune_job
    job: dict[str, Any],
    c: dict[str, Any],
    cma: CMAConfig | None,
    method: str,
    seed: int,
    out: Path | None,
    progress: bool,
) -> tuple[dict[str, Any], Net, Net, Net, list[torch.Tensor], list[dict[str, Any]]]:
    ds, split = prune_data(job)
    C = split.n_classes
    c["calibration"] = min(c["calibration"], len(split.y_train))  # recorded: the rows scored
    if c["model"]:
        net = load_model_file(c["model"])
        if net.layers[0] != split.X_train.shape[1] or net.layers[-1] != C:
            raise EvopruneError(
                f"--model: the network maps {net.layers[0]} -> {net.layers[-1]}, the data has "
                f"{split.X_train.shape[1]} features and {C} classes"
            )
        dense_info: dict[str, Any] = {
            "cached": None,
            "train_seconds": 0.0,
            "model_file": c["model"],
        }
    else:
        config = DenseConfig(_hidden(c["hidden"]), max_epochs=c["dense_max_epochs"],
                             patience=c["dense_patience"])  # fmt: skip
        cache = c["cache_dir"] or default_cache_dir()
        with progress_bar(total=config.max_epochs, desc="dense training", unit="epoch",
                          enabled=progress, leave=False) as bar:  # fmt: skip
            net, dense_info = dense_network(split, config, seed, cache, ds.config,
                                            on_epoch=lambda epoch, f1: bar.update(1))  # fmt: skip
    k = keep_count(net.n_weights, c["sparsity"])
    ec_X = split.X_train if c["ec_rows"] <= 0 else split.X_train[: c["ec_rows"]]

    start = time.perf_counter()
    history: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    forward_passes, evaluations = 0, 1
    if method == "magnitude":
        masks = magnitude(net, k, c["magnitude_scope"])
    elif method == "random":
        masks = random_masks(net, k, seed)
    elif method == "softmask":
        masks, info = softmask(net, k, split, seed, SoftMaskConfig(epochs=c["softmask_epochs"]))
        forward_passes = int(info["forward_passes"])
        extra = {"softmask_lambda": info["lam"], "softmask_soft_density": info["soft_density"]}
    else:
        # only that ranking needs them, and layer-mix has no static ranking
        keys = cma is not None and cma.order == "iterative" and cma.genome != "layer-mix"
        masks, survival = iterative_synflow_order(net, k, c["synflow_rounds"], with_keys=keys)
        forward_passes = c["synflow_rounds"] + int(keys)
        if cma is not None:
            start_densities = (
                [float(m.float().mean()) for m in masks] if cma.start == "synflow" else None
            )
            with progress_bar(total=cma.generations, desc=method, unit="generation",
                              enabled=progress, leave=False) as bar:  # fmt: skip
                found = cmaes_search(net, k, split, cma, seed, start_densities,
                                     lambda g: bar.update(1), survival)  # fmt: skip
            masks, history = found.masks, found.history
            forward_passes += found.forward_passes
            evaluations = found.evaluations
            extra = {"search_fitness": found.fitness, "genes": [float(x) for x in found.genes],
                     "search_seconds": round(found.seconds, 4)}  # fmt: skip
    pruned = compensate(net, masks, c["ec"], ec_X, c["ridge"], c["lsq_prior"])
    seconds = time.perf_counter() - start
    generations = len(history)
    # history.csv, one vocabulary for every method: the search's generations (CMA-ES), the
    # pruned network (epoch 0), then each fine-tuning epoch, scored on the validation rows
    rows = [{"phase": "search", **row} for row in history]
    rows.append(_history_row("prune", 0, pruned, split, masks, seconds))

    start = time.perf_counter()
    curve: dict[str, float] = {}
    total = max([c["finetune_epochs"], *c["finetune_curve"]])
    tuned = pruned
    if total > 0:
        marks = set(c["finetune_curve"]) | {c["finetune_epochs"]}

        def on_epoch(epoch: int, state: Net) -> None:
            nonlocal tuned
            rows.append(_history_row("finetune", epoch, state, split, masks,
                                     time.perf_counter() - start))  # fmt: skip
            if epoch in marks:
                s = scores(state, split.X_test, split.y_test, C)
                curve[f"test_f1_ft{epoch}"] = s["f1"]
                curve[f"test_accuracy_ft{epoch}"] = s["accuracy"]
            if epoch == c["finetune_epochs"]:
                tuned = state

        with progress_bar(total=total, desc="fine-tuning", unit="epoch", enabled=progress,
                          leave=False) as bar:  # fmt: skip
            train(pruned, split, masks, total, seed, "finetune", lr=c["finetune_lr"],
                  on_epoch=lambda epoch, f1: bar.update(1), on_state=on_epoch)  # fmt: skip
    finetune_seconds = time.perf_counter() - start

    dense_test = scores(net, split.X_test, split.y_test, C)
    test = scores(pruned, split.X_test, split.y_test, C)
    test_ft = scores(tuned, split.X_test, split.y_test, C)
    train_s = scores(pruned, split.X_train, split.y_train, C)
    result = {
        **base_result(job, ds, net.layers),
        "init": None,
        "seed": seed,
        "variant": method,
        "objective": c["fitness"] if cma is not None else method,
        "sparsity": mask_sparsity(masks),
        "target_sparsity": c["sparsity"],
        "kept_weights": int(sum(int(m.sum()) for m in masks)),
        "layer_densities": [float(m.float().mean()) for m in masks],
        "layer_kept": [int(m.sum()) for m in masks],
        **{f"density_l{i + 1}": float(m.float().mean()) for i, m in enumerate(masks)},
        "log_synflow": log_synflow(net, masks),
        "log_synflow_dense": log_synflow(net),
        "test_f1": test["f1"],
        "test_accuracy": test["accuracy"],
        "train_accuracy": train_s["accuracy"],
        "val_f1": scores(pruned, split.X_val, split.y_val, C)["f1"],
        "test_f1_finetuned": test_ft["f1"],
        "test_accuracy_finetuned": test_ft["accuracy"],
        **curve,
        "dense_test_f1": dense_test["f1"],
        "dense_test_accuracy": dense_test["accuracy"],
        "ec": c["ec"],
        "genome": c["genome"] if cma is not None else None,
        "finetune_epochs": c["finetune_epochs"],
        "seconds": round(seconds, 4),
        "finetune_seconds": round(finetune_seconds, 4),
        "dense_seconds": dense_info.get("train_seconds"),
        "dense_cached": dense_info.get("cached"),
        "forward_passes": forward_passes,
        "evaluations": evaluations,
        "generations": generations or None,
        "choices": applied(c, method),
        "dense": dense_info,
        "split": {
            "train": len(split.y_train),
            "val": len(split.y_val),
            "test": len(split.y_test),
            "stratified": True,
            "state": 42,
        },  # fmt: skip
        **extra,
    }
    if result["log_synflow"] == float("-inf"):
        result["log_synflow"] = None  # JSON has no -inf: no path connects input and output
    return result, net, pruned, tuned, masks, rows


def _history_row(phase: str, epoch: int, state: Net, split: Split, masks: list[torch.Tensor],
                 seconds: float) -> dict[str, Any]:  # fmt: skip
    val = scores(state, split.X_val, split.y_val, split.n_classes)
    return {"phase": phase, "epoch": epoch, "val_f1": val["f1"], "val_accuracy": val["accuracy"],
            "sparsity": mask_sparsity(masks), "seconds": round(seconds, 4)}  # fmt: skip
