"""The terminal line plot: placement of points, the inf row, colour, and a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from lsmcheck.formats.plot import Plot, Series, render_plot
from lsmcheck.formats.style import Style
from lsmcheck.formats.table import to_text

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MARGIN = 10  # "{label:>8} " plus the axis character


def lines_of(plot: Plot, width: int = 40, height: int = 5) -> list[str]:
    return render_plot(plot, width, height).plain.splitlines()


def test_points_land_where_expected() -> None:
    plot = Plot("t", [Series("a", [1.0, 10.0, 100.0], [1.0, 100.0, float("inf")])], "x", log_x=True)
    lines = lines_of(plot)
    assert lines[0] == "t"
    inf_row, gap, *finite = lines[1:8]
    cols = 40 - MARGIN
    assert inf_row.startswith(" inf/nan ┤") and inf_row[MARGIN + cols - 1] == "o"
    assert gap.strip() == "┊"
    # y = 100 is the top of the finite area (hi = 10**2), y = 1 the bottom row (lo = 10**0)
    assert finite[0].startswith("     100 ┤") and finite[0][MARGIN + (cols - 1) // 2] == "o"
    assert finite[4].startswith("      ≤1 ┤") and finite[4][MARGIN] == "o"
    assert "└" + "─" * cols in lines[8]
    assert "  o a" in lines


def test_each_series_with_inf_gets_its_own_row_and_legend_note() -> None:
    plot = Plot(
        "t",
        [
            Series("first", [0.0, 1.0], [float("inf"), 2.0], note="overflow from x=0"),
            Series("second", [0.0, 1.0], [float("nan"), None]),
            Series("third", [0.0, 1.0], [0.0, 3.0]),
        ],
        "x",
    )
    lines = lines_of(plot)
    assert lines[1].startswith(" inf/nan ┤o") and lines[2].startswith(" inf/nan ┤x")
    assert "  o first  overflow from x=0" in lines
    assert "  + third" in lines
    bottom = next(line for line in lines if line.lstrip().startswith("≤"))
    assert bottom[MARGIN] == "+"  # y = 0 is drawn on the bottom row


def test_colour_only_when_asked() -> None:
    plot = Plot("t", [Series("a", [1.0, 2.0], [1.0, 10.0])], "x")
    plain = to_text([render_plot(plot, 60)], Style(color=False))
    coloured = to_text([render_plot(plot, 60)], Style(color=True))
    assert "\x1b[" not in plain and "\x1b[" in coloured
    stripped = [line.rstrip() for line in ANSI.sub("", coloured).split("\n")]
    assert stripped == [line.rstrip() for line in plain.split("\n")]


def test_width_is_respected() -> None:
    plot = Plot("t", [Series("a", [1.0, 1e5], [1.0, 1e9])], "x", log_x=True)
    for width in (40, 80, 132):
        body = [line for line in lines_of(plot, width) if "┤" in line or "│" in line]
        assert body and max(len(line) for line in body) == width


def run_in_pty(args: list[str], columns: int = 100) -> tuple[int, str]:
    """Run ``python -m lsmcheck ARGS`` with a pseudo-terminal as stdin, stdout and stderr."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsmcheck", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_sweep_renders_in_a_pseudo_terminal() -> None:
    code, out = run_in_pty(["sweep", "-d", "float16", "-a", "softmax_naive,log_softmax_stable"])
    assert code == 0, out
    assert "\x1b[" in out  # a terminal gets colour
    text = ANSI.sub("", out).replace("\r", "")
    assert "scale sweep in float16" in text and "inf/nan ┤" in text
    assert "softmax_naive  overflow from s=" in text
    plot_rows = [line for line in text.splitlines() if "┤" in line or line.endswith("│")]
    assert plot_rows and max(len(line) for line in plot_rows) <= 100  # fits the terminal


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_limits_and_hunt_in_a_pseudo_terminal() -> None:
    code, out = run_in_pty(
        ["limits", "-d", "float16", "-a", "softmax_naive", "--limit", "overflow"]
    )
    assert code == 0, out
    assert "11.086" in ANSI.sub("", out)
    code, out = run_in_pty(["hunt", "-a", "softmax_naive", "-d", "float16", "--evals", "96"])
    assert code == 0, out
    assert "overflow" in ANSI.sub("", out)
