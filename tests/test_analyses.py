"""The paper's analyses: landscapes, Hessian spectra, the ticket graph, plot history, and their
report sections. Each checks against a plain reference computation or a hand count."""

from __future__ import annotations

import copy
import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evoprune.analysis.graph import ticket_graph, write_graph
from evoprune.analysis.hessian import hessian_spectrum, ticket_hessian
from evoprune.analysis.landscape import LandscapeConfig, landscape, ticket_landscape
from evoprune.analysis.params import Selection, masked_state
from evoprune.errors import EvopruneError
from evoprune.ga.job import run_ga_job
from evoprune.masks import MaskSpace
from evoprune.nets import build_mlp
from evoprune.scores import score_splits
from evoprune.ticket import Ticket

TINY = {"population": 12, "min_generations": 4, "patience": 2, "max_generations": 4}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Many small products: one thread (two wait on each other when the cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ga_run(tmp_path_factory) -> Path:
    """A real GA ticket on digits-3 (architecture A), loss objective, as `evoprune search` writes it."""
    out = tmp_path_factory.mktemp("ga") / "run"
    job = {"method": "ga", "dataset": "digits", "classes": 3, "arch": "A", "seed": 1,
           "objective": "loss", **TINY}  # fmt: skip
    run_ga_job(job, out)
    return out


def _conv_net() -> nn.Module:
    torch.manual_seed(0)  # only to make the test module; the analyses take it as given
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)
    ).requires_grad_(False)  # fmt: skip


# -- landscape -----------------------------------------------------------------------------------


def test_landscape_centre_equals_the_tickets_training_metrics(ga_run):
    r = json.loads((ga_run / "result.json").read_text())
    L = ticket_landscape(Ticket.load(ga_run / "ticket.npz"), config=LandscapeConfig(grid=7))
    c = 3
    assert L.loss.shape == L.accuracy.shape == (7, 7)
    assert L.delta[c] == 0.0 and L.eta[c] == 0.0
    assert L.loss[c, c] == r["train_loss"] and L.accuracy[c, c] == r["train_accuracy"]
    # the batched forward at the centre agrees up to float32 summation order
    assert abs(L.info["batched_centre_loss"] - r["train_loss"]) < 1e-5
    assert L.loss.std() > 0  # the other points moved


def _plain_point(model, mask, X, y, d1, d2, delta, eta):
    """Reference: copy the masked model, add delta*d1 + eta*d2 in place, forward, score."""
    net = copy.deepcopy(model)
    per = MaskSpace(model).split(mask)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in per:
                p.mul_(per[name].to(p.dtype))
            if name in d1:
                p.add_(delta * d1[name] + eta * d2[name])
        logits = net(X).double()
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).double().mean().item()


@pytest.mark.parametrize("fast", [None, False])  # False: the general (vmap) path on an MLP
@pytest.mark.parametrize("directions", ["gaussian", "filter", "uniform"])
@pytest.mark.parametrize("params", ["surviving", "surviving+bias", "all"])
def test_landscape_equals_a_plain_forward_at_every_point(directions, params, fast):
    from evoprune.analysis.landscape import directions as make_directions

    model = build_mlp([3, 6, 4, 3], seed=2)
    gen = torch.Generator().manual_seed(5)
    mask = torch.rand(MaskSpace(model).n_bits, generator=gen) < 0.6
    X, y = torch.randn(80, 3, generator=gen), torch.randint(0, 3, (80,), generator=gen)
    cfg = LandscapeConfig(grid=5, span=0.7, directions=directions, params=params, seed=3)
    L = landscape(model, mask, X, y, cfg, fast=fast)
    sel = Selection(model, mask, params)
    d1, d2 = make_directions(masked_state(model, mask, torch.float32), sel, directions, 3)
    for name, d in d1.items():  # nothing moves outside the selection
        where = next(m.where for m in sel.moving if m.name == name)
        assert torch.all(d[~where] == 0) and torch.all(d2[name][~where] == 0)
    for i, j in [(0, 0), (1, 3), (4, 2), (2, 4)]:
        loss, acc = _plain_point(model, mask, X, y, d1, d2, float(L.delta[i]), float(L.eta[j]))
        assert abs(L.loss[i, j] - loss) < 1e-5 and L.accuracy[i, j] == acc


