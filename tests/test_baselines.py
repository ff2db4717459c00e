"""Baselines: edge-popup invariants and convergence, the Table 2 lookup, backprop, jobs and CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evoprune.baselines import (
    TABLE2,
    BackpropParams,
    EdgePopupConfig,
    backprop,
    edge_popup,
    kept_count,
    lookup,
    train_edge_popup,
)
from evoprune.baselines.edge_popup import ScoredNetwork, top_k_mask
from evoprune.baselines.table2 import TABLE2_DIGITS_RAW, format_row
from evoprune.cli import main
from evoprune.data.registry import load_dataset
from evoprune.errors import EvopruneError
from evoprune.jobs import run_job
from evoprune.masks import MaskSpace
from evoprune.nets import ARCHS, build_mlp
from evoprune.results import RESULT_FIELDS as CORE_FIELDS
from evoprune.scores import forward_one
from evoprune.ticket import Ticket

# Every field of the GA's result.json (the baselines write the same ones), plus theirs.
RESULT_FIELDS = (*CORE_FIELDS, "method", "epochs", "hyperparameters")


def moons_subset(n: int = 1200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n, noise=0.07, random_state=seed)
    X = (X - X.min()) / (X.max() - X.min()) * 1.4 - 0.7  # the paper's [-0.7, 0.7] scaling
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small CSV dataset (two moons) for the job and CLI tests: fast, no 50k samples."""
    X, y = moons_subset(600, seed=1)
    path = tmp_path_factory.mktemp("data") / "moons.csv"
    rows = ["x1,x2,label"] + [
        f"{a:.6f},{b:.6f},{int(c)}" for (a, b), c in zip(X.tolist(), y.tolist(), strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


# -- edge-popup: invariants ----------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.29, 0.5, 0.7, 0.95, 0.999])
def test_kept_fraction_is_exact_per_layer(sparsity: float) -> None:
    net = build_mlp([3, 75, 50, 4], seed=0)
    X, y = torch.randn(64, 3), torch.randint(0, 4, (64,))
    res = edge_popup(net, X, y, sparsity=sparsity, epochs=1, batch_size=32, seed=0)
    per_layer = res.space.split(res.mask)
    for p in res.space.params:
        kept = int(per_layer[p.name].sum())
        assert kept == p.size - math.floor(sparsity * p.size + 1e-9) == kept_count(p.size, sparsity)
        assert kept >= 1
    assert kept_count(100, 0.29) == 71  # floor(0.29 * 100) = 29 removed despite float error


def test_top_k_mask_keeps_the_largest() -> None:
    scores = torch.tensor([[0.3, -0.9, 0.1], [0.5, 0.0, -0.2]])
    assert top_k_mask(scores.abs(), 2).tolist() == [[False, True, False], [True, False, False]]


def test_straight_through_gradient_reaches_scores_and_weights_stay_frozen() -> None:
    net = build_mlp([2, 20, 2], init="uniform", seed=3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scored = ScoredNetwork(net, sparsity=0.5, seed=0)
    X, y = moons_subset(128)
    loss = nn.functional.cross_entropy(scored(X), y)
    loss.backward()
    for name, s in scored.scores.items():
        assert s.grad is not None
        # Straight-through: pruned weights get gradient too (a hard mask would give them none).
        pruned = ~top_k_mask(s.detach().abs(), scored.kept[name])
        assert s.grad[pruned].abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())

    res = edge_popup(net, X, y, sparsity=0.5, epochs=3, batch_size=32, seed=0)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed during edge-popup"
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            res.scores.values(), ScoredNetwork(net, 0.5, 0).scores.values(), strict=True
        )
    )


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_fast_path_equals_functional_call_and_plain_masked_forward(activation) -> None:
    net = build_mlp([2, 20, 20, 3], seed=1, activation=activation)
    X = torch.randn(50, 2)
    fast, general = ScoredNetwork(net, 0.4, seed=2), ScoredNetwork(net, 0.4, seed=2, fast=False)
    assert fast.linears is not None and general.linears is None
    with torch.no_grad():
        torch.testing.assert_close(fast(X), general(X))
        reference = forward_one(net, MaskSpace(net), fast.mask(), X)
        torch.testing.assert_close(fast(X), reference)


