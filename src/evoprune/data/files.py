"""Reading the user's files: CSV/NPZ feature tables and MNIST (IDX or .npz).

Every problem with a file is one `EvopruneError` line naming the file and what was expected.

>>> unit_pixels(np.array([[0, 255]], dtype=np.uint8), "x.npz").tolist()
[[0.0, 1.0]]
>>> unit_pixels(np.array([[0.0, 0.5]]), "x.npz").tolist()  # floats in [0, 1] stay
[[0.0, 0.5]]
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from evoprune.errors import EvopruneError

# Where `mnist` looks when no directory is given (first hit wins).
MNIST_SEARCH = ("EVOPRUNE_DATA_DIR", "data", "../shared/data")
TORCHVISION_RAW = ("MNIST/raw", "raw")  # torchvision's layout below its root (ROOT/MNIST/raw)


def file_digest(*paths: Path) -> str:
    """The first 16 hex characters of the SHA-256 of the files' bytes, in order: a ticket
    records it, so reading a changed file later can be noticed."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def load_arrays(
    path: Path,
    target: str | None,
    min_classes: int = 2,
    columns: list[str] | None = None,
    min_rows: int = 4,
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Features ``(n, f)`` (float64 from a CSV; an NPZ's own numeric dtype), raw labels ``(n,)``
    and the CSV's feature column names (None for an NPZ). Data to train on needs `min_rows` 4
    (a training and a test split); new data for a ticket, 1.

    `columns` (the names a ticket was trained on) puts a CSV's columns in that order; a name
    missing or extra is an error naming them.
    """
    if path.is_dir():
        raise EvopruneError(f"{path}: a folder; expected a .csv or .npz file")
    if not path.is_file():
        raise EvopruneError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise EvopruneError(f"{path}: the file is empty")
    names = None
    if path.suffix.lower() == ".npz":
        if target and columns is None:  # (a ticket's new data may name its training CSV's)
            raise EvopruneError(f"{path}: an .npz holds its labels as y; a target column "
                                f"({target!r}) is for a CSV")  # fmt: skip
        X, y = _load_npz(path)
    else:
        X, y, names = _load_csv(path, target, columns)
    if len(X) < min_rows:
        raise EvopruneError(f"{path}: expected at least {min_rows} rows, got {len(X)}")
    if X.shape[1] == 0:
        raise EvopruneError(f"{path}: X has no features (shape {X.shape})")
    if not np.isfinite(X).all():
        bad = ~np.isfinite(X)
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        where = (f"column {names[col]!r} on {_rows(bad[:, col])}" if names is not None
                 else f"column {col} of X, rows {np.flatnonzero(bad[:, col])[:5].tolist()}")  # fmt: skip
        raise EvopruneError(f"{path}: features contain NaN or infinite values ({where})")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        rows = np.flatnonzero(~np.isfinite(y))
        raise EvopruneError(f"{path}: y has NaN or infinite labels (rows {rows[:5].tolist()})")
    if len(np.unique(y)) < min_classes:
        raise EvopruneError(f"{path}: the target has only one class; need two or more")
    return X, y, names


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays = _read_npz(path)
    keys = ("images", "labels") if "X" not in arrays and "images" in arrays else ("X", "y")
    if keys[0] not in arrays or keys[1] not in arrays:  # images/labels: an MNIST-style file
        raise EvopruneError(
            f"{path}: expected arrays 'X' and 'y' (or 'images' and 'labels'), found {sorted(arrays)}"
        )
    X, y = arrays[keys[0]], arrays[keys[1]]
    if X.ndim < 2 or len(X) != len(y) or y.ndim != 1:
        raise EvopruneError(
            f"{path}: expected X of shape (n, features) and y of shape (n,), "
            f"got {X.shape} and {y.shape}"
        )
    if X.dtype == np.bool_:  # True/False as 1/0, as in a CSV
        X = X.astype(np.uint8)
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise EvopruneError(f"{path}: X must be real numbers, got dtype {X.dtype}")
    return X.reshape(len(X), int(np.prod(X.shape[1:]))), y  # (not -1: 0 rows would not fit it)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file (no pickles); an unreadable file is one error line."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {}
            for name in npz.files:
                try:
                    arrays[name] = npz[name]
                except ValueError as exc:
                    if "allow_pickle" not in str(exc):
                        raise
                    raise EvopruneError(
                        f"{path}: array {name!r} holds Python objects (dtype object), which are "
                        "not read (no pickles); save it as numbers, e.g. X.astype(np.float32)"
                    ) from None
            return arrays
    except EvopruneError:  # a ValueError too: said once, not wrapped
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise EvopruneError(f"{path}: not a readable .npz file ({exc})") from None


def _load_csv(
    path: Path, target: str | None, columns: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import pandas as pd

    if not target:
        raise EvopruneError(
            f"{path}: a CSV needs the name of its label column (--target COLUMN; target= in Python)"
        )
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise EvopruneError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    header = _check_header(path)
    if target not in frame.columns:
        hint = next(
            (f" (the header holds {sep!r}: this reader splits on commas only)"
             for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]), "",
        ) or next(
            (f" (the header names it {c!r}, spaces included)"
             for c in map(str, frame.columns) if c.strip() == target.strip()), "",
        )  # fmt: skip
        raise EvopruneError(
            f"{path}: no target column {target!r}; columns are "
            f"{_some([str(c) for c in frame.columns])}{hint}"
        )
    y = frame[target]
    if y.isna().any():
        raise EvopruneError(f"{path}: column {target!r} has empty values on {_rows(y.isna())}")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise EvopruneError(f"{path}: no feature columns besides {target!r}")
    if columns is not None:
        features = features[_match_columns(path, [str(c) for c in features.columns], columns)]
    numeric = {}
    for col in features.columns:  # one new frame: assigning column by column is quadratic
        values = features[col]
        if values.dtype.kind not in "biuf":
            values = pd.to_numeric(values, errors="coerce")
        bad = values.isna()
        if bad.any():
            kind = "empty (NaN)" if features[col][bad].isna().all() else "non-numeric"
            raise EvopruneError(f"{path}: column {col!r} has {kind} values on {_rows(bad)}")
        numeric[col] = values.to_numpy(dtype=np.float64)
    names = [str(c) for c in features.columns]
    return np.column_stack(list(numeric.values())), y.to_numpy(), names


def _check_header(path: Path) -> list[str]:
    """The header's names. Refused: a name given twice (pandas would rename the second ``y`` to
    ``y.1`` and keep it as a feature: a second label column would leak into the inputs) and a
    column without a name (pandas' ``to_csv`` writes the index so, and a row number of a file
    sorted by class predicts the class)."""
    import csv

    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    counts = Counter(header)
    twice = next((name for name in header if counts[name] > 1), None)
    if twice is not None:
        raise EvopruneError(
            f"{path}: column {twice!r} appears {counts[twice]} times in the header; "
            "each column needs its own name"
        )
    unnamed = [i + 1 for i, name in enumerate(header) if not name.strip()]
    if unnamed and len(header) > 1:
        raise EvopruneError(
            f"{path}: column {unnamed[0]} of the header has no name (a saved DataFrame index? "
            "write the file with index=False, or name the column)"
        )
    return header


def _match_columns(path: Path, have: list[str], want: list[str]) -> list[str]:
    """`want` (the training file's feature columns) if `have` holds exactly those, in any order."""
    missing = [c for c in want if c not in have]
    extra = [c for c in have if c not in want]
    if missing or extra:
        parts = [f"missing: {_some(missing)}"] * bool(missing)
        parts += [f"extra: {_some(extra)}"] * bool(extra)
        raise EvopruneError(
            f"{path}: columns {'; '.join(parts)} (the ticket was trained on {len(want)} columns)"
        )
    return list(want)


def _some(names: list[str], most: int = 12) -> str:
    """At most `most` names, comma-separated, and how many more (a message stays one line)."""
    more = f", ... ({len(names) - most} more)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _rows(mask: ArrayLike) -> str:
    """The file's line numbers of the rows `mask` marks ("line 3", "lines 3, 7 ..."), the
    header being line 1, as an editor numbers them."""
    rows = [int(i) + 2 for i in np.flatnonzero(np.asarray(mask))[:5]]  # +2: header, 1-based
    more = " ..." if int(np.asarray(mask).sum()) > 5 else ""
    return f"line{'s' * (len(rows) > 1 or bool(more))} " + ", ".join(map(str, rows)) + more


def unit_pixels(X: np.ndarray, source: object) -> np.ndarray:
    """Pixel values as float64 in [0, 1].

    Integer arrays (MNIST's uint8) are 0..255 and divided by 255. Float arrays within [0, 1]
    are taken as they are; float arrays with values above 1 (up to 255) are taken as 0..255 and
    divided by 255 (an image saved as float without rescaling). Negative values or values above
    255 are an error naming `source`.
    """
    X = np.asarray(X)
    if X.size and (X.min() < 0 or X.max() > 255):
        raise EvopruneError(
            f"{source}: expected pixel values in 0..255 (or floats in [0, 1]), "
            f"got {X.min()}..{X.max()}"
        )
    if np.issubdtype(X.dtype, np.floating) and (X.size == 0 or X.max() <= 1):
        return X.astype(np.float64)
    return X / 255.0


class MnistArrays(NamedTuple):
    """What `load_mnist_dir` read: images ``(n, 28, 28)`` as stored (uint8 for IDX) and labels
    ``(n,)`` int64; the official test set (t10k) apart when the folder holds one."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    folder: Path
    files: list[Path]  # every file read, in reading order (for the digest)


def _find_mnist_dir(data_dir: str | None) -> Path:
    if data_dir:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise EvopruneError(f"mnist: {folder} is not a directory")
        return _torchvision_raw(folder)
    env = os.environ.get(MNIST_SEARCH[0])
    if env and not Path(env).is_dir():
        raise EvopruneError(f"mnist: {MNIST_SEARCH[0]}={env} is not a directory")
    candidates = [env] + list(MNIST_SEARCH[1:])
    for cand in candidates:
        if cand and Path(cand).is_dir():
            folder = _torchvision_raw(Path(cand))
            if _idx_sets(folder) or sorted(folder.glob("*mnist*.npz")):
                return folder
    raise EvopruneError(
        "mnist: no data found; pass --data-dir DIR (data_dir= in Python) holding the IDX files "
        "(train-images-idx3-ubyte[.gz], ...; or torchvision's root with MNIST/raw) or an .npz "
        "with images and labels"
    )


def _torchvision_raw(folder: Path) -> Path:
    """`folder` when it holds IDX files; else torchvision's ``MNIST/raw`` (or ``raw``) below it
    when that does (a stray .npz beside it is not MNIST); else `folder` (its .npz, if any)."""
    if _idx_sets(folder):
        return folder
    for sub in TORCHVISION_RAW:
        if (folder / sub).is_dir() and _idx_sets(folder / sub):
            return folder / sub
    return folder


def _idx_sets(folder: Path, kind: str = "images-idx3") -> dict[str, Path]:
    """One file per IDX set, keyed by its name without ``.gz``: torchvision keeps both
    ``train-images-idx3-ubyte`` and its ``.gz``; the uncompressed one is read."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(f"*{kind}-ubyte*")):
        key = path.name.removesuffix(".gz")
        if key.endswith(f"{kind}-ubyte") and (key not in found or path.suffix != ".gz"):
            found[key] = path
    return found


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise EvopruneError(f"{path}: not readable ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise EvopruneError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise EvopruneError(f"{path}: truncated IDX header")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        what = "truncated" if data.size < int(np.prod(dims)) else "longer than its header says"
        raise EvopruneError(
            f"{path}: IDX file {what} ({data.size} bytes of data, the header's shape "
            f"{'x'.join(map(str, dims))} needs {int(np.prod(dims))})"
        )
    return data.reshape(dims)


def _read_idx_pairs(
    images: dict[str, Path], folder: Path
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    labels = _idx_sets(folder, "labels-idx1")
    X, y, files = [], [], []
    for key, path in images.items():
        label_key = key.replace("images-idx3", "labels-idx1")
        if label_key not in labels:
            raise EvopruneError(f"mnist: label file missing: {folder / label_key}[.gz]")
        X.append(_read_idx(path))
        y.append(_read_idx(labels[label_key]))
        if len(X[-1]) != len(y[-1]):
            raise EvopruneError(
                f"mnist: {path.name} holds {len(X[-1])} images but {labels[label_key].name} "
                f"{len(y[-1])} labels"
            )
        files += [path, labels[label_key]]
    return np.concatenate(X), np.concatenate(y), files


def _mnist_npz(folder: Path) -> Path:
    """The one .npz of a folder to read as MNIST: those named *mnist* first; any other only if
    it is the only one."""
    npzs = sorted(folder.glob("*.npz"))
    if not npzs:
        raise EvopruneError(f"mnist: {folder} has no IDX files and no .npz file")
    named = [p for p in npzs if "mnist" in p.name.lower()]
    candidates = named or npzs
    if len(candidates) > 1:
        raise EvopruneError(
            f"mnist: {folder} holds several .npz files ({', '.join(p.name for p in candidates)})"
            "; expected one (named *mnist*) with arrays images/labels or X/y"
        )
    return candidates[0]


def load_mnist_dir(data_dir: str | None) -> MnistArrays:
    """MNIST found in `data_dir` (or the default places), each image file read once.

    A folder with IDX files (``.gz`` or not; torchvision's root, whose ``MNIST/raw`` holds them,
    works too) that has both ``train-*`` and ``t10k-*`` files keeps them apart as the official
    train/test split; otherwise everything is one set (``X_test`` None), for the caller to split.
    An .npz (arrays images/labels or X/y; `data_dir` may name the file or its folder) is one
    set. Each set is shuffled by a fixed
    permutation (files may be grouped by class).
    """
    given = Path(data_dir) if data_dir else None
    if given is not None and given.is_file():  # the .npz itself
        if given.suffix != ".npz":
            raise EvopruneError(
                f"mnist: {given} is a file but not an .npz; give an .npz (images/labels or X/y) "
                "or the folder of the IDX files"
            )
        folder, images, npz = given.parent, {}, given
    else:
        folder = _find_mnist_dir(data_dir)
        images, npz = _idx_sets(folder), None
    X_test = y_test = None
    if images:
        test = {k: p for k, p in images.items() if k.startswith("t10k")}
        train = {k: p for k, p in images.items() if k not in test}
        if test and train:
            X, y, files = _read_idx_pairs(train, folder)
            X_test, y_test, more = _read_idx_pairs(test, folder)
            files += more
        else:
            X, y, files = _read_idx_pairs(images, folder)
    else:
        path = npz or _mnist_npz(folder)
        X, y = mnist_arrays(_read_npz(path), path)
        files = [path]
    _check_digits(y, files[1] if images else files[0])
    if y_test is not None:
        _check_digits(y_test, files[-1])
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order].astype(np.int64)
    if X_test is not None and y_test is not None:
        order = np.random.default_rng(0).permutation(len(y_test))
        X_test, y_test = X_test[order], y_test[order].astype(np.int64)
    return MnistArrays(X, y, X_test, y_test, folder, files)


def mnist_arrays(arrays: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of an MNIST .npz (arrays images/labels or X/y), checked: as many
    labels as images, one label per image, real finite pixels in 0..255 or [0, 1]."""
    keys = ("images", "labels") if "images" in arrays else ("X", "y")
    if keys[0] not in arrays or keys[1] not in arrays:
        raise EvopruneError(f"{path}: expected arrays images/labels or X/y, found {sorted(arrays)}")
    X, y = arrays[keys[0]], arrays[keys[1]]
    if y.ndim != 1 or len(X) != len(y):
        raise EvopruneError(
            f"{path}: expected one label per image ({keys[1]} of shape (n,)), got {len(X)} "
            f"images and {keys[1]} of shape {y.shape}"
        )
    if not np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_ or np.iscomplexobj(X):
        raise EvopruneError(f"{path}: images must be real numbers, got dtype {X.dtype}")
    if not np.isfinite(X).all():
        raise EvopruneError(f"{path}: images hold NaN or infinite pixels")
    unit_pixels(X, path)  # check the range now, before any split
    return X, y


def _check_digits(y: np.ndarray, path: Path) -> None:
    """MNIST labels are the integers 0..9 (a float 0.5 or a -1 is not a digit)."""
    if y.dtype.kind not in "iu" and not (
        y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()
    ):
        raise EvopruneError(f"{path}: expected integer digit labels 0..9, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise EvopruneError(f"{path}: expected digit labels 0..9, got {y.min():g}..{y.max():g}")
