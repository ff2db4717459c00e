"""Job runners for the baselines: a job dict in, a results folder and result dict out.

`evoprune.jobs.run_job` dispatches ``method: "edge-popup"`` and ``method: "backprop"`` here.
Besides the common keys (see `evoprune.jobkeys`), the runners take:

edge-popup: ``sparsity`` (fraction removed per layer, default 0.5), ``epochs`` (100), ``lr``
(0.1), ``momentum`` (0.9), ``weight_decay`` (1e-4), ``nesterov`` (false), ``batch_size`` (128),
``threads`` (1). The random network is ``build_mlp(arch, init, seed, keep=1 - sparsity)``.

backprop: the Table 2 row for (dataset, arch, classes) is the default; any of ``solver``,
``learning_rate``, ``learning_rate_init``, ``batch_size``, ``alpha``, ``epsilon``,
``momentum``, ``nesterovs_momentum`` overrides it, and ``max_iter`` (1000) caps the epochs.
``init`` does not apply (sklearn initialises its own weights) and is an error if given.
"""

from __future__ import annotations

import io
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from evoprune.baselines.backprop import MAX_ITER, backprop, sklearn_activation
from evoprune.baselines.edge_popup import EdgePopupConfig, epoch_bar, train_edge_popup
from evoprune.baselines.table2 import BackpropParams, lookup
from evoprune.errors import EvopruneError
from evoprune.io import write_atomic
from evoprune.jobkeys import check_keys, job_dataset
from evoprune.nets import ARCHS, build_network, check_activation, is_conv_arch, parse_arch
from evoprune.results import base_result, write_run_dir, writing_run_dir
from evoprune.scores import score

EDGE_POPUP_KEYS = {f.name for f in fields(EdgePopupConfig)} | {"activation"}
BACKPROP_PARAM_KEYS = {f.name for f in fields(BackpropParams)}
BACKPROP_KEYS = BACKPROP_PARAM_KEYS | {"max_iter", "activation"}

# Fields every result.json has, GA or baseline; the baselines fill the GA-only ones with None.
GA_ONLY_FIELDS = (
    "generations",
    "evaluations",
    "sparsity_before_post_prune",
    "test_accuracy_before_post_prune",
)


def _coerce(key: str, value: Any, kind: type) -> Any:
    """`value` as `kind` (YAML reads ``1e-4`` as a string); a clear error if it is not one."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise EvopruneError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        is_digits = isinstance(value, str) and value.strip().lstrip("-").isdigit()
        if isinstance(value, bool) or not (isinstance(value, int) or is_digits):
            raise EvopruneError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if kind is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise EvopruneError(f"{key}: expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise EvopruneError(f"{key}: expected a string, got {value!r}")
    return value


def _typed_fields(job: dict[str, Any], cls: type) -> dict[str, Any]:
    """The job's values for `cls`'s dataclass fields, converted to the fields' types."""
    kinds = {"int": int, "float": float, "bool": bool, "str": str}
    return {
        f.name: _coerce(f.name, job[f.name], kinds[str(f.type)])
        for f in fields(cls)
        if job.get(f.name) is not None
    }


def _layers(job: dict[str, Any], n_in: int, n_out: int) -> list[int]:
    """Backprop's MLP (scikit-learn trains MLPs only: the conv net is for the mask searches)."""
    if is_conv_arch(job.get("arch")):
        raise EvopruneError(
            "arch: backprop trains an MLP (scikit-learn's MLPClassifier); give A, B, C, D or a "
            "layer list, not conv"
        )
    return parse_arch(job.get("arch") or "B", n_in, n_out)  # B: the GA's default too


def _seed(job: dict[str, Any]) -> int:
    return _coerce("seed", job.get("seed", 0), int)


