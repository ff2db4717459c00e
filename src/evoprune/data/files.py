"""Reading the user's files: CSV/NPZ feature tables and MNIST (IDX or .npz).

Every problem with a file is one `EvopruneError` line naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from evoprune.errors import EvopruneError

# Where `mnist` looks when no directory is given (first hit wins).
MNIST_SEARCH = ("EVOPRUNE_DATA_DIR", "data", "../shared/data")


def load_arrays(
    path: Path, target: str | None, min_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(n, f)`` float64 and raw labels ``(n,)`` from a CSV or NPZ file."""
    if path.is_dir():
        raise EvopruneError(f"{path}: a folder; expected a .csv or .npz file")
    if not path.is_file():
        raise EvopruneError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise EvopruneError(f"{path}: the file is empty")
    if path.suffix == ".npz":
        X, y = _load_npz(path)
    else:
        X, y = _load_csv(path, target)
    if len(X) < 4:
        raise EvopruneError(f"{path}: expected at least 4 rows, got {len(X)}")
    if not np.isfinite(X).all():
        raise EvopruneError(f"{path}: features contain NaN or infinite values")
    if len(np.unique(y)) < min_classes:
        raise EvopruneError(f"{path}: the target has only one class; need two or more")
    return X, y


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "X" not in npz or "y" not in npz:
                raise EvopruneError(
                    f"{path}: expected arrays 'X' and 'y', found {sorted(npz.files)}"
                )
            X, y = npz["X"], npz["y"]
    except (ValueError, OSError) as exc:
        raise EvopruneError(f"{path}: not a readable .npz file ({exc})") from None
    if X.ndim < 2 or len(X) != len(y) or y.ndim != 1:
        raise EvopruneError(
            f"{path}: expected X of shape (n, features) and y of shape (n,), "
            f"got {X.shape} and {y.shape}"
        )
    if not np.issubdtype(X.dtype, np.number):
        raise EvopruneError(f"{path}: X must be numeric, got dtype {X.dtype}")
    return X.reshape(len(X), -1).astype(np.float64), y


def _load_csv(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    if not target:
        raise EvopruneError(
            f"{path}: a CSV needs the name of its label column (--target COLUMN; target= in Python)"
        )
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise EvopruneError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if target not in frame.columns:
        raise EvopruneError(
            f"{path}: no target column {target!r}; columns are {', '.join(map(str, frame.columns))}"
        )
    y = frame[target]
    if y.isna().any():
        raise EvopruneError(f"{path}: column {target!r} has empty values in rows {_rows(y.isna())}")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise EvopruneError(f"{path}: no feature columns besides {target!r}")
    for col in features.columns:
        values = pd.to_numeric(features[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            kind = "empty (NaN)" if features[col][bad].isna().all() else "non-numeric"
            raise EvopruneError(f"{path}: column {col!r} has {kind} values in rows {_rows(bad)}")
        features[col] = values
    return features.to_numpy(dtype=np.float64), y.to_numpy()


def _rows(mask) -> str:
    rows = [int(i) + 2 for i in np.flatnonzero(np.asarray(mask))[:5]]  # +2: header, 1-based
    return ", ".join(map(str, rows)) + (" ..." if int(np.asarray(mask).sum()) > 5 else "")


def _find_mnist_dir(data_dir: str | None) -> Path:
    if data_dir:
        return Path(data_dir)
    candidates = [os.environ.get(MNIST_SEARCH[0])] + list(MNIST_SEARCH[1:])
    for cand in candidates:
        if cand and Path(cand).is_dir() and _mnist_files(Path(cand)):
            return Path(cand)
    raise EvopruneError(
        "mnist: no data found; pass --data-dir DIR (data_dir= in Python) holding the IDX files "
        "(train-images-idx3-ubyte[.gz], ...) or an .npz with images and labels"
    )


def _mnist_files(folder: Path) -> list[Path]:
    idx = sorted(folder.glob("*images-idx3-ubyte*"))
    return idx or sorted(folder.glob("*mnist*.npz"))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise EvopruneError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise EvopruneError(f"{path}: truncated IDX file")
    return data.reshape(dims)


def load_mnist_dir(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """All MNIST images ``(n, 28, 28)`` uint8 and labels ``(n,)`` found in `data_dir`, shuffled
    by a fixed permutation (files may be grouped by class)."""
    folder = _find_mnist_dir(data_dir)
    if not folder.is_dir():
        raise EvopruneError(f"mnist: {folder} is not a directory")
    images = sorted(folder.glob("*images-idx3-ubyte*"))
    if images:
        X = np.concatenate([_read_idx(p) for p in images])
        labels = [Path(str(p).replace("images-idx3", "labels-idx1")) for p in images]
        missing = [str(p) for p in labels if not p.exists()]
        if missing:
            raise EvopruneError(f"mnist: label file missing: {missing[0]}")
        y = np.concatenate([_read_idx(p) for p in labels])
    else:
        npzs = sorted(folder.glob("*.npz"))
        if not npzs:
            raise EvopruneError(f"mnist: {folder} has no IDX files and no .npz file")
        with np.load(npzs[0], allow_pickle=False) as npz:
            keys = ("images", "labels") if "images" in npz else ("X", "y")
            if keys[0] not in npz or keys[1] not in npz:
                raise EvopruneError(f"{npzs[0]}: expected arrays images/labels or X/y")
            X, y = npz[keys[0]], npz[keys[1]]
    if len(X) != len(y):
        raise EvopruneError(f"mnist: {len(X)} images but {len(y)} labels in {folder}")
    order = np.random.default_rng(0).permutation(len(y))
    return X[order], y[order].astype(np.int64)
