"""Pruning a trained network: SynFlow, exact budgets, energy compensation, the prune jobs and CLI."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from evoprune.cli import main
from evoprune.data import load_dataset
from evoprune.errors import EvopruneError
from evoprune.pruning.cmaes import (
    CMAConfig,
    Genome,
    bisect_densities,
    cmaes_search,
    make_population_fitness,
)
from evoprune.pruning.dense import Net, f1_of_predictions, forward, init_net, scores, split_70_15_15
from evoprune.pruning.energy import EC_METHODS, Compensator, compensate
from evoprune.pruning.job import PRUNE_METHODS, prune_data, run_prune_job
from evoprune.pruning.magnitude import keep_count, layer_topk_masks, random_masks
from evoprune.pruning.synflow import iterative_synflow_order, log_synflow, synflow_scores

TINY = {  # a small, fast configuration of every method
    "dataset": "digits",
    "classes": 10,
    "hidden": "16,8",
    "dense_max_epochs": 15,
    "dense_patience": 5,
    "finetune_epochs": 2,
    "population": 4,
    "generations": 2,
    "softmask_epochs": 2,
    "trainfit_epochs": 1,
    "synflow_rounds": 10,
    "calibration": 64,
}


def tiny_net(seed: int = 0, layers=(5, 4, 3, 2)) -> Net:
    return init_net(list(layers), seed)


def test_synflow_scores_equal_autograd():
    net = tiny_net()
    masks = random_masks(net, 20, seed=1)
    ws = [
        (w.double().abs() * m).requires_grad_(True) for w, m in zip(net.weights, masks, strict=True)
    ]
    h = torch.ones(1, 5, dtype=torch.float64)
    for w in ws:  # all-ones input, |w|, no biases: ReLU never clips
        h = h @ w.T
    R = h.sum()
    R.backward()
    direct = [(w.grad * w).detach() for w in ws]
    ours = synflow_scores(net, masks)
    for a, b in zip(ours, direct, strict=True):
        torch.testing.assert_close(a, b)
    assert log_synflow(net, masks) == pytest.approx(math.log(float(R.detach())), rel=1e-12)
    # every layer's scores sum to R (synaptic flow is conserved)
    for s in ours:
        assert float(s.sum()) == pytest.approx(float(R.detach()), rel=1e-10)


def test_empty_layer_has_no_flow():
    net = tiny_net()
    masks = [torch.ones_like(w, dtype=torch.bool) for w in net.weights]
    masks[1][:] = False
    assert log_synflow(net, masks) == -math.inf


@pytest.mark.parametrize("k", [1, 7, 13, 26, 40])
def test_bisection_hits_exact_budget(k):
    sizes = [20, 12, 8]
    rng = np.random.default_rng(k)
    for _ in range(20):
        counts = bisect_densities(rng.normal(0, 3, size=3), sizes, k)
        assert sum(counts) == k
        assert all(0 <= c <= n for c, n in zip(counts, sizes, strict=True))


@pytest.mark.parametrize("kind", ["layer-density", "layer-mix", "neuron"])
def test_genome_decodes_to_exact_budget(kind):
    net = tiny_net()
    genome = Genome(net, 11, kind, "synflow")
    rng = np.random.default_rng(0)
    for _ in range(10):
        masks = genome.decode(rng.normal(0, 2, size=genome.dim))
        assert sum(int(m.sum()) for m in masks) == 11


@pytest.mark.parametrize("kind", ["layer-density", "layer-mix", "neuron"])
def test_genome_starts_at_the_densities_it_is_given(kind):
    net = tiny_net(layers=(16, 12, 10, 4))
    k = keep_count(net.n_weights, 0.8)
    masks, _ = iterative_synflow_order(net, k, rounds=20)
    genome = Genome(net, k, kind, "synflow")
    start = genome.decode(genome.mean_for([float(m.double().mean()) for m in masks]))
    for m, s in zip(masks, start, strict=True):
        assert abs(int(s.sum()) - int(m.sum())) <= 1 + 0.02 * m.numel()


def test_a_files_split_is_the_same_for_every_seed(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)) * [1, 100, 1000]
    lines = ["a,b,c,y"] + [f"{u},{v},{w},{int(u > 0)}" for u, v, w in X]
    (tmp_path / "f.csv").write_text("\n".join(lines) + "\n")
    job = {"method": "magnitude", "data": str(tmp_path / "f.csv"), "target": "y"}
    (_, a), (_, b) = prune_data({**job, "seed": 0}), prune_data({**job, "seed": 1})
    for part in ("X_train", "X_val", "X_test"):
        assert torch.equal(getattr(a, part), getattr(b, part)), part


def test_a_files_scaling_is_fitted_on_the_rows_it_trains_on(tmp_path):
    # the file's own 75/25 split took ranges from rows the 70/15/15 split sends to the test set
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 20)) * np.linspace(1, 500, 20)
    lines = [",".join(f"f{i}" for i in range(20)) + ",y"]
    lines += [",".join(map(str, row)) + f",{int(row[0] > 0)}" for row in X]
    (tmp_path / "f.csv").write_text("\n".join(lines) + "\n")
    ds, split = prune_data({"method": "magnitude", "data": str(tmp_path / "f.csv"), "target": "y"})
    train = split.X_train.double()
    assert torch.allclose(train.min(0).values, torch.full((20,), -0.7, dtype=torch.float64))
    assert torch.allclose(train.max(0).values, torch.full((20,), 0.7, dtype=torch.float64))
    low, high = np.array(ds.config["scaling"]["low"]), np.array(ds.config["scaling"]["high"])
    tol = 1e-6 * np.abs(X).max(0)  # the rows are float32 here
    assert np.all(low >= X.min(0) - tol) and np.all(high <= X.max(0) + tol)  # some of the rows'
    assert (low > X.min(0) + tol).any() or (high < X.max(0) - tol).any()  # not all of them


def test_result_records_only_the_choices_the_search_uses():
    from evoprune.pruning.job import _choices, applied

    def recorded(**job):
        return set(applied(_choices({"method": "cmaes-synflow", **job}), "cmaes-synflow"))

    assert "order" not in recorded() and "calibration" in recorded()  # layer-mix, lsq-ce
    assert "order" in recorded(genome="neuron")
    assert "calibration" not in recorded(fitness="synflow")
    assert {"calibration", "order"} <= recorded(genome="layer-density")


def test_survival_order_gives_back_iterative_synflow():
    net = tiny_net(layers=(8, 6, 5, 3))
    masks, key = iterative_synflow_order(net, 12, rounds=20)
    again = layer_topk_masks(key, [int(m.sum()) for m in masks])
    assert all(torch.equal(a, b) for a, b in zip(masks, again, strict=True))


def test_lsq_reproduces_dense_network_when_nothing_is_pruned():
    net = tiny_net(layers=(6, 9, 7, 3))
    X = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    full = [torch.ones_like(w, dtype=torch.bool) for w in net.weights]
    comp = compensate(net, full, "lsq", X)
    torch.testing.assert_close(forward(comp, X), forward(net, X), atol=1e-5, rtol=1e-5)
    for a, b in zip(comp.weights, net.weights, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_lsq_fits_a_pruned_unit_by_least_squares():
    """One layer: the refit equals the plain normal-equation solution over the kept inputs."""
    gen = torch.Generator().manual_seed(3)
    net = Net((torch.randn(2, 5, generator=gen),), (torch.randn(2, generator=gen),))
    X = torch.randn(300, 5, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    comp = compensate(net, [mask], "lsq", X.float(), ridge=0.0)
    target = X @ net.weights[0].double().T + net.biases[0].double()
    for unit in range(2):
        cols = torch.nonzero(mask[unit]).squeeze(1)
        A = torch.cat([X[:, cols], torch.ones(300, 1, dtype=torch.float64)], 1)
        sol = torch.linalg.lstsq(A, target[:, unit : unit + 1]).solution.squeeze(1)
        torch.testing.assert_close(
            comp.weights[0][unit, cols].double(), sol[:-1], atol=1e-4, rtol=1e-4
        )
        assert float(comp.biases[0][unit]) == pytest.approx(float(sol[-1]), abs=1e-4)
        assert not comp.weights[0][unit][~mask[unit]].any()


@pytest.mark.parametrize("ec", EC_METHODS)
def test_every_ec_keeps_the_mask(ec):
    net = tiny_net(layers=(6, 9, 7, 3))
    masks = random_masks(net, 30, seed=0)
    X = torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    comp = compensate(net, masks, ec, X)
    for w, m in zip(comp.weights, masks, strict=True):
        assert not w[~m].any()


def test_macro_f1_equals_sklearn():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (300,), generator=gen)
    pred = torch.where(
        torch.rand(300, generator=gen) < 0.6, y, torch.randint(0, 5, (300,), generator=gen)
    )
    assert f1_of_predictions(pred, y, 5) == pytest.approx(f1_score(y, pred, average="macro"))
    # a class in neither the labels nor the predictions is left out, as scikit-learn does
    assert f1_of_predictions(pred, y, 7) == pytest.approx(f1_score(y, pred, average="macro"))


def test_synflow_fitness_with_iterative_order_never_loses_flow():
    net = tiny_net(layers=(8, 6, 5, 3))
    k = 12
    masks, key = iterative_synflow_order(net, k, rounds=20)
    dens = [float(m.float().mean()) for m in masks]
    cfg = CMAConfig(
        genome="layer-density", fitness="synflow", order="iterative", population=6, generations=5
    )
    found = cmaes_search(net, k, None, cfg, 0, dens, survival=key)
    assert -found.fitness >= log_synflow(net, masks) - 1e-12
    assert sum(int(m.sum()) for m in found.masks) == k


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("dense-cache"))


def test_a_dense_network_cached_by_other_training_code_is_trained_anew(tmp_path, monkeypatch):
    import evoprune.pruning.dense as dense

    job = {**TINY, "method": "magnitude", "sparsity": 0.9, "cache_dir": str(tmp_path), "seed": 0}
    assert run_prune_job(job, None)["dense_cached"] is False
    assert run_prune_job(job, None)["dense_cached"] is True
    # the cache is shared between checkouts: a network trained by other code is not this one's
    monkeypatch.setattr(dense, "_training_code", lambda: "another revision")
    assert run_prune_job(job, None)["dense_cached"] is False
    assert len(list(tmp_path.glob("dense-*.pt"))) == 2


@pytest.mark.parametrize("method", PRUNE_METHODS)
def test_every_method_reaches_the_exact_sparsity(method, cache):
    job = {**TINY, "method": method, "sparsity": 0.9, "cache_dir": cache, "seed": 0}
    r = run_prune_job(job, None)
    n = 64 * 16 + 16 * 8 + 8 * 10
    assert r["kept_weights"] == keep_count(n, 0.9)
    assert r["sparsity"] == pytest.approx(1 - keep_count(n, 0.9) / n)
    assert sum(r["layer_kept"]) == r["kept_weights"]
    assert 0.0 <= r["test_f1"] <= 1.0 and 0.0 <= r["test_f1_finetuned"] <= 1.0
    # choices records what the method used, and nothing that does not apply to it
    choices = r["choices"]
    assert ("population" in choices) == method.startswith("cmaes")
    assert ("magnitude_scope" in choices) == (method == "magnitude")
    assert ("softmask_epochs" in choices) == (method == "softmask")
    assert ("ridge" in choices) == (method == "cmaes-synflow")  # lsq by default, else none
    assert "model" not in choices and choices["hidden"] == TINY.get("hidden", "128,64")


def test_same_seed_same_result_and_the_saved_model(tmp_path, cache):
    job = {**TINY, "method": "cmaes-synflow", "sparsity": 0.95, "cache_dir": cache, "seed": 3}
    a = run_prune_job(job, tmp_path / "a")
    b = run_prune_job(job, tmp_path / "b")
    for key in ("test_f1", "test_f1_finetuned", "layer_kept", "log_synflow", "genes"):
        assert a[key] == b[key]
    other = run_prune_job({**job, "seed": 4}, None)
    assert other["genes"] != a["genes"]
    blob = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    tuned = torch.load(tmp_path / "a" / "model_finetuned.pt", weights_only=True)
    assert blob["layers"] == [64, 16, 8, 10]
    from evoprune.data import load_dataset
    from evoprune.pruning.dense import split_70_15_15

    split = split_70_15_15(load_dataset("digits", 10))
    for saved, field in ((blob, "test_f1"), (tuned, "test_f1_finetuned")):
        sd = saved["state_dict"]
        net = Net(
            tuple(sd[f"{i}.weight"] for i in (0, 2, 4)), tuple(sd[f"{i}.bias"] for i in (0, 2, 4))
        )
        assert scores(net, split.X_test, split.y_test, 10)["f1"] == pytest.approx(
            a[field], abs=1e-9
        )
        for name, m in saved["masks"].items():
            assert not sd[name][~m].any()
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["seconds"] > 0 and result["forward_passes"] > 0 and "git_revision" in result
    assert (tmp_path / "a" / "history.csv").read_text().startswith("phase,generation,")


def test_the_search_compensates_with_the_jobs_ridge(cache):
    job = {**TINY, "method": "cmaes-synflow", "sparsity": 0.95, "cache_dir": cache, "seed": 3}
    default, ridged = run_prune_job(job, None), run_prune_job({**job, "ridge": 10.0}, None)
    assert ridged["search_fitness"] != default["search_fitness"]
    assert ridged["choices"]["ridge"] == 10.0
    with pytest.raises(EvopruneError, match="lsq_prior: expected dense or zero"):
        run_prune_job({**job, "lsq_prior": "none"}, None)


def test_user_model_file(tmp_path, cache):
    net = init_net([64, 12, 10], 0)
    torch.save({"layers": net.layers, "state_dict": net.state_dict()}, tmp_path / "m.pt")
    r = run_prune_job({**TINY, "method": "magnitude", "model": str(tmp_path / "m.pt")}, None)
    assert r["arch"] == [64, 12, 10] and r["kept_weights"] == keep_count(64 * 12 + 120, 0.98)
    assert r["choices"]["model"] == str(tmp_path / "m.pt") and "hidden" not in r["choices"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sparsity", "1.5"], "sparsity"),
        (["--model", "nope.pt"], "nope.pt"),
        (["--hidden", "a,b"], "hidden"),
        (["--hidden", "8,,8"], "hidden"),
        (["--finetune-curve", "-5"], "finetune_curve: expected epoch counts >= 1"),
        (["--finetune-curve", "0,10"], "finetune_curve: expected epoch counts >= 1"),
        (["--threads", "0"], "threads: expected an integer in [1, 256], got 0"),
        (["--threads", "100000"], "threads: expected an integer in [1, 256], got 100000"),
        (["--method", "cmaes-synflow", "--population", "3"], "population: expected an integer"),
        (["--method", "cmaes-synflow", "--population", "100000"], "population: expected an int"),
        (["--population", "8"], "--population: not used by --method magnitude"),
        (["--method", "cmaes-synflow", "--order", "iterative"], "--order: not used by"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = main(
        [
            "prune",
            "--method",
            "magnitude",
            "--dataset",
            "digits",
            "--out",
            str(tmp_path / "o"),
            *args,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err
    assert not (tmp_path / "o" / "result.json").exists()


def test_bad_model_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    code = main(
        [
            "prune",
            "--method",
            "synflow",
            "--dataset",
            "digits",
            "--model",
            str(tmp_path / "bad.pt"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "bad.pt" in err


def test_a_model_with_nan_weights_or_too_few_genes_is_one_line(tmp_path, capsys, cache):
    net = init_net([64, 12, 10], 0)
    state = net.state_dict()
    state["2.weight"][0, 0] = float("nan")
    torch.save({"layers": net.layers, "state_dict": state}, tmp_path / "nan.pt")
    torch.save({"layers": [64, 10], "state_dict": init_net([64, 10], 0).state_dict()},
               tmp_path / "flat.pt")  # fmt: skip
    for model, extra, message in (
        ("nan.pt", [], "nan.pt: 2.weight holds NaN or infinite values"),
        ("flat.pt", ["--genome", "neuron"], "genome: neuron has 1 gene for a network of layers"),
    ):
        code = main(["prune", "--method", "cmaes-synflow", "--dataset", "digits", "--model",
                     str(tmp_path / model), "--out", str(tmp_path / "o"), *extra])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and message in err, err


def test_an_interrupt_while_writing_leaves_no_half_run_folder(tmp_path, monkeypatch, cache):
    import evoprune.results

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evoprune.results, "write_run_dir", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_prune_job({**TINY, "method": "magnitude", "cache_dir": cache}, tmp_path / "o")
    assert list((tmp_path / "o").iterdir()) == []  # model.pt and model_finetuned.pt removed


def test_prune_reports_its_training_in_a_log(tmp_path, capsys):
    args = ["prune", "--method", "magnitude", "--dataset", "digits", "--sparsity", "0.9",
            "--finetune-epochs", "2", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 0
    assert "fine-tuning: 2/2 epoch" in capsys.readouterr().err  # stderr is no terminal here


def _fake_runs():
    import pandas as pd

    rows = []
    f1 = {  # (method, sparsity) -> mean test F1; magnitude wins up to 0.8
        ("magnitude", 0.8): 0.9, ("magnitude", 0.9): 0.4, ("magnitude", 0.98): 0.05,
        ("synflow", 0.8): 0.7, ("synflow", 0.9): 0.6, ("synflow", 0.98): 0.2,
        ("cmaes-synflow", 0.8): 0.85, ("cmaes-synflow", 0.9): 0.8, ("cmaes-synflow", 0.98): 0.75,
        ("cmaes-trainfit", 0.98): 0.3,
    }  # fmt: skip
    for (method, s), v in f1.items():
        for seed, d in enumerate((-0.01, 0.01)):
            rows.append({"spec": "pruning", "label": method, "label_rank": 0, "method": method,
                         "ec": "lsq" if method.startswith("cmaes") else "none", "target_sparsity": s,
                         "test_f1": v + d, "test_f1_finetuned": v + 0.1 + d, "seed": seed,
                         "seconds": 100.0 if method == "cmaes-trainfit" else 0.5,
                         "evaluations": 160, "density_l1": 0.1})  # fmt: skip
    return pd.DataFrame(rows)


def test_pruning_figure_frame_and_claims():
    from evoprune.experiments.sections.pruning import (
        CLAIM_ROWS,
        crossover,
        prepare_pruning,
        table_pruning,
    )

    runs = _fake_runs()
    frame = prepare_pruning(runs)
    cell = frame[
        (frame.metric == "test_f1") & (frame.label == "synflow") & (frame.sparsity_target == 0.9)
    ]
    assert cell["mean"].iloc[0] == pytest.approx(0.6) and cell["n"].iloc[0] == 2
    assert crossover(runs, "test_f1") == {"none": 0.9}  # synflow beats magnitude from 0.9 on
    table = table_pruning(frame)
    assert len(table) == len(runs) // 2
    verdicts = [check(runs)[1] for _, _, check in CLAIM_ROWS]
    # 0.81 reached after fine-tuning; ahead of magnitude; 200x cheaper; magnitude loses at 0.9
    assert verdicts == [True, True, True, False]
    assert "200x" in CLAIM_ROWS[2][2](runs)[0]


def test_pruning_table_of_one_run_per_cell_and_a_claim_without_our_runs():
    from evoprune.experiments.sections.pruning import CLAIM_ROWS, prepare_pruning, table_pruning

    runs = _fake_runs()
    one = runs[runs["seed"] == 0]  # every std NaN: the column was dropped, a KeyError
    table = table_pruning(prepare_pruning(one))
    assert len(table) == len(one) and "±" not in table["F1 no FT"].iloc[0]
    baselines = runs[~runs["method"].str.startswith("cmaes")]
    text, verdict = CLAIM_ROWS[1][2](baselines)  # was "ours nan ..." and a failed claim
    assert verdict is None and "no CMA-ES + SynFlow runs at 98%" in text


@pytest.mark.parametrize("prior", ["dense", "zero"])
def test_batched_lsq_scoring_equals_genome_by_genome(prior):
    """``Compensator.lsq_logits`` on a population equals the per-genome compensation's output,
    with empty units, an all-kept layer and an empty layer among the genomes."""
    net = tiny_net(layers=(7, 9, 6, 4))
    X = torch.randn(120, 7, generator=torch.Generator().manual_seed(2))
    comp = Compensator(net, X, lsq_prior=prior)
    population = [random_masks(net, k, seed=k) for k in (1, 5, 20, 60, 110)]
    population.append([torch.ones_like(w, dtype=torch.bool) for w in net.weights])
    empty = random_masks(net, 40, seed=9)
    empty[1] = torch.zeros_like(empty[1])
    population.append(empty)
    batched = comp.lsq_logits(population)  # (P, n, C)
    assert batched.shape == (len(population), 120, 4)
    for masks, out in zip(population, batched, strict=True):
        comp(masks, "lsq")
        torch.testing.assert_close(out, comp.logits, rtol=1e-9, atol=1e-9)


def test_batched_fitness_equals_genome_by_genome():
    """The lsq-ce population fitness gives the per-genome values, and the search the same
    masks and history either way."""
    ds = load_dataset("digits", 10)
    split = split_70_15_15(ds)
    net = init_net([64, 16, 8, 10], 0)
    k = keep_count(net.n_weights, 0.9)
    genome = Genome(net, k, "layer-mix", "synflow")
    rng = np.random.default_rng(0)
    population = [genome.decode(rng.normal(size=genome.dim)) for _ in range(6)]
    values = {}
    for batched in (True, False):
        cfg = CMAConfig(population=6, generations=3, calibration=64, batched=batched)
        fit = make_population_fitness(cfg, net, split, 0, {"forward_passes": 0})
        values[batched] = fit(population)
    assert values[True] == pytest.approx(values[False], rel=1e-12)
    found = {
        b: cmaes_search(net, k, split, CMAConfig(population=6, generations=3, batched=b), 0)
        for b in (True, False)
    }
    assert all(
        torch.equal(a, b) for a, b in zip(found[True].masks, found[False].masks, strict=True)
    )
    assert found[True].fitness == pytest.approx(found[False].fitness, rel=1e-12)
    assert found[True].forward_passes == found[False].forward_passes


def test_trainfit_fitness_is_lower_for_the_mask_that_fine_tunes_to_a_better_f1():
    # CMA-ES minimises: the train-fit fitness is minus the fine-tuned validation F1, so a mask
    # that keeps every weight must score lower than one that keeps one weight per unit
    from evoprune.pruning.cmaes import make_fitness

    split = split_70_15_15(load_dataset("digits", 10))
    net = init_net([64, 16, 10], 0)
    fit = make_fitness(CMAConfig(fitness="trainfit", trainfit_epochs=2), net, split, 0,
                       {"forward_passes": 0})  # fmt: skip
    full = [torch.ones_like(w, dtype=torch.bool) for w in net.weights]
    thin = [torch.zeros_like(w, dtype=torch.bool) for w in net.weights]
    for m in thin:
        m[:, 0] = True
    assert fit(full) < fit(thin) < 0


@pytest.mark.parametrize("with_keys", [False, True])
def test_iterative_synflow_shrinks_exponentially_and_never_revives_a_weight(monkeypatch, with_keys):
    """Tanaka et al.'s Algorithm 1: round r keeps ``n (k / n) ** (r / rounds)`` of the weights,
    each round a subset of the last (a linear schedule, or a pruned weight tied with a live
    weight of score 0 and brought back, would break it); both paths give the same masks."""
    import evoprune.pruning.synflow as synflow

    plain, kept = synflow.topk_masks, []

    def recording(scores, k):
        kept.append(plain(scores, k))
        return kept[-1]

    net = tiny_net(layers=(8, 6, 5, 3))
    n, rounds = net.n_weights, 20
    for k in (2, 5, 12):
        kept.clear()
        monkeypatch.setattr(synflow, "topk_masks", recording)
        masks, _ = iterative_synflow_order(net, k, rounds, with_keys=with_keys)
        monkeypatch.setattr(synflow, "topk_masks", plain)
        counts = [sum(int(m.sum()) for m in round_masks) for round_masks in kept]
        expected = [max(k, round(n * (k / n) ** (r / rounds))) for r in range(1, rounds)]
        assert counts == expected + [k]
        for before, after in itertools.pairwise(kept):
            assert all(not (a & ~b).any() for a, b in zip(after, before, strict=True))
        other, _ = iterative_synflow_order(net, k, rounds, with_keys=not with_keys)
        assert all(torch.equal(a, b) for a, b in zip(masks, other, strict=True)), k


def test_survival_key_is_the_round_pruned_plus_half_the_relative_score():
    """A weight pruned in round 1 keys ``1 + 0.5 s / max s`` with s its dense SynFlow score, so
    a higher score ranks it higher within its round (minus the score would reverse that)."""
    net = tiny_net(layers=(8, 6, 5, 3))
    rounds = 20
    masks, key = iterative_synflow_order(net, 12, rounds)
    dense = synflow_scores(net)
    top = max(float(s.max()) for s in dense)
    first = [(k >= 1) & (k < 2) for k in key]
    assert sum(int(f.sum()) for f in first) > 0
    for k, s, f, m in zip(key, dense, first, masks, strict=True):
        torch.testing.assert_close(k[f], 1 + 0.5 * s[f] / top, rtol=0, atol=1e-12)
        assert bool((k[m] >= rounds + 1).all()) and bool((k[~m] < rounds + 1).all())
        assert bool((k - k.floor() <= 0.5).all())  # the relative score is at most a half


@pytest.mark.parametrize("ec", ["l2_row", "l2_layer"])
def test_l2_compensation_gives_back_each_units_or_layers_norm(ec):
    """``l2_row`` rescales unit j (row j) to ``||w_j||``, ``l2_layer`` the whole layer to its
    dense norm (scaling columns instead would leave the rows' norms off)."""
    net = tiny_net(layers=(6, 9, 7, 3))
    masks = random_masks(net, 70, seed=0)  # about 2/3 kept, every factor below the cap
    comp = compensate(net, masks, ec)
    for w, c, m in zip(net.weights, comp.weights, masks, strict=True):
        if ec == "l2_layer":
            assert float(c.norm()) == pytest.approx(float(w.norm()), rel=1e-5)
            continue
        rows = m.any(1)
        torch.testing.assert_close(c[rows].norm(dim=1), w[rows].norm(dim=1), rtol=1e-5, atol=0)


@pytest.mark.parametrize("ec", ["l2_row", "l2_layer", "activation", "affine"])
def test_a_rescaling_factor_is_capped_at_10(ec):
    """A unit keeping only its tiny weight would be scaled ~1000x; the cap holds it at 10x."""
    net = Net((torch.tensor([[1.0, 1e-3]]),), (torch.zeros(1),))
    X = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    comp = compensate(net, [torch.tensor([[False, True]])], ec, X)
    assert float(comp.weights[0][0, 1]) == pytest.approx(1e-2, rel=1e-6)


@pytest.mark.parametrize("ec", ["activation", "affine"])
def test_data_aware_rescaling_matches_the_dense_pre_activations(ec):
    """Layer by layer on the calibration batch, each unit's compensated pre-activation has the
    dense one's L2 norm (activation: weights and bias scaled) or its mean and std (affine)."""
    net = tiny_net(layers=(6, 9, 7, 3))
    masks = random_masks(net, 70, seed=0)  # every unit keeps weights, no factor at the cap
    X = torch.randn(200, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    comp = compensate(net, masks, ec, X.float())
    dense, pruned = X, X
    for w, b, cw, cb in zip(net.weights, net.biases, comp.weights, comp.biases, strict=True):
        z, zc = dense @ w.double().T + b.double(), pruned @ cw.double().T + cb.double()
        if ec == "activation":
            torch.testing.assert_close(zc.norm(dim=0), z.norm(dim=0), rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(zc.mean(0), z.mean(0), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(zc.std(0), z.std(0), rtol=1e-5, atol=1e-6)
        dense, pruned = torch.relu(z), torch.relu(zc)


def test_the_lsq_ce_calibration_rows_are_drawn_by_the_seed():
    """Same seed, same calibration batch and fitness; another seed, other rows."""
    split = split_70_15_15(load_dataset("digits", 10))
    net = init_net([64, 16, 10], 0)
    masks = random_masks(net, 300, seed=0)
    cfg = CMAConfig(calibration=64)

    def fitness(seed):
        return make_population_fitness(cfg, net, split, seed, {"forward_passes": 0})([masks])[0]

    assert fitness(0) == fitness(0) != fitness(1)


def test_a_neuron_gene_moves_every_weight_into_and_out_of_its_unit():
    net = tiny_net(layers=(5, 4, 3, 2))
    genome = Genome(net, 12, "neuron", "synflow")
    L = len(net.weights)
    for gene, kept in ((1e4, True), (-1e4, False)):
        x = np.zeros(genome.dim)
        x[L + 1] = gene  # hidden unit 1 of the first hidden layer
        masks = genome.decode(x)
        assert bool((masks[0][1] == kept).all()), gene  # its inputs (a row)
        assert bool((masks[1][:, 1] == kept).all()), gene  # its outputs (a column above)


@pytest.mark.parametrize(
    ("kind", "order", "mix", "by"),
    [
        ("layer-density", "synflow", 0.0, "synflow"),
        ("layer-density", "magnitude", 0.0, "magnitude"),
        ("layer-mix", "synflow", 40.0, "synflow"),
        ("layer-mix", "synflow", -40.0, "magnitude"),
    ],
)
def test_each_layer_keeps_its_top_weights_by_the_genomes_ranking(kind, order, mix, by):
    """The static ranking is the dense SynFlow score ``g_i |w_ij| f_j`` or |w|; a layer-mix gene
    leans the ranking from |w| (gene -> -inf) to the SynFlow score (gene -> +inf)."""
    net = tiny_net(layers=(16, 12, 10, 4))
    genome = Genome(net, keep_count(net.n_weights, 0.7), kind, order)
    L = len(net.weights)
    x = np.zeros(genome.dim)
    x[:L] = np.random.default_rng(0).normal(0, 0.5, size=L)
    x[L:] = mix
    ranking = synflow_scores(net) if by == "synflow" else [w.abs() for w in net.weights]
    for m, s in zip(genome.decode(x), ranking, strict=True):
        assert m.any() and not m.all()
        assert float(s[m].min()) >= float(s[~m].max())
