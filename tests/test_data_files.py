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
from evoprune.data.files import MNIST_SEARCH, load_arrays, load_mnist_dir
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


def test_data_dir_may_name_the_npz_file_itself(digits_uint8, tmp_path):
    images, labels = digits_uint8
    np.savez(tmp_path / "a_other.npz", X=np.zeros((8, 3)), y=np.arange(8) % 2)
    np.savez(tmp_path / "b_digits.npz", images=images, labels=labels)
    ds = load_dataset("mnist", data_dir=tmp_path / "b_digits.npz")  # the folder is ambiguous
    alone = tmp_path / "alone"
    alone.mkdir()
    np.savez(alone / "x.npz", images=images, labels=labels)
    folder = load_dataset("mnist", data_dir=alone)
    assert torch.equal(ds.X_train, folder.X_train) and torch.equal(ds.y_test, folder.y_test)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EvopruneError, match="is a file but not an .npz"):
        load_dataset("mnist", data_dir=tmp_path / "notes.txt")


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


# -- a ticket's record of its data, and evaluate on new data ---------------------------------


def run_cli(args, capsys):
    from evoprune.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def make_ticket(ds, path: Path, hidden: int = 16, seed: int = 3) -> Path:
    """A ticket on `ds` with a fixed random mask (no search: only the data path is tested)."""
    from evoprune.masks import MaskSpace
    from evoprune.nets import build_mlp
    from evoprune.ticket import Ticket

    layers = [ds.n_features, hidden, ds.n_classes]
    n_bits = MaskSpace(build_mlp(layers, "uniform", seed)).n_bits
    mask = torch.rand(n_bits, generator=torch.Generator().manual_seed(seed)) < 0.5
    Ticket(mask, layers, seed=seed, dataset=ds.config).save(path)
    return path


def scores(out: str) -> str:
    """`acc A, loss L` of a --data line, or `test acc A, ... test loss L` of a dataset line."""
    return out.split(": ", 1)[1].rsplit(", sparsity", 1)[0]


@pytest.fixture
def wine_csv(tmp_path):
    from sklearn.datasets import load_wine

    path = tmp_path / "wine.csv"
    load_wine(as_frame=True).frame.to_csv(path, index=False)
    return path


def test_a_ticket_reads_its_own_file_from_any_folder(wine_csv, tmp_path, monkeypatch, capsys):
    from evoprune.data import load_file

    monkeypatch.chdir(wine_csv.parent)
    ds = load_file("wine.csv", "target")
    assert ds.config["path"] == str(wine_csv.resolve()) and len(ds.config["sha256"]) == 16
    ticket = make_ticket(ds, tmp_path / "t.npz")
    code, here, err = run_cli(["evaluate", ticket], capsys)
    assert code == 0 and not err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    frame = __import__("pandas").read_csv(wine_csv)
    frame.sample(frac=1.0, random_state=0).to_csv("wine.csv", index=False)  # another wine.csv
    code, there, err = run_cli(["evaluate", ticket], capsys)
    assert code == 0 and there == here and not err
    # the recorded file changed: scored as it is now, with one note on stderr
    frame.iloc[:150].to_csv(wine_csv, index=False)
    code, changed, err = run_cli(["evaluate", ticket], capsys)
    assert code == 0 and changed != here
    assert err.count("\n") == 1 and f"note: {wine_csv.resolve()} has changed" in err


def test_a_relative_data_dir_is_recorded_absolute(digits_uint8, tmp_path, monkeypatch):
    images, labels = digits_uint8
    write_mnist_folder(tmp_path / "MNIST" / "raw", images, labels, n_train=800)
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("mnist", data_dir="MNIST")
    assert ds.config["data_dir"] == str((tmp_path / "MNIST").resolve())
    assert len(ds.config["sha256"]) == 16