def test_landscape_of_a_stack_without_biases_equals_the_general_path():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False))
    X, y = torch.randn(32, 2), torch.randint(0, 2, (32,))
    mask = torch.ones(MaskSpace(net).n_bits, dtype=torch.bool)
    auto = landscape(net, mask, X, y, LandscapeConfig(grid=3))
    general = landscape(net, mask, X, y, LandscapeConfig(grid=3), fast=False)
    np.testing.assert_allclose(auto.loss, general.loss)


def test_filter_directions_have_the_filters_norms():
    from evoprune.analysis.landscape import directions as make_directions

    model = build_mlp([4, 5, 2], seed=0)
    mask = torch.ones(MaskSpace(model).n_bits, dtype=torch.bool)
    state = masked_state(model, mask, torch.float32)
    d1, _ = make_directions(state, Selection(model, mask, "surviving"), "filter", 0)
    for name, d in d1.items():
        assert torch.allclose(d.norm(dim=1), state[name].norm(dim=1), rtol=1e-5)


def test_landscape_same_seed_same_grid_other_seed_other_grid():
    model = build_mlp([2, 8, 2], seed=0)
    X, y = torch.randn(50, 2), torch.randint(0, 2, (50,))
    mask = torch.ones(32, dtype=torch.bool)
    a = landscape(model, mask, X, y, LandscapeConfig(grid=5, seed=1))
    b = landscape(model, mask, X, y, LandscapeConfig(grid=5, seed=1))
    c = landscape(model, mask, X, y, LandscapeConfig(grid=5, seed=2))
    assert np.array_equal(a.loss, b.loss) and not np.array_equal(a.loss, c.loss)


def test_landscape_on_a_custom_conv_module():
    model = _conv_net()
    space = MaskSpace(model)
    mask = torch.rand(space.n_bits, generator=torch.Generator().manual_seed(1)) < 0.7
    X, y = torch.randn(40, 1, 6, 6), torch.randint(0, 3, (40,))
    L = landscape(model, mask, X, y, LandscapeConfig(grid=5, directions="filter"))
    exact = score_splits(model, mask, {"train": (X, y)})
    assert L.loss[2, 2] == exact["train_loss"] and L.accuracy[2, 2] == exact["train_accuracy"]
    assert L.n_params == int(mask.sum())


# -- Hessian -------------------------------------------------------------------------------------


def _dense_reference(model, mask, X, y, biases=False):
    """torch.autograd.functional.hessian of the mean cross-entropy over the kept weights."""
    per = MaskSpace(model).split(mask)
    names = dict(model.named_parameters())
    moving = [n for n in names if n in per or (biases and n.endswith("bias"))]
    where = {n: per[n] if n in per else torch.ones_like(names[n], dtype=torch.bool) for n in moving}
    base = {n: (p.detach().double() * per[n] if n in per else p.detach().double())
            for n, p in names.items()}  # fmt: skip
    flat = torch.cat([base[n][where[n]] for n in moving])

    def loss(v):
        state, i = dict(base), 0
        for n in moving:
            k = int(where[n].sum())
            w = base[n].clone()
            w[where[n]] = v[i : i + k]
            state[n], i = w, i + k
        return F.cross_entropy(torch.func.functional_call(model, state, (X.double(),)), y)

    H = torch.autograd.functional.hessian(loss, flat)
    return np.sort(np.linalg.eigvalsh(H.numpy()))[::-1]


@pytest.mark.parametrize("biases", [False, True])
def test_lanczos_and_dense_equal_the_autograd_hessian(biases):
    model = build_mlp([4, 10, 3], seed=4)
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(MaskSpace(model).n_bits, generator=gen) < 0.7
    X, y = torch.randn(150, 4, generator=gen), torch.randint(0, 3, (150,), generator=gen)
    ref = _dense_reference(model, mask, X, y, biases)
    dense = hessian_spectrum(model, mask, X, y, biases=biases)
    assert dense.method == "dense" and dense.n_params == len(ref)
    np.testing.assert_allclose(dense.eigenvalues, ref, rtol=1e-8, atol=1e-10)
    top = hessian_spectrum(model, mask, X, y, biases=biases, top=5, method="lanczos")
    assert top.method == "lanczos" and list(top.eigenvalues) == sorted(
        top.eigenvalues, reverse=True
    )
    np.testing.assert_allclose(top.eigenvalues, ref[:5], rtol=1e-7)


