"""The local executor stops its workers: in bounded time on close, and by themselves when the
sweep process is killed (kill -9 leaves no chance to shut the pool down)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evoprune.cli import main


def sleepy_job(job: dict, folder: Path) -> dict:
    Path(job["pid_file"]).write_text(str(os.getpid()))
    time.sleep(120)
    return {}


def meeting_job(job: dict, folder: Path) -> dict:
    """Waits (at most 60 s) until `job["n"]` runs are in this job's folder at once: their pids."""
    here = Path(job["room"])
    (here / str(os.getpid())).touch()
    for _ in range(600):
        if len(list(here.iterdir())) >= job["n"]:
            break
        time.sleep(0.1)
    return {"pids": sorted(p.name for p in here.iterdir())}


def dying_job(job: dict, folder: Path) -> dict:
    """Sleeps `job["seconds"]`, then returns; the job with ``die`` ends its worker process
    instead (as the OOM killer would)."""
    time.sleep(job["seconds"])
    if job.get("die"):
        os._exit(1)
    return {"n": job["n"], "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ends_within(pid: int, seconds: float = 10.0) -> bool:
    """Whether process `pid` is gone within `seconds`."""
    deadline = time.time() + seconds
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def test_workers_of_a_killed_sweep_end_by_themselves(tmp_path):
    pid_file = tmp_path / "worker.pid"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_executors import sleepy_job
        from evoprune.experiments.executors import LocalExecutor
        for _ in LocalExecutor(1).run(sleepy_job, [{{"pid_file": {str(pid_file)!r}}}]):
            pass
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):  # the worker starts (spawned: imports take a few seconds)
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _ends_within(worker), "the orphaned worker is still running"
    finally:
        parent.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def late_worker(pid_file: str, go: str) -> None:
    """A pool worker that was still importing when its sweep died: it starts its watch only
    after `go` appears (the sweep killed by then)."""
    from evoprune.experiments.executors import _worker_init

    Path(pid_file).write_text(str(os.getpid()))
    while not Path(go).exists():
        time.sleep(0.05)
    _worker_init()
    time.sleep(120)


def test_a_worker_still_starting_when_its_sweep_is_killed_ends_by_itself(tmp_path):
    """The watch took os.getppid() as it started: after the sweep's death that was init's pid,
    and the worker waited for work forever (two found holding their cores after a kill)."""
    pid_file, go = tmp_path / "worker.pid", tmp_path / "go"
    script = textwrap.dedent(f"""
        import multiprocessing, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_executors import late_worker
        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            ctx.Process(target=late_worker, args=({str(pid_file)!r}, {str(go)!r})).start()
            time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    worker = None
    try:
        deadline = time.time() + 120
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.time() < deadline, "the worker did not start"
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        go.touch()  # the worker now starts its watch, its sweep gone
        assert _ends_within(worker), "the orphaned worker is still running"
    finally:
        parent.kill()
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_second_stage_gets_every_worker_after_a_first_stage_of_one_run(tmp_path):
    from evoprune.experiments.executors import LocalExecutor

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    ex = LocalExecutor(2)  # a resumed sweep: one run left in the first stage, two in the second
    try:
        assert [p.error for _, p in ex.run(meeting_job, [{"room": str(first), "n": 1}])] == [None]
        meet = {"room": str(second), "n": 2}
        seen = [p.result["pids"] for _, p in ex.run(meeting_job, [meet, meet])]
    finally:
        ex.close()
    assert all(len(pids) == 2 for pids in seen), "the two runs did not run at once"


def test_a_corrupted_results_store_is_one_line(tmp_path, capsys):
    (tmp_path / "results.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x01" * 984)
    assert main(["results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable results store" in err[0]


def test_a_ray_address_without_a_cluster_is_one_line(capsys):
    pytest.importorskip("ray")
    from evoprune.errors import EvopruneError
    from evoprune.experiments.executors import RayExecutor

    with pytest.raises(EvopruneError, match="no Ray cluster at auto"):
        RayExecutor(address="auto")  # no cluster runs here: Ray says so at once


def test_a_worker_that_dies_fails_its_own_run_and_the_others_finish(tmp_path):
    from evoprune.experiments.executors import LocalExecutor

    # run 1 ends its worker while run 0 is in the other one; runs 2-5 wait in the queue
    jobs = [{"n": 0, "seconds": 2.0}, {"n": 1, "seconds": 0.5, "die": True}]
    jobs += [{"n": n, "seconds": 0.1} for n in range(2, 6)]
    ex = LocalExecutor(2)
    try:
        seen = dict(ex.run(dying_job, jobs))
        again = dict(
            ex.run(dying_job, [{"n": 9, "seconds": 0.0}])
        )  # a fresh pool, not the broken one
    finally:
        ex.close()
    assert sorted(seen) == list(range(6))
    assert seen[1].result is None and seen[1].error == "its worker died (exit code 1)"
    assert all(seen[i].error is None and seen[i].result["n"] == i for i in (0, 2, 3, 4, 5))
    assert again[0].result["n"] == 9


def test_a_worker_that_dies_between_runs_breaks_no_later_run(tmp_path):
    from evoprune.experiments.executors import LocalExecutor

    ex = LocalExecutor(1)
    try:
        ((_, first),) = ex.run(dying_job, [{"n": 0, "seconds": 0.0}])
        os.kill(first.result["pid"], signal.SIGKILL)  # the idle worker dies: the pool breaks
        for _ in range(200):  # the pool reaps it at once
            if not _alive(first.result["pid"]):
                break
            time.sleep(0.05)
        ((_, second),) = ex.run(dying_job, [{"n": 1, "seconds": 0.0}])
    finally:
        ex.close()
    assert second.error is None and second.result["n"] == 1


WORKER = """
import os, sys, time

from evoprune.interrupts import interrupted_while_starting, start_worker


def setup():  # a worker's initializer, loading: waits for the test's go
    while not os.path.exists(os.environ["EVOPRUNE_TEST_GO"]):
        time.sleep(0.01)


def run():  # a pool worker's start, then its verdict as the exit code
    start_worker("starting_worker:setup")
    sys.exit(3 if interrupted_while_starting() else 0)
"""


@pytest.mark.parametrize("driver_ignores", [False, True])
def test_a_worker_notes_ctrl_c_while_it_starts_unless_its_driver_ignores_it(
    tmp_path, monkeypatch, driver_ignores
):
    # Ctrl-C reaches the worker as Python itself starts (before any handler of ours): held back
    # by sigint_held, it is noted when the worker lets it through, and the worker lives on
    import multiprocessing
    import multiprocessing.resource_tracker

    from evoprune.interrupts import sigint_held

    (tmp_path / "starting_worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    monkeypatch.setenv("EVOPRUNE_TEST_GO", str(tmp_path / "go"))
    import starting_worker

    # started first, as a pool's queues start it (starting it lets Ctrl-C through again)
    multiprocessing.resource_tracker.ensure_running()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if driver_ignores else None
    try:
        with sigint_held():
            proc = multiprocessing.get_context("spawn").Process(target=starting_worker.run)
            proc.start()
        os.kill(proc.pid, signal.SIGINT)  # the interpreter is still starting
        (tmp_path / "go").touch()
        proc.join(60)
    finally:
        if driver_ignores:
            signal.signal(signal.SIGINT, previous)
    assert proc.exitcode == (0 if driver_ignores else 3)