def test_same_seed_same_mask_different_seed_different() -> None:
    X, y = moons_subset(400)
    masks = []
    for seed in (0, 0, 1):
        net = build_mlp([2, 20, 2], seed=0)
        masks.append(edge_popup(net, X, y, sparsity=0.5, epochs=2, batch_size=64, seed=seed).mask)
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])


def test_works_for_a_conv_module() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    model.requires_grad_(False)
    before = [p.clone() for p in model.parameters()]
    X = torch.randn(40, 1, 8, 8)
    y = (X.mean(dim=(1, 2, 3)) > 0).long()
    res = edge_popup(model, X, y, sparsity=0.6, epochs=2, batch_size=20, seed=0)
    assert res.mask.shape == (MaskSpace(model).n_bits,)
    assert [int(m.sum()) for m in res.space.split(res.mask).values()] == [
        kept_count(36, 0.6),
        kept_count(288, 0.6),
    ]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("init", ["uniform", "kaiming-normal", "signed-constant"])
def test_edge_popup_beats_chance_on_a_tiny_task(init: str) -> None:
    X, y = moons_subset(1200)
    Xt, yt = moons_subset(1000, seed=5)
    net = build_mlp([2, 75, 2], init=init, seed=0, keep=0.5)
    res = edge_popup(net, X, y, sparsity=0.5, epochs=15, batch_size=64, seed=0)
    acc = float((forward_one(net, res.space, res.mask, Xt).argmax(1) == yt).float().mean())
    assert acc > 0.8, f"{init}: test accuracy {acc:.3f}"
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


@pytest.mark.parametrize(
    "bad",
    [
        {"sparsity": 1.0},
        {"sparsity": -0.1},
        {"sparsity": float("nan")},
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": 0.0},
        {"weight_decay": -1.0},
        {"nesterov": True, "momentum": 0.0},
        {"momentum": 1.5},
    ],
)
def test_bad_edge_popup_config_is_an_evoprune_error(bad: dict) -> None:
    with pytest.raises(EvopruneError):
        EdgePopupConfig(**bad)


# -- backprop: Table 2 ---------------------------------------------------------------------------


def _experiment_rows() -> list[tuple[str, str, int]]:
    rows = [(ds, a, 2) for ds in ("moons", "circles") for a in ARCHS]
    rows += [("blobs", "C", c) for c in range(2, 11)]
    rows += [("digits", "B", c) for c in (2, 3, 4, 5, 10)]
    return rows


@pytest.mark.parametrize("row", _experiment_rows())
def test_table2_covers_every_experiment_row(row: tuple[str, str, int]) -> None:
    dataset, letter, classes = row
    params = lookup(dataset, ARCHS[letter], classes)
    assert isinstance(params, BackpropParams) and params == TABLE2[row]
    kw = params.sklearn_kwargs()
    assert kw["solver"] in ("adam", "sgd") and kw["batch_size"] in (32, 64, 128)
    assert 1e-4 - 1e-12 <= kw["alpha"] <= 0.1 and 1e-3 - 1e-12 <= kw["learning_rate_init"] <= 0.1
    assert (
        eval(
            format_row(*row, params).split(": ", 1)[1].rstrip(","),
            {"BackpropParams": BackpropParams},
        )
        == params
    )
    if dataset == "digits":
        assert lookup(dataset, ARCHS[letter], classes, normalize=False) == TABLE2_DIGITS_RAW[row]


def test_table2_has_no_row_for_other_settings() -> None:
    assert lookup("moons", [33], 2) is None
    assert lookup("blobs", ARCHS["A"], 3) is None


def test_backprop_reaches_a_threshold_on_a_tiny_task() -> None:
    X, y = moons_subset(1000)
    Xt, yt = moons_subset(1000, seed=5)
    # Table 2's rows are tuned for 50k samples; on 1k a faster rate converges in ~1 s.
    params = BackpropParams(solver="adam", learning_rate_init=0.01, batch_size=32)
    res = backprop(X.numpy(), y.numpy(), [75], params, seed=0, max_iter=100)
    acc, loss = res.metrics(Xt.numpy(), yt.numpy())
    assert acc > 0.98 and loss < 0.1
    assert len(res.history) == res.epochs
    again = backprop(X.numpy(), y.numpy(), [75], params, seed=0, max_iter=100)
    assert all(
        np.array_equal(a, b) for a, b in zip(res.model.coefs_, again.model.coefs_, strict=True)
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"solver": "lbfgs"},
        {"learning_rate": "fast"},
        {"alpha": -1.0},
        {"batch_size": 0},
        {"momentum": 2.0},
    ],
)
def test_bad_backprop_params_are_an_evoprune_error(bad: dict) -> None:
    with pytest.raises(EvopruneError):
        BackpropParams(**bad)


