"""Line plots: in the terminal (rich text, or plain characters), and as PNG/SVG files.

The terminal plot needs nothing beyond rich: a character grid where each series is drawn with
its own marker (and colour, on a colour terminal), the y axis logarithmic (ULP errors span many
decades), a reserved top row for infinite or NaN values (an overflow or a NaN output), and a
legend that carries each series' onsets.  Picture files use matplotlib, an optional extra
(``pip install 'lsmcheck[plot]'``); without it :func:`figure` raises a one-line
:class:`~lsmcheck.errors.UsageError`.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import RenderableType
from rich.text import Text

from lsmcheck.errors import UsageError
from lsmcheck.explore.sweep import Sweep, summary
from lsmcheck.formats.style import Style
from lsmcheck.formats.table import to_text

#: Markers and colours given to series in order.
MARKERS = "ox+*#@%=&~"
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_white", "bright_cyan")
#: Values at or below this are drawn on the bottom row.
FLOOR = 1e-3


@dataclass(frozen=True)
class Series:
    """One line: points ``(x, y)``; ``y`` is ``None`` (no point), finite, inf or NaN.

    Attributes:
        label: the legend text.
        xs, ys: the points, in x order.
        note: extra legend text (e.g. ``overflow from s=6.31``).
    """

    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    note: str = ""


@dataclass(frozen=True)
class Plot:
    """A titled plot of several series over one x axis.

    Attributes:
        title: printed above the plot.
        series: the lines, drawn in order (a later marker covers an earlier one).
        x_label: the x axis' name; ``log_x``: logarithmic x axis.
        y_label: the y axis' name (always logarithmic).
    """

    title: str
    series: Sequence[Series]
    x_label: str
    y_label: str = "max ulp"
    log_x: bool = False
    notes: Sequence[str] = field(default_factory=tuple)


def _tick(v: float) -> str:
    """A short axis label: ``0.01``, ``250``, ``1e+5``, ``-1000``."""
    if v == 0:
        return "0"
    k = math.log10(abs(v))
    if k == int(k):
        return ("-" if v < 0 else "") + _decade(int(k))
    return f"{v:.3g}".replace("e+0", "e+").replace("e-0", "e-")


def _decade(k: int) -> str:
    return {0: "1", 1: "10", 2: "100", 3: "1000", -1: "0.1", -2: "0.01", -3: "0.001"}.get(
        k, f"1e{k:+d}"
    )


def render_plot(plot: Plot, width: int = 80, height: int = 12) -> Text:
    """``plot`` as rich text: ``width`` columns in all, ``height`` rows for finite values."""
    xs_all = [x for s in plot.series for x in s.xs]
    finite = [
        y for s in plot.series for y in s.ys if y is not None and math.isfinite(y) and y > FLOOR
    ]
    inf_rows = [
        i
        for i, s in enumerate(plot.series)
        if any(y is not None and not math.isfinite(y) for y in s.ys)
    ]
    broken = bool(inf_rows)
    lo = math.floor(math.log10(min(finite))) if finite else 0
    hi = math.ceil(math.log10(max(finite))) if finite else 1
    hi = max(hi, lo + 1)
    margin = 8
    cols = max(20, width - margin - 2)
    top = len(inf_rows) + 1 if broken else 0  # a row per series with inf/NaN, and a gap
    rows = height + top

    def fx(x: float) -> float:
        return math.log10(x) if plot.log_x and x > 0 else x

    x0, x1 = (min(map(fx, xs_all)), max(map(fx, xs_all))) if xs_all else (0.0, 1.0)
    span = x1 - x0 or 1.0

    def col(x: float) -> int:
        return round((fx(x) - x0) / span * (cols - 1))

    def row_of(y: float) -> float:
        """Fractional row (0 = top of the finite area) of a finite y."""
        ly = math.log10(max(y, 10.0**lo)) if y > 0 else lo
        return (hi - ly) / (hi - lo) * (height - 1)

    grid: list[list[tuple[str, str]]] = [[(" ", "")] * cols for _ in range(rows)]
    for i, s in enumerate(plot.series):
        mark, colour = MARKERS[i % len(MARKERS)], COLOURS[i % len(COLOURS)]
        pts = [(col(x), y) for x, y in zip(s.xs, s.ys, strict=True) if y is not None]
        for (c0, y0), (c1, y1) in itertools.pairwise(pts):
            if not (math.isfinite(y0) and math.isfinite(y1)) or c1 <= c0:
                continue
            r0, r1 = row_of(y0), row_of(y1)
            for c in range(c0, c1 + 1):
                r = round(r0 + (r1 - r0) * (c - c0) / (c1 - c0))
                grid[top + r][c] = ("·", colour)
        for c, y in pts:
            r = inf_rows.index(i) if not math.isfinite(y) else top + round(row_of(y))
            grid[r][c] = (mark, colour + " bold")
    text = Text()
    text.append(plot.title + "\n", "bold")
    labels: dict[int, str] = {}
    step = max(1, math.ceil((hi - lo) / max(1, height // 2)))
    for k in range(hi, lo - 1, -1):
        if (hi - k) % step == 0 or k == lo:
            labels.setdefault(top + round(row_of(10.0**k)), _decade(k))
    labels[top + height - 1] = "≤" + _decade(lo)
    for r in range(len(inf_rows)):
        labels[r] = "inf/nan"
    for r in range(rows):
        label = labels.get(r, "")
        axis = "┤" if label else ("┊" if broken and r == top - 1 else "│")
        text.append(f"{label:>{margin}} {axis}", "dim")
        for ch, st in grid[r]:
            text.append(ch, st)
        text.append("\n")
    text.append(" " * (margin + 1) + "└" + "─" * cols + "\n", "dim")
    ticks = [" "] * cols
    if xs_all:
        for x in _x_ticks(plot, xs_all):
            c = col(x)
            label = _tick(x)
            start = min(max(0, c - len(label) // 2), cols - len(label))
            if all(ch == " " for ch in ticks[max(0, start - 1) : start + len(label) + 1]):
                ticks[start : start + len(label)] = list(label)
    text.append(" " * (margin + 2) + "".join(ticks).rstrip() + "\n", "dim")
    axis_name = f"{plot.x_label}{' (log)' if plot.log_x else ''} →   y: {plot.y_label} (log)"
    text.append(" " * (margin + 2) + axis_name + "\n", "dim")
    for i, s in enumerate(plot.series):
        mark, colour = MARKERS[i % len(MARKERS)], COLOURS[i % len(COLOURS)]
        text.append(f"  {mark} ", colour + " bold")
        text.append(s.label)
        if s.note:
            text.append(f"  {s.note}", "dim")
        text.append("\n")
    for note in plot.notes:
        text.append(f"  {note}\n", "dim")
    return text


def _x_ticks(plot: Plot, xs: Sequence[float]) -> list[float]:
    a, b = min(xs), max(xs)
    if plot.log_x and a > 0:
        ka, kb = math.ceil(math.log10(a)), math.floor(math.log10(b))
        ticks = [10.0**k for k in range(ka, kb + 1)]
        return [a, *ticks, b] if len(ticks) < 8 else ticks
    return [a + (b - a) * i / 4 for i in range(5)]


# ---------------------------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------------------------


def sweep_plots(sweep: Sweep) -> list[Plot]:
    """One plot per dtype: max ULP error per algorithm against the parameter."""
    p = sweep.family.parameter
    plots = []
    for d in sweep.dtypes:
        series = []
        for a in sweep.algorithms:
            pts = sweep.series(a, d)
            if not pts:  # not audited in d (an --impl in a mixed-precision dtype's storage)
                continue
            onsets = [sweep.onset(a, d, e) for e in ("overflow", "underflow", "nan")]
            note = "; ".join(f"{o.event} from {p}={o.value:.4g}" for o in onsets if o)
            series.append(Series(a, [pt.value for pt in pts], [pt.max_ulp for pt in pts], note))
        onsets_d = (sweep.onset(a, d, "unrepresentable") for a in sweep.algorithms)
        skipped = next((o for o in onsets_d if o is not None), None)
        notes = (
            [f"from {p}={skipped.value:.4g} the vectors overflow {d} itself (not audited)"]
            if skipped
            else []
        )
        title = (
            f"{sweep.family.name} sweep in {d}: {sweep.family.formula}  "
            f"(length {sweep.length}, {sweep.samples} sample{'s' if sweep.samples > 1 else ''}"
            f" per step, seed {sweep.seed})"
        )
        plots.append(Plot(title, series, f"{p}", log_x=sweep.log, notes=notes))
    return plots


def render_sweep(sweep: Sweep, style: Style, height: int = 12) -> str:
    """Every dtype's plot, then the onsets in words."""
    parts: list[RenderableType] = [
        render_plot(plot, style.width, height) for plot in sweep_plots(sweep)
    ]
    lines = summary(sweep)
    text = Text("Onsets\n", "bold")
    text.append("\n".join(f"  {line}" for line in lines) + "\n" if lines else "  none\n")
    parts.append(text)
    return to_text(parts, style)


