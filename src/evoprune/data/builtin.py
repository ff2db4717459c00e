"""The built-in datasets by name: their class counts, the paper's scaling default and a line
of description (settings: `evoprune.data.registry`).

Plain data without NumPy, torch or scikit-learn, so that `evoprune datasets` lists them at once;
`evoprune.data.registry` loads them (its `LOADERS` has a loader for each name).
"""

from __future__ import annotations

from dataclasses import dataclass

from evoprune.errors import EvopruneError


@dataclass(frozen=True)
class DatasetInfo:
    classes: tuple[int, ...]  # allowed class counts; the first is the default
    normalize: bool  # the paper's default
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "moons": DatasetInfo((2,), True, "two interleaving half circles, 50k/16k"),
    "circles": DatasetInfo((2,), False, "two concentric circles, 50k/16k"),
    "blobs": DatasetInfo(tuple(range(2, 11)), False, "isotropic Gaussian blobs, 5000 per class"),
    "digits": DatasetInfo((10, 2, 3, 4, 5), True, "8x8 handwritten digits (1797)"),
    "mnist": DatasetInfo(
        (10, *range(2, 10)), True, "28x28 MNIST from IDX files or an .npz (--data-dir)"
    ),
}


def check_dataset(name: object) -> None:
    """An `EvopruneError` for a dataset name not in `DATASETS`. The papers' tables name problems
    "digits-10" or "blobs-10", which here is a name and a class count: the line says so."""
    if name in DATASETS:
        return
    line = f"dataset: expected one of {', '.join(DATASETS)}, got {name!r}"
    base, _, count = str(name).rpartition("-")
    if base.lower() in DATASETS and count.isdigit():
        line += f" ({name} is dataset {base.lower()!r} with classes {count})"
    elif str(name).lower() in DATASETS:  # names are lower case, as in run folders and the store
        line += f" (did you mean {str(name).lower()!r}?)"
    raise EvopruneError(line)