# -- jobs and result.json ------------------------------------------------------------------------


def test_edge_popup_job_writes_a_ticket_and_every_result_field(tmp_path, tiny_data) -> None:
    job = {
        "method": "edge-popup",
        "dataset": "file",
        "data": tiny_data,
        "target": "label",
        "arch": "2,20,2",
        "seed": 0,
        "init": "signed-constant",
        "sparsity": 0.6,
        "epochs": 2,
        "batch_size": "64",
        "lr": "1e-1",
    }  # strings as YAML would give them
    result = run_job(job, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    for key in RESULT_FIELDS:
        assert key in saved, key
    assert saved["variant"] == saved["method"] == "edge-popup"
    assert saved["generations"] is None and saved["objective"] == "loss"
    assert saved["hyperparameters"]["sparsity"] == 0.6 and saved["epochs"] == 2
    ticket = Ticket.load(tmp_path / "run" / "ticket.npz")
    assert ticket.method == "edge-popup" and ticket.init == "signed-constant"
    assert ticket.keep == pytest.approx(0.4)
    assert ticket.sparsity == pytest.approx(result["sparsity"])
    assert (tmp_path / "run" / "history.csv").read_text().startswith("epoch,")
    # The ticket rebuilds the exact network: same test accuracy from the file alone.
    from evoprune.data.registry import dataset_from_config
    from evoprune.scores import score

    ds = dataset_from_config(ticket.dataset)
    assert score(ticket.build_model(), ticket.mask, ds)["test_accuracy"] == result["test_accuracy"]
    # the same seed writes the same ticket file, byte for byte (its header held the seconds)
    run_job(job, tmp_path / "again")
    assert (tmp_path / "again" / "ticket.npz").read_bytes() == (
        tmp_path / "run" / "ticket.npz"
    ).read_bytes()
    assert "train_seconds" in result and "train_seconds" not in ticket.metrics


def test_backprop_job_result_fields(tmp_path, tiny_data) -> None:
    job = {
        "method": "backprop",
        "dataset": "file",
        "data": tiny_data,
        "target": "label",
        "arch": "2,20,2",
        "seed": 1,
        "solver": "adam",
        "max_iter": 30,
    }
    result = run_job(job, tmp_path / "bp")
    saved = json.loads((tmp_path / "bp" / "result.json").read_text())
    for key in RESULT_FIELDS:
        assert key in saved, key
    assert saved["sparsity"] == 0.0 and saved["variant"] == "backprop"
    assert saved["sklearn_params"]["hidden_layer_sizes"] == [20]
    assert saved["table2_row"] is False and result["test_accuracy"] > 0.6  # 30 epochs only
    with np.load(tmp_path / "bp" / "model.npz", allow_pickle=False) as npz:
        assert npz["W0"].shape == (2, 20)
    # the data, exactly: the file's absolute path and the digest of its bytes (the job holds
    # the path as typed; rows shuffled in the same file gave other results under one config)
    from evoprune.data.files import file_digest

    assert saved["data"]["path"] == str(Path(tiny_data).resolve())
    assert saved["data"]["sha256"] == file_digest(Path(tiny_data))


def test_backprop_job_uses_table2(monkeypatch) -> None:
    from evoprune.baselines import jobs

    seen = {}

    def fake_backprop(X, y, hidden, params, **kw):
        seen["params"], seen["hidden"] = params, hidden
        raise KeyboardInterrupt  # stop before the (slow) 50k-sample fit

    monkeypatch.setattr(jobs, "backprop", fake_backprop)
    with pytest.raises(KeyboardInterrupt):
        run_job({"method": "backprop", "dataset": "circles", "arch": "B", "alpha": 0.5})
    assert seen["hidden"] == [75]
    assert seen["params"] == BackpropParams(
        solver="sgd",
        learning_rate_init=0.004642,
        learning_rate="adaptive",
        batch_size=128,
        alpha=0.5,
        momentum=0.5,
        nesterovs_momentum=True,
    )


@pytest.mark.parametrize(
    "job, word",
    [
        ({"method": "edge-popup", "dataset": "moons", "sparsity": 1.0}, "sparsity"),
        ({"method": "edge-popup", "dataset": "moons", "sparsity": -0.5}, "sparsity"),
        ({"method": "edge-popup", "dataset": "moons", "init": "xavier", "epochs": 1}, "init"),
        ({"method": "edge-popup", "dataset": "nope"}, "dataset"),
        ({"method": "edge-popup", "dataset": "moons", "epoch": 3}, "epoch"),
        ({"method": "edge-popup", "dataset": "moons", "batch_size": "many"}, "batch_size"),
        ({"method": "backprop", "dataset": "moons", "init": "uniform"}, "init"),
        ({"method": "backprop", "dataset": "nope"}, "dataset"),
        ({"method": "backprop", "dataset": "moons", "arch": "2,33,2"}, "Table 2"),
        ({"method": "backprop", "dataset": "moons", "solver": "lbfgs"}, "solver"),
    ],
)
def test_bad_jobs_are_evoprune_errors(job: dict, word: str) -> None:
    with pytest.raises(EvopruneError, match=word):
        run_job(job)


# -- CLI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["baseline", "edge-popup", "--dataset", "moons", "--sparsity", "1.0"],
        ["baseline", "edge-popup", "--dataset", "moons", "--sparsity", "-0.2"],
        ["baseline", "edge-popup", "--dataset", "nope"],
        ["baseline", "backprop", "--dataset", "nope"],
        ["baseline", "backprop", "--dataset", "moons", "--arch", "2,33,2"],
        ["tune-backprop", "--dataset", "nope"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys, tmp_path) -> None:
    assert main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "baseline" else [])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err


