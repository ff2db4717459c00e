"""The memetic variant (GA + exact local search) and `--variant local`, through API and CLI."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from evoprune.cli import main
from evoprune.data.registry import load_dataset
from evoprune.ga.api import search
from evoprune.ga.config import GAConfig
from evoprune.nets import build_mlp
from evoprune.ticket import Ticket

SMALL = dict(population=20, min_generations=5, max_generations=10, kicks=2, kick_bits=4)


@pytest.fixture(scope="module")
def digits2():
    return load_dataset("digits", 2, None, None)


def _run(ds, **kw):
    net = build_mlp([64, 20, 2], seed=0)
    cfg = GAConfig(variant="memetic", **{**SMALL, **kw})
    return search(net, ds.X_train, ds.y_train, "accuracy", cfg, X_test=ds.X_test, y_test=ds.y_test)


def test_memetic_is_never_worse_than_its_ga_phase(digits2):
    t = _run(digits2)
    assert t.metrics["train_accuracy"] >= t.metrics["ga_train_accuracy"]
    assert t.metrics["generations"] == 10 and t.metrics["passes"] >= 1
    phases = {row["phase"] for row in t.history}
    assert phases == {"ga", "local"}


def test_objective_is_reported_in_its_own_sign_and_the_cost_beside_it(digits2):
    # the local search minimises minus the accuracy (the density penalty rides on the
    # tie-breaker); history and result show the accuracy itself, the minimised value as `cost`
    t = _run(digits2, sparsity_penalty=0.1, tiebreak=False)
    assert t.metrics["train_objective"] == t.metrics["train_accuracy"] > 0.5
    local = [row for row in t.history if row["phase"] == "local"]
    for row in local:
        density = 1.0 - row["sparsity"]
        assert row["objective"] == row["train_accuracy"]
        assert row["cost"] == pytest.approx(-row["train_accuracy"] + 0.1 * density, abs=1e-12)


def test_memetic_same_seed_same_ticket(digits2):
    a, b, c = _run(digits2), _run(digits2), _run(digits2, seed=1)
    assert torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask, c.mask)


def test_loss_first_descends_the_loss_then_the_objective(digits2):
    t = _run(digits2, loss_first=True)
    rows = {p: [r for r in t.history if r["phase"] == p] for p in ("ga", "local-loss", "local")}
    assert [r["phase"] for r in t.history] == ["ga"] * 10 + ["local-loss"] * len(
        rows["local-loss"]
    ) + ["local"] * len(rows["local"])
    # the GA phase ranked by the loss: its best performance is a cross-entropy, not an accuracy
    assert rows["ga"][-1]["best_performance"] != rows["ga"][-1]["best_accuracy"]
    # the objective's phase starts where the loss phase ended and never loses accuracy from there
    assert rows["local"][-1]["train_accuracy"] >= rows["local-loss"][-1]["train_accuracy"]
    assert t.metrics["passes"] == len(rows["local-loss"]) + len(rows["local"])
    m = t.metrics  # the rate over both phases, not the last one's
    assert m["flips_per_second"] == round(m["flips_evaluated"] / m["local_seconds"], 1)
    assert torch.equal(t.mask, _run(digits2, loss_first=True).mask)
    assert not torch.equal(t.mask, _run(digits2).mask)


def test_paper_ga_ignores_the_local_search_fields(digits2):
    net = build_mlp([64, 20, 2], seed=0)
    base = dict(population=20, min_generations=5, max_generations=5)
    a = search(net, digits2.X_train, digits2.y_train, config=GAConfig(**base))
    b = search(net, digits2.X_train, digits2.y_train,
               config=GAConfig(**base, ranking="none", kicks=9, sparsity_penalty=0.3))  # fmt: skip
    assert torch.equal(a.mask, b.mask)


def test_kicks_default_by_variant_and_objective():
    # five kicks for the loss (digits), four for accuracy and F1 (moons: 2x the GA's time),
    # none for the local search alone; an explicit --kicks wins
    memetic = GAConfig(variant="memetic")
    assert [memetic.local_config(o).kicks for o in ("loss", "accuracy", "f1")] == [5, 4, 4]
    assert GAConfig(variant="local").local_config("accuracy").kicks == 0
    assert GAConfig(variant="memetic", kicks=7).local_config("accuracy").kicks == 7


def test_cli_local_variant_writes_the_result_fields(tmp_path, capsys):
    out = tmp_path / "local"
    args = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", "--variant", "local",
            "--objective", "loss", "--max-passes", "3", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    r = json.loads((out / "result.json").read_text())
    for key in ("wall_seconds", "test_accuracy", "sparsity", "flips_evaluated", "ranking"):
        assert key in r
    assert r["variant"] == "local" and r["test_accuracy"] > 0.9
    assert "local" in capsys.readouterr().out


def test_cli_min_gain_ends_the_descent_early(tmp_path):
    def passes(*extra):
        out = tmp_path / "-".join(["run", *extra])
        args = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", "--variant",
                "local", "--objective", "loss", "--quiet", "--out", str(out), *extra]  # fmt: skip
        assert main(args) == 0
        r = json.loads((out / "result.json").read_text())
        return r["passes"], r["config"]

    default, _ = passes()
    early, config = passes("--min-gain", "10")  # no pass lowers the loss by 10: one pass
    assert default > 1 and early == 1 and config["min_gain"] == 10


def _cmd(out, *extra):  # 300 kicks: a local phase of ~1 s, so the signal lands inside it
    return [sys.executable, "-m", "evoprune", "search", "--dataset", "digits", "--classes", "2",
            "--arch", "A", "--variant", "memetic", "--objective", "loss", "--population", "20",
            "--min-generations", "8", "--max-generations", "8", "--kicks", "300", "--kick-bits",
            "8", "--quiet", "--out", str(out), *extra]  # fmt: skip


LOSS_FIRST = ("--objective", "accuracy", "--loss-first")


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, extra, phase",
    [
        (signal.SIGTERM, (), "local-checkpoint.npz"),
        (signal.SIGINT, (), "local-checkpoint.npz"),
        (signal.SIGTERM, LOSS_FIRST, "local-loss-checkpoint.npz"),  # killed in the loss phase
        (signal.SIGINT, LOSS_FIRST, "local-checkpoint.npz"),  # killed in the objective's phase
    ],
)
def test_killed_memetic_run_resumes_to_the_identical_ticket(tmp_path, sig, extra, phase):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(_cmd(whole, *extra), check=True, env=env, capture_output=True)
    part = tmp_path / "part"
    proc = subprocess.Popen(_cmd(part, *extra, "--checkpoint-every", "1"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 120
    while not (part / phase).exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # some passes into that local search
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the search finished before the signal arrived")
    assert proc.returncode == 130, err
    assert not (part / "result.json").exists()
    subprocess.run(_cmd(part, *extra, "--checkpoint-every", "1", "--resume"), check=True, env=env,
                   capture_output=True)  # fmt: skip
    a, b = Ticket.load(whole / "ticket.npz"), Ticket.load(part / "ticket.npz")
    assert torch.equal(a.mask, b.mask)
    rows = [list(csv.DictReader((d / "history.csv").open())) for d in (whole, part)]
    for row in rows[0] + rows[1]:
        row.pop("seconds")
    assert rows[0] == rows[1]
    assert not list(part.glob("*checkpoint.npz"))  # the finished run needs them no more


def test_checkpoints_name_the_code_of_every_run_that_wrote_them(digits2, tmp_path, monkeypatch):
    """A search resumed under other code records that code: the GA's and the local phase's
    checkpoints keep one entry per revision that wrote them, not only the last."""
    import numpy as np

    import evoprune.io
    from evoprune.io import code_identity, resumed_from

    net = build_mlp([64, 20, 2], seed=0)
    X, y = digits2.X_train, digits2.y_train
    cfg = GAConfig(variant="memetic", **{**SMALL, "kicks": 1, "max_passes": 2})
    ckpt = tmp_path / "checkpoint.npz"
    files = [ckpt, tmp_path / "local-checkpoint.npz"]
    now = code_identity()
    old = {**now, "git_revision": "0" * 40}
    with monkeypatch.context() as m:
        m.setattr(evoprune.io, "code_identity", lambda: old)
        search(net, X, y, "accuracy", cfg, checkpoint=ckpt, checkpoint_every=1)
    assert resumed_from(files) == [old]
    search(net, X, y, "accuracy", cfg, checkpoint=ckpt, checkpoint_every=1, resume=True)
    for path in files:
        with np.load(path) as npz:
            assert json.loads(npz["header"].tobytes())["code"] == [old, now], path.name
    assert resumed_from(files) == [old]  # this process's own code is no news


def test_a_local_checkpoint_of_another_objective_or_start_is_not_continued(digits2, tmp_path):
    """The local phase's fingerprint holds its objective, variant and start masks: a checkpoint
    of an accuracy search was continued as a loss search, and a random-start local search's
    as the memetic's local phase (its GA's elites never read)."""
    from evoprune.errors import EvopruneError

    net = build_mlp([64, 20, 2], seed=0)
    X, y = digits2.X_train, digits2.y_train
    cfg = GAConfig(variant="local", max_passes=2, kicks=1, kick_bits=4)
    ckpt = tmp_path / "checkpoint.npz"
    search(net, X, y, "accuracy", cfg, checkpoint=ckpt, checkpoint_every=1)
    assert (tmp_path / "local-checkpoint.npz").exists()
    with pytest.raises(EvopruneError, match="different search .*objective"):
        search(net, X, y, "loss", cfg, checkpoint=ckpt, resume=True)
    memetic = GAConfig(variant="memetic", **{**SMALL, "kicks": 1, "max_passes": 2})
    with pytest.raises(EvopruneError, match="different search .*start"):
        search(net, X, y, "accuracy", memetic, checkpoint=ckpt, resume=True)


def test_resume_refuses_another_variants_checkpoint_and_keeps_it(tmp_path, capsys):
    """--resume with the wrong --variant ran afresh and then deleted the other run's
    checkpoint."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"the GA's")  # an interrupted GA run's
    args = ["search", "--dataset", "digits", "--classes", "2", "--variant", "local",
            "--max-passes", "1", "--resume", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "holds checkpoint.npz, a checkpoint this run does not read" in err
    )
    assert (out / "checkpoint.npz").read_bytes() == b"the GA's"


