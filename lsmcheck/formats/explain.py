"""The terminal rendering of ``lsmcheck explain``."""

from __future__ import annotations

import mpmath
from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from lsmcheck.explain import Explanation
from lsmcheck.formats.style import Style, fmt_ulp
from lsmcheck.formats.table import to_text
from lsmcheck.results import Result, repr_float

#: Rows shown per table before the rest is summarised (the worst rows are kept).
MAX_ROWS = 16


#: How element flags read in a cell.
FLAG_WORDS = {"overflow": "overflow", "underflow": "underflow", "benign-underflow": "ok flush"}


def _value(r: Result, i: int) -> Text:
    """``value (ulp)`` with any flag, coloured by what went wrong."""
    assert r.elements is not None
    e = r.elements[i]
    bad = {"overflow", "nan"} & set(e.flags)
    colour = "red" if bad else ("yellow" if "underflow" in e.flags or e.ulp > 1 else "")
    words = [fmt_ulp(e.ulp) + " ulp"] + [FLAG_WORDS[f] for f in e.flags if f in FLAG_WORDS]
    text = Text(repr_float(e.computed, r.dtype), colour)
    text.append(f" ({', '.join(words)})", colour or "dim")
    return text


def _short(exact: str, digits: int = 20) -> str:
    """The reference shortened for the screen (the JSON report keeps 30 digits)."""
    if exact in ("inf", "-inf", "0"):
        return exact
    with mpmath.workdps(len(exact) + 10):  # all its digits (at 53 bits, 16 of 20 were right)
        return str(mpmath.nstr(mpmath.mpf(exact), digits, min_fixed=-4, max_fixed=6))


def _rows(results: list[Result]) -> list[int]:
    """Element indices to show: all, or the worst ``MAX_ROWS`` in order."""
    n = len(results[0].elements or ())
    if n <= MAX_ROWS:
        return list(range(n))
    worst = sorted(
        range(n),
        key=lambda i: max(r.elements[i].ulp for r in results if r.elements is not None),
        reverse=True,
    )
    return sorted(worst[:MAX_ROWS])


def kind_table(kind: str, results: list[Result]) -> Table:
    """One table for the algorithms of one kind: rows are elements."""
    first = results[0]
    assert first.elements is not None
    table = Table(title=kind, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
    if kind != "logsumexp":
        table.add_column("i", justify="right", no_wrap=True)
        table.add_column("x", no_wrap=True)
    table.add_column("exact", no_wrap=True, min_width=12)
    for r in results:
        table.add_column(r.algorithm)  # wraps "(ulp)" under the value when narrow
    rows = _rows(results)
    for i in rows:
        e = first.elements[i]
        cells: list[RenderableType] = []
        if kind != "logsumexp":
            x = e.input if e.input is not None else float("nan")
            cells += [str(i), repr_float(x, first.dtype)]
        cells.append(_short(e.exact))
        cells += [_value(r, i) for r in results]
        table.add_row(*cells)
    hidden = len(first.elements) - len(rows)
    if hidden:
        table.caption = f"{hidden} more elements not shown (the {len(rows)} worst are)"
    return table


def headroom_text(results: list[Result]) -> Text:
    """Each algorithm's distance to its measured limits (warnings coloured)."""
    text = Text()
    for r in results:
        for h in r.headroom:
            colour = "red" if h.headroom < 0 else ("yellow" if h.warning else "")
            text.append(f"  {r.algorithm}: ", "bold")
            text.append(h.message + "\n", colour)
    if text.plain:
        text = Text("Headroom\n", "bold").append_text(text)
    return text


def render(explanation: Explanation, style: Style) -> str:
    """Per dtype: the input, a table per kind, and the verdict."""
    parts: list[RenderableType] = []
    v = explanation.vector
    by_dtype: dict[str, list[Result]] = {}
    for r in explanation.report.results:
        by_dtype.setdefault(r.dtype, []).append(r)
    for dtype, results in by_dtype.items():
        n = len(v.values)
        parts.append(Text(f"{dtype}: {n} logit{'s' if n != 1 else ''}", "bold underline"))
        audited = [r for r in results if r.elements is not None]
        kinds: dict[str, list[Result]] = {}
        for r in audited:
            kinds.setdefault(r.kind, []).append(r)
        for kind, rs in kinds.items():
            parts.append(kind_table(kind, rs))
        room = headroom_text(audited)
        if room.plain:
            parts.append(room)
        parts.append(Text("Verdict: ", "bold").append(explanation.verdicts[dtype] + "\n", ""))
    return to_text(parts, style)
