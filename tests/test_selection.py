"""Selection dynamics (pruning as evolution): fitness, invariants, a tiny seeded run, export, CLI."""

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from evoprune.cli import main
from evoprune.errors import EvopruneError
from evoprune.nets import MLP
from evoprune.pruning.selection.dynamics import (
    SelectionConfig,
    SelectionDynamics,
    exponential,
    extinguish,
    logistic,
    normalise,
    replicator,
    target_schedule,
)
from evoprune.pruning.selection.export import export_selection, load_exported, prune_keep
from evoprune.pruning.selection.figures import prepare_accuracy
from evoprune.pruning.selection.job import load_network, run_selection_job
from evoprune.pruning.selection.masses import Masses, lowest, shrink_mlp

TINY = {
    "method": "selection",
    "dataset": "digits",
    "seed": 0,
    "epochs": 6,
    "lr": 0.01,
    "batch_size": 64,
    "levels": "0.5,0.8",
    "dynamics": "logistic",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sel") / "run"
    result = run_selection_job(dict(TINY), out)
    return out, result


def _net(seed=0, widths=(5, 7, 6, 3)):
    torch.manual_seed(seed)
    return MLP(list(widths))


def test_fitness_is_the_autograd_derivative_of_the_loss_wrt_the_masses():
    net = _net()
    masses = Masses(net)
    with torch.no_grad():
        masses.set([torch.rand(7) + 0.5, torch.rand(6) + 0.5])
    x, y = torch.randn(11, 5), torch.randint(0, 3, (11,))
    F.cross_entropy(net(x), y).backward()
    got = masses.grads()
    # plain reference: the MLP written out with h = m * relu(W x + b), masses as explicit inputs
    m1, m2 = (m.detach().clone().requires_grad_(True) for m in masses.values)
    l1, l2, l3 = net.linears
    a1 = torch.relu(F.linear(x, l1.weight, l1.bias))
    h1 = m1 * a1
    a2 = torch.relu(F.linear(h1, l2.weight, l2.bias))
    h2 = m2 * a2
    loss = F.cross_entropy(F.linear(h2, l3.weight, l3.bias), y)
    g1, g2, d1, d2 = torch.autograd.grad(loss, [m1, m2, h1, h2])
    torch.testing.assert_close(got[0], g1)
    torch.testing.assert_close(got[1], g2)
    # and it is mean_b a_bi delta_bi with delta the per-sample gradient wrt h
    torch.testing.assert_close(got[0], (a1 * d1 * len(x)).mean(0))
    torch.testing.assert_close(got[1], (a2 * d2 * len(x)).mean(0))


def test_masses_on_conv_channels_scale_each_channel():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    masses = Masses(net)
    assert masses.names == ["0"] and masses.sizes == [4]
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        masses.set([torch.tensor([1.0, 0.0, 2.0, 1.0])])
        conv = net[0](x)  # hooked: already scaled
        masses.remove()
        plain = net[0](x)
    torch.testing.assert_close(conv[:, 1], torch.zeros_like(conv[:, 1]))
    torch.testing.assert_close(conv[:, 2], 2 * plain[:, 2])


masses_st = st.lists(st.floats(0.0, 4.0), min_size=2, max_size=40)


@settings(max_examples=60, deadline=None)
@given(masses_st, st.floats(0.0, 0.5), st.integers(0, 2**31 - 1))
def test_dynamics_keep_their_invariants(values, eta, seed):
    m = torch.tensor(values, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    Fh = normalise(torch.rand(len(m), generator=gen), torch.ones(len(m), dtype=torch.bool), "mean")
    if float(m.sum()) > 0:
        e = exponential(m, Fh, eta)
        assert abs(float(e.sum()) - len(m)) < 1e-3 * len(m)  # total mass n conserved
        assert bool((e >= 0).all())
        assert bool((e[m == 0] == 0).all())  # zero mass stays zero
    r = replicator(m, Fh, eta)
    assert bool((r >= 0).all()) and bool((r[m == 0] == 0).all())
    lg = logistic(m, Fh, eta, 4.0)
    assert bool((lg >= 0).all()) and bool((lg <= 4.0).all())
    alive = torch.ones(len(m), dtype=torch.bool)
    out = extinguish(lg, alive, 0.01)
    assert bool((out[~alive] == 0).all()) and int(alive.sum()) >= 1  # a layer keeps a unit
    if bool((lg >= 0.01).any()):
        assert bool((out[alive] >= 0.01).all())
    else:  # all fell below at once: the strongest lives on
        assert int(alive.sum()) == 1 and float(out[alive][0]) == float(lg.max())


@pytest.mark.parametrize("dynamics", ["replicator", "exponential", "logistic"])
def test_extinct_stays_extinct_and_exponential_conserves_mass_over_training(dynamics):
    net = _net(1)
    masses = Masses(net)
    dyn = SelectionDynamics(masses, SelectionConfig(dynamics=dynamics, eta=2.0), updates=40)
    gen = torch.Generator().manual_seed(3)
    dead_before = torch.zeros(masses.n, dtype=torch.bool)
    for _ in range(40):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        F.cross_entropy(net(x), y).backward()
        dyn.step()
        flat, alive = masses.flat(), masses.flat_alive()
        assert bool((flat[~alive] == 0).all())
        assert not bool((alive & dead_before).any())  # no resurrection
        dead_before = ~alive
        if dynamics == "exponential":
            for m in masses.values:
                assert abs(float(m.detach().sum()) - m.numel()) < 1e-3
        if dynamics == "logistic":
            assert float(flat.max()) <= 4.0
    assert int((~masses.flat_alive()).sum()) > 0  # eta 2 is strong enough to drive extinctions


def test_target_mode_reaches_exactly_the_target_by_the_target_epoch():
    net = _net(2, (5, 20, 10, 3))
    masses = Masses(net)
    cfg = SelectionConfig(dynamics="logistic", target_fraction=0.6, target_epoch=3)
    dyn = SelectionDynamics(masses, cfg, updates=50, steps_per_epoch=10)
    gen = torch.Generator().manual_seed(0)
    counts = []
    for _ in range(50):
        x, y = torch.randn(8, 5, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        F.cross_entropy(net(x), y).backward()
        dyn.step()
        counts.append(int((~masses.flat_alive()).sum()))
    assert counts[9] == 0 and counts == sorted(counts)
    assert counts[29] == 18 and counts[-1] == 18  # 60% of 30, from epoch 3 on, and no more
    assert target_schedule(10, 10, 30, 18) == 0 and target_schedule(30, 10, 30, 18) == 18


def _extinct_after_each_step(net, cfg, updates, steps_per_epoch):
    masses = Masses(net)
    dyn = SelectionDynamics(masses, cfg, updates=updates, steps_per_epoch=steps_per_epoch)
    gen = torch.Generator().manual_seed(0)
    counts = []
    for _ in range(updates):
        x = torch.randn(8, net.layers[0], generator=gen)
        F.cross_entropy(net(x), torch.randint(0, 3, (8,), generator=gen)).backward()
        dyn.step()
        counts.append(int((~masses.flat_alive()).sum()))
    return counts


def test_target_epoch_1_reaches_the_target_at_the_end_of_epoch_1():
    cfg = SelectionConfig(dynamics="logistic", target_fraction=0.5, target_epoch=1)
    counts = _extinct_after_each_step(_net(2, (5, 20, 10, 3)), cfg, 30, 10)
    assert counts[8] == 0 and counts[9:] == [15] * 21


def test_layer_ranking_reaches_the_global_count():
    # 45% of 3 x 50 units is 67.5 -> 68; each layer's 22.5 rounded apart would give 3 x 23 = 69
    for ranking in ("global", "layer"):
        cfg = SelectionConfig(dynamics="logistic", target_fraction=0.45, target_epoch=2,
                              ranking=ranking)  # fmt: skip
        counts = _extinct_after_each_step(_net(3, (5, 50, 50, 50, 3)), cfg, 30, 10)
        assert counts[-1] == 68, ranking


def test_lowest_breaks_ties_by_the_tiebreak():
    scores = torch.tensor([4.0, 4.0, 4.0, 1.0])
    alive = torch.ones(4, dtype=torch.bool)
    keep = lowest(scores, 2, alive, [4], tiebreak=torch.tensor([0.9, 0.1, 0.5, 2.0]))
    assert keep.tolist() == [True, False, True, False]


def test_lowest_never_empties_a_layer_and_removes_extinct_first():
    scores = torch.tensor([0.1, 0.2, 0.3, 5.0, 0.05, 0.01])
    alive = torch.tensor([True, False, True, True, True, True])
    keep = lowest(scores, 4, alive, [4, 2])
    # extinct unit 1 counts first; then 0.01 (5); 0.05 (4) would empty layer 2: skipped
    assert keep.tolist() == [False, False, False, True, True, False]


def test_tiny_digits_run_prunes_and_stays_accurate(tiny_run):
    out, r = tiny_run
    assert r["test_accuracy_dense"] > 0.9
    acc = {(e["method"], e["fraction"]): e["test_accuracy"] for e in r["pruned"]}
    assert acc[("logistic", 0.5)] > 0.85
    assert acc[("logistic", 0.8)] > acc[("random", 0.8)]
    methods = {e["method"] for e in r["pruned"]}
    assert methods == {"logistic", "frozen-fitness", "random", "magnitude-in", "magnitude-out",
                       "train-small"}  # fmt: skip
    assert r["arch"] == [64, 128, 64, 10] and r["augment"] == "none"
    assert r["seed"] == 0 and r["init"] == "pytorch-default" and r["variant"] == "logistic"
    assert r["git_revision"] and set(r["versions"]) >= {"evoprune", "torch"}
    assert r["threads"] == 1  # what the training ran on (machine.torch_threads: the process's)
    for name in ("result.json", "history.csv", "network.npz", "masses.npz",
                 "accuracy_vs_fraction.png", "mass_histograms.png", "mass_trajectories.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert len((out / "history.csv").read_text().strip().splitlines()) == 1 + TINY["epochs"]
    saved = json.loads((out / "result.json").read_text())
    assert saved["selection_config"]["dynamics"] == "logistic" and saved["eta"] > 0


def test_same_seed_same_result_different_seed_different(tiny_run, tmp_path):
    out, r = tiny_run
    again = run_selection_job(dict(TINY), tmp_path / "again")
    assert again["pruned"] == r["pruned"] and again["extinct"] == r["extinct"]
    a = np.load(out / "network.npz")
    b = np.load(tmp_path / "again" / "network.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    other = run_selection_job({**TINY, "seed": 1, "controls": "none"}, None)
    assert other["pruned"] != [e for e in r["pruned"] if e["method"] == "logistic"]


@pytest.mark.parametrize("fraction", [None, 0.8])
def test_export_small_network_gives_the_masked_networks_logits(tiny_run, tmp_path, fraction):
    out, r = tiny_run
    exported = export_selection(out, tmp_path / "small.pt", fraction)
    small = load_exported(tmp_path / "small.pt")  # weights_only=True inside
    model, masses, header = load_network(out)
    if fraction is not None:
        masses.keep(prune_keep(masses, fraction, header["fitness"]))
    x = torch.randn(64, 64)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)
    assert sum(exported.layers[1:-1]) == int(masses.flat_alive().sum()) < masses.n
    if fraction is not None:
        level = [e for e in r["pruned"] if e["method"] == "logistic" and e["fraction"] == 0.8]
        from evoprune.data import load_dataset

        ds = load_dataset("digits")
        with torch.no_grad():
            acc = int((small(ds.X_test).argmax(1) == ds.y_test).sum()) / len(ds.y_test)
        assert acc == pytest.approx(level[0]["test_accuracy"], abs=1e-9)


def test_shrink_rejects_a_non_mlp():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(EvopruneError):
        shrink_mlp(net, Masses(net))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--levels", "0.5,1.5"], "levels"),
        (["--levels", "0.5,,0.7"], "levels: an empty item in '0.5,,0.7'"),
        (["--target-fraction", "1.2"], "target_fraction"),
        (["--rate", "-1"], "rate"),
        (["--epochs", "0"], "epochs"),
        (["--controls", "magnitude"], "controls"),
        (["--target-epoch", "30", "--target-fraction", "0.5"], "target_epoch"),
        (["--dynamics", "lotka"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, capsys, tmp_path):
    try:
        code = main(["selection-prune", "--dataset", "digits", "--out", str(tmp_path / "r"), *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def _small_csv(tmp_path):
    """40 rows of 3 features and 2 classes."""
    data = tmp_path / "d.csv"
    rows = ["a,b,c,label"] + [f"{i % 3},{i % 5},{i % 7},{i % 2}" for i in range(40)]
    data.write_text("\n".join(rows) + "\n")
    return data


def test_shift_on_non_square_data_is_a_clear_error(tmp_path, capsys):
    data = _small_csv(tmp_path)
    code = main(["selection-prune", "--data", str(data), "--target", "label", "--augment", "shift",
                 "--epochs", "1", "--controls", "none", "--out", str(tmp_path / "r")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "square" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r" / "result.json").exists()


def test_a_diverged_run_writes_strict_json(tmp_path, capsys):
    # lr 1e30 makes the losses NaN: result.json holds null there, not Python's NaN (not JSON)
    data = _small_csv(tmp_path)
    code = main(["selection-prune", "--data", str(data), "--target", "label", "--epochs", "2",
                 "--lr", "1e30", "--controls", "none", "--out", str(tmp_path / "r")])  # fmt: skip
    assert code == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    json.loads((tmp_path / "r" / "result.json").read_text(), parse_constant=refuse)


def test_a_level_below_the_extinct_share_is_marked_and_plotted_where_it_lies(tmp_path, capsys):
    # logistic makes 77% of the units extinct in 6 epochs: its "30%" level removes 77%
    data = tmp_path / "d.npz"
    from evoprune.data import load_dataset

    ds = load_dataset("digits", classes=10)
    np.savez(data, X=np.concatenate([ds.X_train, ds.X_test]),
             y=np.concatenate([ds.y_train, ds.y_test]))  # fmt: skip
    out = tmp_path / "r"
    code = main(["selection-prune", "--data", str(data), "--epochs", "6", "--lr", "0.01",
                 "--batch-size", "64", "--levels", "0.3,0.8", "--controls", "none",
                 "--arch", "64,128,64,10", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("selection-prune d.npz ")  # the file's name, not "file"
    row = next(line.split() for line in lines if line.split()[0] == "logistic")
    assert row[1].endswith("*") and not row[2].endswith("*")
    assert "removed)" in lines[-1]
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "d.npz"
    first = result["pruned"][0]
    assert first["fraction"] == 0.3 and first["removed"] > 0.5
    frame = prepare_accuracy(result)
    assert frame["fraction"].iloc[0] == first["removed"]


def test_a_shift_as_wide_as_the_image_is_refused(tmp_path, capsys):
    code = main(["selection-prune", "--dataset", "digits", "--augment", "shift", "--max-shift",
                 "8", "--out", str(tmp_path / "r")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "max_shift: expected fewer pixels than the images' side (8)" in err
    assert not (tmp_path / "r").exists()


def _fake_runs():
    import pandas as pd

    rows = []
    for seed, base in ((0, 0.97), (1, 0.96)):
        pruned = [{"method": "logistic", "fraction": 0.5, "test_accuracy": base - 0.005},
                  {"method": "random", "fraction": 0.5, "test_accuracy": 0.8},
                  {"method": "train-small", "fraction": 0.5, "test_accuracy": base - 0.01}]  # fmt: skip
        result = {"test_accuracy_dense": base, "target_fraction": None, "pruned": pruned}
        rows.append({"spec": "selection", "dataset": "mnist", "seed": seed, "label": "logistic",
                     "result": json.dumps(result)})  # fmt: skip
        target = {"test_accuracy_dense": None, "target_fraction": 0.5,
                  "pruned": [{"method": "logistic", "fraction": 0.5, "test_accuracy": base}]}  # fmt: skip
        rows.append({"spec": "selection", "dataset": "mnist", "seed": seed,
                     "label": "logistic (target)", "result": json.dumps(target)})  # fmt: skip
    return pd.DataFrame(rows)


def test_prepare_selection_summarises_each_method_and_names_the_target_mode():
    from evoprune.experiments.sections.selection import (
        prepare_selection,
        table_selection,
        targets_table,
    )

    frame = prepare_selection(_fake_runs())
    got = {(r.method, r.fraction): (round(r.mean, 6), r.n) for r in frame.itertuples()}
    assert got == {
        ("dense", 0.0): (0.965, 2),
        ("logistic", 0.5): (0.96, 2),
        ("logistic (target)", 0.5): (0.965, 2),
        ("random", 0.5): (0.8, 2),
        ("train-small", 0.5): (0.955, 2),
    }
    table = targets_table(_fake_runs())
    assert table["target holds"].tolist() == [True]  # 0.96 >= 0.965 - 0.01
    wide = table_selection(frame)
    assert wide.loc[1, "the paper (MNIST)"] == "88.3%" and wide.loc[1, "logistic"] == "96.00%"


def test_dynamics_run_on_any_module_with_conv_channels():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 8), nn.ReLU(),
        nn.Linear(8, 2),
    )  # fmt: skip
    masses = Masses(net)
    assert masses.names == ["0", "3"] and masses.sizes == [6, 8]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    dyn = SelectionDynamics(masses, SelectionConfig(dynamics="logistic", eta=1.0), updates=30)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        x, y = torch.randn(16, 1, 6, 6, generator=gen), torch.randint(0, 2, (16,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        dyn.step()
    dead = ~masses.alive[0]
    assert int((~masses.flat_alive()).sum()) > 0
    with torch.no_grad():
        out = net[0](torch.randn(3, 1, 6, 6))
    assert bool((out[:, dead] == 0).all())


def test_rate_derived_eta_is_capped_for_the_competitive_dynamics():
    assert SelectionConfig(dynamics="replicator").eta_for(1180) == pytest.approx(12 / 1180)
    assert SelectionConfig(dynamics="exponential").eta_for(220) == 0.03  # not 12 / 220
    assert SelectionConfig(dynamics="logistic").eta_for(220) == pytest.approx(40 / 220)
    assert SelectionConfig(dynamics="replicator", eta=0.05).eta_for(220) == 0.05  # explicit


def test_a_run_of_one_epoch_draws_its_mass_histograms():
    from evoprune.pruning.selection.figures import prepare_histograms

    snapshots = np.array([[1.0, 0.5, 2.0], [1.2, 0.0, 2.5]])  # the start and one epoch
    frame = prepare_histograms(snapshots, sizes=[2, 1], bins=4)
    assert sorted(frame["epoch"].unique()) == [0, 1]
    living = frame.groupby(["layer", "epoch"])["count"].sum().to_dict()
    assert living == {(1, 0): 2, (1, 1): 1, (2, 0): 1, (2, 1): 1}  # the extinct mass is not drawn


def test_an_interrupt_while_writing_leaves_no_half_run_folder(tmp_path, monkeypatch):
    """network.npz and masses.npz were written, then the figures (a second or two): a Ctrl-C
    there left them without a result.json."""
    import evoprune.pruning.selection.figures as figures

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "draw_run_figures", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_selection_job(dict(TINY), out)
    assert list(out.iterdir()) == []


def test_a_huge_eta_leaves_the_last_unit_of_each_layer():
    # at eta 1e30 every unit crossed the threshold in one update: 192 of 192 extinct, a constant
    # network; the strongest of a layer lives on
    job = {**TINY, "dynamics": "replicator", "eta": 1e30, "epochs": 1, "controls": "none",
           "levels": "0.5"}  # fmt: skip
    r = run_selection_job(job, None)
    assert r["extinct"] == r["units"] - 2  # one survivor in each of the two hidden layers


def test_fitness_rewards_the_units_whose_mass_lowers_the_loss():
    from evoprune.pruning.selection.dynamics import fitness

    grad = torch.tensor([-2.0, 0.5, 3.0])  # dL/dm: more of unit 0's mass lowers the loss
    assert fitness(grad, "signed").argmax() == 0 and fitness(grad, "signed").argmin() == 2
    assert torch.equal(fitness(grad, "taylor"), torch.tensor([2.0, 0.5, 3.0]))
    # the replicator grows the fitter unit's mass and shrinks the others
    m = torch.ones(3)
    after = replicator(m, normalise(fitness(grad, "signed"), m > 0, "mean"), 0.1)
    assert after[0] > 1.0 > after[2]


def test_zscore_gives_the_living_units_mean_1_and_unit_variance():
    F_ = torch.tensor([0.3, 2.0, 0.7, 5.0, 1.1])
    alive = torch.tensor([True, True, False, True, True])
    Fh = normalise(F_, alive, "zscore")
    assert float(Fh[alive].mean()) == pytest.approx(1.0, abs=1e-6)
    assert float(Fh[alive].std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)  # as a z-score
    assert float(Fh[2]) == 0.0


def test_replicator_conserves_the_total_mass():
    # phi is the mass-weighted mean fitness, so sum m (F - phi) = 0; the plain mean of F, or
    # one counting the extinct units, would let the layer's mass drift
    m = torch.tensor([0.2, 1.0, 3.0, 0.0, 1.5], dtype=torch.float64)
    Fh = normalise(torch.tensor([2.0, 0.5, 1.0, 0.0, 3.0], dtype=torch.float64), m > 0, "mean")
    after = replicator(m, Fh, 0.1)
    assert float(after.sum()) == pytest.approx(float(m.sum()), rel=1e-12)
    assert not torch.equal(after, m) and float(after[3]) == 0.0


def test_target_schedule_is_fast_early_and_gentle_late():
    # Zhu & Gupta's 1 - (1 - u)^3: concave, already 7/8 of the way at the schedule's midpoint
    k = [target_schedule(step, 10, 20, 800) for step in range(10, 21)]
    assert k[0] == 0 and k[5] == 700 and k[-1] == 800
    steps = [b - a for a, b in itertools.pairwise(k)]
    assert steps == sorted(steps, reverse=True) and steps[0] > steps[-1]


def test_target_mode_holds_a_living_unit_at_the_extinction_threshold():
    """Natural extinctions beyond the schedule wait at the threshold: a living mass never sits
    below it (at eta 5 the logistic clips many masses to 0 between the schedule's steps)."""
    net = _net(2, (5, 20, 10, 3))
    masses = Masses(net)
    cfg = SelectionConfig(dynamics="logistic", eta=5.0, target_fraction=0.6, target_epoch=3)
    dyn = SelectionDynamics(masses, cfg, updates=30, steps_per_epoch=10)
    gen = torch.Generator().manual_seed(0)
    at_threshold = 0
    for _ in range(30):
        x, y = torch.randn(8, 5, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        F.cross_entropy(net(x), y).backward()
        dyn.step()
        flat, alive = masses.flat(), masses.flat_alive()
        assert bool((flat[alive] >= cfg.extinction).all())
        at_threshold += int((flat[alive] == torch.tensor(cfg.extinction)).sum())
    assert at_threshold > 0


@pytest.mark.parametrize(("schedule", "factor"), [("cosine", 2.0), ("constant", 1.0)])
def test_the_first_update_takes_the_schedules_first_eta(schedule, factor):
    # cosine: eta_t = eta (1 + cos(pi (t - 1) / T)), t = 1..T, so the first update moves at 2 eta
    net = _net(4)
    masses = Masses(net)
    cfg = SelectionConfig(dynamics="logistic", eta=0.1, eta_schedule=schedule)
    dyn = SelectionDynamics(masses, cfg, updates=10)
    x, y = torch.randn(16, 5, generator=torch.Generator().manual_seed(4)), torch.arange(16) % 3
    F.cross_entropy(net(x), y).backward()
    dyn.step()
    for m, Fh in zip(masses.values, dyn.normalised_fitness(), strict=True):
        assert float((Fh - 1).abs().max()) > 0.1
        torch.testing.assert_close(m.detach(), 1 + factor * 0.1 * (Fh - 1), rtol=0, atol=1e-6)


def test_logistic_masses_stay_under_the_configured_max_mass():
    net = _net(1)
    masses = Masses(net)
    cfg = SelectionConfig(dynamics="logistic", eta=2.0, max_mass=1.5)
    dyn = SelectionDynamics(masses, cfg, updates=40)
    gen = torch.Generator().manual_seed(3)
    for _ in range(40):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        F.cross_entropy(net(x), y).backward()
        dyn.step()
        assert float(masses.flat().max()) <= 1.5
    assert float(masses.flat().max()) == 1.5  # the clip was reached, not only respected


def test_a_mass_exactly_at_the_threshold_lives():
    alive = torch.ones(3, dtype=torch.bool)
    out = extinguish(torch.tensor([0.25, 0.5, 0.125]), alive, 0.25)  # only below it dies
    assert alive.tolist() == [True, True, False] and out.tolist() == [0.25, 0.5, 0.0]