def test_memetic_validation_rows_are_held_out_of_the_ga_phase_too(digits2):
    """With val_fraction the GA phase selects on the fit rows only: its elites were chosen on
    the rows that then judged the local search's early stop."""
    from evoprune.local.search import split_validation

    t = _run(digits2, val_fraction=0.3, kicks=0)
    X_fit, y_fit, _, _ = split_validation(digits2.X_train, digits2.y_train, 0.3, 0)
    net = build_mlp([64, 20, 2], seed=0)
    ga = search(net, X_fit, y_fit, "accuracy",
                GAConfig(**{**SMALL, "kicks": 0}, post_prune=False))  # fmt: skip
    assert t.metrics["ga_sparsity"] == ga.metrics["sparsity"]


def test_the_validation_slice_is_drawn_at_random_not_the_first_rows():
    from evoprune.local.search import split_validation

    X, y = torch.arange(100.0).view(-1, 1), torch.arange(100) // 50  # a class-sorted file
    _, _, X_val, y_val = split_validation(X, y, 0.2, 0)
    assert len(y_val) == 20 and 0 < int(y_val.sum()) < 20  # both classes, not the first 20 rows
    assert not torch.equal(X_val, split_validation(X, y, 0.2, 1)[2])


def test_loss_first_hands_the_loss_phases_mask_to_the_objectives_phase(digits2, monkeypatch):
    """With loss_first the loss phase descends without kicks, from the GA's elites; the
    objective's phase starts from the mask it ended with, with the objective's kicks; the
    ticket reports the last phase's objective and every evaluation of the GA and both phases."""
    from evoprune.ga import memetic

    real, calls = memetic.local_search, []

    def recorded(model, X, y, objective, cfg, **kw):
        result = real(model, X, y, objective, cfg, **kw)
        calls.append((objective, cfg.kicks, [m.copy() for m in kw["init_masks"]], result))
        return result

    monkeypatch.setattr(memetic, "local_search", recorded)
    t = _run(digits2, loss_first=True)
    (first, kicks0, elites, loss_result), (second, kicks1, start, last) = calls
    assert (first, kicks0, second, kicks1) == ("loss", 0, "accuracy", 2)
    assert len(elites) == GAConfig().memetic_elites
    assert len(start) == 1 and (start[0] == loss_result.mask.numpy()).all()
    assert torch.equal(t.mask, last.mask)
    assert t.metrics["train_objective"] == last.metrics["train_objective"]
    ga_rows = [r for r in t.history if r["phase"] == "ga"]
    flips = loss_result.metrics["flips_evaluated"] + last.metrics["flips_evaluated"]
    assert t.metrics["evaluations"] == ga_rows[-1]["evaluations"] + flips