def check_edge_popup_job(job: dict[str, Any]) -> None:
    """An edge-popup job's keys and values, checked without its data (a spec's arms at load
    time; a sparsity given as a reference to other runs is checked once filled in)."""
    check_keys(job, EDGE_POPUP_KEYS)
    EdgePopupConfig(**_typed_fields({k: v for k, v in job.items() if not isinstance(v, dict)},
                                    EdgePopupConfig))  # fmt: skip
    if job.get("activation") is not None:
        check_activation(job["activation"], job.get("arch"))


def check_backprop_job(job: dict[str, Any]) -> None:
    """A backprop job's keys and values, checked without its data: the layers' form, the
    epoch cap and the Table 2 row with its overrides (a spec's arms at load time)."""
    from evoprune.baselines.backprop import hidden_layers
    from evoprune.data import DATASETS

    _check_backprop_keys(job)
    _max_iter(job)
    arch = job.get("arch") or "B"
    named = isinstance(arch, str) and arch.strip().upper() in ARCHS
    if is_conv_arch(arch):
        _layers(job, 0, 0)  # refused: scikit-learn trains MLPs
    if named:
        hidden = hidden_layers(ARCHS[arch.strip().upper()])
    else:
        widths = [int(w) for w in str(arch).strip("[]").split(",")]
        hidden = hidden_layers(widths[1:-1])
    dataset = "file" if job.get("data") else job.get("dataset", "moons")
    info = DATASETS.get(dataset)
    classes = job.get("classes") or (info.classes[0] if info is not None else 0)
    backprop_params(job, dataset, list(hidden), classes, job.get("normalize"))


def _check_backprop_keys(job: dict[str, Any]) -> None:
    check_keys(job, BACKPROP_KEYS)
    if job.get("activation") is not None:
        sklearn_activation(job["activation"])
    if job.get("init") is not None:
        raise EvopruneError("init: backprop trains sklearn's own initialisation; drop 'init'")


def _max_iter(job: dict[str, Any]) -> int:
    """The job's epoch cap: a positive integer."""
    max_iter = _coerce("max_iter", job.get("max_iter", MAX_ITER), int)
    if max_iter < 1:
        raise EvopruneError(f"max_iter: expected a positive integer, got {max_iter}")
    return max_iter


def run_edge_popup_job(job: dict[str, Any], out: Path | None, progress: bool) -> dict[str, Any]:
    """Run edge-popup on the job's dataset and random MLP; write ``out`` if given."""
    start = time.perf_counter()  # wall time of the whole job, as the GA reports it
    check_keys(job, EDGE_POPUP_KEYS)
    config = EdgePopupConfig(**_typed_fields(job, EdgePopupConfig))
    seed = _seed(job)
    init = job.get("init") or "uniform"
    activation = job.get("activation") or "relu"
    ds = job_dataset(job)
    model, layers = build_network(job.get("arch") or "B", ds.n_features, ds.n_classes, init, seed,
                                  keep=config.keep, activation=activation)  # fmt: skip
    # an MLP (layers: its widths) or a named conv net (layers: "conv")
    with epoch_bar(config.epochs, "edge-popup", progress) as on_epoch:
        found = train_edge_popup(
            model, ds.X_train.view(len(ds.X_train), -1), ds.y_train, config, seed, on_epoch
        )
    metrics = {**score(model, found.mask, ds), "sparsity": found.sparsity}
    result = {
        **base_result(job, ds, layers),
        "init": init,
        "activation": activation,
        "seed": seed,
        "variant": "edge-popup",
        "objective": "loss",  # edge-popup minimises the cross-entropy
        **metrics,
        **dict.fromkeys(GA_ONLY_FIELDS),
        "epochs": config.epochs,
        "target_sparsity": config.sparsity,
        "hyperparameters": config.as_dict(),
        "train_seconds": round(found.wall_seconds, 4),
        "wall_seconds": round(time.perf_counter() - start, 4),
    }
    if out is not None:
        scalars = {k: v for k, v in result.items() if isinstance(v, int | float | str)}
        write_run_dir(out, result, found.ticket(ds.config, scalars), found.history)
    return result


