"""The optimiser studies: test functions, minimisation, weight training, HPO studies (workers,
kill and resume), their CLI, specs and figure frames."""

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from evoprune.cli import main
from evoprune.errors import EvopruneError
from evoprune.studies.functions import FUNCTIONS
from evoprune.studies.minimize import METHODS, SUCCESS, minimize, minimize_seeds

EVOPRUNE = [sys.executable, "-m", "evoprune"]


def run_cli(args, capsys):
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# --- test functions ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("dim", [2, 10, 30])
def test_functions_have_their_known_minimum(name, dim):
    fn = FUNCTIONS[name]
    x = fn.minimiser(dim)[None]
    assert abs(float(fn.f(x)[0])) < 1e-9
    rng = np.random.default_rng(0)
    X = rng.uniform(fn.low, fn.high, size=(200, dim))
    values = fn.f(X)
    assert values.shape == (200,)
    assert (values > -1e-9).all() and (values > 1e-6).all()  # nothing random beats the optimum
    torch_values = fn.f(torch.tensor(X)).numpy()  # the torch path (for Adam/SGD) agrees
    np.testing.assert_allclose(torch_values, values, rtol=1e-12, atol=1e-9)


def test_rastrigin_and_rosenbrock_by_hand():
    assert FUNCTIONS["rastrigin"].f(np.array([[1.0, 0.0]]))[0] == pytest.approx(1.0)
    assert FUNCTIONS["rosenbrock"].f(np.array([[0.0, 0.0]]))[0] == pytest.approx(1.0)
    assert FUNCTIONS["sphere"].f(np.array([[3.0, 4.0]]))[0] == pytest.approx(25.0)


def test_ackley_griewank_rosenbrock_off_their_optimum_match_the_textbook_formulas():
    """A wrong constant in a formula keeps f(optimum) = 0 but changes every other value."""
    # Ackley (Jamil & Yang no. 1) at (1, 0): the cosine term is exp(1) = e, which cancels
    ackley = 20.0 - 20.0 * math.exp(-0.2 * math.sqrt(0.5))
    assert FUNCTIONS["ackley"].f(np.array([[1.0, 0.0]]))[0] == pytest.approx(ackley, rel=1e-12)
    # Griewank at (10, 0): 1 + 100/4000 - cos(10/sqrt(1)) cos(0/sqrt(2))
    griewank = 1.0 + 100.0 / 4000.0 - math.cos(10.0)
    assert FUNCTIONS["griewank"].f(np.array([[10.0, 0.0]]))[0] == pytest.approx(griewank)
    # Rosenbrock at (1, 0): 100 (x2 - x1^2)^2 + (1 - x1)^2 = 100 + 0
    assert FUNCTIONS["rosenbrock"].f(np.array([[1.0, 0.0]]))[0] == pytest.approx(100.0)


# --- minimisation -----------------------------------------------------------------------------


def test_cmaes_solves_sphere_2_quickly():
    r = minimize("sphere", 2, "cmaes", budget=2000, seed=0)
    assert r.success and r.best < SUCCESS
    assert r.evaluations_to_success is not None and r.evaluations_to_success < 1000


@pytest.mark.parametrize("method", list(METHODS))
def test_same_seed_same_result_and_budget_respected(method):
    a = minimize("rastrigin", 3, method, budget=300, seed=1)
    b = minimize("rastrigin", 3, method, budget=300, seed=1)
    c = minimize("rastrigin", 3, method, budget=300, seed=2)
    assert (a.best, a.trace, a.evaluations) == (b.best, b.trace, b.evaluations)
    assert a.best != c.best
    assert a.evaluations <= 300
    assert a.trace[-1] == (a.evaluations, a.best)
    assert all(
        e1 < e2 and b1 >= b2 for (e1, b1), (e2, b2) in zip(a.trace, a.trace[1:], strict=False)
    )


def test_gradient_methods_batch_seeds_as_independent_runs():
    both = minimize_seeds("ackley", 4, "adam", 300, [0, 1])
    alone = minimize("ackley", 4, "adam", 300, seed=1)
    assert both[1].best == pytest.approx(alone.best, rel=1e-12, abs=1e-12)
    for method in ("adam", "sgd"):  # on sphere each row stops on success, at its own step
        batch = minimize_seeds("sphere", 2, method, 3000, [0, 1, 2])
        for seed, ran in enumerate(batch):
            own = minimize("sphere", 2, method, 3000, seed=seed)
            assert (ran.best, ran.evaluations, ran.trace) == (own.best, own.evaluations, own.trace)
        assert len({r.evaluations for r in batch}) > 1  # the rows did stop apart


def test_adam_solves_sphere_and_is_trapped_on_rastrigin():
    assert minimize("sphere", 5, "adam", budget=3000, seed=0).success
    trapped = minimize_seeds("rastrigin", 5, "adam", 3000, [0, 1, 2])
    assert not any(r.success for r in trapped)


def test_ga_improves_on_random_search():
    ga = minimize("sphere", 5, "ga", budget=5000, seed=0)
    rnd = minimize("sphere", 5, "random", budget=5000, seed=0)
    assert ga.best < rnd.best / 100


def test_ga_solves_sphere_10_with_its_self_adapted_step():
    # the polynomial mutation at a fixed fraction of the domain solved 0 of these 5
    runs = minimize_seeds("sphere", 10, "ga", 40_000, [0, 1, 2, 3, 4])
    assert sum(r.success for r in runs) / len(runs) >= 0.9
    assert all(r.evaluations <= 40_000 for r in runs)


