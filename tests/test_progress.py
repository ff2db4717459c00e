"""Progress for logs: plain lines where stderr is no terminal, at most every N seconds."""

from evoprune.progress import LogLines, progress_bar


def test_in_a_log_a_line_comes_when_the_total_is_reached_or_time_has_passed(capsys):
    bar = progress_bar(total=3, desc="generations", unit="gen")  # pytest's stderr: no terminal
    assert isinstance(bar, LogLines)
    bar.set_postfix_str("acc 0.9000")
    bar.update(1)
    bar.update(1)
    assert capsys.readouterr().err == ""  # within 30 s and short of the total: quiet
    bar.update(1)
    assert capsys.readouterr().err == "generations: 3/3 gen, 0 s, acc 0.9000\n"
    often = LogLines(desc="local search", unit="pass", every=0.0)  # no total: by time only
    often.update(2)
    assert capsys.readouterr().err == "local search: 2 pass, 0 s\n"


def test_iterating_counts_and_quiet_prints_nothing(capsys):
    assert list(progress_bar(range(4), desc="chunks")) == [0, 1, 2, 3]
    assert capsys.readouterr().err == "chunks: 4/4 it, 0 s\n"
    bar = progress_bar(total=2, desc="quiet", enabled=False)
    bar.update(2)
    bar.close()
    assert capsys.readouterr().err == ""


QUIET_WORKER_ENDED = """
import multiprocessing as mp


def work(ready):
    from evoprune.progress import progress_bar

    progress_bar(total=3, desc="generations", enabled=False).update(1)  # as a sweep's run does
    ready.set()
    ready.wait()
    import time

    time.sleep(120)


if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    worker = ctx.Process(target=work, args=(ready,))
    worker.start()
    assert ready.wait(120), "the worker did not start"
    worker.terminate()  # as a stopped sweep's pool ends a worker
    worker.join()
"""


def test_a_worker_with_a_quiet_bar_ended_by_sigterm_leaves_no_semaphore(tmp_path):
    """A sweep stopped by Ctrl-C printed its one line, then multiprocessing's warning of a
    leaked semaphore: tqdm's lock, made by a disabled bar in a worker that SIGTERM ended."""
    import subprocess
    import sys

    script = tmp_path / "driver.py"
    script.write_text(QUIET_WORKER_ENDED)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