def test_hessian_of_a_saved_ticket_and_of_a_conv_module(ga_run):
    t = Ticket.load(ga_run / "ticket.npz")
    h = ticket_hessian(t, top=3, method="lanczos")
    assert h.n_params == int(t.mask.sum()) and len(h.eigenvalues) == 3
    r = json.loads((ga_run / "result.json").read_text())
    assert abs(h.loss_value - r["train_loss"]) < 1e-5  # the same loss, in float64
    model = _conv_net()
    mask = torch.ones(MaskSpace(model).n_bits, dtype=torch.bool)
    X, y = torch.randn(30, 1, 6, 6), torch.randint(0, 3, (30,))
    conv = hessian_spectrum(model, mask, X, y)
    np.testing.assert_allclose(
        conv.eigenvalues, _dense_reference(model, mask, X, y), rtol=1e-7, atol=1e-10
    )


def test_training_data_checks_an_mlps_ends_and_takes_a_conv_nets_pixels():
    from evoprune.analysis.params import training_data
    from evoprune.data.registry import Dataset
    from evoprune.nets import build_convnet, build_mlp

    def data(features, classes):
        X, y = torch.rand(12, features), torch.arange(12) % classes
        return Dataset("d", X, y, X, y, classes)

    X, _ = training_data(build_convnet(n_classes=3), data(784, 3))  # its first Linear is the head
    assert X.shape == (12, 784)
    with pytest.raises(EvopruneError, match="the network has 2 outputs, the dataset 'd' has 3"):
        training_data(build_mlp([5, 4, 2]), data(5, 3))
    with pytest.raises(EvopruneError, match="the network takes 5 features, the dataset 'd' has 6"):
        training_data(build_mlp([5, 4, 3]), data(6, 3))