@pytest.mark.parametrize("objective, loss_first, cap", [("accuracy", True, 50),
                         ("accuracy", False, 80), ("loss", False, 50)])  # fmt: skip
def test_the_ga_phase_caps_its_generations_by_the_objective_it_ranks_by(
    digits2, monkeypatch, objective, loss_first, cap
):
    """The GA phase on the loss (the objective, or loss_first's) stops at 50 generations, its
    stopping rule never firing; on the accuracy at the configuration's own cap."""
    from evoprune.ga import memetic

    class Stop(Exception):
        pass

    def capture(ev, cfg, **kw):
        raise Stop(cfg.max_generations)

    monkeypatch.setattr(memetic, "GeneticSearch", capture)
    cfg = GAConfig(variant="memetic", population=20, max_generations=80, loss_first=loss_first)
    net = build_mlp([64, 20, 2], seed=0)
    with pytest.raises(Stop) as stop:
        memetic.memetic_search(net, digits2.X_train, digits2.y_train, objective, cfg)
    assert stop.value.args == (cap,)


def test_the_local_phase_starts_from_the_first_distinct_genomes():
    """`_distinct` keeps the ranked population's first k distinct genomes, in rank order."""
    from evoprune.ga.memetic import _distinct

    rows = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]], dtype=torch.bool)
    got = _distinct(rows, 3)
    assert [r.tolist() for r in got] == [[True, False, True], [False, True, True],
                                         [False, False, True]]  # fmt: skip
