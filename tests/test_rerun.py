"""`evoprune rerun RUN`: a finished run again from its result.json, the same numbers or a list."""

from __future__ import annotations

import json

from evoprune.cli import main

SEARCH = ["search", "--dataset", "digits", "--classes", "2", "--arch", "A", "--seed", "1"]
FAST = ["--population", "10", "--min-generations", "3", "--max-generations", "3", "--quiet"]


def test_rerun_gives_the_same_numbers_and_ticket_and_says_so(tmp_path, capsys):
    run = tmp_path / "ga"
    assert main([*SEARCH, "--out", str(run), *FAST]) == 0
    capsys.readouterr()
    assert main(["rerun", str(run), "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"rerun of {run}: the same ") and "the same ticket file" in line
    again = json.loads((tmp_path / "ga-rerun" / "result.json").read_text())
    assert again["test_accuracy"] == json.loads((run / "result.json").read_text())["test_accuracy"]


def test_rerun_lists_what_differs_and_exits_1(tmp_path, capsys):
    run = tmp_path / "ga"
    assert main([*SEARCH, "--out", str(run), *FAST]) == 0
    result = json.loads((run / "result.json").read_text())
    true_accuracy = result["test_accuracy"]
    result["test_accuracy"] = 0.125  # as a run on other code or another machine might
    (run / "result.json").write_text(json.dumps(result))
    capsys.readouterr()
    assert main(["rerun", str(run), "--out", str(tmp_path / "again"), "--quiet"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"rerun of {run}: 1 differ")
    assert lines[1] == f"  test_accuracy: 0.125 then, {true_accuracy!r} now"


def test_rerun_finds_a_file_given_by_a_relative_path_from_another_folder(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "work").mkdir()
    rows = [f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{int(i % 7 > 3)}" for i in range(200)]
    (tmp_path / "work" / "d.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path / "work")
    args = ["search", "--data", "d.csv", "--target", "label", "--arch", "2,8,2", *FAST]
    assert main([*args, "--out", "run"]) == 0
    monkeypatch.chdir(tmp_path)  # where "d.csv" is no file
    capsys.readouterr()
    assert main(["rerun", "work/run", "--quiet"]) == 0
    assert "the same" in capsys.readouterr().out
    (tmp_path / "work" / "d.csv").write_text("a,b,label\n" + "\n".join(rows[::-1]) + "\n")
    main(["rerun", "work/run", "--out", "again", "--quiet"])
    assert "work/d.csv has changed since work/run ran (sha256" in capsys.readouterr().out


def test_rerun_of_a_folder_without_a_job_is_one_line(tmp_path, capsys):
    run = tmp_path / "m"
    run.mkdir()
    (run / "result.json").write_text(
        json.dumps({"method": "minimize", "config": {"method": "a,b"}})
    )
    assert main(["rerun", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config: not a job evoprune can run again" in err


def test_every_outcome_counts_nested_fields_and_nan_included():
    """Every field but the job, data, code, machine and timings is compared: a nested field
    one side lacks differs, NaN equals NaN and nothing else, and the sparsity counts too."""
    from evoprune.cli.rerun import differences

    then = {"sparsity": 0.5, "loss": float("nan"), "layers": {"a": 1}, "wall_seconds": 1.0,
            "versions": {"torch": "2"}}  # fmt: skip
    assert differences(then, {**then, "wall_seconds": 9.0, "versions": {}}) == []
    for key, now in (("sparsity", 0.625), ("loss", 0.5), ("layers", {"a": 1, "b": 2})):
        assert [line.split(":")[0] for line in differences(then, {**then, key: now})] == [key]
    assert differences({"loss": 0.5}, {"loss": float("nan")}) != []


def test_rerun_says_when_only_the_ticket_files_differ(tmp_path, capsys):
    run = tmp_path / "ga"
    assert main([*SEARCH, "--out", str(run), *FAST]) == 0
    ticket = run / "ticket.npz"
    ticket.write_bytes(ticket.read_bytes() + b"\0")  # the same numbers, other bytes
    capsys.readouterr()
    assert main(["rerun", str(run), "--quiet"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"rerun of {run}: 1 differ")
    assert lines[1] == "  ticket.npz: the files differ"
