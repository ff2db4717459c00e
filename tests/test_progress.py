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
