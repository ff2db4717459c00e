"""Run a selection-pruning job (``method: selection``): a job dict in, a results folder out.

Besides the common keys (see `evoprune.jobkeys`; ``arch`` defaults to the paper's
[in, 512, 256, out], [in, 128, 64, out] on digits), the job takes the fields of
`SelectionConfig` (``dynamics``, ``fitness``, ``smoothing``, ``normalization``, ``eta``, ``rate``,
``extinction``, ``max_mass``, ``target_fraction``, ``target_epoch``, ``ranking``), of `TrainConfig`
(``epochs``, ``batch_size``, ``lr``, ``augment``, ``max_shift``), ``levels`` (fractions of hidden
units removed, default 0.35,0.5,0.7,0.8,0.9, or the target fraction in target mode), ``controls`` (default all of `CONTROLS`, or
"none") and ``threads`` (torch threads, default 1).

The folder: ``result.json`` (last), ``history.csv`` (one row per epoch), ``network.npz`` (the
trained weights, masses and living units: what `evoprune export` shrinks), ``masses.npz`` (the
masses after every epoch), ``accuracy_vs_fraction.png``, ``mass_histograms.png``,
``mass_trajectories.png``.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoprune.devices import torch_threads
from evoprune.errors import EvopruneError
from evoprune.io import write_atomic
from evoprune.jobkeys import check_keys, comma_parts, job_dataset, job_threads
from evoprune.nets import MLP, parse_arch
from evoprune.pruning.selection.dynamics import SelectionConfig
from evoprune.pruning.selection.masses import Masses
from evoprune.pruning.selection.run import CONTROLS, SelectionRun, n_epochs_total, run_selection
from evoprune.pruning.selection.training import TrainConfig
from evoprune.results import RESULT_FIELDS, base_result, write_run_dir, writing_run_dir

DEFAULT_LEVELS = (0.35, 0.5, 0.7, 0.8, 0.9)
DEFAULT_HIDDEN = {"digits": [128, 64]}  # everything else: the paper's [512, 256]
SHIFT_DATASETS = ("mnist",)  # MNIST-like images: shift augmentation on by default
NETWORK_FORMAT = "evoprune-selection-network/1"

_KINDS = {"int": int, "float": float, "str": str, "float | None": float, "int | None": int}
SELECTION_KEYS = (
    {f.name for f in fields(SelectionConfig)}
    | {f.name for f in fields(TrainConfig)}
    | {"levels", "controls", "threads"}
)


def _typed(job: dict[str, Any], cls: type) -> dict[str, Any]:
    out = {}
    for f in fields(cls):
        value = job.get(f.name)
        if value is None:
            continue
        kind = _KINDS[str(f.type)]
        try:
            if isinstance(value, bool) or (kind is int and float(value) != int(float(value))):
                raise ValueError
            out[f.name] = (
                kind(value) if kind is str else kind(float(value)) if kind is int else float(value)
            )
        except (TypeError, ValueError):
            raise EvopruneError(f"{f.name}: expected {kind.__name__}, got {value!r}") from None
    return out


def parse_levels(value: Any, target: float | None = None) -> list[float]:
    """Levels from a list or a comma-separated string; each a fraction in (0, 1). Default: the
    target fraction in target mode, else `DEFAULT_LEVELS`."""
    if value is None:
        return [target] if target is not None else list(DEFAULT_LEVELS)
    parts = comma_parts(value, "levels") if isinstance(value, str) else list(value)
    try:
        levels = [float(p) for p in parts]
    except ValueError:
        raise EvopruneError(
            f"levels: expected fractions like 0.35,0.5,0.9, got {value!r}"
        ) from None
    if not levels or any(not 0.0 < p < 1.0 for p in levels):
        raise EvopruneError(f"levels: expected fractions in (0, 1), got {value!r}")
    return sorted(dict.fromkeys(levels))


def parse_controls(value: Any) -> list[str]:
    if value is None or value == "all":
        return list(CONTROLS)
    if value == "none":
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = [str(p).strip() for p in parts if str(p).strip()]
    bad = [n for n in names if n not in CONTROLS]
    if bad:
        raise EvopruneError(
            f"controls: expected some of {', '.join(CONTROLS)} (or all, none), got {bad[0]!r}"
        )
    return [c for c in CONTROLS if c in names]


def selection_settings(
    job: dict[str, Any],
) -> tuple[SelectionConfig, TrainConfig, list[float], list[str]]:
    """The job's configs, checked before any data is loaded."""
    check_keys(job, SELECTION_KEYS)
    job_threads(job)
    config = SelectionConfig(**_typed(job, SelectionConfig))
    augment = job.get("augment") or ("shift" if job.get("dataset") in SHIFT_DATASETS else "none")
    train_config = TrainConfig(**{**_typed(job, TrainConfig), "augment": augment})
    if config.target_epoch is not None and config.target_epoch > train_config.epochs:
        raise EvopruneError(
            f"target_epoch: expected an epoch <= epochs ({train_config.epochs}), "
            f"got {config.target_epoch}"
        )
    return (
        config,
        train_config,
        parse_levels(job.get("levels"), config.target_fraction),
        parse_controls(job.get("controls")),
    )


def check_selection_job(job: dict[str, Any]) -> None:
    """A selection job's keys and values, checked without its data."""
    selection_settings(job)