def test_new_csv_columns_are_matched_by_name(wine_csv, tmp_path, capsys):
    import pandas as pd

    from evoprune.data import load_file

    ds = load_file(wine_csv, "target")
    assert ds.config["columns"][-1] == "proline" and len(ds.config["columns"]) == 13
    ticket = make_ticket(ds, tmp_path / "t.npz")
    frame = pd.read_csv(wine_csv)
    shuffled = tmp_path / "shuffled.csv"
    frame[list(reversed(frame.columns))].to_csv(shuffled, index=False)
    same = [run_cli(["evaluate", ticket, "--data", f, "--target", "target"], capsys)
            for f in (wine_csv, shuffled)]  # fmt: skip
    assert same[0][0] == same[1][0] == 0 and scores(same[0][1]) == scores(same[1][1])
    code, out, _ = run_cli(["evaluate", ticket, "--data", shuffled], capsys)  # the ticket's target
    assert code == 0 and scores(out) == scores(same[0][1])

    other = tmp_path / "new.csv"
    frame.drop(columns=["proline"]).assign(foo=1.0).to_csv(other, index=False)
    code, _, err = run_cli(["evaluate", ticket, "--data", other, "--target", "target"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "new.csv: columns missing: proline; extra: foo" in err

    narrow = tmp_path / "narrow.npz"  # no names in an .npz: the count, with the trained names
    np.savez(narrow, X=frame.iloc[:, :12].to_numpy(), y=frame["target"].to_numpy())
    code, _, err = run_cli(["evaluate", ticket, "--data", narrow], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "fitted on 13 features (alcohol, malic_acid," in err and "the file has 12" in err


@pytest.fixture(scope="module")
def mnist3():
    if MNIST10K is None:
        pytest.skip("mnist10k.npz not found")
    return load_dataset("mnist", classes=3, data_dir=MNIST10K.parent)


def uint8_images(ds) -> np.ndarray:
    """The test split's images back as uint8 pixels (the global range of mnist10k is 0..1)."""
    assert ds.config["global_range"] == [0.0, 1.0]
    pixels = np.rint((ds.X_test.numpy().astype(np.float64) + 0.7) / 1.4 * 255)
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def test_new_images_are_preprocessed_as_the_tickets_training_data(mnist3, tmp_path, capsys):
    ticket = make_ticket(mnist3, tmp_path / "t.npz")
    code, own, _ = run_cli(["evaluate", ticket], capsys)
    test_part = scores(own).split("test acc ")[1].split(",")[0]
    test_loss = scores(own).split("test loss ")[1]
    new = tmp_path / "new.npz"
    np.savez(new, X=uint8_images(mnist3), y=mnist3.y_test.numpy())
    code, out, err = run_cli(["evaluate", ticket, "--data", new], capsys)
    assert code == 0 and not err
    assert f"{len(mnist3.y_test)} rows, acc {test_part}, loss {test_loss}," in out
    assert out.startswith(f"new.npz: {len(mnist3.y_test)} rows")

    # a ticket from before configs recorded the range: rebuilt from its training data
    from evoprune.ticket import Ticket

    old = Ticket.load(ticket)
    del old.dataset["global_range"]
    old.save(tmp_path / "old.npz")
    code, again, _ = run_cli(["evaluate", tmp_path / "old.npz", "--data", new], capsys)
    assert code == 0 and scores(again) == scores(out)

    code, raw, err = run_cli(["evaluate", ticket, "--data", new, "--no-normalize"], capsys)
    assert code == 0 and scores(raw) != scores(out)
    assert err.count("\n") == 1 and "trained on scaled features; --no-normalize" in err


def test_a_raw_ticket_stays_raw_on_a_named_dataset(tmp_path, capsys):
    if MNIST10K is None:
        pytest.skip("mnist10k.npz not found")
    ds = load_dataset("mnist", classes=3, normalize=False, data_dir=MNIST10K.parent)
    ticket = make_ticket(ds, tmp_path / "t.npz")
    code, own, _ = run_cli(["evaluate", ticket], capsys)
    args = ["evaluate", ticket, "--dataset", "mnist", "--data-dir", MNIST10K.parent]
    code, named, err = run_cli(args, capsys)  # the ticket's 3 classes and no scaling
    assert code == 0 and named == own and not err
    code, scaled, err = run_cli([*args, "--normalize"], capsys)
    assert code == 0 and scaled != own and "--normalize overrides" in err


def test_a_class_count_the_ticket_cannot_output_is_one_line(mnist3, tmp_path, capsys):
    ticket = make_ticket(mnist3, tmp_path / "t.npz")
    args = ["evaluate", ticket, "--dataset", "mnist", "--data-dir", MNIST10K.parent]
    code, _, err = run_cli([*args, "--classes", "10"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "the ticket has 3 classes (trained with --classes 3); pass --classes 3" in err


def test_classes_with_a_data_file_is_refused(wine_csv, tmp_path, capsys):
    args = ["search", "--data", wine_csv, "--target", "target", "--classes", "2"]
    code, _, err = run_cli([*args, "--out", tmp_path / "r", "--quiet"], capsys)
    assert code == 2 and not (tmp_path / "r").exists()
    assert "--classes: only for the built-in datasets; a --data file uses all its classes" in err


def test_a_conv_tickets_class_count_is_its_heads(mnist3, tmp_path, capsys):
    from evoprune.masks import MaskSpace
    from evoprune.nets import build_convnet
    from evoprune.ticket import Ticket

    n_bits = MaskSpace(build_convnet(3, "uniform", 0)).n_bits
    mask = torch.rand(n_bits, generator=torch.Generator().manual_seed(0)) < 0.5
    Ticket(mask, None, dataset=mnist3.config, arch="conv").save(tmp_path / "t.npz")
    args = ["evaluate", tmp_path / "t.npz", "--dataset", "mnist", "--data-dir", MNIST10K.parent]
    code, _, err = run_cli([*args, "--classes", "10"], capsys)
    assert code == 2 and "the ticket has 3 classes (trained with --classes 3)" in err


def test_a_continuous_target_is_named_as_such(wine_csv, tmp_path, capsys):
    # alcohol (11.0-14.8, in hundredths) is a measurement, not a class label
    args = ["search", "--data", wine_csv, "--target", "alcohol", "--out", tmp_path / "r", "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "not a continuous quantity" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_classes_for_a_file_ticket_without_data_is_refused(wine_csv, tmp_path, capsys):
    from evoprune.data import load_file

    ticket = make_ticket(load_file(wine_csv, "target"), tmp_path / "t.npz")
    code, _, err = run_cli(["evaluate", ticket, "--classes", "3"], capsys)
    assert code == 2 and "--classes: only with --dataset or --data" in err


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda y: y + 0.5, "expected integer digit labels 0..9, got dtype float64"),
        (lambda y: y.astype(np.int64) - 1, "expected digit labels 0..9, got -1..8"),
        (lambda y: np.eye(10)[y], r"one label per image \(labels of shape \(n,\)\)"),
    ],
)
def test_mnist_labels_that_are_not_digits_are_one_line(digits_uint8, tmp_path, labels, message):
    """A float label was truncated to a digit, a -1 became a class of its own, one-hot labels
    an IndexError."""
    images, y = digits_uint8
    np.savez(tmp_path / "mnist.npz", images=images, labels=labels(y))
    with pytest.raises(EvopruneError, match=message):
        load_dataset("mnist", classes=2, data_dir=tmp_path)


def test_mnist_images_with_nan_pixels_are_refused(digits_uint8, tmp_path):
    """NaN compares false with every bound: a [0, 1] float image with one NaN was divided by
    255 a second time."""
    images, labels = digits_uint8
    floats = images / 255.0
    floats[3, 4, 5] = np.nan
    np.savez(tmp_path / "mnist.npz", images=floats, labels=labels)
    with pytest.raises(EvopruneError, match="NaN or infinite pixels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_test_files_without_the_first_digits_are_one_line(digits_uint8, tmp_path):
    images, labels = digits_uint8
    order = np.argsort(labels, kind="stable")  # t10k: the last 200 after sorting, all 9s
    write_mnist_folder(tmp_path / "raw", images[order], labels[order], n_train=800)
    with pytest.raises(EvopruneError, match=r"the test files \(t10k-\*\) in .* hold 0 images"):
        load_dataset("mnist", classes=2, data_dir=tmp_path / "raw")


def test_a_torchvision_root_with_a_stray_npz_reads_its_idx_files(digits_uint8, tmp_path):
    images, labels = digits_uint8
    write_mnist_folder(tmp_path / "MNIST" / "raw", images, labels, n_train=800)
    np.savez(tmp_path / "ticket.npz", mask=np.ones(3))
    assert len(load_dataset("mnist", data_dir=tmp_path).y_train) == 800


def test_where_mnist_was_found_is_recorded(digits_uint8, tmp_path, monkeypatch):
    images, labels = digits_uint8
    write_mnist_folder(tmp_path / "data", images, labels, n_train=800)
    monkeypatch.delenv(MNIST_SEARCH[0], raising=False)
    monkeypatch.chdir(tmp_path)  # found through the default search: ./data
    assert load_dataset("mnist").config["data_dir"] == str((tmp_path / "data").resolve())
    monkeypatch.setenv(MNIST_SEARCH[0], str(tmp_path / "nowhere"))
    with pytest.raises(EvopruneError, match="EVOPRUNE_DATA_DIR=.*nowhere is not a directory"):
        load_dataset("mnist")


def test_user_npz_variants(tmp_path):
    """True/False features are 1/0 (as in a CSV); an upper-case .NPZ is an npz; an MNIST-style
    npz (images/labels) is read too; a missing array is named once, not wrapped twice."""
    from evoprune.data import load_file

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)) > 0, np.arange(40) % 2
    np.savez(tmp_path / "bool.npz", X=X, y=y)
    assert load_file(tmp_path / "bool.npz", normalize=False).X_train.unique().tolist() == [0, 1]
    with open(tmp_path / "UPPER.NPZ", "wb") as fh:  # np.savez would append .npz to the name
        np.savez(fh, X=X.astype(float), y=y)
    np.savez(tmp_path / "images.npz", images=X.astype(float), labels=y)
    upper = load_file(tmp_path / "UPPER.NPZ")
    assert torch.equal(upper.X_train, load_file(tmp_path / "images.npz").X_train)
    with pytest.raises(EvopruneError, match="an .npz holds its labels as y"):
        load_file(tmp_path / "bool.npz", target="label")  # was silently ignored
    np.savez(tmp_path / "other.npz", a=X)
    with pytest.raises(EvopruneError) as info:
        load_file(tmp_path / "other.npz")
    assert str(info.value).count("other.npz") == 1 and "found ['a']" in str(info.value)


def test_a_named_mnist_is_read_from_where_the_ticket_found_it(
    mnist3, tmp_path, monkeypatch, capsys
):
    ticket = make_ticket(mnist3, tmp_path / "t.npz")
    monkeypatch.delenv(MNIST_SEARCH[0], raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data here: only the ticket's record finds it
    code, own, _ = run_cli(["evaluate", ticket], capsys)
    code, named, err = run_cli(["evaluate", ticket, "--dataset", "mnist"], capsys)
    assert code == 0 and named == own and not err


def _small_idx_set(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random 28x28 images grouped by class (as files may be), pixel (0, 0) the label."""
    labels = np.sort(np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = labels
    return images, labels


def test_both_idx_sets_are_shuffled_with_their_labels(tmp_path):
    # t10k files grouped by class must be shuffled too: a split or a subset of the first rows
    # would otherwise hold few classes
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("t10k", 30)):
        images, labels = _small_idx_set(rng, n)
        write_idx(tmp_path / f"{part}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte", labels)
    got = load_mnist_dir(str(tmp_path))
    for X, y in ((got.X, got.y), (got.X_test, got.y_test)):
        assert not np.array_equal(y, np.sort(y))  # no longer grouped by class
        assert np.array_equal(X[:, 0, 0], y)  # each image keeps its label


def test_an_idx_file_beside_its_gz_is_read_uncompressed(tmp_path):
    # torchvision keeps both; the uncompressed file is the one read (and digested)
    rng = np.random.default_rng(0)
    images, labels = _small_idx_set(rng, 20)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        write_idx(tmp_path / f"train-{kind}-ubyte", array, gz=True)
        write_idx(tmp_path / f"train-{kind}-ubyte", array)
    got = load_mnist_dir(str(tmp_path))
    assert [p.name for p in got.files] == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda path: path.write_bytes(path.read_bytes() + b"\0"), "longer than its header says"),
        (lambda path: write_idx(path, np.arange(20, dtype=np.uint8) % 11), "got 0..10"),
    ],
    ids=["trailing-byte", "label-10"],
)
def test_an_idx_label_file_that_is_not_one_digit_per_image_is_one_line(tmp_path, edit, message):
    rng = np.random.default_rng(0)
    images, labels = _small_idx_set(rng, 20)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    edit(tmp_path / "train-labels-idx1-ubyte")
    with pytest.raises(EvopruneError, match=message):
        load_mnist_dir(str(tmp_path))


def test_min_rows_is_the_fewest_rows_accepted(tmp_path):
    (tmp_path / "four.csv").write_text("a,y\n0.1,0\n0.2,1\n0.3,0\n0.4,1\n")
    (tmp_path / "three.csv").write_text("a,y\n0.1,0\n0.2,1\n0.3,0\n")
    assert len(load_arrays(tmp_path / "four.csv", "y", min_rows=4)[0]) == 4
    with pytest.raises(EvopruneError, match="expected at least 4 rows, got 3"):
        load_arrays(tmp_path / "three.csv", "y", min_rows=4)


def test_an_unnamed_column_beside_the_target_alone_is_refused(tmp_path):
    # pandas' to_csv of a one-feature frame writes ",y": its row numbers must not be a feature
    (tmp_path / "index.csv").write_text(",y\n0,0\n1,0\n2,1\n3,1\n")
    with pytest.raises(EvopruneError, match="column 1 of the header has no name"):
        load_arrays(tmp_path / "index.csv", "y")


def test_an_npz_without_rows_is_one_line(tmp_path):
    np.savez(tmp_path / "empty.npz", X=np.zeros((0, 3)), y=np.zeros(0, dtype=int))
    with pytest.raises(EvopruneError, match=r"empty.npz: expected at least 4 rows, got 0"):
        load_arrays(tmp_path / "empty.npz", None)


def test_features_beyond_float32_are_named_not_turned_into_inf(tmp_path, capsys):
    """A finite float64 column of 1e300 became inf in float32: --no-normalize searched on NaN
    scores, prune (which reads the raw rows before scaling them) pruned a NaN network without
    a word, and new data for a ticket was 'NaN or infinite' although the file held none."""
    from evoprune.cli import main
    from evoprune.data import load_file
    from evoprune.ticket import Ticket

    def write(name: str, X: np.ndarray) -> Path:
        rows = "".join(f"{a!r},{b!r},{i % 2}\n" for i, (a, b) in enumerate(X.tolist()))
        (tmp_path / name).write_text("a,b,y\n" + rows)
        return tmp_path / name

    X = np.random.default_rng(0).normal(size=(40, 2))
    big = write("big.csv", X * [1.0, 1e300])
    with pytest.raises(EvopruneError, match=r"big.csv: feature column 'b' holds 2.\de\+300 .*"
                       "beyond float32's range"):  # fmt: skip
        load_file(big, "y", normalize=False)
    assert torch.isfinite(load_file(big, "y").X_train).all()  # scaled by its range: fine
    ticket = make_ticket(load_file(write("small.csv", X), "y"), tmp_path / "t.npz")
    new = write("new.csv", X * [1e300, 1.0])  # far beyond the training range, also scaled
    assert main(["evaluate", str(ticket), "--data", str(new)]) == 2
    assert "new.csv: feature column 'a' holds" in capsys.readouterr().err
    with pytest.raises(EvopruneError, match="X: feature column 'a' holds"):
        Ticket.load(ticket).prepare(X * [1e300, 1.0])


def test_spaces_around_a_header_name_or_a_label_are_named(tmp_path):
    """`a, b, label` (a space after each comma) named no column 'label' without saying why; a
    padded cell, `cat ` beside `cat`, was a class of its own without a word."""
    from evoprune.data import load_file

    (tmp_path / "spaced.csv").write_text(
        "a, label\n" + "".join(f"{i}, {i % 2}\n" for i in range(8))
    )
    with pytest.raises(EvopruneError, match=r"no target column 'label'; .*names it ' label'"):
        load_arrays(tmp_path / "spaced.csv", "label")
    rows = "".join(f"{i},{'cat' if i % 2 else 'dog'}{' ' * (i % 4 == 1)}\n" for i in range(40))
    (tmp_path / "padded.csv").write_text("a,label\n" + rows)
    with pytest.raises(EvopruneError, match="labels 'cat' and 'cat ' differ only in spaces"):
        load_file(tmp_path / "padded.csv", "label")


def test_an_npz_array_of_python_objects_is_named(tmp_path):
    """An object array (a list of mixed rows saved by np.savez) is not unpickled: the error
    names the file and the array, not numpy's allow_pickle advice."""
    from evoprune.data import load_file

    X = np.empty(20, dtype=object)
    X[:] = [[0.5, 1.0]] * 20
    np.savez(tmp_path / "objects.npz", X=X, y=np.arange(20) % 2)
    with pytest.raises(EvopruneError, match=r"^\S*objects\.npz: array 'X' holds Python objects"):
        load_file(tmp_path / "objects.npz")
