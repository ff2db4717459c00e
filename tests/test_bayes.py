"""The Bayes rule of moons and circles, and the decision-boundary figure drawn with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.datasets import make_circles, make_moons

from evoprune.analysis.boundary import decision_boundaries
from evoprune.cli import main
from evoprune.data import bayes_predict, fresh_sample, load_dataset
from evoprune.data.bayes import _moons_sum, bayes_log_ratio, raw_points
from evoprune.errors import EvopruneError
from evoprune.ga.job import run_ga_job

SIGMA = 0.07
TINY = {"population": 12, "min_generations": 4, "patience": 2, "max_generations": 4}


def mixture_log_ratio(X: np.ndarray, make, n: int = 8_000) -> np.ndarray:
    """An independent reference: each class's density as the Gaussian mixture over the
    generator's own noise-free points."""
    points, labels = make(n_samples=n, noise=None, shuffle=False)
    logs = []
    for cls in (0, 1):
        c = points[labels == cls]
        d2 = [
            ((x[:, None, :] - c[None]) ** 2).sum(-1) for x in np.array_split(X, len(X) // 500 + 1)
        ]
        logs.append(logsumexp(-np.concatenate(d2) / (2 * SIGMA**2), axis=1) - np.log(len(c)))
    return logs[1] - logs[0]


def random_points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform([-1.3, -0.9], [2.3, 1.4], size=(n, 2))


def test_moons_ratio_equals_the_mixture_over_the_generators_points():
    X, _ = make_moons(n_samples=400, noise=0.2, random_state=0)  # about the data, wider
    # n / 2 points per arc, ends included: the continuous arc is their limit, within O(1/n) (a
    # relative 1e-4 here; with the test split's 8,000 points per arc, up to 0.01 near the boundary)
    ref = mixture_log_ratio(X, make_moons, n=400_000)
    assert np.array_equal(bayes_log_ratio("moons", X) > 0, ref > 0)
    # the sum itself, which runs where the distances to the arcs leave the class open
    near = np.abs(ref) < 20
    assert near.sum() > 50 and np.allclose(_moons_sum(X[near]), ref[near], rtol=1e-4, atol=1e-3)


def test_moons_ratio_flips_sign_under_the_symmetry_that_swaps_the_moons():
    # (x, y) -> (1 - x, 0.5 - y) maps each half circle onto the other
    X = random_points(5_000, seed=1)
    mirrored = np.c_[1 - X[:, 0], 0.5 - X[:, 1]]
    assert np.allclose(bayes_log_ratio("moons", mirrored), -bayes_log_ratio("moons", X), atol=1e-9)


def test_circles_closed_form_equals_the_mixture_and_is_one_radius_threshold():
    X = random_points(1_000, seed=2) - [0.5, 0.25]
    assert np.allclose(bayes_log_ratio("circles", X), mixture_log_ratio(X, make_circles), atol=1e-3)
    r = np.linspace(0.0, 1.6, 2_001)
    inner = bayes_log_ratio("circles", np.c_[r, np.zeros_like(r)]) > 0
    switch = np.flatnonzero(np.diff(inner.astype(int)))
    assert len(switch) == 1 and inner[0] and 0.8 < r[switch[0]] < 1.0


@pytest.mark.parametrize("name", ["moons", "circles"])
def test_bayes_rule_beats_a_ticket_and_reads_scaled_data(name):
    ds = load_dataset(name)
    X, y = fresh_sample(name, 200_000, seed=3)
    # the scaled samples, mapped back, are the generator's own draw
    raw, _ = (make_moons if name == "moons" else make_circles)(200_000, noise=SIGMA, random_state=3)
    assert np.allclose(raw_points(name, X), raw, atol=1e-5)
    bayes = (bayes_predict(name, X) == y).float().mean().item()
    assert bayes > {"moons": 0.9999, "circles": 0.92}[name]
    # better than a network fitted to the training split by gradient descent
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(ds.X_train), ds.y_train).backward()
        opt.step()
    with torch.no_grad():
        fitted = (net(X).argmax(1) == y).float().mean().item()
    assert bayes > fitted


def test_bayes_rule_takes_only_generated_two_feature_data():
    with pytest.raises(EvopruneError, match="expected a generated dataset.*got 'digits'"):
        bayes_predict("digits", torch.zeros(3, 2))
    with pytest.raises(EvopruneError, match="expected points with 2 features, got 3"):
        bayes_predict("moons", torch.zeros(3, 3))