def figure(sweep: Sweep, kind: str) -> bytes:
    """The sweep's plots as a ``kind`` (``png`` or ``svg``) file, drawn with matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            f"--{kind}: matplotlib is not installed; install it with: pip install 'lsmcheck[plot]'"
        ) from None
    plots = sweep_plots(sweep)
    fig, axes = plt.subplots(
        len(plots), 1, figsize=(8, 3.2 * len(plots)), squeeze=False, constrained_layout=True
    )
    for ax, plot in zip(axes[:, 0], plots, strict=True):
        finite = [
            y for s in plot.series for y in s.ys if y is not None and math.isfinite(y) and y > 0
        ]
        top = max(finite, default=1.0) * 10
        for i, s in enumerate(plot.series):
            xs = [x for x, y in zip(s.xs, s.ys, strict=True) if y is not None and math.isfinite(y)]
            ys = [max(y, FLOOR) for y in s.ys if y is not None and math.isfinite(y)]
            (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=s.label, zorder=2 + i)
            bad = [
                x for x, y in zip(s.xs, s.ys, strict=True) if y is not None and not math.isfinite(y)
            ]
            if bad:
                ax.plot(bad, [top] * len(bad), "x", color=line.get_color(), zorder=2 + i)
        if any(y is not None and not math.isfinite(y) for s in plot.series for y in s.ys):
            ax.axhline(top, color="grey", linestyle=":", linewidth=0.8)
            ax.annotate("inf / NaN", (0.005, top), xycoords=("axes fraction", "data"),
                        fontsize=7, va="bottom")  # fmt: skip
        ax.set_yscale("log")
        if plot.log_x:
            ax.set_xscale("log")
        ax.set_title(plot.title, fontsize=8)
        ax.set_xlabel(plot.x_label)
        ax.set_ylabel(plot.y_label)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format=kind)
    plt.close(fig)
    return buf.getvalue()


__all__ = ["Plot", "Series", "figure", "render_plot", "render_sweep", "sweep_plots"]