def test_analyze_with_no_normalize_keeps_the_tickets_class_count(tmp_path, capsys):
    from evoprune.cli import main

    out = tmp_path / "ep"
    args = ["baseline", "edge-popup", "--dataset", "digits", "--classes", "3", "--epochs", "1"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert main(["analyze", "landscape", str(out), "--no-normalize", "--grid", "3"]) == 0
    shown = json.loads((out / "landscape.json").read_text())
    assert shown["data"]["classes"] == 3 and shown["data"]["normalize"] is False


# -- ticket graph --------------------------------------------------------------------------------


def test_graph_frequencies_equal_a_hand_count(tmp_path):
    # layers [2, 3, 2]: bits 0-5 are layer 0 (out 3 x in 2, row-major), bits 6-11 layer 1 (2 x 3)
    a = Ticket(
        mask=torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0], dtype=torch.bool), layers=[2, 3, 2]
    )
    b = Ticket(
        mask=torch.tensor([1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1], dtype=torch.bool), layers=[2, 3, 2]
    )
    g = ticket_graph([a, b])
    # hand count: connection (unit o <- input i) kept by a, by b
    assert g.frequency[0].tolist() == [[1.0, 0.5], [0.5, 1.0], [0.0, 0.0]]
    assert g.frequency[1].tolist() == [[0.5, 1.0, 0.5], [0.0, 0.0, 0.5]]
    paths = write_graph(g, tmp_path / "g.png")
    csv = pd.read_csv(paths["csv"])
    row = csv[(csv.layer == 1) & (csv.source == 1) & (csv.target == 0)].iloc[0]
    assert row.frequency == 1.0 and row.kept_in == 2 and row.n_tickets == 2
    assert len(csv) == 12 and paths["png"].stat().st_size > 1000
    with pytest.raises(EvopruneError, match="different architectures"):
        ticket_graph([a, Ticket(mask=torch.ones(8, dtype=torch.bool), layers=[2, 2, 2])])


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_commands_write_their_files(ga_run, tmp_path, capsys):
    from evoprune.cli import main

    ticket = str(ga_run / "ticket.npz")
    assert main(["analyze", "landscape", ticket, "--grid", "5", "--out", str(tmp_path / "l")]) == 0
    z = np.load(tmp_path / "l" / "landscape.npz")
    assert z["loss"].shape == (5, 5) and z["delta"].shape == (5,)
    assert {p.name for p in (tmp_path / "l").iterdir()} >= {
        "landscape.csv",
        "landscape.png",
        "landscape.json",
    }
    assert main(["analyze", "hessian", ticket, "--top", "4", "--out", str(tmp_path / "h")]) == 0
    h = json.loads((tmp_path / "h" / "hessian.json").read_text())
    assert h["method"] == "lanczos" and len(h["eigenvalues"]) == 4 and "cross-entropy" in h["loss"]
    assert h["eigenvalues"] == sorted(h["eigenvalues"], reverse=True)
    # provenance beside the numbers, as every run records it, and the settings that made them
    land = json.loads((tmp_path / "l" / "landscape.json").read_text())
    from evoprune.data.files import file_digest

    for record in (h, land):
        assert record["versions"]["torch"] and "git_revision" in record
        # which ticket file, exactly (its description alone fits any ticket of that seed)
        assert record["ticket_file"] == str((ga_run / "ticket.npz").resolve())
        assert record["ticket_sha256"] == file_digest(ga_run / "ticket.npz")
        assert record["ticket"]["seed"] == 1 and record["data"]["name"] == "digits"
    assert h["config"] == {"top": 4, "biases": False, "method": "auto", "seed": 0}
    assert main(["analyze", "graph", ticket, "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.csv").is_file()
    assert main(["plot", "history", str(ga_run), "--out", str(tmp_path / "hist.png")]) == 0
    assert (tmp_path / "hist.png").stat().st_size > 1000


def test_without_out_the_analyses_write_beside_the_ticket(ga_run, tmp_path):
    import shutil

    from evoprune.cli import main

    ticket = tmp_path / "run" / "ticket.npz"
    ticket.parent.mkdir()
    shutil.copy(ga_run / "ticket.npz", ticket)
    run = str(ticket.parent)  # a run folder stands for its ticket
    assert main(["analyze", "landscape", str(ticket), "--grid", "3", "--quiet"]) == 0
    assert main(["analyze", "hessian", run, "--top", "2"]) == 0
    assert main(["analyze", "graph", run]) == 0
    assert main(["export", run]) == 0
    assert main(["evaluate", run]) == 0
    assert {p.name for p in ticket.parent.iterdir()} >= {"landscape.npz", "landscape.png",
                                                         "hessian.json", "graph.png",
                                                         "graph.csv", "network.pt"}  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "landscape", "{t}", "--grid", "6", "--out", "{o}"],
        ["analyze", "landscape", "{t}", "--span", "0", "--out", "{o}"],
        ["analyze", "landscape", "{t}", "--span", "inf", "--out", "{o}"],
        ["analyze", "landscape", "{t}", "--grid", "100001", "--out", "{o}"],
        ["analyze", "landscape", "missing.npz", "--out", "{o}"],
        ["analyze", "landscape", "{t}", "--dataset", "moons", "--out", "{o}"],
        ["analyze", "hessian", "{t}", "--top", "0", "--out", "{o}"],
        ["analyze", "hessian", "{t}", "--method", "lanczos", "--top", "100000", "--out", "{o}"],
        ["analyze", "graph", "{o}", "--out", "{t}.png"],  # neither a sweep nor a run
        ["analyze", "graph", "{t}", "--out", "{o}/g.svg"],
        ["plot", "history", "{o}"],
        ["analyze", "landscape", "{t}", "--directions", "sideways", "--out", "{o}"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, ga_run, tmp_path, capsys):
    from evoprune.cli import main

    out = tmp_path / "out"
    args = [a.format(t=ga_run / "ticket.npz", r=ga_run, o=out) for a in argv]
    with pytest.raises(SystemExit) if "sideways" in argv else _no_raise():
        code = main(args)
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evoprune ") and "error" in err and "\n" not in err
    assert not (out / "landscape.npz").exists() and not (out / "hessian.json").exists()


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- sweeps and the report -----------------------------------------------------------------------

SPECS = {
    "fig1": """
        name: fig1
        figure: fig1
        grid: {dataset: [digits], classes: [3], arch: [A], arm: [{label: GA, method: ga, objective: loss}]}
        profiles: {quick: {seeds: 3, budget: {ga: BUDGET}}}
    """,
    "fig4": """
        name: fig4
        figure: fig4
        grid: {dataset: [digits], classes: [3], arch: [A], arm: [{label: GA, method: ga, objective: loss}]}
        profiles: {quick: {seeds: 1, budget: {ga: BUDGET}}}
    """,
    "fig8": """
        name: fig8
        figure: fig8
        grid: {dataset: [digits], classes: [3], arch: [A],
               arm: [{label: GA, method: ga, objective: loss, analyze: [landscape]}]}
        profiles: {quick: {seeds: 1, budget: {ga: BUDGET}}}
    """,
    "hessian": """
        name: hessian
        figure: hessian
        grid: {dataset: [digits], classes: [2], arch: [A],
               arm: [{label: normalised, method: ga, objective: loss, normalize: true, analyze: [hessian]},
                     {label: raw, method: ga, objective: loss, normalize: false, analyze: [hessian]}]}
        profiles: {quick: {seeds: 2, budget: {ga: BUDGET}}}
    """,
}