def run_selection_job(
    job: dict[str, Any], out: Path | None, progress: bool = False
) -> dict[str, Any]:
    """Run the job; with `out`, write the folder described above."""
    start = time.perf_counter()
    config, train_config, levels, controls = selection_settings(job)
    seed = int(job.get("seed", 0))
    threads = job_threads(job)
    data_job = dict(job)
    if job.get("normalize") is None and job.get("dataset") in SHIFT_DATASETS:
        data_job["normalize"] = False  # pixels / 255: +0.6 point over [-0.7, 0.7] on mnist10k
    ds = job_dataset(data_job)
    name = ds.config.get("name", ds.name)
    if train_config.augment == "shift":
        side = math.isqrt(ds.n_features)
        if side * side != ds.n_features:
            raise EvopruneError(
                f"augment: shift needs square images, but {name} has {ds.n_features} features; "
                "use --augment none"
            )
        if train_config.max_shift >= side:
            raise EvopruneError(
                f"max_shift: expected fewer pixels than the images' side ({side}), got "
                f"{train_config.max_shift}"
            )
    hidden = DEFAULT_HIDDEN.get(name, [512, 256])
    layers = parse_arch(
        job.get("arch") or [ds.n_features, *hidden, ds.n_classes], ds.n_features, ds.n_classes
    )
    if len(layers) < 3:
        raise EvopruneError(
            f"arch: selection pruning needs at least one hidden layer, got {layers}"
        )
    from evoprune.progress import progress_bar

    with torch_threads(threads):
        total = n_epochs_total(train_config, levels, controls)
        trainings = total // max(train_config.epochs, 1)  # the selection run and its controls
        desc = f"selection {config.dynamics}" + (
            f" ({trainings} trainings)" if trainings > 1 else ""
        )
        with progress_bar(total=total, desc=desc, unit="epoch", enabled=progress) as bar:
            run = run_selection(
                ds, layers, config, train_config, levels, seed, controls, bar.update
            )
    extinct = [int((~a).sum()) for a in run.masses.alive]
    result = {
        **dict.fromkeys(RESULT_FIELDS),  # GA-only fields stay None
        **base_result(job, ds, layers),
        "init": "pytorch-default",
        "seed": seed,
        "variant": config.dynamics,
        "objective": "loss",
        **run.metrics,
        "sparsity": sum(extinct) / run.masses.n,  # share of hidden units extinct
        "test_accuracy_dense": run.dense_test_accuracy,
        "train_accuracy_dense": run.dense_train_accuracy,
        "extinct": sum(extinct),
        "extinct_per_layer": extinct,
        "units": run.masses.n,
        "dynamics": config.dynamics,
        "fitness": config.fitness,
        "target_fraction": config.target_fraction,
        "eta": run.eta,
        "updates": run.updates,
        "augment": train_config.augment,
        "levels": levels,
        "controls": controls,
        "selection_config": config.as_dict(),
        "train_config": train_config.as_dict(),
        "pruned": run.pruned,
        "threads": threads,  # torch threads of the training: another count sums in another order
        "wall_seconds": round(time.perf_counter() - start, 4),
    }
    if out is not None:
        from evoprune.pruning.selection.figures import draw_run_figures

        with writing_run_dir(out) as out:  # an interrupt while the figures are drawn: no files
            write_atomic(out / "network.npz", network_bytes(run, ds.config, layers))
            write_atomic(
                out / "masses.npz", _npz(masses=run.snapshots, sizes=np.array(run.masses.sizes))
            )
            draw_run_figures(out, result, run.snapshots, run.masses.sizes)
            write_run_dir(out, result, None, run.history)
    return result


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # numpy's stubs: a key of `arrays` could be allow_pickle (numpy>=2.1), which ours are not
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def network_bytes(run: SelectionRun, dataset: dict[str, Any], layers: list[int]) -> bytes:
    """The dynamics' trained network as a pickle-free ``.npz``: W0, b0, ..., mass0, alive0, ..."""
    arrays: dict[str, np.ndarray] = {}
    for i, lin in enumerate(run.model.linears):
        arrays[f"W{i}"] = lin.weight.detach().numpy()
        arrays[f"b{i}"] = lin.bias.detach().numpy()
    for i, (m, a) in enumerate(zip(run.masses.values, run.masses.alive, strict=True)):
        arrays[f"mass{i}"] = m.detach().numpy()
        arrays[f"alive{i}"] = a.numpy()
    arrays["fitness"] = run.fitness.numpy()  # breaks ties between equal masses when pruning
    header = {"format": NETWORK_FORMAT, "layers": layers, "dataset": dataset}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return _npz(**arrays)


def load_network(path: str | Path) -> tuple[MLP, Masses, dict[str, Any]]:
    """The network a selection run saved, with its masses attached (extinct units silenced)."""
    path = Path(path)
    if path.is_dir():
        path = path / "network.npz"
    if not path.is_file():
        raise EvopruneError(
            f"{path}: no such file (a selection-prune run folder holds network.npz)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise EvopruneError(f"{path}: not a readable network file ({type(exc).__name__})") from None
    if "header" not in arrays:
        raise EvopruneError(f"{path}: not a selection-prune network (no header)")
    header = json.loads(arrays["header"].tobytes())
    if header.get("format") != NETWORK_FORMAT:
        raise EvopruneError(f"{path}: unknown network format {header.get('format')!r}")
    model = MLP(header["layers"])
    with torch.no_grad():
        for i, lin in enumerate(model.linears):
            lin.weight.copy_(torch.from_numpy(arrays[f"W{i}"]))
            lin.bias.copy_(torch.from_numpy(arrays[f"b{i}"]))
    masses = Masses(model)
    masses.set([torch.from_numpy(arrays[f"mass{i}"]) for i in range(len(masses.names))])
    for i, alive in enumerate(masses.alive):
        alive.copy_(torch.from_numpy(arrays[f"alive{i}"]))
    model.eval()
    header["fitness"] = torch.from_numpy(arrays["fitness"]) if "fitness" in arrays else None
    return model, masses, header