@pytest.fixture(scope="module")
def moons_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("moons")
    for seed in (0, 1):
        job = {"method": "ga", "dataset": "moons", "arch": "A", "seed": seed, **TINY}
        run_ga_job(job, root / f"ga{seed}")
    return root


def test_decision_boundaries_agree_with_the_tickets_and_the_bayes_rule(moons_runs):
    from evoprune.ticket import Ticket

    ds = load_dataset("moons")
    ticket = Ticket.load(moons_runs / "ga0")
    b = decision_boundaries([ticket], ["GA"], ds, grid=41)
    gx, gy = np.meshgrid(b.xs, b.ys)
    lattice = torch.as_tensor(np.c_[gx.ravel(), gy.ravel()], dtype=torch.float32)
    assert np.array_equal(b.predictions[0].ravel(), ticket.predict(lattice).numpy())
    assert np.array_equal(b.bayes.ravel() > 0, bayes_predict("moons", lattice).numpy() == 1)
    result = json.loads((moons_runs / "ga0" / "result.json").read_text())
    assert len(b.test_errors[0]) == round((1 - result["test_accuracy"]) * len(ds.y_test))
    assert len(b.bayes_test_errors) == 0  # the Bayes rule is right on every point of this split
    assert b.xs.min() < ds.X_train[:, 0].min() and b.ys.max() > ds.X_train[:, 1].max()