@pytest.fixture(scope="module")
def analysis_sweep(tmp_path_factory) -> Path:
    """A small real sweep (GA runs with tiny budgets) with one spec per analysis."""
    from evoprune.experiments import load_spec, run_sweep
    from evoprune.experiments.executors import execute_run

    class InlineExecutor:  # runs the jobs in this process
        name = "inline"

        def run(self, fn, jobs):
            for i, job in enumerate(jobs):
                yield i, execute_run(fn, job, threads=None)

        def close(self):
            pass

    root = tmp_path_factory.mktemp("sweep")
    budget = json.dumps({**TINY, "post_prune": False})
    specs = []
    for name, text in SPECS.items():
        path = root / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).replace("BUDGET", budget))
        specs.append(load_spec(path))
    out = root / "runs"
    s = run_sweep(specs, "quick", out, executor=InlineExecutor(), progress=False)
    assert s.failed == 0, s.errors
    return out


def test_fig1_draws_the_first_cell_that_has_tickets(analysis_sweep):
    from evoprune.experiments.sections.analyses import prepare_fig1
    from evoprune.experiments.tables import load_results

    runs = load_results(analysis_sweep)
    runs = runs[runs["spec"] == "fig1"]
    drawn = prepare_fig1(runs)
    # a backprop arm first (no tickets, as a spec may list it): the GA cell is still drawn
    untrained = runs.assign(label="Backprop", run_dir=None, key=runs["key"] + "-bp")
    behind = prepare_fig1(pd.concat([untrained, runs], ignore_index=True))
    assert len(drawn) > 0 and behind.equals(drawn)


def test_graph_of_a_sweep_cell_equals_its_tickets(analysis_sweep, tmp_path):
    from evoprune.cli import main

    png = tmp_path / "cell.png"
    assert main(["analyze", "graph", str(analysis_sweep), "--dataset", "digits", "--arch", "A",
                 "--label", "GA", "--classes", "3", "--out", str(png)]) == 0  # fmt: skip
    tickets = [Ticket.load(p) for p in sorted(analysis_sweep.glob("runs/*/ticket.npz"))]
    tickets = [
        t for t in tickets if t.dataset.get("classes") == 3 and t.metrics.get("objective") == "loss"
    ]
    csv = pd.read_csv(png.with_suffix(".csv"))
    assert csv["n_tickets"].iloc[0] >= 3  # fig1's 3 seeds (fig4's run shares seed 0's key)
    by_hand = ticket_graph(
        [t for t in tickets if len(t.mask) == 64 * 20 + 20 * 3][: csv["n_tickets"].iloc[0]]
    )
    assert by_hand.n_tickets == csv["n_tickets"].iloc[0]


def test_report_shows_every_analysis_section_in_headless_chromium(analysis_sweep, tmp_path):
    from test_experiments import CHROMIUM_FLAGS, COUNT_IMAGES, _chromium

    from evoprune.experiments import build_report

    summary = build_report([analysis_sweep], tmp_path / "report.html")
    page = summary.path.read_text()
    assert set(summary.figures) == {"fig1", "fig4", "fig8", "hessian"}
    for section in ("fig1", "fig4", "fig8", "hessian"):
        assert f"<h2 id='{section}'>" in page
    assert "class='scroll'" in page and "overflow-x:auto" in page
    assert "issue" not in page.lower().split("<h2 id='provenance'>")[0]
    assert "arXiv 2508.08877" in page
    assert "train_loss (result.json)" in page  # the landscape's centre against the run's metrics
    assert "median λ1 raw vs normalised" in page  # the Hessian claim was checked

    browser = _chromium()
    checked = tmp_path / "checked.html"
    checked.write_text(summary.path.read_text().replace("</body>", COUNT_IMAGES + "</body>"))
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*common, "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = dict(
        kv.split("=") for kv in dom.stdout.split('data-check="')[1].split('"')[0].split(";")
    )
    assert int(found["images"]) == len(summary.figures) == 4
    assert found["loaded"] == found["images"]
    assert int(found["tables"]) == summary.tables


