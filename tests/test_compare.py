"""`evoprune compare`: finished runs side by side; a folder without a result is one line, exit 2."""

from __future__ import annotations

import re

import pytest

from evoprune.cli import main

SEARCH = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A"]
FAST = ["--population", "10", "--min-generations", "3", "--max-generations", "3", "--quiet"]


def test_compare_prints_one_line_per_run(tmp_path, capsys):
    for variant in ("ga", "ga-adaptive"):
        out = tmp_path / variant
        args = [*SEARCH, "--seed", "1"]
        assert main([*args, "--variant", variant, "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "ga"), str(tmp_path / "ga-adaptive")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert (
        lines[0] == "digits, network 64-20-2, seed 1, init uniform, scaled yes, objective accuracy "
        "(the same random network):"
    )
    assert lines[1].split() == [
        "run",
        "method",
        "test",
        "acc",
        "train",
        "acc",
        "sparsity",
        "seconds",
    ]
    assert lines[2].split()[1] == "ga" and lines[3].split()[1] == "ga-adaptive"
    assert len(lines) == 5 and lines[4].startswith("paired on the test set (")


def _paired(line: str) -> tuple[int, int, int, int, float]:
    """(points, disagreements, first right, second right, p) of a "paired on" line."""
    points = int(re.search(r"\d[\d,]*", line).group().replace(",", ""))
    disagree = int(line.split("disagree on ")[1].split(";")[0].replace(",", ""))
    first = int(line.split(" right on ")[1].split(",")[0].replace(",", ""))
    second = int(line.split(" on ")[-1].split(";")[0].replace(",", ""))
    return points, disagree, first, second, float(line.split("p = ")[1])


def test_compare_two_tickets_pairs_them_on_the_test_set_and_fresh_samples(tmp_path, capsys):
    import json

    runs = []
    for variant in ("ga", "memetic"):
        runs.append(tmp_path / variant)
        args = ["search", "--dataset", "moons", "--arch", "A", "--variant", variant]
        assert main([*args, "--out", str(runs[-1]), *FAST]) == 0
    acc = [json.loads((r / "result.json").read_text())["test_accuracy"] for r in runs]
    capsys.readouterr()
    # the test split is the generator's 16,000 samples of seed 42: both lines agree
    assert main(["compare", *map(str, runs), "--fresh", "16000", "--fresh-seed", "42"]) == 0
    test, fresh = capsys.readouterr().out.strip().splitlines()[-2:]
    points, disagree, first, second, p = _paired(test)
    assert points == 16000 and first + second <= disagree
    # only where they disagree can one be right and the other wrong: the accuracies' difference
    assert first - second == round((acc[0] - acc[1]) * points)
    assert fresh.startswith("paired on 16,000 fresh samples (seed 42)")
    assert _paired(fresh)[1:] == (disagree, first, second, p) and 0 <= p <= 1
    capsys.readouterr()
    for bad in ([str(runs[0]), str(runs[0]), "--fresh", "0"], [str(runs[0]), "--fresh", "10"]):
        assert main(["compare", *bad]) == 2
        out, err = capsys.readouterr()  # the error alone: no table printed before it
        assert out == "" and err.count("\n") == 1


def test_compare_of_an_unfinished_run_is_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no result.json" in err[0]


def test_compare_of_a_result_that_is_not_an_object_is_one_line(tmp_path, capsys):
    for text in ("null", "[1, 2]"):
        (tmp_path / "result.json").write_text(text)
        assert main(["compare", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "expected a JSON object of results" in err[0]
    (tmp_path / "result.json").write_text('{"method": "ga", "test_accuracy": "abc"}')
    assert main(["compare", str(tmp_path)]) == 0  # a hand-edited field shows as written
    assert "abc" in capsys.readouterr().out


def test_compare_of_different_networks_names_each_runs_data(tmp_path, capsys):
    for seed in (1, 2):
        args = [*SEARCH, "--seed", str(seed), "--out", str(tmp_path / f"s{seed}"), *FAST]
        assert main(args) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "s1"), str(tmp_path / "s2")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert (
        lines[0] == "digits, network 64-20-2, init uniform, scaled yes, objective accuracy:"
    )  # no claim: seeds differ
    assert lines[1].split()[:3] == ["run", "seed", "method"]
    assert lines[2].split()[1:3] == ["1", "ga"] and lines[3].split()[1:3] == ["2", "ga"]


def test_compare_claims_one_random_network_only_when_drawn_alike_and_untrained(tmp_path, capsys):
    for init in ("uniform", "kaiming-normal"):
        args = [*SEARCH, "--init", init, "--out", str(tmp_path / init), *FAST]
        assert main(args) == 0
    args = ["baseline", "backprop", "--dataset", "digits", "--classes", "2", "--arch", "A",
            "--solver", "adam", "--max-iter", "5", "--quiet", "--out", str(tmp_path / "bp")]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "uniform"), str(tmp_path / "kaiming-normal")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "same random network" not in out[0] and out[1].split()[:3] == ["run", "init", "method"]
    assert main(["compare", str(tmp_path / "uniform"), str(tmp_path / "bp")]) == 0
    assert "same random network" not in capsys.readouterr().out


def test_compare_of_a_sweep_folder_points_to_results(tmp_path, capsys):
    (tmp_path / "results.sqlite").write_bytes(b"")
    assert main(["compare", str(tmp_path)]) == 2
    assert f"`evoprune results {tmp_path}` sums it up" in capsys.readouterr().err


def test_compare_takes_a_folder_of_runs_and_passes_over_files(tmp_path, capsys):
    for seed in (1, 2):
        args = [*SEARCH, "--seed", str(seed), "--out", str(tmp_path / "runs" / f"s{seed}"), *FAST]
        assert main(args) == 0
    (tmp_path / "runs" / "notes.txt").write_text("x")
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "runs")]) == 0
    # header lines, two runs, and the two tickets paired on the test set
    assert len(capsys.readouterr().out.strip().splitlines()) == 5
    files = sorted(str(p) for p in (tmp_path / "runs").iterdir())
    assert main(["compare", *files]) == 0
    captured = capsys.readouterr()
    assert "notes.txt is a file, not a run folder" in captured.err
    assert len(captured.out.strip().splitlines()) == 5