def backprop_params(
    job: dict[str, Any], dataset: str, hidden: list[int], classes: int, normalize: bool | None
) -> tuple[BackpropParams, bool]:
    """Table 2's row with the job's overrides; and whether a Table 2 row was found (Table 2
    was tuned for ReLU: another activation takes the job's hyperparameters alone)."""
    overrides = _typed_fields(job, BackpropParams)
    activation = job.get("activation") or "relu"
    row = lookup(dataset, hidden, classes, normalize) if activation == "relu" else None
    if row is None:
        if "solver" not in overrides:
            name = Path(job["data"]).name if job.get("data") else dataset
            why = (
                f"Table 2 has no row for dataset {name!r}, hidden layers {hidden}, {classes} classes"
                if activation == "relu"
                else f"Table 2's rows were tuned for relu, not {activation}"
            )
            raise EvopruneError(
                f"backprop: {why}; give the hyperparameters (at least --solver; "
                f"tune-backprop{'' if activation == 'relu' else ' --activation ' + activation} "
                "finds them)"
            )
        params, found = BackpropParams(**overrides), False
    else:
        params, found = replace(row, **overrides), True
    unread = sorted(set(overrides) - set(params.sklearn_kwargs()))
    if unread:  # as for the other methods' flags: never silently ignored
        raise EvopruneError(
            f"{unread[0]}: not read by the {params.solver} solver (momentum, "
            "nesterovs_momentum and the learning_rate schedule are sgd's, epsilon adam's)"
        )
    return params, found


def run_backprop_job(job: dict[str, Any], out: Path | None, progress: bool) -> dict[str, Any]:
    """Train the Table 2 ``MLPClassifier`` on the job's dataset; write ``out`` if given."""
    start = time.perf_counter()
    _check_backprop_keys(job)
    seed = _seed(job)
    max_iter = _max_iter(job)
    ds = job_dataset(job)
    layers = _layers(job, ds.n_features, ds.n_classes)
    params, from_table = backprop_params(
        job, ds.config.get("name", ds.name), layers[1:-1], ds.n_classes, ds.config.get("normalize")
    )
    X_train, y_train = ds.X_train.view(len(ds.X_train), -1).numpy(), ds.y_train.numpy()
    with epoch_bar(max_iter, "backprop", progress) as on_epoch:
        trained = backprop(X_train, y_train, layers[1:-1], params, seed=seed, max_iter=max_iter,
                           on_epoch=on_epoch, activation=job.get("activation") or "relu")  # fmt: skip
    train_acc, train_loss = trained.metrics(X_train, y_train)
    test_acc, test_loss = trained.metrics(
        ds.X_test.view(len(ds.X_test), -1).numpy(), ds.y_test.numpy()
    )
    result = {
        **base_result(job, ds, layers),
        "init": None,  # sklearn's Glorot-uniform init, seeded by random_state
        "activation": trained.activation,
        "seed": seed,
        "variant": "backprop",
        "objective": "loss",  # MLPClassifier minimises the cross-entropy
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "sparsity": 0.0,
        **dict.fromkeys(GA_ONLY_FIELDS),
        "epochs": trained.epochs,
        "max_iter": max_iter,
        "hyperparameters": params.sklearn_kwargs(),
        "table2_row": from_table,
        "sklearn_params": trained.sklearn_params(),
        "train_seconds": round(trained.wall_seconds, 4),
        "wall_seconds": round(time.perf_counter() - start, 4),
    }
    if out is not None:
        with writing_run_dir(out) as out:  # an interrupt before result.json: no model.npz
            write_atomic(out / "model.npz", _weights_npz(trained.model))
            write_run_dir(out, result, None, trained.history)
    return result


def _weights_npz(model: Any) -> bytes:
    """The trained weights as a pickle-free ``.npz``: W0, b0, W1, b1, ... (sklearn's layout)."""
    arrays = {}
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        arrays[f"W{i}"], arrays[f"b{i}"] = w, b
    buf = io.BytesIO()
    np.savez_compressed(buf, classes=model.classes_, **arrays)
    return buf.getvalue()