def _history_csv(run: Path) -> pd.DataFrame:
    hist = pd.read_csv(run / "history.csv")
    return hist if "phase" in hist else hist.assign(phase="ga")


def test_run_history_of_a_ga_run_holds_its_curves_objective_and_final_ticket(ga_run):
    from evoprune.experiments.run_history import (
        ACCURACY,
        OBJECTIVE_PANEL,
        SPARSITY,
        prepare_run_history,
        run_title,
    )  # fmt: skip

    frame = prepare_run_history(ga_run)
    hist = _history_csv(ga_run)
    result = json.loads((ga_run / "result.json").read_text())
    loss = OBJECTIVE_PANEL["loss"]
    assert list(dict.fromkeys(frame["panel"])) == [ACCURACY, SPARSITY, loss]
    curves = frame[~frame["final"]]
    assert set(curves["phase"]) == {"GA"}
    for column, panel, series in (
        ("best_accuracy", ACCURACY, "fittest of the generation"),
        ("best_sparsity", SPARSITY, "fittest of the generation"),
        ("max_sparsity", SPARSITY, "highest in the generation"),
        ("best_sparsity_so_far", SPARSITY, "highest so far"),
        ("best_performance", loss, "fittest of the generation"),  # the loss objective's value
    ):
        line = curves[(curves["panel"] == panel) & (curves["series"] == series)]
        assert line["step"].tolist() == hist["generation"].tolist()
        assert line["value"].tolist() == hist[column].tolist()
    # the final ticket is result.json's, after post-pruning, at the last generation
    final = frame[frame["final"]].set_index("panel")
    assert final.loc[ACCURACY, "value"] == result["train_accuracy"]
    assert final.loc[SPARSITY, "value"] == result["sparsity"]
    assert final.loc[loss, "value"] == result["train_loss"]
    assert set(final["step"]) == {hist["generation"].max()}
    assert set(final["series"]) == {"final ticket, after post-pruning"}
    assert result["sparsity"] > result["sparsity_before_post_prune"]  # what the star adds
    title = run_title(result, "fallback")
    for part in ("digits (3 classes)", "A [64,", "GA", "objective loss", "seed 1"):
        assert part in title


def test_plot_history_draws_a_memetic_runs_local_passes_and_a_local_run(tmp_path, capsys):
    from evoprune.cli import main
    from evoprune.experiments.draw import draw_history
    from evoprune.experiments.run_history import (
        ACCURACY,
        LOCAL_SERIES,
        OBJECTIVE_PANEL,
        SPARSITY,
        prepare_run_history,
        run_title,
    )  # fmt: skip

    args = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", "--quiet"]
    ga = ["--population", "20", "--min-generations", "5", "--max-generations", "5"]
    m, lo = tmp_path / "m", tmp_path / "l"
    assert main([*args, *ga, "--variant", "memetic", "--objective", "loss", "--out", str(m)]) == 0
    assert main([*args, "--variant", "local", "--out", str(lo)]) == 0
    frame = prepare_run_history(m)
    hist = _history_csv(m)
    local = hist[hist["phase"] == "local"]
    result = json.loads((m / "result.json").read_text())
    curves = frame[~frame["final"]]
    ga_steps = curves.loc[curves["phase"] == "GA", "step"]
    local_rows = curves[curves["phase"] == "local search"]
    assert ga_steps.max() == 5 and local_rows["step"].min() > ga_steps.max()
    acc = local_rows[local_rows["panel"] == ACCURACY]
    assert acc["step"].tolist() == (5 + local["pass"]).tolist()
    assert acc["value"].tolist() == local["train_accuracy"].tolist()
    assert set(local_rows["series"]) == {LOCAL_SERIES}
    # the local search minimises loss + 0.1 * density; the panel shows the loss itself, so the
    # final ticket's cross-entropy is one of the passes' values
    loss = local_rows[local_rows["panel"] == OBJECTIVE_PANEL["loss"]]["value"].to_numpy()
    penalised = local["cost"].to_numpy()
    assert np.all(loss < penalised) and np.allclose(penalised - loss, 0.1 * (1 - local["sparsity"]))
    assert np.array_equal(loss, local["objective"].to_numpy())  # history.csv's own sign
    assert np.min(np.abs(loss - result["train_loss"])) < 1e-9
    final = frame[frame["final"]].set_index("panel")
    assert final.loc[SPARSITY, "value"] == result["sparsity"]
    assert set(final["series"]) == {"final ticket"}  # the memetic search does not post-prune
    fig = draw_history(frame, run_title(result, "m"))
    assert fig.axes[-1].get_xlabel() == "GA generation, then local search pass"
    assert [ax.get_ylabel() for ax in fig.axes] == [ACCURACY, SPARSITY, OBJECTIVE_PANEL["loss"]]
    stars = [ln for ax in fig.axes for ln in ax.lines if ln.get_marker() == "*"]
    assert sorted(float(ln.get_ydata()[0]) for ln in stars) == sorted(final["value"])
    capsys.readouterr()
    assert main(["plot", "history", str(m)]) == 0
    out = capsys.readouterr().out
    assert f"5 generations, {len(local)} local search passes; final ticket:" in out
    assert f"sparsity {result['sparsity']:.3f}" in out and (m / "history.png").is_file()
    # a local search alone: its passes from 1
    only = prepare_run_history(lo)
    assert set(only["phase"]) == {"local search", "final"}
    passes = _history_csv(lo)["pass"].tolist()
    assert only[(only["panel"] == SPARSITY) & ~only["final"]]["step"].tolist() == passes
    assert main(["plot", "history", str(lo)]) == 0


