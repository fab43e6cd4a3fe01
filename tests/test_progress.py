"""Progress: the engine reports elements done; the CLI's bar is silent off a terminal."""

from __future__ import annotations

import io

import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck import Options, Vector, audit, stream
from lsmcheck.cli import main
from lsmcheck.cli.common import ProgressBar


def test_progress_counts_elements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 10)
    vs = [Vector("t", i, None, np.arange(float(i + 1))) for i in range(8)]
    calls: list[tuple[int, int | None]] = []
    audit(vs, Options(dtypes=("float32", "float64")), lambda d, t: calls.append((d, t)))
    total = sum(range(1, 9)) * 2
    assert [t for _, t in calls] == [total] * len(calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total and len(done) > 1
    unsized: list[tuple[int, int | None]] = []
    audit(iter(vs), Options(), lambda d, t: unsized.append((d, t)))
    assert unsized[-1] == (sum(range(1, 9)) * 3, None)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_draws_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    bar = ProgressBar(quiet=False, delay=0.0)
    bar(50, 100)
    bar(100, 100)
    bar.close()
    assert "auditing" in tty.getvalue() and "100/100" in tty.getvalue()
    quiet = Tty()
    monkeypatch.setattr("sys.stderr", quiet)
    bar = ProgressBar(quiet=True, delay=0.0)
    bar(50, 100)
    bar.close()
    assert quiet.getvalue() == ""


def test_bar_waits_a_second() -> None:
    bar = ProgressBar(quiet=False, delay=3600.0)
    bar._enabled = True  # as on a terminal
    bar(1, 2)
    assert bar._bar is None


def test_cli_is_silent_off_a_terminal() -> None:
    result = CliRunner().invoke(main, ["run", "-l", "1,2,3", "-f", "json"])
    assert result.exit_code == 0
    assert result.stderr == ""


def test_the_exploring_commands_bar_shows_on_a_terminal_unless_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lsmcheck.cli import explore

    monkeypatch.setattr(explore, "PROGRESS_AFTER", 0.0)
    for quiet in (False, True):
        tty = Tty()
        monkeypatch.setattr("sys.stderr", tty)
        with explore.progress_bar("hunt", quiet) as progress:
            progress(1, 2)
        assert ("hunt" in tty.getvalue()) is not quiet
        assert ("left" in tty.getvalue()) is not quiet  # the time left, as run's bar
        # the time spent, then the time left, each with its word after it
        assert ("spent, " in tty.getvalue()) is not quiet


@pytest.mark.parametrize(
    "args",
    [
        ["limits", "-q", "-d", "float16", "-a", "softmax_naive", "--limit", "overflow"],
        ["sweep", "--quiet", "-d", "float16", "-a", "softmax_naive", "--steps", "2"],
        ["hunt", "-q", "-d", "float16", "-a", "softmax_naive", "--evals", "8"],
    ],
)
def test_the_exploring_commands_take_quiet(args: list[str]) -> None:
    """Only ``run`` had it (``limits -q`` was "No such option")."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