def test_plot_boundary_draws_the_tickets_and_says_their_test_errors(moons_runs, tmp_path, capsys):
    out = tmp_path / "b.png"
    args = ["plot", "boundary", str(moons_runs / "ga0"), str(moons_runs / "ga1" / "ticket.npz")]
    assert main([*args, "--grid", "41", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    errors = [
        round(
            (1 - json.loads((moons_runs / f"ga{s}/result.json").read_text())["test_accuracy"])
            * 16000
        )
        for s in (0, 1)
    ]
    assert text.startswith("moons, test errors of 16,000: ")
    assert f"GA seed 0 {errors[0]:,}, GA seed 1 {errors[1]:,}, the Bayes rule 0 -> {out}" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", "boundary", str(moons_runs / "ga0"), "--grid", "21"]) == 0
    assert (moons_runs / "ga0" / "boundary.png").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["{digits}"], "expected data with 2 features, digits has 64"),
        (["{moons}", "{digits}"], "found on other data than"),
        (["{moons}", "--out", "{tmp}/b.svg"], "--out: expected a .png file name"),
        (["{moons}", "--grid", "2"], "--grid: expected 3 to 2001 points per axis, got 2"),
        (["{moons}", "--grid", "2002"], "--grid: expected 3 to 2001 points per axis, got 2002"),
    ],
)
def test_plot_boundary_bad_input_is_one_line_and_exit_2(
    extra, message, moons_runs, tmp_path, capsys
):
    digits = tmp_path / "digits"
    if "{digits}" in extra:
        run_ga_job({"method": "ga", "dataset": "digits", "classes": 2, "arch": "A", **TINY}, digits)
    args = [a.format(digits=digits, moons=moons_runs / "ga0", tmp=tmp_path) for a in extra]
    assert main(["plot", "boundary", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not list(tmp_path.glob("*.svg")) and not (digits / "boundary.png").exists()


def test_draw_boundaries_marks_at_most_400_errors_per_ticket_and_says_so():
    from evoprune.analysis.boundary import Boundaries
    from evoprune.analysis.plots import MARKED_ERRORS, draw_boundaries

    xs = ys = np.linspace(-1, 1, 21)
    gx, gy = np.meshgrid(xs, ys)
    three = (gx > 0).astype(int) + (gy > 0.5)  # three classes
    X_test = np.random.default_rng(0).uniform(-1, 1, size=(2_000, 2))
    b = Boundaries(xs, ys, [three, (gx > gy).astype(int)], ["A", "B"],
                   [np.arange(1_000), np.arange(7)], X_test[:50], np.arange(50) % 3, X_test,
                   bayes=gx - gy, bayes_test_errors=np.arange(3))  # fmt: skip
    ax = draw_boundaries(b, "t").axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"A: 1,000 test errors ({MARKED_ERRORS} marked)", "B: 7 test errors",
                      "Bayes rule: 3 test errors"]  # fmt: skip
    marked = [len(c.get_offsets()) for c in ax.collections if c.get_label().startswith(("A", "B"))]
    assert marked == [MARKED_ERRORS, 7]


def test_plot_boundary_of_a_ticket_without_its_data_takes_dataset(tmp_path, capsys):
    from evoprune.ticket import Ticket

    bits = 2 * 20 + 20 * 2
    ticket = Ticket(mask=torch.ones(bits, dtype=torch.bool), layers=[2, 20, 2])
    ticket.save(tmp_path / "t.npz")
    assert main(["plot", "boundary", str(tmp_path / "t.npz"), "--grid", "21"]) == 2
    assert "the ticket records no dataset; give one (--dataset" in capsys.readouterr().err
    args = ["--dataset", "circles", "--grid", "21", "--out", str(tmp_path / "b.png")]
    assert main(["plot", "boundary", str(tmp_path / "t.npz"), *args]) == 0
    ds = load_dataset("circles")
    errors = int((ticket.predict(ds.X_test) != ds.y_test).sum())
    assert f"circles, test errors of 16,000: GA seed 0 {errors:,}, the Bayes rule 1,221 " in (
        capsys.readouterr().out
    )
    assert (tmp_path / "b.png").is_file()


def test_plot_boundary_reads_other_data_as_the_ticket_was_trained(tmp_path, capsys):
    """--data: the file's columns by name, its labels as the ticket's classes, its features
    scaled by the ticket's fitted ranges; --dataset: the ticket's class count and scaling.
    Before, a new file was read in column order and by its own range, labels it never saw
    were silently numbered anew, and --dataset fell back to the paper's scaling."""
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2)) * [1.0, 50.0]
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1],
                          "label": np.where(X[:, 0] + X[:, 1] / 50 > 0, "cat", "dog")})  # fmt: skip
    frame.to_csv(tmp_path / "train.csv", index=False)
    job = {"method": "ga", "data": str(tmp_path / "train.csv"), "target": "label",
           "arch": "A", **TINY}  # fmt: skip
    run_ga_job(job, tmp_path / "run")
    frame[["b", "label", "a"]].to_csv(tmp_path / "shuffled.csv", index=False)

    def errors(*extra: str, run: str = "run") -> str:
        code = main(["plot", "boundary", str(tmp_path / run), "--grid", "11",
                     "--out", str(tmp_path / "b.png"), *extra])  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 0, err
        return out.split(" -> ")[0]

    in_order = errors("--data", str(tmp_path / "train.csv"))
    assert in_order.startswith("train.csv, test errors of 300: ")
    assert (
        errors("--data", str(tmp_path / "shuffled.csv")).split(": ")[1] == in_order.split(": ")[1]
    )
    frame.assign(label=frame["label"].replace("cat", "yes")).to_csv(tmp_path / "relabelled.csv",
                                                                    index=False)  # fmt: skip
    code = main(
        ["plot", "boundary", str(tmp_path / "run"), "--data", str(tmp_path / "relabelled.csv")]
    )
    assert code == 2 and "label 'yes' is not one of the classes cat, dog" in capsys.readouterr().err

    run_ga_job({"method": "ga", "dataset": "circles", "arch": "A", "normalize": True, **TINY},
               tmp_path / "circles")  # fmt: skip
    assert errors("--dataset", "circles", run="circles") == errors(run="circles")


def test_decision_boundaries_score_the_bayes_rule_on_the_data_as_it_was_scaled():
    """The Bayes rule errs on the same test points whichever scaling the data has (circles:
    1 - 0.9237 of 16,000); read with the default scaling, scaled circles gave other counts."""
    from evoprune.data.bayes import bayes_test_accuracy
    from evoprune.ticket import Ticket

    ticket = Ticket(mask=torch.ones(2 * 20 + 20 * 2, dtype=torch.bool), layers=[2, 20, 2])
    for normalize in (False, True):
        ds = load_dataset("circles", normalize=normalize)
        b = decision_boundaries([ticket], ["dense"], ds, grid=3)
        expected = round((1 - bayes_test_accuracy("circles")) * len(ds.y_test))
        assert len(b.bayes_test_errors) == expected, normalize
