"""The CLI end to end: outputs, tickets, export, interruption, and every kind of bad input."""

import csv
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from evoprune.cli import main
from evoprune.results import RESULT_FIELDS
from evoprune.ticket import Ticket

FAST = ["--population", "20", "--min-generations", "6", "--max-generations", "6", "--quiet"]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    assert (
        main(
            [
                "search",
                "--dataset",
                "digits",
                "--classes",
                "2",
                "--arch",
                "A",
                "--out",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    return out


def test_search_writes_result_ticket_and_history(finished_run):
    result = json.loads((finished_run / "result.json").read_text())
    for field in (*RESULT_FIELDS, "config"):
        assert field in result, field
    assert result["arch"] == [64, 20, 2] and result["generations"] == 6
    assert set(result["versions"]) >= {"evoprune", "torch", "numpy", "numba", "python"}
    assert result["machine"]["cores"] == os.cpu_count() and result["machine"]["cpu"]
    rows = list(csv.DictReader((finished_run / "history.csv").open()))
    assert len(rows) == 6 and "seconds" in rows[0] and "best_sparsity_so_far" in rows[0]
    ticket = Ticket.load(finished_run / "ticket.npz")
    assert ticket.layers == [64, 20, 2]
    assert abs(ticket.sparsity - result["sparsity"]) < 1e-12


def test_evaluate_reproduces_the_reported_accuracy(finished_run, capsys):
    code, out, _ = run_cli(["evaluate", finished_run / "ticket.npz"], capsys)
    result = json.loads((finished_run / "result.json").read_text())
    assert code == 0
    assert f"test acc {result['test_accuracy']:.4f}" in out


def test_evaluate_fresh_samples_of_moons_are_its_distribution(tmp_path, capsys):
    out = tmp_path / "moons"
    assert main(["search", "--dataset", "moons", "--arch", "A", "--out", str(out), *FAST]) == 0
    result = json.loads((out / "result.json").read_text())
    capsys.readouterr()
    # the test split is the generator's 16,000 samples of seed 42: the same accuracy
    code, text, _ = run_cli(["evaluate", out, "--fresh", "16000", "--fresh-seed", "42"], capsys)
    fresh, bayes = text.splitlines()[-2:]
    assert code == 0 and fresh.startswith("moons: 16,000 fresh samples (seed 42): acc ")
    # the Bayes rule makes no error on these 16,000 points (tests/test_bayes.py)
    assert bayes == "the Bayes rule (the best possible) on the same samples: 0 errors, error rate 0"
    assert float(fresh.split("acc ")[1].split(",")[0]) == pytest.approx(
        result["test_accuracy"], abs=1e-6
    )
    errors = round((1 - result["test_accuracy"]) * 16000)
    low, high = (float(v) for v in fresh.split("95% CI ")[1].rstrip(")").split(" to "))
    assert f"{errors:,} errors" in fresh and low < errors / 16000 < high
    for bad in (
        ["--fresh", "0"],
        ["--fresh", "2000000000"],
        ["--fresh", "10", "--dataset", "circles"],
    ):
        code, _, err = run_cli(["evaluate", out, *bad], capsys)
        assert code == 2 and err.count("\n") == 1 and "--fresh" in err, bad


def test_export_state_dict_loads_with_weights_only(finished_run, tmp_path, capsys):
    target = tmp_path / "net.pt"
    code, _, _ = run_cli(["export", finished_run / "ticket.npz", "--out", target], capsys)
    assert code == 0
    state = torch.load(target, weights_only=True)
    ticket = Ticket.load(finished_run / "ticket.npz")
    zeros = sum(int((state[k] == 0).sum()) for k in state if k.endswith("weight"))
    assert zeros >= int((~ticket.mask).sum())
    model = ticket.build_model()
    model.load_state_dict(state)


def test_ticket_round_trip_and_tamper_detection(finished_run, tmp_path):
    ticket = Ticket.load(finished_run / "ticket.npz")
    ticket.save(tmp_path / "copy.npz")
    again = Ticket.load(tmp_path / "copy.npz")
    assert torch.equal(again.mask, ticket.mask) and again.header() == ticket.header()
    raw = (tmp_path / "copy.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable ticket"):
        Ticket.load(tmp_path / "truncated.npz")
    with np.load(tmp_path / "copy.npz") as npz:
        arrays = dict(npz)
    arrays["mask"] = arrays["mask"].copy()
    arrays["mask"][0] ^= 1  # flip one bit of the mask
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ValueError, match="checksum mismatch"):
        Ticket.load(tmp_path / "tampered.npz")


def test_lists(capsys):
    assert run_cli(["datasets"], capsys)[1].count("\n") == 5
    assert "[in, 50, 50, out]" in run_cli(["archs"], capsys)[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def bad_files(tmp_path):
    ok_rows = "\n".join(f"{i % 7},{i % 3},{'a' if i % 2 else 'b'}" for i in range(40))
    return {
        "nan": write(tmp_path / "nan.csv", "x1,x2,label\n1,2,a\n,3,b\n" + ok_rows),
        "text": write(tmp_path / "text.csv", "x1,x2,label\n1,hello,a\n2,3,b\n" + ok_rows),
        "notarget": write(tmp_path / "notarget.csv", "x1,x2,label\n" + ok_rows),
        "oneclass": write(
            tmp_path / "oneclass.csv", "x1,x2,label\n" + "\n".join(f"{i},1,a" for i in range(20))
        ),
        "empty": write(tmp_path / "empty.csv", ""),
        "dup": write(  # a second label column would be read as a feature named label.1
            tmp_path / "dup.csv",
            "x1,label,label\n" + "\n".join(f"{i},{i % 2},{i % 2}" for i in range(40)),
        ),
        "ticket": write(tmp_path / "ticket.npz", "not a zip"),
        # pandas' to_csv writes its index as a column without a name: on a file sorted by
        # class the row number predicts the label
        "index": write(
            tmp_path / "index.csv",
            ",x1,label\n" + "\n".join(f"{i},{i % 5},{int(i >= 20)}" for i in range(40)),
        ),  # fmt: skip
        "semicolons": write(tmp_path / "semi.csv", "x1;x2;label\n" + ok_rows.replace(",", ";")),
        "inf": write(tmp_path / "inf.csv", "x1,x2,label\n1,2,a\n3,inf,b\n" + ok_rows),
        "nanlabels": _npz(tmp_path / "nany.npz", y=np.r_[np.zeros(20), np.ones(19), np.nan]),
        "complex": _npz(tmp_path / "cplx.npz", X=np.ones((40, 2)) * (1 + 2j)),
        # row 4 goes to the test split with split seed 0
        "rare": _npz(tmp_path / "rare.npz", y=np.where(np.arange(40) == 4, 7, np.arange(40) % 2)),
    }


def _npz(path: Path, X=None, y=None) -> Path:
    """An .npz of 40 rows, two features and two classes, with `X` or `y` given instead."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)) if X is None else X
    y = np.arange(40) % 2 if y is None else y
    np.savez(path, X=X, y=y)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--dataset", "nope"], "dataset: expected one of"),
        (["search", "--dataset", "digits-10"], "is dataset 'digits' with classes 10)"),
        (["search", "--dataset", "MNIST"], "got 'MNIST' (did you mean 'mnist'?)"),
        (["compare", "no-such-run"], "no-such-run: no such folder"),
        (["tune-backprop", "--dataset", "moons", "--cv", "1"], "--cv: expected at least 2"),
        (["tune-backprop", "--dataset", "moons", "--jobs", "0"], "--jobs: expected at least 1"),
        (["tune-backprop", "--dataset", "moons", "--arch", "2,2"], "needs at least one hidden"),
        (["tune-backprop", "--dataset", "moons", "--max-iter", "0"], "--max-iter: expected at"),
        (["tune-backprop", "--dataset", "moons", "--cv", "100000"], "has 25000 rows; expected"),
        (["search", "--dataset", "moons", "--arch", "3,10,2"], "does not fit the data"),
        (["search", "--dataset", "moons", "--arch", "Q"], "arch: expected"),
        (["search", "--dataset", "moons", "--arch", "2,,2"], "got '2,,2'"),
        (["search", "--dataset", "moons", "--target", "y"], "--target: only with --data"),
        (["search", "--dataset", "moons", "--data-dir", "."], "--data-dir: only with --dataset"),
        (
            ["search", "--dataset", "moons", "--mut-rate", "1.5"],
            "mut_rate: expected a rate in [0, 1]",
        ),
        (["search", "--dataset", "moons", "--rec-rate", "-0.1"], "rec_rate"),
        (["search", "--dataset", "digits", "--classes", "7"], "classes: digits supports"),
        (["search", "--data", "{nan}", "--target", "label"], "empty (NaN) values on line 3"),
        (
            ["search", "--data", "{text}", "--target", "label"],
            "'x2' has non-numeric values on line 2",
        ),
        (["search", "--data", "{notarget}", "--target", "y"], "no target column 'y'"),
        (["search", "--data", "{oneclass}", "--target", "label"], "only one class"),
        (
            ["search", "--dataset", "digits", "--variant", "local", "--val-fraction", "0.0003"],
            "val_fraction: 0.0003 of 1347 training rows holds out 0",
        ),
        (
            ["search", "--dataset", "digits", "--variant", "memetic", "--val-fraction", "0.9999"],
            "val_fraction: 0.9999 of 1347 training rows holds out 1347",
        ),
        (["search", "--data", "{empty}", "--target", "label"], "the file is empty"),
        (
            ["search", "--data", "{dup}", "--target", "label"],
            "column 'label' appears 2 times in the header",
        ),
        (["search", "--data", "missing.csv", "--target", "label"], "no such file"),
        (
            ["search", "--data", "{index}", "--target", "label"],
            "column 1 of the header has no name",
        ),
        (["search", "--data", "{semicolons}", "--target", "label"], "holds ';': this reader"),
        (
            ["search", "--data", "{inf}", "--target", "label"],
            "infinite values (column 'x2' on line 3)",
        ),
        (["search", "--data", "{nanlabels}"], "y has NaN or infinite labels (rows [39])"),
        (["search", "--data", "{complex}"], "X must be real numbers, got dtype complex128"),
        (["search", "--data", "{rare}"], "class 7 has 1 row, all in the test split (split seed 0)"),
        (["search", "--dataset", "moons", "--population", "1"], "population"),
        (["search", "--dataset", "moons", "--variant", "local", "--min-gain", "-1"], "min_gain"),
        (
            ["search", "--dataset", "moons", "--variant", "local", "--temperature", "0"],
            "temperature",
        ),
        (["search", "--dataset", "moons", "--variant", "local", "--exact-top", "-1"], "exact_top"),
        (
            ["search", "--dataset", "moons", "--variant", "local", "--local-patience", "0"],
            "patience: expected a positive integer",
        ),
        (["search"], "--dataset NAME or --data FILE is required"),
        (["search", "--dataset", "moons", "--threads", "0"], "--threads: expected a positive"),
        (["search", "--dataset", "moons", "--kicks", "3"], "--kicks: only with --variant memetic"),
        (
            ["search", "--dataset", "moons", "--variant", "local", "--elites", "2"],
            "--elites: only with --variant memetic, not local",
        ),
        (["search", "--dataset", "moons", "--variant", "xx"], "invalid choice"),
        # flags the variant does not read, or that do nothing beside the others
        (
            ["search", "--dataset", "moons", "--variant", "local", "--population", "5"],
            "--population: only with --variant ga, ga-adaptive or memetic, not local",
        ),
        (
            ["search", "--dataset", "moons", "--variant", "memetic", "--no-post-prune"],
            "--no-post-prune: only with --variant ga or ga-adaptive, not memetic",
        ),
        (
            [
                "search",
                "--dataset",
                "moons",
                "--no-post-prune",
                "--post-prune-criterion",
                "holdout",
            ],
            "--post-prune-criterion: not read with --no-post-prune",
        ),
        (
            ["search", "--dataset", "moons", "--variant", "memetic", "--starts", "3"],
            "--starts: only with --variant local, not memetic",
        ),
        (
            [
                "search",
                "--dataset",
                "moons",
                "--variant",
                "local",
                "--arch",
                "conv",
                "--kicks",
                "2",
            ],
            "--kicks: not read by the conv net's local search",
        ),
        (
            ["search", "--dataset", "moons", "--variant", "local", "--arch", "conv", "--resume"],
            "--resume: the conv net's local search keeps no checkpoints",
        ),
        (
            ["search", "--dataset", "moons", "--variant", "local", "--exact-top", "3"],
            "--exact-top: only with --objective loss and the expansion ranking",
        ),
        (
            ["search", "--dataset", "moons", "--variant", "local", "--local-patience", "3"],
            "--local-patience: only with --val-fraction",
        ),
        (
            [
                "search",
                "--dataset",
                "moons",
                "--variant",
                "memetic",
                "--objective",
                "loss",
                "--loss-first",
            ],  # fmt: skip
            "--loss-first: only with --objective accuracy or f1",
        ),
        (["evaluate", "{ticket}"], "not a readable ticket"),
        (["evaluate", "{ticket}", "--fresh-seed", "3"], "--fresh-seed: only with --fresh N"),
        (["tune-backprop", "--dataset", "moons", "--out", "t.txt"], "expected a .json file name"),
        (["export", "missing.npz", "--out", "x.pt"], "no such ticket"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    args, message, bad_files, tmp_path, capsys
):
    out_dir = tmp_path / "out"
    args = [a.format(**{k: str(v) for k, v in bad_files.items()}) for a in args]
    if args[0] == "search":
        args += ["--out", str(out_dir), "--quiet"]
    with pytest.raises(SystemExit) if "invalid choice" in message else _nothing():
        code = main(args)
        assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not out_dir.exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_user_csv_runs(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    labels = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    path = tmp_path / "mine.csv"
    with path.open("w") as fh:
        fh.write("a,b,c,answer\n")
        for row, label in zip(X, labels, strict=True):
            fh.write(",".join(f"{v:.5f}" for v in row) + f",{label}\n")
    code, out, _ = run_cli(
        [
            "search",
            "--data",
            path,
            "--target",
            "answer",
            "--arch",
            "3,10,2",
            "--out",
            tmp_path / "r",
            *FAST,
        ],
        capsys,
    )
    assert code == 0
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["classes"] == 2 and result["test_accuracy"] > 0.6
    assert result["dataset"] == "mine.csv"

    # new files keep the ticket's class numbering: the rows of one class alone score as they
    # do within the whole file (the file's own sorted labels would make "yes" class 0)
    lines = path.read_text().splitlines()
    for label in ("yes", "no"):
        part = tmp_path / f"{label}.csv"
        part.write_text("\n".join([lines[0], *(x for x in lines[1:] if x.endswith(label))]))
    right = 0
    for name in ("mine", "yes", "no"):
        args = [
            "evaluate",
            tmp_path / "r",
            "--data",
            tmp_path / f"{name}.csv",
            "--target",
            "answer",
        ]
        code, out, _ = run_cli(args, capsys)
        n, acc = int(out.split(": ")[1].split()[0]), float(out.split("acc ")[1].split(",")[0])
        right += round(n * acc) * (1 if name != "mine" else -1)
    assert code == 0 and right == 0
    (tmp_path / "other.csv").write_text("\n".join([*lines[:4], "1,2,3,maybe"]))
    args = ["evaluate", tmp_path / "r", "--data", tmp_path / "other.csv", "--target", "answer"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "label 'maybe' is not one of the classes no, yes" in err


def test_labels_written_as_floats_match_the_same_labels_as_integers(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    labels = (X[:, 0] > 0).astype(int)

    def write(name, text):
        (tmp_path / name).write_text("a,b,y\n" + "".join(
            f"{u:.5f},{v:.5f},{text(label)}\n" for (u, v), label in zip(X, labels, strict=True)))  # fmt: skip

    write("floats.csv", lambda label: f"{label:.1f}")  # 0.0 / 1.0, as pandas writes a float column
    write("ints.csv", str)
    args = ["search", "--data", tmp_path / "floats.csv", "--target", "y", "--arch", "2,10,2"]
    assert run_cli([*args, "--out", tmp_path / "r", *FAST], capsys)[0] == 0
    scores = []
    for name in ("floats.csv", "ints.csv"):
        code, out, err = run_cli(["evaluate", tmp_path / "r", "--data", tmp_path / name], capsys)
        assert code == 0, err
        scores.append(out.split(": ", 1)[1])
    assert scores[0] == scores[1]


def _search_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "evoprune",
        "search",
        "--dataset",
        "digits",
        "--classes",
        "2",
        "--arch",
        "A",
        "--population",
        "20",
        "--min-generations",
        "60",
        "--max-generations",
        "60",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_killed_and_resumed_search_equals_uninterrupted(tmp_path, sig, ctrl_c_able):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(_search_cmd(whole), check=True, env=env, capture_output=True)
    part = tmp_path / "part"
    proc = subprocess.Popen(
        _search_cmd(part, "--checkpoint-every", "3"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **ctrl_c_able,
    )
    deadline = time.time() + 60
    while not (part / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the search finished before the signal arrived")
    assert proc.returncode == 130, err
    assert b"checkpoint saved; the same command with --resume continues it" in err
    assert not (part / "result.json").exists()
    subprocess.run(
        _search_cmd(part, "--checkpoint-every", "3", "--resume"),
        check=True,
        env=env,
        capture_output=True,
    )
    a, b = Ticket.load(whole / "ticket.npz"), Ticket.load(part / "ticket.npz")
    assert torch.equal(a.mask, b.mask)
    rows = [list(csv.DictReader((d / "history.csv").open())) for d in (whole, part)]
    for row in rows[0] + rows[1]:
        row.pop("seconds")
    assert rows[0] == rows[1]
    assert not (part / "checkpoint.npz").exists()  # the finished run needs it no more


def test_a_second_command_into_a_folder_a_run_is_writing_is_refused(tmp_path, capsys):
    """Two searches started with one --out wrote their checkpoints over each other's, and the
    last to end replaced the other's finished run, both saying they had written it."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    endless = ["--min-generations", "100000", "--max-generations", "100000"]  # killed below
    first = subprocess.Popen(_search_cmd(out, "--checkpoint-every", "1", *endless), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.npz").exists() and first.poll() is None:
            assert time.time() < deadline, "the first search wrote no checkpoint"
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1]  # still searching, as it should
        for argv in (["search", "--dataset", "moons", "--arch", "A", "--seed", "1", *FAST],
                     ["baseline", "edge-popup", "--dataset", "moons", "--epochs", "1"]):  # fmt: skip
            code, _, err = run_cli([*argv, "--out", out], capsys)
            assert code == 2 and "another evoprune command is writing a run into it" in err
    finally:
        first.kill()
        first.communicate()
    # the first's, alone (a kill as it saved one may leave that save's hidden temporary file)
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["checkpoint.npz"]
    (tmp_path / "empty").mkdir()  # no MNIST here: refused after its folder was locked
    code, _, err = run_cli(["search", "--dataset", "mnist", "--data-dir", tmp_path / "empty",
                            "--out", tmp_path / "new"], capsys)  # fmt: skip
    assert code == 2 and "has no IDX files" in err
    assert not (tmp_path / "new").exists()  # the folder made to lock it is gone again


def test_resume_without_a_checkpoint_says_it_starts_afresh(tmp_path, capsys):
    args = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", *FAST]
    code, _, err = run_cli([*args, "--out", tmp_path / "r", "--resume"], capsys)
    assert code == 0 and "no checkpoint to resume from; starting from the beginning" in err
    assert (tmp_path / "r" / "result.json").exists()


def test_a_run_resumed_under_other_code_says_so(tmp_path, capsys, monkeypatch):
    """A checkpoint written by another revision was continued silently: result.json named
    only the code that finished the run."""
    import evoprune.io
    from evoprune.evaluate import Evaluator

    out = tmp_path / "run"
    args = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", *FAST,
            "--checkpoint-every", "1", "--out", out]  # fmt: skip
    old = {**evoprune.io.code_identity(), "git_revision": "0" * 40}
    original, calls = Evaluator.evaluate, {"n": 0}

    def interrupted(self, masks):  # Ctrl-C in the fourth generation
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, masks)

    with monkeypatch.context() as m:
        m.setattr(evoprune.io, "code_identity", lambda: old)
        m.setattr(Evaluator, "evaluate", interrupted)
        assert run_cli(args, capsys)[0] == 130
    assert (out / "checkpoint.npz").exists()
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert code == 0 and f"written by other code (revision {'0' * 40})" in err
    assert json.loads((out / "result.json").read_text())["resumed_from"] == [old]
    # resumed under the code that wrote it: nothing to say
    again = tmp_path / "again"
    with monkeypatch.context() as m:
        m.setattr(Evaluator, "evaluate", interrupted)
        calls["n"] = 0
        assert run_cli([*args[:-1], again], capsys)[0] == 130
    code, _, err = run_cli([*args[:-1], again, "--resume"], capsys)
    assert code == 0 and "other code" not in err
    assert "resumed_from" not in json.loads((again / "result.json").read_text())


def test_output_paths_of_the_wrong_kind_are_one_line(finished_run, tmp_path, capsys):
    folder, file, pt_folder = tmp_path / "a-folder", tmp_path / "a-file", tmp_path / "net.pt"
    folder.mkdir()
    pt_folder.mkdir()
    file.write_text("keep me")
    search = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", *FAST]
    ticket = finished_run / "ticket.npz"
    for args, message in [
        (["export", ticket, "--out", pt_folder], "is a folder; expected a file"),
        (["export", ticket, "--out", file / "x.pt"], "is a file, not a folder"),
        (["export", ticket, "--out", tmp_path / "x.npz"], "expected a .pt file name"),
        (["export", ticket, "--fraction", "0.5"], "only for a selection-prune run"),
        (["evaluate", folder], "a folder without a ticket.npz"),
        (["analyze", "hessian", ticket, "--out", file], "exists and is not a folder"),
        (["report", finished_run, "--out", folder / "r.htm"], "no results store"),
        (["report", finished_run, "--out", folder], "expected an .html file name"),
        ([*search, "--out", file], "exists and is not a folder"),
        ([*search, "--out", file / "run"], "is a file, not a folder"),
        (["minimize", "--function", "sphere", "--out", file / "m"], "is a file, not a folder"),
        (["sweep", "fig3", "--dry-run", "--out", file / "s"], "is a file, not a folder"),
    ]:
        code, _, err = run_cli(args, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert file.read_text() == "keep me" and not list(folder.iterdir())
    assert not list(pt_folder.iterdir()) and not (finished_run / "network.pt").exists()


def test_an_unfinished_run_is_continued_only_on_request(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"a search state")
    args = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", *FAST, "--out", out]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "add --resume to continue it" in err
    assert (out / "checkpoint.npz").read_bytes() == b"a search state"


def test_resume_of_a_finished_run_leaves_its_result_alone(finished_run, capsys):
    before = (finished_run / "result.json").read_bytes()
    args = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A"]
    code, out, _ = run_cli([*args, "--out", finished_run, *FAST, "--resume"], capsys)
    assert code == 0 and "already finished" in out
    assert (finished_run / "result.json").read_bytes() == before


def test_run_files_follow_the_umask(finished_run):
    # written atomically through a private temp file; the result must still be shareable
    mask = os.umask(0)
    os.umask(mask)
    for name in ("result.json", "ticket.npz", "history.csv"):
        assert (finished_run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_default_run_folders_keep_classes_objective_and_sparsity_apart():
    from evoprune.cli.data import default_out

    base = {"method": "ga", "dataset": "digits", "arch": "B", "seed": 0}
    names = {
        default_out(base),
        default_out({**base, "classes": 2}),
        default_out({**base, "objective": "loss"}),
        default_out({**base, "method": "edge-popup", "sparsity": 0.9}),
        default_out({**base, "method": "edge-popup", "sparsity": 0.5}),
    }
    assert len(names) == 5
    assert default_out(base) == Path("runs/ga-digits-B-s0")  # the README's names
    assert default_out({**base, "classes": 10}) == default_out(base)  # digits' default: one run
    files = [{**base, "dataset": "file", "data": f"data/my.{ext}"} for ext in ("csv", "npz")]
    assert default_out(files[0]) != default_out(files[1])  # the second was refused as finished
    from evoprune.cli.prune import default_prune_out

    prune = {"method": "magnitude", "dataset": "digits", "seed": 0}
    assert {
        default_prune_out(prune),
        default_prune_out({**prune, "sparsity": 0.9}),
        default_prune_out({**prune, "dataset": "mnist"}),
    } == {  # fmt: skip
        Path("runs/prune-magnitude-digits-s0"),
        Path("runs/prune-magnitude-digits-p0.9-s0"),
        Path("runs/prune-magnitude-mnist-s0"),
    }


def test_evaluate_a_ticket_without_a_dataset_is_one_line(tmp_path, capsys):
    path = tmp_path / "bare.npz"
    Ticket(mask=torch.ones(16, dtype=torch.bool), layers=[2, 4, 2]).save(path)
    code, out, err = run_cli(["evaluate", path], capsys)
    assert code == 2 and "records no dataset" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_error_a_library_makes_of_ctrl_c_is_an_interruption(monkeypatch, capsys):
    from evoprune.cli import compare

    def ctrl_c_mid_compile(args):  # numba turns a KeyboardInterrupt mid-compile into this
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise RuntimeError("no compiled object yet") from None

    monkeypatch.setattr(compare, "run_compare", ctrl_c_mid_compile)
    assert main(["compare", "x"]) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setattr(compare, "run_compare", lambda args: 1 / 0)  # no Ctrl-C: a real bug
    with pytest.raises(ZeroDivisionError):
        main(["compare", "x"])


def test_every_option_with_a_default_says_it_in_its_help():
    import argparse

    from evoprune.cli import build_parser

    def options(parser, name=""):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    yield from options(child, f"{name} {sub}".strip())
            elif action.option_strings and not isinstance(
                action, argparse._HelpAction | argparse._VersionAction | argparse._StoreTrueAction
                | argparse._StoreFalseAction
            ):  # fmt: skip
                yield name, action

    unsaid = [f"{name} {a.option_strings[0]} (default {a.default!r})"
              for name, a in options(build_parser())
              if a.default not in (None, [], argparse.SUPPRESS)
              and "default" not in (a.help or "").lower()]  # fmt: skip
    assert not unsaid, unsaid


def test_an_ignored_ctrl_c_stays_ignored():
    # a script's `evoprune sweep ... &` starts with Ctrl-C ignored; the CLI must not take it back
    from evoprune.interrupts import raising

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with raising(signal.SIGINT, KeyboardInterrupt) as seen:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)  # ignored: no KeyboardInterrupt
        assert seen == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        # one not ignored is taken
        with raising(signal.SIGTERM, KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_each_cli_module_names_the_commands_it_registers():
    # main() registers only the module that defines the command given (fast start); a command
    # missing from its module's COMMANDS would be unknown on the command line
    import argparse
    import importlib

    from evoprune.cli import MODULES, Parser

    for name in MODULES:
        module = importlib.import_module(f"evoprune.cli.{name}")
        sub = Parser(prog="x").add_subparsers()
        module.register(sub)
        assert isinstance(sub, argparse._SubParsersAction)
        assert list(sub.choices) == list(module.COMMANDS), name
        assert [a.help for a in sub._choices_actions] == list(module.COMMANDS.values()), name


def _last_line_of(code: str) -> str:
    """The last line `code` prints, run in a fresh interpreter (nothing imported yet)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_a_command_imports_only_what_it_runs():
    heavy = _last_line_of(
        "import sys; from evoprune.cli import main\n"
        "try: main(['search', '--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in ('pandas', 'matplotlib', 'sklearn') if m in sys.modules))"
    )
    assert heavy == "[]"
    torch_loaded = _last_line_of(
        "import sys; from evoprune.cli import main\n"
        "try: main(['--help'])\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules)"
    )
    assert torch_loaded == "False"
    import evoprune

    assert sorted(evoprune.__all__) == sorted(evoprune._EXPORTS)
    assert all(getattr(evoprune, name) is not None for name in evoprune.__all__)
    assert sorted(evoprune.local.__all__) == sorted(evoprune.local._EXPORTS)
    assert all(getattr(evoprune.local, name) is not None for name in evoprune.local.__all__)
    solver = _last_line_of(
        "import evoprune; print(evoprune.baselines.lookup('moons', 'B', 2).solver)"
    )
    assert solver == "adam"  # a subpackage, loaded on first use


HEAVY = ("torch", "matplotlib", "sklearn", "pandas", "optuna", "ray", "numba")


def _command_lines() -> list[list[str]]:
    """Every command and subcommand, as the words that name it (`baseline edge-popup`)."""
    import argparse

    from evoprune.cli import MODULES, build_parser

    def below(parser: argparse.ArgumentParser, words: list[str]) -> list[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [words]
        return [words] + [line for name, p in subs[0].choices.items()
                          for line in below(p, [*words, name])]  # fmt: skip

    names = [n for m in MODULES for n in importlib.import_module(f"evoprune.cli.{m}").COMMANDS]
    return [line for n in names for line in below(build_parser(n), [])[1:] if line[0] == n]


@pytest.mark.parametrize(
    "argv",
    [[*line, "--help"] for line in _command_lines()]
    + [["datasets"], ["archs"], ["search", "--dataset", "digits-10"]],
    ids=" ".join,
)
def test_help_and_the_listings_import_no_heavy_library(argv):
    # a command's help and the listings of names answer at once: its options' choices come from
    # light modules (evoprune.archs, evoprune.data.builtin, *.choices), not from torch's (measured:
    # `sweep --help` 3.1 s -> 0.22 s, `datasets` 2.7 s -> 0.21 s, `hpo --help` 2.6 s -> 0.21 s);
    # so does a misspelt dataset (4.7 s -> 0.2 s)
    loaded = _last_line_of(
        "import sys; from evoprune.cli import main\n"
        f"try: main({argv!r})\n"
        "except SystemExit: pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert loaded == "[]", argv


def test_the_light_name_lists_are_the_registries():
    from evoprune.data import DATASETS
    from evoprune.data.registry import LOADERS

    assert list(LOADERS) == list(DATASETS)  # `evoprune datasets` lists what load_dataset loads
    import evoprune.data
    import evoprune.experiments
    import evoprune.ga

    for package in (evoprune.data, evoprune.experiments, evoprune.ga):  # loaded on first use
        assert set(package._EXPORTS) <= set(package.__all__)
        assert all(getattr(package, name) is not None for name in package.__all__)
    import evoprune.ga.memetic  # noqa: F401  (loads the GA's modules, the search loop's too)

    assert callable(evoprune.ga.search) and callable(evoprune.search)  # no module shadows them


def test_a_ga_job_loads_no_compiled_kernels(tmp_path):
    # numba costs every `evoprune search --variant ga` 0.2-0.4 s to import; only the memetic
    # and local variants need it (evoprune.local.kernels)
    numba_loaded = _last_line_of(
        "import sys; from evoprune.jobs import run_job\n"
        "run_job({'dataset': 'moons', 'arch': 'A', 'seed': 0, 'method': 'ga', 'population': 8, "
        f"'max_generations': 2, 'min_generations': 1}}, {str(tmp_path / 'run')!r})\n"
        "print('numba' in sys.modules)"
    )
    assert numba_loaded == "False"


def test_an_os_error_on_a_path_is_one_line(monkeypatch, tmp_path, capsys):
    from evoprune.cli import compare

    monkeypatch.setattr(compare, "run_compare", lambda args: (tmp_path / "no" / "x").write_text(""))
    code, _, err = run_cli(["compare", "x"], capsys)
    assert code == 2 and "No such file or directory" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(compare, "run_compare", lambda args: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):  # no path named: a bug, with its traceback
        main(["compare", "x"])


def test_data_flags_without_dataset_change_the_tickets_own(finished_run, capsys):
    # --normalize, --classes, --data-dir without --dataset apply to the ticket's own dataset
    code, plain, _ = run_cli(["evaluate", finished_run], capsys)
    code2, raw, err = run_cli(["evaluate", finished_run, "--no-normalize"], capsys)
    code3, named, _ = run_cli(["evaluate", finished_run, "--dataset", "digits", "--no-normalize"],
                              capsys)  # fmt: skip
    assert code == code2 == code3 == 0 and raw == named != plain and "overrides that" in err


def test_options_are_whole_names_and_a_csv_needs_its_target_first(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # --data is not taken for --dataset
        main(["train-weights", "--data", "x.csv"])
    assert exit_.value.code == 2 and "unrecognized arguments: --data" in capsys.readouterr().err
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("a,b\n1,0\n2,1\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("{}")  # the missing --target is named, not this
    code, _, err = run_cli(["search", "--data", csv_file, "--out", out], capsys)
    assert code == 2 and "needs the name of its label column (--target" in err


def test_an_out_folder_the_user_cannot_write_fails_before_any_work():
    import shutil
    import tempfile

    cmd = [sys.executable, "-m", "evoprune", "search", "--dataset", "moons", "--quiet"]
    if os.geteuid() == 0:  # root writes anywhere: run it as nobody
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to drop to another user")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        probe = subprocess.run([*cmd[:4], sys.executable, "-c", "import evoprune.cli"],
                               capture_output=True, timeout=60)  # fmt: skip
        if probe.returncode != 0:
            pytest.skip("nobody cannot read this checkout")
    top = Path(tempfile.mkdtemp())
    try:
        top.chmod(0o755)
        (top / "ro").mkdir(mode=0o555)
        (top / "ro").chmod(0o555)
        start = time.perf_counter()
        done = subprocess.run([*cmd, "--out", str(top / "ro" / "run")], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"evoprune search: error: --out {top / 'ro' / 'run'}: cannot write into "
            f"{top / 'ro'} (permission denied)"
        ]
        assert time.perf_counter() - start < 30  # before the search, not after it
    finally:
        (top / "ro").chmod(0o755)
        shutil.rmtree(top)


def test_an_out_where_nothing_can_be_made_is_refused_before_the_work(
    tmp_path, capsys, finished_run
):
    # /proc takes no new folder or file, whoever runs this: the error came after the run
    search = ["search", "--dataset", "moons", "--arch", "A", "--population", "10",
              "--max-generations", "2", "--quiet", "--out", "/proc/evoprune-x/run"]  # fmt: skip
    code, out, err = run_cli(search, capsys)
    assert code == 2 and "--out /proc/evoprune-x/run: cannot make this folder" in err and not out
    code, out, err = run_cli(["plot", "history", finished_run, "--out", "/proc/h.png"], capsys)
    assert code == 2 and "--out /proc/h.png: cannot write a file in /proc" in err and not out
    code, _, err = run_cli(["export", finished_run, "--out", "/proc/n.pt"], capsys)
    assert code == 2 and "cannot write a file in /proc" in err


def test_checking_an_out_leaves_no_folder_behind(tmp_path):
    from evoprune.cli.data import check_out, check_writable_file, release_outs

    check_out(tmp_path / "a" / "b" / "run")  # made and locked for the command, then released
    check_writable_file(tmp_path / "c" / "d" / "x.png")
    release_outs()
    assert list(tmp_path.iterdir()) == []


def test_the_summary_of_a_search_without_post_pruning_says_no_before(tmp_path, capsys):
    args = ["search", "--dataset", "moons", "--arch", "A", "--population", "10",
            "--min-generations", "2", "--max-generations", "2", "--quiet", "--out", tmp_path / "r"]  # fmt: skip
    code, out, _ = run_cli([*args, "--no-post-prune"], capsys)
    assert code == 0 and "before post-prune" not in out and "sparsity" in out
    code, out, _ = run_cli([*args[:-1], tmp_path / "p"], capsys)
    assert code == 0 and "(before post-prune" in out


def test_an_out_through_a_missing_folder_and_back_is_accepted_and_makes_nothing(tmp_path,
                                                                               monkeypatch):  # fmt: skip
    from evoprune.cli.data import check_out, release_outs

    monkeypatch.chdir(tmp_path)
    check_out(Path("new/../x"))  # "new/..: Directory not empty", and new/ was left behind
    check_out(Path("a/b/c"))
    release_outs()  # as the command ends
    assert list(tmp_path.iterdir()) == []