def test_compare_names_the_objective_and_what_a_folder_passes_over(tmp_path, capsys):
    for objective in ("accuracy", "loss"):
        out = tmp_path / "runs" / objective
        args = [*SEARCH, "--objective", objective, "--out", str(out), *FAST]
        assert main(args) == 0
    (tmp_path / "runs" / "nested" / "inner").mkdir(parents=True)
    (tmp_path / "runs" / "nested" / "inner" / "result.json").write_text("{}")
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "runs")]) == 0
    captured = capsys.readouterr()
    header, columns = captured.out.splitlines()[:2]
    assert header.endswith("(the same random network):")  # the objective does not draw it
    assert columns.split()[:2] == ["run", "objective"]
    assert "passed over nested" in captured.err


def test_compare_names_every_methods_algorithm_and_claims_no_shared_network_for_trained_ones(
    tmp_path, capsys
):
    """train-weights and hpo wrote their algorithm under other keys (the method column showed
    -), and two trained networks were called "the same random network"."""
    for method in ("adam", "ga"):
        args = ["train-weights", "--method", method, "--dataset", "digits", "--seconds", "0.5",
                "--out", str(tmp_path / method)]  # fmt: skip
        assert main(args) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "adam"), str(tmp_path / "ga")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "same random network" not in out[0]
    assert [line.split()[1] for line in out[2:]] == ["adam", "ga"]


def test_compare_says_where_a_column_means_something_else(tmp_path, capsys):
    from evoprune.cli.compare import COLUMN_NOTES
    from evoprune.jobs import run_job
    from evoprune.pruning.job import PRUNE_METHODS

    assert set(PRUNE_METHODS) <= set(COLUMN_NOTES)
    prune = {"dataset": "digits", "hidden": "16,8", "dense_max_epochs": 3, "dense_patience": 1,
             "finetune_epochs": 1, "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    for method in ("magnitude", "random"):
        run_job({"method": method, **prune}, tmp_path / method)
    run_job({"method": "selection", "dataset": "digits", "epochs": 1, "levels": "0.5",
             "controls": "none"}, tmp_path / "selection")  # fmt: skip
    assert main(["compare", *(str(tmp_path / m) for m in ("magnitude", "random"))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("prune runs: test acc before fine-tuning")
    assert sum(line.startswith("prune runs:") for line in out) == 1
    assert main(["compare", str(tmp_path / "magnitude"), str(tmp_path / "selection")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("selection runs: sparsity is the share of hidden units")
    assert out[-1].startswith("prune runs:")


def test_compare_shows_a_minimisation_runs_function_and_best_value(tmp_path, capsys):
    # every column was "-": two runs of different functions looked alike
    from evoprune.jobs import run_job

    for function in ("sphere", "rastrigin"):
        run_job({"method": "minimize", "function": function, "dim": 2, "optimizer": "cmaes",
                 "budget": 100}, tmp_path / function)  # fmt: skip
    assert main(["compare", str(tmp_path / "sphere"), str(tmp_path / "rastrigin")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("seed 0, dim 2")
    header = out[1].split()
    assert header[1] == "function" and header[-2:] == ["best", "value"]
    assert out[2].split()[1] == "sphere" and out[3].split()[1] == "rastrigin"
    assert out[2].split()[-1] != "-"


def test_the_mcnemar_p_value_is_the_exact_two_sided_binomial_test():
    """`mcnemar_exact` is scipy's exact two-sided binomial test of the discordant pairs at 1/2."""
    from scipy.stats import binomtest

    from evoprune.experiments.stats import mcnemar_exact

    for a, b in [(0, 1), (1, 0), (3, 3), (0, 12), (7, 2), (30, 56), (400, 351), (5, 40)]:
        assert mcnemar_exact(a, b) == pytest.approx(binomtest(a, a + b, 0.5).pvalue, rel=1e-9)
    assert mcnemar_exact(0, 0) == 1.0
