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