def test_tracker_counts_the_evaluations_to_the_first_success():
    """evaluations_to_success is the 1-based count at the first value below SUCCESS, kept."""
    from evoprune.studies.minimize import Tracker

    t = Tracker(FUNCTIONS["sphere"], budget=10)
    for v in (5.0, 1.0, SUCCESS / 2, SUCCESS / 10):
        t.record(v)
    assert t.evaluations_to_success == 3 and t.best == SUCCESS / 10 and t.evaluations == 4


def test_a_run_stops_once_below_stop_below_and_counts_success_at_success():
    """CMA-ES on sphere ends well before its budget once f < STOP_BELOW; a run that ends
    between STOP_BELOW and SUCCESS is still a success (the threshold is SUCCESS)."""
    from evoprune.studies.minimize import STOP_BELOW

    solved = minimize("sphere", 2, "cmaes", budget=20_000, seed=0)
    assert solved.best < STOP_BELOW and solved.evaluations < 20_000
    short = minimize("sphere", 2, "cmaes", budget=220, seed=0)
    assert STOP_BELOW <= short.best < SUCCESS  # the premise: it ran out in between
    assert short.success and short.evaluations_to_success is not None


def test_ipop_cmaes_doubles_the_population_at_every_restart(monkeypatch):
    import cmaes

    sizes = []
    real = cmaes.CMA

    def spy(*args, **kwargs):
        sizes.append(kwargs["population_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(cmaes, "CMA", spy)
    minimize("rastrigin", 2, "cmaes", budget=4000, seed=0)
    assert len(sizes) >= 2, "the budget should allow a restart"
    assert sizes[0] == 4 + int(3 * math.log(2))  # CMA-ES's default population
    assert sizes == [sizes[0] * 2**k for k in range(len(sizes))]


def test_the_default_budget_is_ten_thousand_per_dimension_and_zero_is_refused():
    assert minimize("sphere", 1, "random", seed=0).budget == 10_000
    with pytest.raises(EvopruneError, match="budget"):
        minimize("sphere", 2, "random", budget=0)


def test_the_ga_elite_is_its_best_individual():
    """With neither crossover nor mutation a population of two holds only copies of its
    first two points: the elite keeps the better one to the end (keeping the worse one loses it)."""
    import contextlib

    from evoprune.studies.minimize import GAConfig, Tracker, _BudgetSpent, run_ga

    seen = []

    class Recording(Tracker):
        def record(self, v):
            seen.append(v)
            super().record(v)

    t = Recording(FUNCTIONS["sphere"], budget=200)
    cfg = GAConfig(population=2, crossover=0.0, rate=0.0, elites=1)
    with contextlib.suppress(_BudgetSpent):
        run_ga(t, 2, np.random.default_rng(0), cfg)
    assert len(seen) == 200 and seen[0] != seen[1]
    assert min(seen[-10:]) == min(seen[:2])


def _plot_history_draws_the_median_seed_per_method(out):
    import pandas as pd

    from evoprune.experiments.run_history import prepare_run_history

    frame = prepare_run_history(out)
    assert set(frame["series"]) == {"cmaes", "random"}
    assert set(frame["panel"]) == {"best so far (median of 3 seeds)"}
    hist = pd.read_csv(out / "history.csv")
    for method, line in frame.groupby("series"):
        runs = hist[hist["method"] == method]
        last = runs.groupby("seed")["best_so_far"].last()
        # carried on to the end, the median seed's final best is the line's last point
        assert line["value"].iloc[-1] == pytest.approx(last.median())
        assert line["value"].is_monotonic_decreasing  # a median of best-so-far traces


def test_minimize_cli_writes_methods_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "min"
    code, stdout, _ = run_cli(["minimize", "--function", "sphere", "--dim", "2", "--method",
                               "cmaes,random", "--budget", "500", "--seeds", "3", "--out", out,
                               "--quiet"], capsys)  # fmt: skip
    assert code == 0 and "cmaes" in stdout
    r = json.loads((out / "result.json").read_text())
    assert set(r["methods"]) == {"cmaes", "random"}
    for s in r["methods"].values():
        assert {"median_best", "success_rate", "median_evaluations_to_success"} <= set(s)
    assert r["methods"]["cmaes"]["success_rate"] == 1.0
    assert r["git_revision"] and r["versions"]["torch"]
    assert (out / "history.csv").read_text().startswith("method,seed,evaluations,best_so_far")
    from evoprune.results import SHARED_FIELDS

    assert all(r.get(f) is not None for f in SHARED_FIELDS), "the shared fields of a run folder"
    assert (r["variant"], r["seed"], r["seeds"]) == ("cmaes+random", 0, 3)
    _plot_history_draws_the_median_seed_per_method(out)
    for bad in (
        ["--method", "cmaes,bogus"],
        ["--method", "cmaes,,ga"],
        ["--function", "nope"],
        ["--dim", "0"],
        ["--dim", "100000"],
        ["--budget", "-3"],
        ["--seeds", "1e30"],  # was an OverflowError traceback
        ["--budget", "1e30"],
    ):
        args = ["minimize", "--function", "sphere", "--out", tmp_path / "bad", *bad]
        code, stdout, err = run_cli(args, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


# --- weight training --------------------------------------------------------------------------


def test_population_losses_equal_a_plain_forward():
    from evoprune.studies.train_weights import _Shapes
    from evoprune.studies.training import digits_splits, make_mlp

    s = digits_splits()
    model = make_mlp(64, [32], 10, seed=0)
    shapes = _Shapes(model)
    assert shapes.n == 2410
    W = torch.randn(5, shapes.n, generator=torch.Generator().manual_seed(0)) * 0.1
    batched = shapes.losses(W, s.X_train, s.y_train)
    for k in range(5):
        shapes.load(model, W[k])
        with torch.no_grad():
            plain = torch.nn.functional.cross_entropy(model(s.X_train), s.y_train)
        assert float(batched[k]) == pytest.approx(float(plain), rel=1e-5)


def test_train_weights_adam_and_sep_cmaes(tmp_path, capsys):
    torch.set_num_threads(1)
    from evoprune.studies.train_weights import train_weights

    adam = train_weights("adam", seconds=3.0, seed=0)
    assert adam.test_f1 > 0.9 and adam.seconds <= 3.5 and adam.history
    assert adam.recipe["weight_decay"] == 1e-3 and adam.recipe["lr"] == 1e-3
    cma = train_weights("sep-cmaes", seconds=1.0, seed=0)
    assert cma.evaluations % 64 == 0 and cma.evaluations >= 64 and 0.0 <= cma.test_f1 <= 1.0
    ga = train_weights("ga", seconds=0.5, seed=0)
    assert ga.evaluations >= 64 and ga.history[-1]["seconds"] >= 0.5
    code, _, err = run_cli(["train-weights", "--dataset", "mnist", "--out", tmp_path / "w"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["train-weights", "--seconds", "-1", "--out", tmp_path / "w"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


# --- HPO --------------------------------------------------------------------------------------


def test_synflow_equals_the_closed_form_for_one_hidden_layer():
    from evoprune.studies.hpo import synflow_score
    from evoprune.studies.training import make_mlp

    model = make_mlp(64, [20], 10, seed=3, dtype=torch.float64)
    A1, c1 = model[0].weight.abs().detach().numpy(), model[0].bias.abs().detach().numpy()
    A2, c2 = model[2].weight.abs().detach().numpy(), model[2].bias.abs().detach().numpy()
    ones = np.ones(64)
    h = A1 @ ones + c1  # all positive: ReLU is the identity
    g = A2.T @ np.ones(10)  # dR/dh
    total = (A2 * h[None, :]).sum() + c2.sum() + (A1 * g[:, None]).sum() + (c1 * g).sum()
    assert synflow_score([20], 64, 10, seed=3) == pytest.approx(math.log(total), rel=1e-12)


def test_spaces_have_the_stated_dimensions():
    import optuna

    from evoprune.studies.hpo import suggest

    for space, objective, dims in (
        ("low", "train", 6),
        ("high", "train", 19),
        ("high", "synflow", 8),
    ):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        config = suggest(trial, space, objective)
        assert len(trial.params) == dims
        assert all(isinstance(w, int) for w in config["widths"])
        assert isinstance(config["batch_size"], int)


def test_stale_trials_are_failed_live_ones_kept(tmp_path):
    import optuna

    from evoprune.studies import hpo, hpo_storage

    storage = hpo_storage.open_storage(tmp_path)
    study = optuna.create_study(study_name=hpo.STUDY_NAME, storage=storage)
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = socket.gethostname()
    owners = [
        {"host": me, "pid": dead.pid},  # its process is gone
        {"host": "elsewhere", "pid": 1},  # another machine, no heartbeat for long
        {"host": "elsewhere", "pid": 1},  # another machine, beating
        {"host": me, "pid": os.getpid()},  # this process, running it
    ]
    trials = [study.ask() for _ in owners]
    for t, owner in zip(trials, owners, strict=True):
        storage.set_trial_system_attr(t._trial_id, "evoprune:owner", owner)
    storage.set_trial_system_attr(trials[1]._trial_id, "evoprune:heartbeat", time.time() - 100)
    storage.set_trial_system_attr(trials[2]._trial_id, "evoprune:heartbeat", time.time())
    hpo_storage._OWN.add(trials[3].number)
    try:
        assert hpo_storage.fail_stale_trials(study, grace=30) == 2
    finally:
        hpo_storage._OWN.discard(trials[3].number)
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "FAIL", "RUNNING", "RUNNING"]


def test_the_low_space_has_the_documented_bounds_and_log_scales():
    """The module docstring's space: layers 1-3, width 16-256 (log), lr 1e-4-1e-1 (log), weight
    decay 1e-6-1e-2 (log), batch 16-256 (log), dropout 0-0.5 (linear)."""
    import optuna

    from evoprune.studies.hpo import suggest

    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    suggest(trial, "low", "train")
    got = {k: (d.low, d.high, d.log) for k, d in trial.distributions.items()}
    assert got == {
        "layers": (1, 3, False),
        "width": (16, 256, True),
        "lr": (1e-4, 1e-1, True),
        "weight_decay": (1e-6, 1e-2, True),
        "batch_size": (16, 256, True),
        "dropout": (0.0, 0.5, False),
    }


def test_the_tpe_sampler_is_multivariate():
    from evoprune.studies.hpo import HPOConfig, make_sampler

    assert make_sampler(
        HPOConfig(sampler="tpe"), 0
    )._multivariate  # the docstring's "TPE (multivariate)"


def test_a_trial_numbered_after_the_last_slot_gives_way(tmp_path, monkeypatch):
    """A worker that counted a free slot, but whose trial finds `trials` earlier trials live
    (another worker took the slot first), marks it surplus instead of overshooting."""
    import optuna

    from evoprune.studies import hpo
    from evoprune.studies.hpo_storage import open_storage

    cfg = hpo.HPOConfig(sampler="random", objective="synflow", trials=2)
    storage = open_storage(tmp_path)
    study = optuna.create_study(study_name=hpo.STUDY_NAME, storage=storage, direction="maximize")
    for _ in range(2):
        study.tell(study.ask(), 1.0)
    counts = iter([(1, 1)])  # the stale count the worker saw before the other's trial ended
    real = hpo._counts
    monkeypatch.setattr(hpo, "_counts", lambda s: next(counts, None) or real(s))
    assert hpo.work(cfg, tmp_path) == 0
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert trials[2].user_attrs.get("surplus") is True


def test_a_study_summary_trains_the_trial_of_the_highest_value():
    """The study maximises: the summary's best trial is the one of the highest objective."""
    import optuna

    from evoprune.studies.hpo import FIXED_TRAINING, HPOConfig, summarise_study

    study = optuna.create_study(direction="maximize")
    config = {"widths": [8], "dropouts": [0.0], **FIXED_TRAINING}
    for value in (0.2, 0.9, 0.5):
        trial = study.ask()
        trial.set_user_attr("config", config)
        study.tell(trial, value)
    cfg = HPOConfig(objective="synflow", max_epochs=1, patience=1)
    r = summarise_study(study, cfg, seconds=1.0)
    assert (r["best_trial"], r["best_objective"]) == (1, 0.9)
    assert [h["best_so_far"] for h in r["history"]] == [0.2, 0.9, 0.9]


def test_an_hpo_job_takes_the_documented_defaults():
    from evoprune.studies.jobs import _hpo_config

    cfg = _hpo_config({"method": "hpo"})  # the jobs module docstring's defaults
    assert (cfg.sampler, cfg.objective, cfg.space) == ("tpe", "train", "low")
    assert (cfg.trials, cfg.workers, cfg.max_epochs, cfg.patience) == (100, 1, 100, 10)


def _hpo_args(out, *extra):
    return ["hpo", "--sampler", "cmaes", "--objective", "synflow", "--space", "low",
            "--max-epochs", "3", "--patience", "1", "--seed", "0", "--out", out, "--quiet", *extra]  # fmt: skip


def test_hpo_two_workers_exact_trial_count(tmp_path, capsys):
    out = tmp_path / "study"
    code, _, err = run_cli(_hpo_args(out, "--trials", "12", "--workers", "2"), capsys)
    assert code == 0, err
    r = json.loads((out / "result.json").read_text())
    assert r["n_trials"] == 12 and r["test_f1"] > 0.5
    assert r["sampler_seconds_per_trial"] > 0 and r["objective_seconds_per_trial"] > 0
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) == 13
    import optuna

    from evoprune.studies import hpo
    from evoprune.studies.hpo_storage import open_storage

    study = optuna.load_study(study_name=hpo.STUDY_NAME, storage=open_storage(out))
    states = [t.state.name for t in study.get_trials()]
    assert states.count("COMPLETE") == 12 and "RUNNING" not in states


def test_hpo_same_seed_same_study(tmp_path, capsys):
    results = []
    for name in ("a", "b"):
        code, _, err = run_cli(
            _hpo_args(tmp_path / name, "--trials", "6", "--sampler", "tpe"), capsys
        )
        assert code == 0, err
        results.append(json.loads((tmp_path / name / "result.json").read_text()))
    a, b = results
    assert [h for h in (tmp_path / "a" / "history.csv").read_text().splitlines()][0].startswith(
        "trial,value"
    )
    keep = ("best_objective", "best_params", "test_f1", "n_trials")
    assert {k: a[k] for k in keep} == {k: b[k] for k in keep}


def test_hpo_bad_input_and_other_settings(tmp_path, capsys):
    for bad in (
        ["--sampler", "nope"],
        ["--trials", "0"],
        ["--workers", "x"],
        ["--space", "mid"],
        ["--workers", "1e30"],
        ["--workers", "1000"],
    ):  # 999 processes were started
        code, _, err = run_cli(["hpo", "--out", tmp_path / "x", *bad], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run_cli(_hpo_args(tmp_path / "s", "--trials", "3"), capsys)
    assert code == 0, err
    code, _, err = run_cli(_hpo_args(tmp_path / "s", "--trials", "2"), capsys)
    assert code == 0 and "already held 3 COMPLETE trials, more than --trials 2" in err
    code, _, err = run_cli(_hpo_args(tmp_path / "s", "--trials", "3", "--space", "high"), capsys)
    assert code == 2 and "other settings" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("sampler", ["random", "tpe", "cmaes"])
def test_hpo_resumed_with_more_trials_draws_new_configurations(sampler, tmp_path, capsys):
    out = tmp_path / "s"
    for trials in ("3", "6"):  # a study extended (or resumed after a kill) by the same command
        code, _, err = run_cli(_hpo_args(out, "--trials", trials, "--sampler", sampler), capsys)
        assert code == 0, err
    import optuna

    from evoprune.studies import hpo
    from evoprune.studies.hpo_storage import open_storage

    study = optuna.load_study(study_name=hpo.STUDY_NAME, storage=open_storage(out))
    drawn = [tuple(sorted(t.params.items())) for t in study.get_trials()]
    assert len(drawn) == 6 and len(set(drawn)) == 6, drawn
    # wall_seconds is this run's (as for every method), the trials' span covers both runs
    r = json.loads((out / "result.json").read_text())
    assert r["wall_seconds"] == pytest.approx(r["seconds_this_run"] + r["final_training_seconds"])
    assert r["trials_span_seconds"] >= 0


def _complete_trials(out: Path) -> list[tuple[dict, float]]:
    """The study in `out`: each COMPLETE trial's parameters and value, in trial order."""
    import optuna

    from evoprune.studies import hpo
    from evoprune.studies.hpo_storage import open_storage

    study = optuna.load_study(study_name=hpo.STUDY_NAME, storage=open_storage(out))
    return [(t.params, t.value) for t in study.get_trials() if t.state.name == "COMPLETE"]


@contextlib.contextmanager
def _cut_in_the_sixth_call(monkeypatch, module, name):
    """Inside, `module.name` raises KeyboardInterrupt (as a kill would end it) on its sixth call."""
    real, calls = getattr(module, name), []

    def cut_in_the_sixth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, cut_in_the_sixth)
    try:
        yield
    finally:
        monkeypatch.setattr(module, name, real)


@pytest.mark.parametrize(
    "sampler, cut_in",
    [
        ("tpe", "evaluate_trial"),
        ("random", "evaluate_trial"),
        ("cmaes", "evaluate_trial"),
        ("tpe", "save_sampler"),
        ("random", "save_sampler"),
    ],  # fmt: skip
)
def test_hpo_cut_short_resumes_to_the_uninterrupted_study(sampler, cut_in, tmp_path, monkeypatch):
    """A study on one worker interrupted in its sixth trial, then run again, holds the trials of
    the uninterrupted study: the cut trial is finished with the parameters it had drawn (cut in
    its objective), or replaced by a trial that draws them again, with the same seed (cut
    before its sampler was saved; CMA-ES then draws anew, as it seeds by the trial number)."""
    from evoprune.studies import hpo

    cfg = hpo.HPOConfig(sampler=sampler, objective="synflow", trials=12, seed=3)
    hpo.run_study(cfg, tmp_path / "whole")
    with _cut_in_the_sixth_call(monkeypatch, hpo, cut_in), pytest.raises(KeyboardInterrupt):
        hpo.run_study(cfg, tmp_path / "cut")
    assert len(_complete_trials(tmp_path / "cut")) == 5
    r = hpo.run_study(cfg, tmp_path / "cut")
    assert _complete_trials(tmp_path / "cut") == _complete_trials(tmp_path / "whole")
    assert r["stale_trials"] == (cut_in == "save_sampler")


def test_a_cut_trial_beyond_the_asked_count_is_not_finished(tmp_path, monkeypatch):
    from evoprune.studies import hpo

    cfg = hpo.HPOConfig(sampler="random", objective="synflow", trials=12, seed=3)
    with (
        _cut_in_the_sixth_call(monkeypatch, hpo, "evaluate_trial"),
        pytest.raises(KeyboardInterrupt),
    ):
        hpo.run_study(cfg, tmp_path)
    r = hpo.run_study(hpo.HPOConfig(**{**asdict(cfg), "trials": 5}), tmp_path)
    assert r["n_trials"] == 5 and r["stale_trials"] == 1


def test_a_saved_sampler_is_taken_only_by_its_own_study(tmp_path):
    import optuna

    from evoprune.studies.hpo_storage import load_sampler, sampler_path, save_sampler

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    save_sampler(tmp_path, 0, trial, study.sampler, 0.5)
    saved = load_sampler(tmp_path, 0, study.get_trials())
    assert saved is not None and saved["trial"] == 0 and saved["sampler_seconds"] == 0.5
    other = optuna.create_study()
    other.ask().suggest_float("x", 0, 1)  # the same trial number, other parameters
    assert load_sampler(tmp_path, 0, other.get_trials()) is None
    assert load_sampler(tmp_path, 1, study.get_trials()) is None  # another worker's
    sampler_path(tmp_path, 0).write_bytes(b"cut short")
    assert load_sampler(tmp_path, 0, study.get_trials()) is None


def test_hpo_rdb_storage(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    code, out, err = run_cli(_hpo_args(tmp_path / "r", "--trials", "3", "--storage", url), capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "result.json").read_text())["n_trials"] == 3
    assert not (tmp_path / "r" / "study.journal").exists()
    code, _, err = run_cli(_hpo_args(tmp_path / "bad", "--storage", "nope://x"), capsys)
    assert code == 2 and "storage" in err and not (tmp_path / "bad").exists()
    # the database holds the study: another --out cannot help, another --storage can
    code, _, err = run_cli(_hpo_args(tmp_path / "r2", "--trials", "3", "--storage", url,
                                     "--sampler", "tpe"), capsys)  # fmt: skip
    assert code == 2 and err.strip().endswith("use another --storage"), err


@pytest.mark.slow
def test_hpo_killed_and_resumed_ends_with_exact_count(tmp_path):
    """A real SIGKILL to the whole process group mid-trial, then the same command again."""
    out = tmp_path / "study"
    args = ["hpo", "--sampler", "tpe", "--objective", "train", "--space", "low", "--trials", "10",
            "--workers", "2", "--max-epochs", "15", "--patience", "15", "--out", str(out), "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*EVOPRUNE, *args], start_new_session=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    import optuna

    from evoprune.studies import hpo
    from evoprune.studies.hpo_storage import JOURNAL, open_storage

    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a trial has completed and others run
        time.sleep(0.5)
        if not (out / JOURNAL).exists():
            continue
        study = optuna.load_study(study_name=hpo.STUDY_NAME, storage=open_storage(out))
        states = [t.state.name for t in study.get_trials()]
        if "COMPLETE" in states and "RUNNING" in states:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    running = [t for t in study.get_trials() if t.state.name == "RUNNING"]
    assert running, "the kill should leave a trial RUNNING"
    again = subprocess.run([*EVOPRUNE, *args], capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr
    r = json.loads((out / "result.json").read_text())
    assert r["n_trials"] == 10
    study = optuna.load_study(study_name=hpo.STUDY_NAME, storage=open_storage(out))
    states = [t.state.name for t in study.get_trials()]
    assert states.count("COMPLETE") == 10 and "RUNNING" not in states
    # each trial the kill cut short was finished by its worker, started again, or replaced
    after = {t.number: t for t in study.get_trials()}
    for t in running:
        cut = after[t.number]
        assert cut.state.name == "COMPLETE" or cut.system_attrs.get("evoprune:stale")
    assert r["stale_trials"] == sum(
        bool(t.system_attrs.get("evoprune:stale")) for t in after.values()
    )


@pytest.mark.slow
def test_hpo_on_one_worker_killed_and_resumed_is_the_uninterrupted_study(tmp_path):
    """A real SIGKILL mid-trial on one worker: the same command again finishes the cut trial in
    a new process and ends with the uninterrupted study's trials."""
    args = ["hpo", "--sampler", "tpe", "--objective", "train", "--space", "low", "--trials", "6",
            "--max-epochs", "15", "--patience", "15", "--seed", "2", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*EVOPRUNE, *args, "--out", str(whole)], check=True, env=env, timeout=600)
    proc = subprocess.Popen([*EVOPRUNE, *args, "--out", str(cut)], start_new_session=True,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while _hpo_trials(cut) < 2:  # then in the third trial's training, or later
        assert proc.poll() is None and time.time() < deadline, "no trials ran"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run([*EVOPRUNE, *args, "--out", str(cut)], check=True, env=env, timeout=600)
    assert _complete_trials(cut) == _complete_trials(whole)
    r = json.loads((cut / "result.json").read_text())
    assert r["n_trials"] == 6 and r["stale_trials"] <= 1  # 1: killed as the sampler drew


@pytest.mark.slow  # signals and timing: 24 of 24 passed once the driver took Optuna-made errors
def test_hpo_stopped_by_sigterm_stops_its_workers(tmp_path):
    """A scheduler's SIGTERM reaches the driver alone (Ctrl-C reaches the whole process group):
    the driver waited for its workers, which went on with the whole study."""
    out = tmp_path / "study"
    args = [*_hpo_args(out, "--trials", "100000", "--workers", "2", "--sampler", "random")]
    proc = subprocess.Popen([*EVOPRUNE, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    workers: list[str] = []
    try:
        deadline = time.time() + 120
        while _hpo_trials(out) < 4:  # the workers have started and run trials
            assert proc.poll() is None and time.time() < deadline, "no trials ran"
            time.sleep(0.2)
        workers = [pid for pid in children.read_text().split()  # not the resource tracker
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # fmt: skip
        assert len(workers) == 1, "no worker process"  # the driver works as the first
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        for pid in workers:  # not left running after a failure
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    assert proc.returncode == 130 and err.strip() == "evoprune hpo: interrupted", err
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def _hpo_trials(out: Path) -> int:
    """Trials the study in `out` has completed so far (0 before its journal exists)."""
    import optuna

    from evoprune.studies import hpo
    from evoprune.studies.hpo_storage import JOURNAL, open_storage

    if not (out / JOURNAL).exists():
        return 0
    study = optuna.load_study(study_name=hpo.STUDY_NAME, storage=open_storage(out))
    return sum(t.state.name == "COMPLETE" for t in study.get_trials())


# --- specs, jobs, figures ---------------------------------------------------------------------


def test_specs_load_and_jobs_run(tmp_path):
    from evoprune.experiments.spec import load_spec
    from evoprune.jobs import run_job

    for name in ("hpo", "minimize", "weights"):
        spec = load_spec(name)
        assert spec.runs("quick") and spec.runs("paper")
    r = run_job({"method": "minimize", "function": "sphere", "dim": 2, "optimizer": "cmaes",
                 "budget": 1000, "seed": 0}, tmp_path / "m")  # fmt: skip
    assert r["success"] == 1 and (tmp_path / "m" / "history.csv").exists()
    from evoprune.errors import EvopruneError

    with pytest.raises(EvopruneError, match="unknown key"):
        run_job(
            {"method": "minimize", "function": "sphere", "dim": 2, "optimizer": "cmaes", "lr": 1}
        )


def test_a_study_job_setting_an_integer_to_null_is_an_error_naming_it():
    # a seed of None reached numpy as a TypeError; a key with a default is not unset by None
    from evoprune.jobs import run_job

    minimize_job = {"method": "minimize", "function": "sphere", "dim": 2, "optimizer": "random",
                    "budget": 10, "seed": None}  # fmt: skip
    weights_job = {"method": "train-weights", "optimizer": "adam", "seconds": 1, "seed": None}
    for job in (minimize_job, weights_job):
        with pytest.raises(EvopruneError, match="seed: expected an integer, got None"):
            run_job(job)
    with pytest.raises(EvopruneError, match="trials: expected an integer, got None"):
        run_job({"method": "hpo", "trials": None})


def test_prepare_frames_and_claims():
    from evoprune.experiments.sections.studies import (
        STUDY_CLAIMS,
        prepare_minimize,
        table_minimize,
    )

    runs = pd.DataFrame({
        "spec": "minimize", "method": "minimize", "key": ["a", "b", "c", "d"],
        "function": "rastrigin", "dim": 10, "optimizer": ["cmaes", "cmaes", "adam", "adam"],
        "best_value": [1e-9, 0.99, 80.0, 60.0], "evaluations_to_success": [5000, None, None, None],
    })  # fmt: skip
    history = pd.DataFrame({"key": ["a", "a", "b"], "row": [0, 1, 0], "evaluations": [1, 10, 1],
                            "best_so_far": [5.0, 1e-9, 3.0]})  # fmt: skip
    frame = prepare_minimize(runs, history)
    s = frame[frame["part"] == "summary"].set_index(["optimizer", "x"])["value"]
    assert s[("cmaes", "success_rate")] == 0.5 and s[("adam", "success_rate")] == 0.0
    assert s[("cmaes", "median_evaluations_to_success")] == 5000
    assert s[("adam", "median_best")] == 70.0
    assert len(table_minimize(frame)) == 2
    checks = {text: check for fig, text, check in STUDY_CLAIMS if fig == "minimize"}
    verdicts = [check(runs)[1] for check in checks.values()]
    assert verdicts == [True, False]  # Adam trapped: yes; CMA-ES solves all: no (0.5 < 0.9)


def test_minimize_summary_takes_the_median_evaluations_and_the_success_threshold():
    """Success is best < 1e-6, as in `evoprune.studies.minimize`; evaluations to success are
    the median over the successful seeds."""
    from evoprune.experiments.sections.studies import prepare_minimize

    runs = pd.DataFrame({
        "spec": "minimize", "method": "minimize", "key": list("abcd"), "function": "sphere",
        "dim": 2, "optimizer": "cmaes", "best_value": [1e-9, 1e-9, 1e-9, SUCCESS * 5],
        "evaluations_to_success": [100, 200, 900, None],
    })  # fmt: skip
    frame = prepare_minimize(runs, pd.DataFrame())
    s = frame[frame["part"] == "summary"].set_index("x")["value"]
    assert s["success_rate"] == 0.75
    assert s["median_evaluations_to_success"] == 200


def test_hpo_curve_counts_trials_from_one():
    from evoprune.experiments.sections.studies import prepare_hpo

    runs = pd.DataFrame({"spec": "hpo", "method": "hpo", "key": ["a"], "space": "low",
                         "objective": "train", "sampler": "tpe", "test_f1": 0.9})  # fmt: skip
    history = pd.DataFrame({"key": ["a", "a"], "best_so_far": [0.5, 0.7]})
    curve = prepare_hpo(runs, history).query("part == 'curve'")
    assert list(curve["x"]) == [1, 2] and list(curve["value"]) == [0.5, 0.7]


def test_minimize_without_out_writes_a_folder_named_by_its_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["minimize", "--function", "sphere", "--dim", "2", "--budget", "300", "--seeds", "1",
            "--quiet"]  # fmt: skip
    code, stdout, _ = run_cli([*args, "--method", "random"], capsys)
    assert code == 0 and "runs/minimize-sphere-2-random" in stdout
    assert (tmp_path / "runs/minimize-sphere-2-random/result.json").exists()
    code, _, err = run_cli([*args, "--method", "random"], capsys)  # the same settings again
    assert code == 2 and "already holds a finished run" in err


@pytest.mark.parametrize("method", ["ga", "sep-cmaes", "adam"])
def test_an_evaluation_budget_gives_the_same_weights_whatever_the_clock(method, monkeypatch):
    """With `evaluations` alone the run ends where the budget says, not the machine's speed:
    the same run under a CPU clock ten times slower ends with the same weights."""
    import evoprune.studies.train_weights as tw
    import evoprune.studies.training as training

    torch.set_num_threads(1)
    fast = tw.train_weights(method, evaluations=700, seed=2)
    ticks = [0.0]

    def slow_clock() -> float:  # every reading 10 s later than the last
        ticks[0] += 10.0
        return ticks[0]

    monkeypatch.setattr(tw, "cpu_seconds", slow_clock)
    monkeypatch.setattr(training, "cpu_seconds", slow_clock)
    slow = tw.train_weights(method, evaluations=700, seed=2)
    assert slow.seconds > 100 * fast.seconds  # the clock did run slow
    assert (slow.test_f1, slow.val_f1, slow.evaluations) == (
        fast.test_f1,
        fast.val_f1,
        fast.evaluations,
    )
    per_step = {"ga": 62, "sep-cmaes": 64, "adam": 20}[method]  # Adam: 1,258 rows in batches of 64
    assert 700 - per_step < fast.evaluations <= 700
    assert fast.recipe["evaluations"] == 700


def test_an_evaluation_budget_is_checked_with_the_job(tmp_path, capsys):
    from evoprune.studies.jobs import check_weights_job

    for job, message in (
        (
            {"optimizer": "ga", "evaluations": 10},
            "evaluations: expected at least the population (64)",
        ),
        (
            {"optimizer": "adam", "evaluations": 0},
            "evaluations: expected a positive integer, got 0",
        ),
        ({"optimizer": "sgd"}, "optimizer: expected one of adam, sep-cmaes, ga, got 'sgd'"),
    ):
        with pytest.raises(EvopruneError, match=re.escape(message)):
            check_weights_job({"method": "train-weights", **job})
    code, _, err = run_cli(
        ["train-weights", "--method", "ga", "--evaluations", "10", "--out", tmp_path / "w"], capsys
    )
    assert code == 2 and err.strip().endswith("got 10") and not (tmp_path / "w").exists()


def test_a_weights_run_trains_on_one_thread_as_in_a_sweep(monkeypatch):
    # the budget counts the CPU time of every torch thread: on two, a population method made a
    # third of the evaluations it makes in a sweep's one-thread worker
    import torch

    import evoprune.studies.train_weights as tw
    from evoprune.studies.jobs import run_weights_job

    seen = []

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise RuntimeError("stop")

    monkeypatch.setattr(tw, "train_weights", record)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="stop"):
            run_weights_job({"method": "train-weights", "optimizer": "adam", "seconds": 1}, None)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_hpo_refuses_a_folder_that_holds_another_run(tmp_path, capsys):
    # it replaced a minimize run's result.json with its own, and wrote into a sweep folder
    code, _, _ = run_cli(["minimize", "--function", "sphere", "--dim", "2", "--budget", "50",
                          "--seeds", "1", "--method", "cmaes", "--out", tmp_path / "m"], capsys)  # fmt: skip
    assert code == 0
    before = (tmp_path / "m" / "result.json").read_bytes()
    code, _, err = run_cli(_hpo_args(tmp_path / "m", "--trials", "2"), capsys)
    assert code == 2 and "already holds a finished minimize run" in err
    assert (tmp_path / "m" / "result.json").read_bytes() == before
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "results.sqlite").touch()
    code, _, err = run_cli(_hpo_args(tmp_path / "sweep", "--trials", "2"), capsys)
    assert code == 2 and "a sweep folder" in err


def test_hpo_locks_its_journal_by_an_absolute_path(tmp_path, monkeypatch):
    # the lock is a symlink to the journal: to a relative path it dangled, and after a kill a
    # resume waited on it forever
    from optuna.storages.journal import JournalFileSymlinkLock

    from evoprune.studies.hpo_storage import open_storage

    targets = []
    monkeypatch.setattr(JournalFileSymlinkLock, "__init__",
                        lambda self, path, **kw: targets.append(path))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    open_storage(Path("rel"))
    assert targets and Path(targets[0]).is_absolute()


@pytest.mark.parametrize(
    "job, message",
    [
        (
            {"method": "minimize", "function": "rosenbrock", "dim": 1, "optimizer": "cmaes"},
            "rosenbrock needs at least 2 dimensions",
        ),
        (
            {"method": "minimize", "function": "sphere", "dim": 2, "optimizer": "cma-es"},
            "method: expected some of",
        ),
        (
            {
                "method": "minimize",
                "function": "sphere",
                "dim": 2,
                "optimizer": "cmaes",
                "budget": -5,
            },
            "budget: expected a positive number",
        ),
        ({"method": "train-weights", "optimizer": "sep-cmaes", "sigma": -1}, "sigma: expected"),
        ({"method": "train-weights", "optimizer": "adam", "seconds": 0}, "seconds: expected"),
    ],
)
def test_a_studys_bad_values_fail_at_load(job, message):
    from evoprune.jobs import check_job

    with pytest.raises(EvopruneError, match=message):
        check_job(job)


def test_a_seed_beyond_a_float_stays_exact():
    from evoprune.studies.jobs import _int

    assert _int({"seed": 9007199254740993}, "seed", 0) == 9007199254740993
    assert _int({"seed": "9007199254740993"}, "seed", 0) == 9007199254740993
    assert _int({"budget": "1e4"}, "budget", None) == 10000


def test_an_hpo_worker_ends_quietly_on_ctrl_c(tmp_path, capfd):
    # a terminal's Ctrl-C reaches the workers too: each printed a KeyboardInterrupt traceback
    import multiprocessing
    from dataclasses import asdict

    from evoprune.interrupts import sigint_held
    from evoprune.studies import hpo

    with sigint_held():  # as run_study starts them: the Ctrl-C waits while the worker loads
        proc = multiprocessing.get_context("spawn").Process(
            target=hpo._worker_main,
            args=(asdict(hpo.HPOConfig(objective="synflow")), str(tmp_path), 1),
        )
        proc.start()
    os.kill(proc.pid, signal.SIGINT)
    proc.join(60)
    assert proc.exitcode == 130
    assert "Traceback" not in capfd.readouterr().err


def test_the_first_trial_is_timed_without_the_processes_one_off_set_up():
    # a fresh process's first Adam step costs about 0.8 s; the first trial's objective time
    # carried it, 12-40x the others'
    script = (
        "import time, torch\n"
        "from evoprune.studies import hpo\n"
        "torch.set_num_threads(1)\n"
        "state = torch.get_rng_state()\n"
        "hpo.warm_up_training()\n"
        "assert torch.equal(state, torch.get_rng_state())\n"
        "s = hpo.digits_splits(); cfg = hpo.HPOConfig(objective='train', max_epochs=2, patience=1)\n"
        "config = {'widths': [32], 'dropouts': [0.0], 'lr': 1e-3, 'weight_decay': 1e-3,"
        " 'batch_size': 64}\n"
        "times = []\n"
        "for i in range(3):\n"
        "    t0 = time.perf_counter(); hpo.train_config(config, s, cfg, i)\n"
        "    times.append(time.perf_counter() - t0)\n"
        "print(times[0] / min(times[1:]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) < 4