def test_draw_history_draws_the_reports_fig4_frame_in_two_labelled_panels():
    from evoprune.experiments.draw import draw_history
    from evoprune.experiments.figures import prepare_fig4

    runs = pd.DataFrame({"spec": ["fig4"], "key": ["k"], "seed": [0]})
    hist = pd.DataFrame({"key": "k", "generation": [1, 2], "best_accuracy": [0.5, 0.7],
                         "best_sparsity": [0.2, 0.3]})  # fmt: skip
    fig = draw_history(prepare_fig4(runs, hist), "t")
    assert [ax.get_ylabel() for ax in fig.axes] == ["training accuracy", "sparsity"]
    assert fig.axes[-1].get_xlabel() == "GA generation"
    assert [list(line.get_ydata()) for line in fig.axes[0].lines] == [[0.5, 0.7]]


def test_plot_history_draws_any_methods_history_a_panel_per_column(tmp_path, capsys):
    """A pruning run: the CMA-ES generations, the pruned network, then the fine-tuning epochs,
    one after another on the x axis; bookkeeping columns are no panel."""
    from evoprune.cli import main
    from evoprune.experiments.run_history import prepare_run_history

    run = tmp_path / "prune"
    run.mkdir()
    (run / "history.csv").write_text(
        "phase,generation,restart,population,best_fitness,epoch,val_f1\n"
        "search,1,0,4,2.5,,\nsearch,2,0,4,2.25,,\nprune,,,,,0,0.4\n"
        "finetune,,,,,1,0.6\nfinetune,,,,,2,0.7\n"
    )
    frame = prepare_run_history(run)
    assert list(dict.fromkeys(frame["panel"])) == ["best fitness", "val f1"]
    steps = {
        p: list(frame.loc[frame["phase"] == p, "step"]) for p in ("search", "prune", "finetune")
    }
    assert steps == {"search": [1, 2], "prune": [3], "finetune": [4, 5]}
    assert main(["plot", "history", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "search: 2 rows, generation 1 to 2, prune: 1 row, epoch 0, finetune: "
        "2 rows, epoch 1 to 2; no result.json"
    )
    assert (run / "history.png").stat().st_size > 0


def test_plot_history_without_a_step_column_is_one_line_exit_2(tmp_path, capsys):
    from evoprune.cli import main

    run = tmp_path / "odd"
    run.mkdir()
    (run / "history.csv").write_text("lr,train_loss\n0.1,0.7\n0.05,0.6\n")
    assert main(["plot", "history", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no rows with a step column" in err and "\n" not in err
    assert not (run / "history.png").exists()


def test_plot_history_of_several_runs_skips_a_method_with_no_values_and_names_undrawn_columns(
    tmp_path, capsys
):
    from evoprune.cli import main
    from evoprune.experiments.run_history import MAX_PANELS, prepare_run_history

    run = tmp_path / "min"
    run.mkdir()
    (run / "history.csv").write_text(
        "method,seed,evaluations,best_so_far\ncmaes,0,1,5.0\ncmaes,1,1,\nga,0,2,\n"
    )
    frame = prepare_run_history(run)  # was a ValueError on ga's empty line
    assert set(frame["series"]) == {"cmaes"}
    wide = tmp_path / "wide"
    wide.mkdir()
    columns = [f"c{i}" for i in range(MAX_PANELS + 2)]
    (wide / "history.csv").write_text(
        "epoch," + ",".join(columns) + "\n1," + ",".join("0.5" for _ in columns) + "\n"
    )
    assert main(["plot", "history", str(wide)]) == 0
    out = capsys.readouterr().out
    assert f"(not drawn, beyond {MAX_PANELS} panels: c{MAX_PANELS}, c{MAX_PANELS + 1})" in out


# -- mutation-testing gaps -----------------------------------------------------------------------


def test_filter_directions_with_a_partial_mask_and_biases_have_the_filters_norms():
    """Li et al.: each filter of d over its moving entries (a whole bias vector is one filter)
    has the norm of the ticket's; d1 and d2 are two independent draws."""
    from evoprune.analysis.landscape import directions as make_directions

    model = build_mlp([4, 5, 3], seed=0)
    mask = torch.rand(MaskSpace(model).n_bits, generator=torch.Generator().manual_seed(2)) < 0.6
    state = masked_state(model, mask, torch.float32)
    sel = Selection(model, mask, "surviving+bias")
    d1, d2 = make_directions(state, sel, "filter", 0)
    assert set(d1) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for d in (d1, d2):
        for name, t in d.items():
            dims = {"dim": 1} if t.ndim > 1 else {}
            torch.testing.assert_close(t.norm(**dims), state[name].norm(**dims))
    assert not any(torch.equal(d1[name], d2[name]) for name in d1)


def test_the_grids_centre_is_exactly_zero_where_linspace_misses_it():
    """np.linspace(-0.9, 0.9, 7)[3] is -1.1e-16; the centre must be the ticket, δ = η = 0."""
    assert np.linspace(-0.9, 0.9, 7)[3] != 0.0
    X, y = torch.randn(20, 2), torch.randint(0, 2, (20,))
    L = landscape(build_mlp([2, 4, 2]), torch.ones(16, dtype=torch.bool), X, y,
                  LandscapeConfig(grid=7, span=0.9))  # fmt: skip
    assert L.delta[3] == 0.0 and L.eta[3] == 0.0


def test_landscape_defaults_are_the_papers_41_by_41_grid_over_the_unit_square():
    """Fig. 8's plots (docs/analyses.md): 41 x 41, span 1, Gaussian directions, kept weights."""
    c = LandscapeConfig()
    assert (c.grid, c.span, c.directions, c.params) == (41, 1.0, "gaussian", "surviving")


def test_hessian_top_is_the_largest_algebraic_eigenvalues_by_either_method():
    """top = k gives the k largest eigenvalues: not the k smallest, nor the k largest in
    magnitude (here those include negative ones); top >= n - 1 is the dense spectrum."""
    model = build_mlp([4, 10, 3], seed=4)
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(MaskSpace(model).n_bits, generator=gen) < 0.7
    X, y = torch.randn(150, 4, generator=gen), torch.randint(0, 3, (150,), generator=gen)
    ref = _dense_reference(model, mask, X, y)
    assert (ref[np.argsort(-np.abs(ref))[:10]] < 0).any()
    for method in ("dense", "lanczos"):
        h = hessian_spectrum(model, mask, X, y, top=10, method=method)
        np.testing.assert_allclose(h.eigenvalues, ref[:10], rtol=1e-7)
    for top in (len(ref) - 1, len(ref)):
        h = hessian_spectrum(model, mask, X, y, top=top)
        assert h.method == "dense"
        np.testing.assert_allclose(h.eigenvalues, ref[:top], rtol=1e-8, atol=1e-10)


def test_graph_counts_kept_in_exactly_and_keeps_the_example_asked_for():
    """kept_in counts tickets (1 of 49: 49 * (1 / 49) is 0.999... in floats); example=i is
    ticket i's mask."""
    from evoprune.analysis.graph import layer_masks

    masks = torch.rand(49, 6, generator=torch.Generator().manual_seed(0)) < 0.5
    masks[:, 0] = False
    masks[0, 0] = True
    tickets = [Ticket(mask=m, layers=[1, 2, 2]) for m in masks]
    g = ticket_graph(tickets, example=3)
    assert g.frame()["kept_in"].tolist() == masks.sum(0).tolist()  # frame rows in bit order
    assert all(
        np.array_equal(a, b) for a, b in zip(g.example, layer_masks(tickets[3]), strict=True)
    )
