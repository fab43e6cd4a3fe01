"""The terminal rendering of ``lsmcheck explain``."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from lsmcheck.explain import Explanation
from lsmcheck.formats.style import Style, fmt_ulp
from lsmcheck.formats.table import to_text
from lsmcheck.results import Result, repr_float

#: Rows shown per table before the rest is summarised (the worst rows are kept).
MAX_ROWS = 16


def _cell(r: Result, i: int) -> Text:
    assert r.elements is not None
    e = r.elements[i]
    colour = (
        "red"
        if {"overflow", "nan"} & set(e.flags)
        else ("yellow" if "underflow" in e.flags or e.ulp > 1 else "")
    )
    text = Text(repr_float(e.computed), colour)
    text.append(f"  {fmt_ulp(e.ulp)} ulp", colour if colour else "dim")
    for flag in e.flags:
        text.append(f" {flag}", colour or "dim")
    return text


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
    table = Table(title=kind, title_justify="left", title_style="bold")
    if kind != "logsumexp":
        table.add_column("i", justify="right")
        table.add_column("x")
    table.add_column("exact")
    for r in results:
        table.add_column(r.algorithm)
    rows = _rows(results)
    for i in rows:
        e = first.elements[i]
        cells: list[RenderableType] = []
        if kind != "logsumexp":
            cells += [str(i), repr_float(e.input if e.input is not None else float("nan"))]
        cells.append(e.exact)
        cells += [_cell(r, i) for r in results]
        table.add_row(*cells)
    hidden = len(first.elements) - len(rows)
    if hidden:
        table.caption = f"{hidden} more elements not shown (the {len(rows)} worst are)"
    return table


def render(explanation: Explanation, style: Style) -> str:
    """Per dtype: the input, a table per kind, and the verdict."""
    parts: list[RenderableType] = []
    v = explanation.vector
    by_dtype: dict[str, list[Result]] = {}
    for r in explanation.report.results:
        by_dtype.setdefault(r.dtype, []).append(r)
    for dtype, results in by_dtype.items():
        parts.append(Text(f"\n{dtype}: {v.label}, {len(v.values)} logits", "bold underline"))
        audited = [r for r in results if r.elements is not None]
        kinds: dict[str, list[Result]] = {}
        for r in audited:
            kinds.setdefault(r.kind, []).append(r)
        for kind, rs in kinds.items():
            parts.append(kind_table(kind, rs))
        parts.append(Text("Verdict: ", "bold").append(explanation.verdicts[dtype], ""))
    return to_text(parts, style)
