"""The dataset registry (plain dicts: `DATASETS`, from `evoprune.data.builtin`, and the `LOADERS`
here) and the `Dataset` every method consumes.

Paper settings (Schönberger et al., arXiv 2411.04658, Sec. 4, and its code):
moons/circles: scikit-learn generators with noise 0.07, 50,000 training samples and a separately
generated test set of 16,000, both random_state 42; blobs: ``make_blobs(5000*c, c centers,
center_box=(-20, 40), random_state=10)``, 75/25 split; digits: the first c classes of
scikit-learn's 8x8 digits, 75/25 split. Min-max scaling of all features to [-0.7, 0.7] (fitted
on the training split) is on by default for moons and digits, off for circles and blobs.

The user's own files (`load_file`) get per-feature min-max scaling to [-0.7, 0.7] fitted on the
training split instead (`evoprune.data.scaling.FeatureScaling`), on by default; the fitted
ranges are kept in the dataset's config, so a ticket scales new data the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

from evoprune.data.builtin import DATASETS, check_dataset
from evoprune.data.files import file_digest, load_arrays, load_mnist_dir, unit_pixels
from evoprune.data.scaling import SCALE, FeatureScaling, global_min_max, scale_global
from evoprune.errors import EvopruneError

__all__ = ["SCALE", "DATASETS", "Dataset", "fresh_sample", "load_dataset", "load_file", "min_max"]
SPLIT_STATE = 42  # fixed split of the built-in datasets: the same data for every run seed


@dataclass
class Dataset:
    """Train/test tensors plus the config that rebuilds them exactly."""

    name: str
    X_train: torch.Tensor  # (n, features) float32
    y_train: torch.Tensor  # (n,) int64 in 0..C-1
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.X_train[0].numel())


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


GENERATORS = {"moons": skd.make_moons, "circles": skd.make_circles}  # 2 classes each
N_TRAIN, N_TEST = 50_000, 16_000  # of moons and circles, both drawn with SPLIT_STATE
NOISE = 0.07  # standard deviation of the Gaussian noise on their points


def _generate(name: str, n: int, state: int = SPLIT_STATE) -> tuple[np.ndarray, np.ndarray]:
    return GENERATORS[name](n_samples=n, noise=NOISE, random_state=state)


@cache
def generated_range(name: str) -> tuple[float, float]:
    """The minimum and maximum over a generated dataset's training split: the range of the
    paper's global scaling, which fresh samples and the Bayes rule share with the dataset."""
    X_train, _ = _generate(name, N_TRAIN)
    return float(X_train.min()), float(X_train.max())


def _moons(classes: int, **_: Any) -> Arrays:
    return *_generate("moons", N_TRAIN), *_generate("moons", N_TEST)


def _circles(classes: int, **_: Any) -> Arrays:
    return *_generate("circles", N_TRAIN), *_generate("circles", N_TEST)


def split_arrays(X: np.ndarray, y: np.ndarray, state: int = SPLIT_STATE) -> Arrays:
    """The paper's seeded 75/25 split: ``(X_train, y_train, X_test, y_test)``."""
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=state)
    return X_tr, y_tr, X_te, y_te


def _blobs(classes: int, **_: Any) -> Arrays:
    X, y = skd.make_blobs(
        n_samples=5000 * classes, centers=classes, center_box=(-20, 40), random_state=10
    )
    return split_arrays(X, y)


def _digits(classes: int, **_: Any) -> Arrays:
    X, y = skd.load_digits(return_X_y=True)
    keep = y < classes
    return split_arrays(X[keep], y[keep])


