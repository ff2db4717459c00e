"""Post-pruning criteria: the paper's stays bit for bit; the stricter ones equal a plain
one-candidate-at-a-time walk and keep their invariants."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import evoprune
from evoprune.cli import main
from evoprune.evaluate import Evaluator
from evoprune.ga import GAConfig, post_prune
from evoprune.ga import prune as prune_module
from evoprune.ga.config import POST_PRUNE_CRITERIA
from evoprune.nets import build_mlp
from evoprune.progress import progress_bar
from evoprune.scores import forward_one

STRICT = [c for c in POST_PRUNE_CRITERIA if c != "accuracy"]


def teacher_data(n_in, n_classes, n, seed):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_in, generator=gen)
    y = (X @ torch.randn(n_in, n_classes, generator=gen)).argmax(1)
    flip = torch.rand(n, generator=gen) < 0.1  # label noise: not every sample is fittable
    return X, torch.where(flip, (y + 1) % n_classes, y)


def setup(layers, seed, density=0.7, n=240):
    X, y = teacher_data(layers[0], layers[-1], n, seed)
    net = build_mlp(layers, seed=seed)
    ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
    mask = torch.rand(ev.n_bits, generator=torch.Generator().manual_seed(seed)) < density
    return net, ev, mask, X, y


def right_and_loss(ev, mask):
    logits = ev.logits(mask.view(1, -1))[0]  # (d, C)
    right = logits.argmax(1) == ev.y
    return right, float(F.cross_entropy(logits.double(), ev.y, reduction="sum"))


def plain_walk(ev, mask, criterion, guard):
    """One candidate at a time, each judged against the current mask."""
    mask = mask.clone()
    right, loss = right_and_loss(ev, mask)
    for bit in torch.nonzero(mask).flatten():
        trial = mask.clone()
        trial[bit] = False
        r, lo = right_and_loss(ev, trial)
        if criterion == "accuracy-loss":
            ok = r.sum() >= right.sum() and lo <= loss + 1e-6 * len(r)
        elif criterion == "no-new-errors":
            ok = not (right & ~r).any()
        else:  # holdout
            ok = r[~guard].sum() >= right[~guard].sum() and r[guard].sum() >= right[guard].sum()
        if ok:
            mask, right, loss = trial, r, lo
    return mask


def holdout_guard(n, seed):
    walk = prune_module._GuardedWalk(
        Evaluator(build_mlp([2, 2, 2]), torch.zeros(n, 2), torch.zeros(n, dtype=torch.long)),
        "holdout",
        seed,
    )
    return walk.guard


@pytest.mark.parametrize("criterion", STRICT)
@pytest.mark.parametrize(("layers", "seed"), [([5, 12, 2], 0), ([6, 10, 3], 1), ([4, 8, 6, 2], 2)])
def test_strict_criteria_equal_the_plain_walk(criterion, layers, seed):
    net, ev, mask, X, y = setup(layers, seed)
    pruned, report = post_prune(ev, mask, criterion, seed=seed)
    guard = holdout_guard(len(y), seed)
    assert torch.equal(pruned, plain_walk(ev, mask, criterion, guard))
    assert not (pruned & ~mask).any()  # only set bits are cleared
    assert report.criterion == criterion and report.bits_after == int(pruned.sum())
    assert report.accuracy_after >= report.accuracy_before


@pytest.mark.parametrize(("layers", "seed"), [([6, 16, 2], 0), ([8, 12, 4], 1), ([5, 9, 7, 3], 2)])
def test_incremental_accuracy_loss_walk_equals_the_batched_one(layers, seed):
    net, ev, mask, X, y = setup(layers, seed, density=0.8, n=300)
    incremental, report = post_prune(ev, mask, "accuracy-loss")
    batched, _ = prune_module._GuardedWalk(ev, "accuracy-loss", 0).run(
        mask, progress_bar(enabled=False)
    )
    assert torch.equal(incremental, batched)
    assert report.criterion == "accuracy-loss" and report.bits_after < report.bits_before


@pytest.mark.parametrize("criterion", STRICT)
def test_strict_criteria_keep_their_invariants(criterion):
    net, ev, mask, X, y = setup([8, 20, 3], 5, density=0.9, n=400)
    pruned, report = post_prune(ev, mask, criterion, seed=5)
    assert report.bits_after < report.bits_before  # it does prune
    r0, l0 = right_and_loss(ev, mask)
    r1, l1 = right_and_loss(ev, pruned)
    assert r1.sum() >= r0.sum()
    if criterion == "accuracy-loss":
        assert l1 <= l0 + 1e-6 * len(y) * report.bits_before
    if criterion == "no-new-errors":
        assert not (r0 & ~r1).any()
    if criterion == "holdout":
        guard = holdout_guard(len(y), 5)
        assert guard.sum() == round(0.2 * len(y))
        assert r1[guard].sum() >= r0[guard].sum() and r1[~guard].sum() >= r0[~guard].sum()


def test_the_papers_criterion_is_the_default_and_unchanged():
    net, ev, mask, X, y = setup([6, 16, 2], 3)
    default, report = post_prune(ev, mask)
    named, _ = post_prune(ev, mask, "accuracy", seed=123)
    assert torch.equal(default, named) and report.criterion == "accuracy"
    # the paper's walk: one candidate at a time on the plain forward, training accuracy >=
    acc = lambda m: float((forward_one(net, ev.space, m, X).argmax(1) == y).double().mean())  # noqa: E731
    plain, current = mask.clone(), acc(mask)
    for bit in torch.nonzero(mask).flatten():
        trial = plain.clone()
        trial[bit] = False
        if acc(trial) >= current:
            plain, current = trial, acc(trial)
    assert torch.equal(default, plain)


def test_search_records_the_criterion_and_keeps_the_papers_reachable():
    X, y = teacher_data(4, 2, 300, 7)
    cfg = GAConfig(population=12, min_generations=3, max_generations=3, seed=7)
    net = build_mlp([4, 10, 2], seed=7)
    default = evoprune.search(net, X, y, config=cfg)
    assert GAConfig().post_prune_criterion == "accuracy-loss"
    assert default.metrics["post_prune_criterion"] == "accuracy-loss"
    assert default.metrics["train_loss"] <= default.metrics["train_loss_before_post_prune"] + 1e-6
    paper = evoprune.search(
        net, X, y, config=dataclasses.replace(cfg, post_prune_criterion="accuracy")
    )
    assert paper.metrics["post_prune_criterion"] == "accuracy"
    unpruned = evoprune.search(net, X, y, config=dataclasses.replace(cfg, post_prune=False))
    # the same GA, then the paper's walk on its best mask
    ev = Evaluator(net, X, y, cache=False, metrics=("accuracy",))
    assert torch.equal(paper.mask, post_prune(ev, unpruned.mask)[0])
    assert torch.equal(default.mask, post_prune(ev, unpruned.mask, "accuracy-loss")[0])


def test_paper_reproduction_specs_pin_the_papers_criterion():
    from evoprune.experiments.spec import load_spec, spec_names

    for name in spec_names():
        if not (name.startswith("fig") or name in ("hessian", "beyond")):
            continue
        for run in load_spec(name).runs("paper"):
            if run.job["method"] in ("ga", "ga-adaptive"):
                assert run.job.get("post_prune_criterion") == "accuracy", (name, run.label)


def test_unknown_criteria_are_errors(capsys):
    with pytest.raises(evoprune.EvopruneError, match="post_prune_criterion"):
        GAConfig(post_prune_criterion="loss-ish")
    net, ev, mask, X, y = setup([3, 4, 2], 0)
    with pytest.raises(evoprune.EvopruneError, match="post_prune_criterion"):
        post_prune(ev, mask, "nope")
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--dataset", "moons", "--post-prune-criterion", "nope"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "post-prune-criterion" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("criterion", ["accuracy", "accuracy-loss", "no-new-errors"])
def test_post_pruning_reports_progress_over_the_set_bits(criterion, capsys):
    X, y = torch.randn(80, 2, generator=torch.Generator().manual_seed(0)), torch.arange(80) % 2
    ev = Evaluator(build_mlp([2, 8, 2], seed=0), X, y, metrics=("accuracy",))
    mask = torch.ones(ev.n_bits, dtype=torch.bool)
    post_prune(ev, mask, criterion, progress=True)  # stderr is not a terminal here: log lines
    err = capsys.readouterr().err
    assert f"post-pruning: {ev.n_bits}/{ev.n_bits} bit" in err


def test_a_kept_objective_counts_both_walks_evaluations():
    """Where the criterion's walk worsens the kept objective, the walk is redone: the report
    counts the first walk, the two scorings that compared it and the second walk."""
    from evoprune.evaluate import Evaluator
    from evoprune.ga.prune import _GuardedWalk, post_prune
    from evoprune.nets import build_mlp
    from evoprune.objectives import Objective
    from evoprune.progress import progress_bar

    X = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 1.0).long()
    ev = Evaluator(build_mlp([4, 12, 2], seed=0), X, y, "accuracy", metrics=("accuracy",))
    mask = torch.ones(ev.n_bits, dtype=torch.bool)
    _, plain = post_prune(ev, mask, "accuracy-loss")
    # an objective every removal worsens: the sparsity of the mask's own logits cannot say it, so
    # a function of the summed logits that a full mask maximises
    worse = Objective("dense", lambda logits, _y: logits.abs().sum((1, 2)).double(), maximize=True)
    pruned, kept = post_prune(ev, mask, "accuracy-loss", keep=worse)
    with progress_bar(total=1, enabled=False) as bar:
        _, guarded = _GuardedWalk(ev, "accuracy-loss", 0, worse).run(mask, bar)
    assert kept.evaluations == plain.evaluations + 2 + guarded.evaluations  # was the last alone


def test_the_holdout_guard_is_a_fifth_drawn_by_the_seed():
    a, again, b = holdout_guard(500, 0), holdout_guard(500, 0), holdout_guard(500, 1)
    assert int(a.sum()) == 100 and torch.equal(a, again)
    assert not torch.equal(a, b)  # another --seed, another guard slice


def test_accuracy_loss_takes_a_loss_rise_under_the_slack_on_both_walks():
    """Weight (1, 1) adds 1e-6 to every sample's right logit: removing it raises the summed
    cross-entropy by about 2e-7 a sample, under `LOSS_SLACK` (1e-6): rounding, by the
    criterion's definition, so the batched walk removes it as the incremental one does."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 1e-3]]))
        net[0].bias.zero_()
    gen = torch.Generator().manual_seed(0)
    X = torch.stack([0.5 + 0.5 * torch.rand(100, generator=gen), torch.full((100,), 1e-3)], 1)
    ev = Evaluator(net, X, torch.ones(100, dtype=torch.long), cache=False, metrics=("accuracy",))
    mask = torch.tensor([True, False, True, True])
    with progress_bar(total=3, enabled=False) as bar:
        batched, _ = prune_module._GuardedWalk(ev, "accuracy-loss", 0).run(mask, bar)
    incremental, _ = post_prune(ev, mask, "accuracy-loss")
    assert batched.tolist() == incremental.tolist() == [True, False, True, False]
