"""The user's data files: MNIST folders (IDX, torchvision's layout, .npz), the recorded path and
digest of a file, and `evaluate` on new data preprocessed as the ticket's training data was."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from evoprune.data import load_dataset
from evoprune.data.files import MNIST_SEARCH
from evoprune.data.scaling import global_min_max
from evoprune.errors import EvopruneError

ROOT = Path(__file__).resolve().parents[1]


def _shared_mnist() -> Path | None:
    for cand in [os.environ.get(MNIST_SEARCH[0]), *MNIST_SEARCH[1:]]:
        if cand and (ROOT / cand / "mnist10k.npz").is_file():
            return ROOT / cand / "mnist10k.npz"
    return None


MNIST10K = _shared_mnist()
needs_mnist = pytest.mark.skipif(MNIST10K is None, reason="mnist10k.npz not found")


@pytest.fixture(scope="module")
def digits_uint8():
    """Distinct images (uint8, 28x28) and labels from the shared mnist10k.npz, shuffled."""
    if MNIST10K is None:
        pytest.skip("mnist10k.npz not found")
    with np.load(MNIST10K) as npz:
        images, labels = npz["images"], npz["labels"]
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    pick = np.random.default_rng(1).permutation(np.sort(first))[:1000]
    return images[pick], labels[pick]


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """An IDX file: big-endian magic (2051 images, 2049 labels), the sizes, then uint8 data."""
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">I" + "I" * array.ndim, magic, *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist_folder(folder: Path, images, labels, n_train: int, both: bool = True) -> Path:
    """torchvision's raw folder: each IDX file uncompressed and gzipped (`both`), or gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"train": slice(0, n_train), "t10k": slice(n_train, len(images))}
    for part, rows in parts.items():
        for kind, array in (("images-idx3", images[rows]), ("labels-idx1", labels[rows])):
            write_idx(folder / f"{part}-{kind}-ubyte", array, gz=True)
            if both:
                write_idx(folder / f"{part}-{kind}-ubyte", array)
    return folder


def row_set(X: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in X.numpy()}


@pytest.mark.parametrize("given", ["root", "MNIST", "MNIST/raw"])
def test_a_torchvision_folder_is_read_once_with_its_official_split(digits_uint8, tmp_path, given):
    images, labels = digits_uint8
    write_mnist_folder(tmp_path / "MNIST" / "raw", images, labels, n_train=800)
    folder = tmp_path if given == "root" else tmp_path / given
    ds = load_dataset("mnist", data_dir=folder)
    assert len(ds.y_train) == 800 and len(ds.y_test) == 200  # t10k is the test set
    assert not row_set(ds.X_train) & row_set(ds.X_test)
    # the test rows are the t10k images, scaled as the training rows are
    expected = global_min_max(images[:800].reshape(800, -1) / 255.0,
                              images[800:].reshape(200, -1) / 255.0)[1]  # fmt: skip
    assert row_set(ds.X_test) == row_set(torch.as_tensor(expected, dtype=torch.float32))


def test_gz_only_and_a_single_set(digits_uint8, tmp_path):
    images, labels = digits_uint8
    write_mnist_folder(tmp_path / "gz", images, labels, n_train=800, both=False)
    assert len(load_dataset("mnist", data_dir=tmp_path / "gz").y_train) == 800
    only_train = tmp_path / "train"
    only_train.mkdir()
    write_idx(only_train / "train-images-idx3-ubyte", images)
    write_idx(only_train / "train-labels-idx1-ubyte", labels)
    ds = load_dataset("mnist", data_dir=only_train)  # one set: split 75/25
    assert (len(ds.y_train), len(ds.y_test)) == (750, 250)
    assert not row_set(ds.X_train) & row_set(ds.X_test)


@needs_mnist
@pytest.mark.parametrize("classes, normalize", [(10, True), (3, False)])
def test_mnist10k_is_loaded_split_and_scaled_as_before(classes, normalize):
    """The reference: a fixed shuffle, the first classes, pixels / 255, a 75/25 split with
    random_state 42, then the paper's global min-max."""
    ds = load_dataset("mnist", classes, normalize, data_dir=MNIST10K.parent)
    with np.load(MNIST10K) as npz:
        X, y = npz["images"], npz["labels"].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    keep = y < classes
    X_tr, X_te, y_tr, y_te = train_test_split(
        X[keep].reshape(int(keep.sum()), -1) / 255.0, y[keep], test_size=0.25, random_state=42
    )
    if normalize:
        X_tr, X_te = global_min_max(X_tr, X_te)
    assert torch.equal(ds.X_train, torch.as_tensor(X_tr, dtype=torch.float32))
    assert torch.equal(ds.X_test, torch.as_tensor(X_te, dtype=torch.float32))
    assert torch.equal(ds.y_test, torch.as_tensor(y_te))


def test_an_npz_folder_prefers_mnist_and_refuses_ambiguity(digits_uint8, tmp_path):
    images, labels = digits_uint8
    np.savez(tmp_path / "a_other.npz", X=np.zeros((8, 3)), y=np.arange(8) % 2)
    np.savez(tmp_path / "my_mnist.npz", images=images, labels=labels)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert len(ds.y_train) + len(ds.y_test) == len(labels) and ds.n_features == 784
    (tmp_path / "my_mnist.npz").unlink()
    np.savez(tmp_path / "b_digits.npz", images=images, labels=labels)
    with pytest.raises(EvopruneError, match=r"several \.npz files \(a_other.npz, b_digits.npz\)"):
        load_dataset("mnist", data_dir=tmp_path)
    (tmp_path / "a_other.npz").unlink()  # the only one left: taken whatever its name
    assert load_dataset("mnist", data_dir=tmp_path).n_features == 784


def test_float_images_in_unit_range_are_not_divided_again(digits_uint8, tmp_path):
    images, labels = digits_uint8
    for kind, array in [("uint8", images), ("float01", images / 255.0),
                        ("float255", images.astype(np.float32))]:  # fmt: skip
        (tmp_path / kind).mkdir()
        np.savez(tmp_path / kind / "mnist.npz", images=array, labels=labels)
    base = load_dataset("mnist", normalize=False, data_dir=tmp_path / "uint8")
    assert float(base.X_train.max()) == 1.0
    for kind in ("float01", "float255"):
        ds = load_dataset("mnist", normalize=False, data_dir=tmp_path / kind)
        assert torch.allclose(ds.X_train, base.X_train, atol=1e-6), kind
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / "mnist.npz", images=images * 2.0, labels=labels)
    with pytest.raises(EvopruneError, match=r"mnist.npz: expected pixel values in 0\.\.255"):
        load_dataset("mnist", data_dir=tmp_path / "bad")
