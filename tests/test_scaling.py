"""Per-feature scaling of the user's data: fitted on the training split only, constant columns
safe, the fitted ranges carried by result.json and the ticket and reused on new data."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits, load_wine, make_moons
from sklearn.model_selection import train_test_split

from evoprune.cli import main
from evoprune.data import fresh_sample, load_dataset, load_file
from evoprune.data.registry import dataset_from_config
from evoprune.data.scaling import FeatureScaling, global_min_max, unscale_global
from evoprune.errors import EvopruneError
from evoprune.nets import build_mlp
from evoprune.scores import score_splits
from evoprune.ticket import Ticket

FAST = ["--population", "10", "--min-generations", "3", "--max-generations", "3", "--quiet"]


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory):
    """scikit-learn's wine table (178 rows, 13 columns in units from 0.1 to 1,000) as a CSV,
    with a constant column added."""
    frame = load_wine(as_frame=True).frame
    frame.insert(3, "constant", 2.5)
    path = tmp_path_factory.mktemp("data") / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def plain_split(path, seed=0):
    frame = pd.read_csv(path)
    X = frame.drop(columns=["target"]).to_numpy(dtype=np.float64)
    y = frame["target"].to_numpy()
    X_tr, X_te, _, _ = train_test_split(X, y, test_size=0.25, random_state=seed)
    return X_tr, X_te


def test_scaling_is_fitted_on_the_training_split_only(wine_csv):
    ds = load_file(wine_csv, "target", seed=1)
    X_tr, X_te = plain_split(wine_csv, seed=1)
    lo, hi = X_tr.min(0), X_tr.max(0)
    varies = hi > lo
    expected = np.where(varies, (X_te - lo) / np.where(varies, hi - lo, 1) * 1.4 - 0.7, 0.0)
    assert np.allclose(ds.X_test.numpy(), expected, atol=1e-6)
    train = ds.X_train.numpy()
    assert np.allclose(train[:, varies].min(0), -0.7, atol=1e-6)
    assert np.allclose(train[:, varies].max(0), 0.7, atol=1e-6)
    assert ds.config["scaling"]["low"] == lo.tolist()  # the training range, not the test's
    assert ds.config["scaling"]["high"] == hi.tolist()
    assert ds.config["normalize"] is True


def test_constant_columns_become_zero_without_dividing_by_zero(wine_csv):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 would warn
        ds = load_file(wine_csv, "target")
    column = 3  # the constant one
    assert torch.equal(ds.X_train[:, column], torch.zeros(len(ds.X_train)))
    assert torch.isfinite(ds.X_train).all() and torch.isfinite(ds.X_test).all()
    shifted = FeatureScaling.fit(np.array([[1.0, 5.0], [3.0, 5.0]])).apply(np.array([[2.0, 99.0]]))
    assert shifted.tolist() == [[0.0, 0.0]]  # new values of a constant column stay at 0


def test_the_global_scaling_of_a_constant_training_matrix_is_finite_and_invertible():
    # one value everywhere (a blank image set) leaves no range to divide by: lo -> -0.7 still
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 would warn
        train, new = global_min_max(np.full((3, 4), 5.0), np.array([[5.0, 6.0]]))
    assert (train == -0.7).all()
    assert np.allclose(unscale_global(new, 5.0, 5.0), [[5.0, 6.0]])


def test_no_normalize_keeps_raw_values(wine_csv):
    ds = load_file(wine_csv, "target", normalize=False)
    X_tr, _ = plain_split(wine_csv)
    assert np.allclose(ds.X_train.numpy(), X_tr.astype(np.float32))
    assert "scaling" not in ds.config


def test_built_in_datasets_keep_the_papers_global_scaling():
    ds = load_dataset("digits", classes=3)
    X, y = load_digits(return_X_y=True)
    keep = y < 3
    X_tr, X_te, _, _ = train_test_split(X[keep], y[keep], test_size=0.25, random_state=42)
    lo, hi = X_tr.min(), X_tr.max()
    assert np.allclose(ds.X_test.numpy(), (X_te - lo) / (hi - lo) * 1.4 - 0.7, atol=1e-6)
    assert "scaling" not in ds.config


@pytest.mark.parametrize("name, split", [("moons", "train"), ("circles", "test")])
def test_fresh_samples_are_scaled_like_the_training_split(name, split):
    ds = load_dataset(name)  # both splits are random_state 42: the same draw, the same scaling
    X, y = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}")
    X_new, y_new = fresh_sample(name, len(y), seed=42)
    assert torch.equal(X_new, X) and torch.equal(y_new, y)
    X_other, _ = fresh_sample(name, 1000, seed=1)
    assert not torch.equal(X_other, X[:1000])
    if name == "moons":  # the training split's scaling, not one fitted on the sample itself
        raw, _ = make_moons(n_samples=1000, noise=0.07, random_state=1)
        train, _ = make_moons(n_samples=50_000, noise=0.07, random_state=42)
        lo, hi = train.min(), train.max()
        expected = (raw - lo) / (hi - lo) * 1.4 - 0.7
        assert np.allclose(X_other.numpy(), expected, atol=1e-6)


def test_fresh_sample_needs_a_generated_dataset():
    with pytest.raises(EvopruneError, match="expected a generated dataset.*got 'digits'"):
        fresh_sample("digits", 10, seed=0)


def test_scaling_round_trips_through_result_and_ticket(wine_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--data", str(wine_csv), "--target", "target", "--out", str(out), *FAST])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    ticket = Ticket.load(out / "ticket.npz")
    assert result["scaling"]["method"] == "per-feature"
    assert ticket.dataset["scaling"] == result["scaling"]
    rebuilt = dataset_from_config(ticket.dataset)
    assert torch.equal(rebuilt.X_test, load_file(wine_csv, "target").X_test)

    # New data with other ranges (a subset of the rows): scaled by the ticket's ranges.
    frame = pd.read_csv(wine_csv)
    new = tmp_path / "new.csv"
    frame[frame["alcohol"] > 13].to_csv(new, index=False)
    capsys.readouterr()
    assert (
        main(["evaluate", str(out / "ticket.npz"), "--data", str(new), "--target", "target"]) == 0
    )
    printed = capsys.readouterr().out
    expected = load_file(new, "target", scaling=result["scaling"], labels=ticket.dataset["labels"])
    refitted = load_file(new, "target")
    assert not torch.allclose(expected.X_train, refitted.X_train)
    rows = (torch.cat([expected.X_train, expected.X_test]),
            torch.cat([expected.y_train, expected.y_test]))  # fmt: skip
    model = build_mlp(ticket.layers, ticket.init, ticket.seed)
    m = score_splits(model, ticket.mask, {"all": rows})
    assert f"{len(rows[1])} rows, acc {m['all_accuracy']:.4f}" in printed


def test_a_scaling_that_does_not_fit_the_data_is_one_line(wine_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["search", "--data", str(wine_csv), "--target", "target", "--out", str(out), *FAST])
        == 0
    )
    narrow = tmp_path / "narrow.csv"
    pd.read_csv(wine_csv).iloc[:, -4:].to_csv(narrow, index=False)
    capsys.readouterr()
    code = main(["evaluate", str(out / "ticket.npz"), "--data", str(narrow), "--target", "target"])
    err = capsys.readouterr().err
    # the CSV's columns are matched by name first: the missing ones are named
    assert code == 2 and "narrow.csv: columns missing: alcohol, malic_acid" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "record",
    [None, {"method": "per-feature"}, {"method": "per-feature", "low": [1, 2], "high": [0, 3]},
     {"method": "per-feature", "low": ["a"], "high": [1]}, {"method": "other"}],
)  # fmt: skip
def test_malformed_scaling_records_are_errors(record):
    with pytest.raises(EvopruneError, match="scaling"):
        FeatureScaling.from_config(record)


def test_scaling_refuses_data_of_another_width():
    fitted = FeatureScaling.fit(np.array([[1.0, 5.0, 0.0], [3.0, 6.0, 1.0]]))
    with pytest.raises(EvopruneError, match="fitted on 3 features, the data has 2"):
        fitted.apply(np.array([[2.0, 5.0]]))