def test_cli_unknown_init_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["baseline", "edge-popup", "--dataset", "moons", "--init", "xavier"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_edge_popup_and_backprop_runs(tmp_path, tiny_data, capsys) -> None:
    data = ["--data", tiny_data, "--target", "label", "--arch", "2,20,2", "--quiet"]
    assert (
        main(["baseline", "edge-popup", *data, "--epochs", "2", "--out", str(tmp_path / "ep")]) == 0
    )
    assert (
        main(
            [
                "baseline",
                "backprop",
                *data,
                "--solver",
                "adam",
                "--max-iter",
                "20",
                "--out",
                str(tmp_path / "bp"),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("edge-popup") and lines[1].startswith("backprop")
    assert (tmp_path / "ep" / "ticket.npz").is_file() and (
        tmp_path / "bp" / "result.json"
    ).is_file()
    # a finished run folder is never overwritten
    assert (
        main(["baseline", "edge-popup", *data, "--epochs", "1", "--out", str(tmp_path / "ep")]) == 2
    )


def test_cli_tune_backprop_prints_a_table_row(tmp_path, tiny_data, capsys) -> None:
    out = tmp_path / "tune.json"
    assert (
        main(
            [
                "tune-backprop",
                "--data",
                tiny_data,
                "--target",
                "label",
                "--arch",
                "2,20,2",
                "--n-iter",
                "2",
                "--max-iter",
                "15",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    row = capsys.readouterr().out.strip()
    assert row.startswith('("file", "A", 2): BackpropParams(solver=')  # hidden [20] is A
    saved = json.loads(out.read_text())
    assert len(saved["candidates"]) == 2 and 0 <= saved["cv_accuracy"] <= 1


# -- slow: the real datasets ---------------------------------------------------------------------


@pytest.mark.slow
def test_edge_popup_on_full_moons_short() -> None:
    ds = load_dataset("moons")
    net = build_mlp([2, 75, 2], seed=0)
    res = train_edge_popup(net, ds.X_train, ds.y_train, EdgePopupConfig(epochs=5), seed=0)
    acc = float(
        (forward_one(net, res.space, res.mask, ds.X_test).argmax(1) == ds.y_test).float().mean()
    )
    assert acc > 0.85  # 100 epochs reach ~0.89 on moons B (uniform init, seeds 0-2)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_backprop_although_sklearn_catches_it(tmp_path, ctrl_c_able, sig):
    # MLPClassifier catches KeyboardInterrupt, warns and returns the half-trained model; a
    # scheduler's SIGTERM stops the command as Ctrl-C does
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "bp"
    cmd = [sys.executable, "-m", "evoprune", "baseline", "backprop", "--dataset", "circles",
           "--arch", "D", "--quiet", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **ctrl_c_able)
    time.sleep(6)  # past the imports, into the epochs (the fit takes about a minute)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().strip() == "evoprune baseline: interrupted"
    assert b"Training interrupted by user" not in err
    assert not out.exists()


def test_a_backprop_override_its_solver_does_not_read_is_an_error():
    from evoprune.baselines.jobs import backprop_params

    job = {"method": "backprop", "dataset": "moons", "momentum": 0.3}  # moons B is an adam row
    with pytest.raises(EvopruneError, match="momentum: not read by the adam solver"):
        backprop_params(job, "moons", [75], 2, True)
    params, found = backprop_params({**job, "solver": "sgd"}, "moons", [75], 2, True)
    assert found and params.solver == "sgd" and params.momentum == 0.3
    # nor the learning-rate schedule (sklearn's adam reads none): recorded, never used
    with pytest.raises(EvopruneError, match="learning_rate: not read by the adam solver"):
        schedule = {"method": "backprop", "dataset": "moons", "learning_rate": "invscaling"}
        backprop_params(schedule, "moons", [75], 2, True)


@pytest.mark.filterwarnings("error::UserWarning")  # sklearn's batch clipping: silenced
def test_tune_backprop_splits_a_file_by_its_seed_and_checks_out_first(tmp_path, capsys):
    """--seed split the search's and the baseline's file but not the tuning's (always seed 0:
    the tuning saw the seed's test rows); a folder as --out failed only after every fit."""
    from evoprune.cli import main

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    frame = "\n".join(f"{a},{b},{int(a > b)}" for a, b in X)
    (tmp_path / "d.csv").write_text("a,b,label\n" + frame)
    args = ["tune-backprop", "--data", str(tmp_path / "d.csv"), "--target", "label", "--n-iter",
            "1", "--max-iter", "3", "--quiet", "--seed", "3"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "t.json")]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["dataset"]["split_seed"] == 3
    (tmp_path / "folder.json").mkdir()
    assert main([*args, "--out", str(tmp_path / "folder.json")]) == 2
    out, err = capsys.readouterr()
    assert "is a folder; expected a file name" in err and "tune-backprop:" not in out


def test_backprop_from_python_checks_its_inputs():
    """NaN rows, mismatched lengths, a bare int for hidden and a dict for params were raw
    sklearn or Python errors."""
    from evoprune.baselines.table2 import TABLE2

    X = np.random.default_rng(0).normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    row = TABLE2[("moons", "A", 2)]
    bad = X.copy()
    bad[3, 1] = np.nan
    for args, message in [((bad, y, [8], row), "X: 1 rows hold NaN"),
                          ((X, y[:30], [8], row), "X has 40 samples but y has 30"),
                          ((X, y, 8, row), "hidden: expected a list of hidden widths"),
                          ((X, y, [8], {"solver": "adam"}), "params: expected a BackpropParams")]:  # fmt: skip
        with pytest.raises(EvopruneError, match=message):
            backprop(*args, max_iter=2)


# -- mutation-testing gaps -----------------------------------------------------------------------


def test_kept_count_keeps_one_weight_at_a_sparsity_just_below_one() -> None:
    """The config accepts 1 - 1e-12; without the floor of one such a sparsity empties a layer."""
    EdgePopupConfig(sparsity=1 - 1e-12)
    assert [kept_count(n, 1 - 1e-12) for n in (1, 10, 1000)] == [1, 1, 1]


def test_scores_are_drawn_uniform_within_one_over_root_fan_in() -> None:
    """kaiming_uniform_(a=sqrt(5)) is U[-1/sqrt(fan_in), 1/sqrt(fan_in)], fan_in the inputs (x
    kernel); a fan-out or a sqrt(3 / fan_in) bound would leave the interval or not fill it."""
    from evoprune.baselines.edge_popup import init_scores

    model = nn.Sequential(nn.Conv2d(2, 50, 3), nn.Flatten(), nn.Linear(400, 3))  # never run
    scores = init_scores(model, MaskSpace(model), seed=0)
    for name, fan_in in (("0.weight", 2 * 3 * 3), ("2.weight", 400)):
        bound = 1 / math.sqrt(fan_in)
        assert 0.95 * bound < scores[name].abs().max() <= bound, name


def test_each_epoch_steps_at_its_cosine_rate_with_the_configured_sgd(monkeypatch) -> None:
    """Epoch e steps at 0.5 (1 + cos(pi e / E)) lr (the optimizer's rate, not only the logged
    one), with the configured momentum, weight decay and nesterov."""
    seen = []
    step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        group = self.param_groups[0]
        seen.append((group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    config = EdgePopupConfig(
        epochs=4, lr=0.2, momentum=0.8, weight_decay=1e-3, nesterov=True, batch_size=32
    )
    X, y = moons_subset(64)
    res = train_edge_popup(build_mlp([2, 8, 2], seed=0), X, y, config, seed=0)
    rates = [0.1 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]  # 0.2, ..., 0.1 at e = 2
    assert [row["lr"] for row in res.history] == pytest.approx(rates)
    assert [s[0] for s in seen] == pytest.approx([r for r in rates for _ in range(2)])
    assert {s[1:] for s in seen} == {(0.8, 1e-3, True)}


def test_the_batch_order_follows_the_seed(monkeypatch) -> None:
    """Each run shuffles with a generator derived from its own seed, not a fixed one."""
    orders = []
    randperm = torch.randperm

    def spy(*args, **kwargs):
        orders.append(randperm(*args, **kwargs))
        return orders[-1]

    monkeypatch.setattr(torch, "randperm", spy)
    X, y = moons_subset(64)
    config = EdgePopupConfig(epochs=1, batch_size=16)
    for seed in (0, 0, 1):
        train_edge_popup(build_mlp([2, 8, 2], seed=0), X, y, config, seed=seed)
    assert len(orders) == 3
    assert torch.equal(orders[0], orders[1]) and not torch.equal(orders[0], orders[2])


def test_backprop_follows_its_seed_numbers_epochs_from_one_and_scores_by_class_label() -> None:
    """Weights seeded from the run seed; history rows are epochs 1..n_iter_ with sklearn's
    losses; accuracy compares class labels (here 0 and 2), not column indices; max_iter >= 1."""
    X = np.random.default_rng(0).normal(size=(80, 2))
    y = np.where(X[:, 0] > 0, 2, 0)
    params = BackpropParams(solver="adam", learning_rate_init=0.01, batch_size=32)
    a, b = (backprop(X, y, [8], params, seed=s, max_iter=5) for s in (0, 1))
    assert not np.array_equal(a.model.coefs_[0], b.model.coefs_[0])
    assert [row["epoch"] for row in a.history] == list(range(1, a.epochs + 1))
    assert [row["train_loss"] for row in a.history] == a.model.loss_curve_
    assert a.metrics(X, y)[0] == np.mean(a.model.predict(X) == y)
    with pytest.raises(EvopruneError, match="max_iter"):
        backprop(X, y, [8], params, max_iter=0)


def test_tune_backprop_samples_by_its_seed() -> None:
    """RandomizedSearchCV draws its settings from the run seed: same seed, same candidates."""
    from evoprune.baselines.backprop import tune_backprop

    X, y = moons_subset(60)
    runs = [tune_backprop(X, y, [4], n_iter=2, cv=2, seed=s, max_iter=3) for s in (0, 0, 1)]
    drawn = [[{k: v for k, v in c.items() if k != "cv_accuracy"} for c in r.candidates]
             for r in runs]  # fmt: skip
    assert drawn[0] == drawn[1] and drawn[0] != drawn[2]


def test_backprop_job_without_arch_trains_architecture_b(monkeypatch) -> None:
    """B is the default architecture of backprop jobs, as of the GA's."""
    from evoprune.baselines import jobs

    seen = {}

    def fake_backprop(X, y, hidden, params, **kw):
        seen["hidden"] = hidden
        raise KeyboardInterrupt  # stop before the fit

    monkeypatch.setattr(jobs, "backprop", fake_backprop)
    with pytest.raises(KeyboardInterrupt):
        run_job({"method": "backprop", "dataset": "circles"})
    assert seen["hidden"] == ARCHS["B"]