def _mnist(
    classes: int, data_dir: str | None = None, record: dict[str, Any] | None = None, **_: Any
) -> Arrays:
    """MNIST's first `classes` digits, pixels in [0, 1]: the folder's official train/test split
    (IDX train-* and t10k-* files), else one set (e.g. mnist10k.npz) split 75/25. `record` gets
    the digest of the files read."""
    found = load_mnist_dir(data_dir)
    if record is not None:
        if data_dir is None:  # where the search found it: a ticket finds it from any folder
            record["data_dir"] = str(found.folder.resolve())
        record["sha256"] = file_digest(*found.files)

    def first_classes(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = y < classes
        if len(np.unique(y[keep])) < 2:
            part = "test files (t10k-*)" if X is found.X_test else "files"
            raise EvopruneError(
                f"mnist: the {part} in {found.folder} hold {int(keep.sum())} images of the "
                f"digits 0..{classes - 1} ({len(np.unique(y[keep]))} of them); expected two or more"
            )
        return unit_pixels(X[keep].reshape(int(keep.sum()), -1), found.folder), y[keep]

    if found.X_test is None or found.y_test is None:
        return split_arrays(*first_classes(found.X, found.y))
    return (*first_classes(found.X, found.y), *first_classes(found.X_test, found.y_test))


# the loader of each built-in dataset (`DATASETS`, in evoprune.data.builtin, has the rest)
LOADERS: dict[str, Callable[..., Arrays]] = {
    "moons": _moons,
    "circles": _circles,
    "blobs": _blobs,
    "digits": _digits,
    "mnist": _mnist,
}


def _default_classes(name: str) -> int:
    return DATASETS[name].classes[0]


min_max = global_min_max  # the paper's scaling of its built-in datasets


def _to_dataset(
    name: str,
    arrays: Arrays,
    normalize: bool,
    config: dict[str, Any],
    scaling: FeatureScaling | None = None,
    labels: list[Any] | None = None,
) -> Dataset:
    """Tensors from arrays; `scaling` (per-feature) replaces the paper's global min-max.
    Class i is the i-th of `labels` (default: the training split's sorted labels)."""
    X, y, Xt, yt = (np.asarray(a) for a in arrays)
    if scaling is not None:
        X, Xt = scaling.apply(X), scaling.apply(Xt)
    elif normalize:
        X = X.astype(np.float64)
        config["global_range"] = [float(X.min()), float(X.max())]  # to scale new data alike
        X, Xt = min_max(X, Xt.astype(np.float64))
    if labels is None:
        labels = class_labels(y, name)
        if len(labels) < 2:
            raise EvopruneError(
                f"{name}: the training split has only one class ({labels[0]!r}); need two or more"
            )
    columns = config.get("columns")
    return Dataset(
        name=name,
        X_train=float32_features(X, name, columns),
        y_train=torch.as_tensor(class_index(y, labels, name), dtype=torch.long),
        X_test=float32_features(Xt, name, columns),
        y_test=torch.as_tensor(class_index(yt, labels, name), dtype=torch.long),
        n_classes=len(labels),
        config=config,
    )


def float32_features(
    X: np.ndarray, source: object, columns: list[str] | None = None
) -> torch.Tensor:
    """Features (finite, preprocessed) as the float32 the networks compute in, or one error
    naming the first column float32 cannot hold (a raw 1e300 would become inf, and every
    score NaN)."""
    X32 = torch.as_tensor(X, dtype=torch.float32)
    if X32.numel() and not torch.isfinite(X32).all():
        flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        col = int(np.flatnonzero(~torch.isfinite(X32.reshape(len(X), -1)).all(dim=0).numpy())[0])
        name = repr(columns[col]) if columns and col < len(columns) else str(col)
        raise EvopruneError(
            f"{source}: feature column {name} holds {np.abs(flat[:, col]).max():.3g} (as the "
            f"network sees it), beyond float32's range ({np.finfo(np.float32).max:.3g}): "
            "rescale that column"
        )
    return X32


def class_labels(y: np.ndarray, name: str) -> list[Any]:
    """The distinct labels, sorted; many of them with fractions is a continuous target, and
    two that differ only in spaces around them ("cat", "cat ": a padded cell) are one error
    line each."""
    labels = np.unique(y).tolist()
    stripped: dict[str, Any] = {}
    for label in labels:
        if isinstance(label, str) and stripped.setdefault(label.strip(), label) != label:
            raise EvopruneError(
                f"{name}: labels {stripped[label.strip()]!r} and {label!r} differ only in spaces "
                "around them; expected one spelling per class (strip the label column)"
            )
    fractional = [v for v in labels if isinstance(v, float) and not float(v).is_integer()]
    if len(labels) > 20 and fractional:
        raise EvopruneError(
            f"{name}: the labels take {len(labels)} distinct values, fractions among them "
            f"(e.g. {fractional[0]!r}): expected class labels (a few classes, as numbers or "
            "text), not a continuous quantity"
        )
    return labels


def class_index(y: np.ndarray, labels: list[Any], name: str) -> np.ndarray:
    """Each label's class number: its place in `labels`, compared as text with whole numbers
    written as integers, so that a label read as the number 1, one recorded as "1" and one
    written 1.0 in another file are the same class.

    >>> class_index(np.array([0, 2.0, 1]), ["0.0", "1.0", "2"], "new.csv").tolist()
    [0, 2, 1]
    """
    key: Callable[[Any], str] = _label_key
    if len({key(label) for label in labels}) < len(labels):  # "1" and "1.0" both classes
        key = str
    index = {key(label): i for i, label in enumerate(labels)}
    unknown = sorted({key(v) for v in y} - set(index))
    if unknown:
        shown = ", ".join(map(str, labels[:10])) + (
            f", ... ({len(labels)} in all)" if len(labels) > 10 else ""
        )
        raise EvopruneError(f"{name}: label {unknown[0]!r} is not one of the classes {shown}")
    return np.array([index[key(v)] for v in y], dtype=np.int64)


def _label_key(label: Any) -> str:
    text = str(label)
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def check_classes(name: str, classes: Any) -> int:
    """`classes` of built-in dataset `name` as an int, or one error line naming the counts it
    supports.

    >>> check_classes("digits", 10)
    10
    >>> check_classes("digits", 7)
    Traceback (most recent call last):
    evoprune.errors.EvopruneError: classes: digits supports 2, 3, 4, 5, 10 classes, got 7
    """
    allowed = ", ".join(str(c) for c in sorted(DATASETS[name].classes))
    is_int = isinstance(classes, int | np.integer) and not isinstance(classes, bool)
    if not is_int or int(classes) not in DATASETS[name].classes:
        raise EvopruneError(f"classes: {name} supports {allowed} classes, got {classes!r}")
    return int(classes)


def load_dataset(
    name: str,
    classes: int | None = None,
    normalize: bool | None = None,
    data_dir: str | Path | None = None,
) -> Dataset:
    """A built-in dataset by name; `classes` and `normalize` default to the paper's settings."""
    check_dataset(name)
    info = DATASETS[name]
    classes = _default_classes(name) if classes is None else check_classes(name, classes)
    normalize = info.normalize if normalize is None else bool(normalize)
    config: dict[str, Any] = {"name": name, "classes": classes, "normalize": normalize}
    if data_dir:  # absolute: the ticket must find it again from any folder
        config["data_dir"] = str(Path(data_dir).resolve())
    record: dict[str, Any] = {}
    arrays = LOADERS[name](classes, data_dir=config.get("data_dir"), record=record)
    config.update(record)
    return _to_dataset(name, arrays, normalize, config)


def fresh_sample(
    name: str, n: int, seed: int, normalize: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` new samples ``(X, y)`` from a generated dataset's distribution (moons, circles),
    scaled as `load_dataset` scales its training split.

    The fixed test set of 16,000 points resolves an error rate only to about 1e-4: a ticket at
    99.99% makes one or two errors there, and which one is chance. Millions of fresh samples
    measure the rate itself (`benchmarks/bench_memetic.py --fresh`).

    >>> X, y = fresh_sample("moons", 1000, seed=1)
    >>> X.shape, float(X.abs().max()) < 0.8
    (torch.Size([1000, 2]), True)
    """
    if name not in GENERATORS:
        raise EvopruneError(
            f"fresh_sample: expected a generated dataset ({', '.join(GENERATORS)}), got {name!r}"
        )
    X, y = _generate(name, n, seed)
    if DATASETS[name].normalize if normalize is None else normalize:
        X = scale_global(X, *generated_range(name))
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def load_file(
    path: str | Path,
    target: str | None = None,
    seed: int = 0,
    normalize: bool | None = None,
    scaling: str | dict[str, Any] | None = None,
    labels: list[Any] | None = None,
    columns: list[str] | None = None,
) -> Dataset:
    """The user's own data: a CSV with a `target` column, or an ``.npz`` with arrays X and y.

    Labels are mapped to 0..C-1 in sorted order, or in the order of `labels` (a ticket's record
    of its training classes, so new data keeps their numbering; then one class is enough). The
    75/25 split is seeded by `seed`. `normalize` (default on)
    scales each feature to [-0.7, 0.7] by its training-split range; `scaling` instead applies
    given ranges (the ``scaling`` record of a dataset config, e.g. a ticket's) to all rows, or
    ``"global"`` selects the paper's one-range scaling. `columns` (a CSV's feature names, as
    recorded in a dataset config) reorders the file's columns to match, by name.

    The config records the file's absolute path, the SHA-256 of its bytes (first 16 hex
    characters, ``sha256``) and a CSV's feature column names (``columns``).
    """
    path = Path(path)
    X, y, names = load_arrays(path, target, 2 if labels is None else 1, columns)
    X = X.astype(np.float64)
    arrays = split_arrays(X, y, state=seed)
    if labels is None:
        _every_class_trains(path, y, arrays[1], seed)
    normalize = True if normalize is None else bool(normalize)
    config: dict[str, Any] = {
        "name": "file",
        "path": str(path.resolve()),
        "sha256": file_digest(path),
        "target": target,
        "split_seed": seed,
        "normalize": normalize,
    }
    if names is not None:
        config["columns"] = names
    fitted = None
    if isinstance(scaling, dict):
        fitted = fitted_scaling(scaling, X, path, columns)
    elif scaling == "global":
        config["scaling"] = "global"
    elif scaling is not None:
        raise EvopruneError(f"scaling: expected 'global' or a fitted record, got {scaling!r}")
    elif normalize:
        fitted = FeatureScaling.fit(arrays[0])
    if fitted is not None:
        config.update(normalize=True, scaling=fitted.to_config())
    ds = _to_dataset(path.name, arrays, config["normalize"], config, fitted, labels)
    ds.config["classes"] = ds.n_classes
    ds.config["labels"] = labels if labels is not None else np.unique(arrays[1]).tolist()
    return ds


def _every_class_trains(path: Path, y: np.ndarray, y_train: np.ndarray, seed: int) -> None:
    """A class all of whose rows the split sent to the test set is one error line saying so
    (else its test rows would read as labels the ticket never had)."""
    missing = sorted(set(class_labels(y, path.name)) - set(np.unique(y_train).tolist()), key=str)
    if missing:
        rows = int((y == missing[0]).sum())
        raise EvopruneError(
            f"{path}: class {missing[0]!r} has {rows} row{'s' * (rows > 1)}, all in the test "
            f"split (split seed {seed}); a class needs rows to train on: add rows or drop it"
        )


def dataset_from_config(config: dict[str, Any]) -> Dataset:
    """Rebuild a dataset from the `config` a `Dataset` (and hence a ticket) carries."""
    if not config or "name" not in config:  # a ticket made in Python from bare tensors
        raise EvopruneError(
            "the ticket records no dataset; give one (--dataset or --data; in Python, a Dataset's "
            "config in ticket.dataset)"
        )
    if config.get("name") == "file":
        normalize = bool(config.get("normalize", False))
        # A config from before per-feature scaling that says normalize: the paper's global one.
        scaling = config.get("scaling", "global" if normalize else None)
        return load_file(
            config["path"],
            config.get("target"),
            int(config.get("split_seed", 0)),
            normalize,
            scaling if normalize else None,
            config.get("labels"),
            config.get("columns"),
        )
    return load_dataset(
        config["name"], config.get("classes"), config.get("normalize"), config.get("data_dir")
    )


def describe_columns(columns: list[str] | None, most: int = 6) -> str:
    """`` (a, b, ...)``: a few of the named feature columns, for a message; empty without names."""
    if not columns:
        return ""
    shown = ", ".join(columns[:most]) + (", ..." if len(columns) > most else "")
    return f" ({shown})"


def fitted_scaling(
    record: dict[str, Any], X: np.ndarray, path: object, columns: list[str] | None
) -> FeatureScaling:
    """The per-feature scaling a ticket recorded, checked to fit the rows of `X` from `path`
    (a file, or what errors call the rows)."""
    fitted = FeatureScaling.from_config(record)
    if fitted.n_features != X[0].size:
        raise EvopruneError(
            f"{path}: the scaling was fitted on {fitted.n_features} features"
            f"{describe_columns(columns)}, the file has {X[0].size}"
        )
    return fitted
