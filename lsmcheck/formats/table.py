"""``--format table``: one row per implementation x dtype, then what broke, in words."""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from lsmcheck.formats.style import Style, fmt_ulp
from lsmcheck.results import Group, Headroom, Report, Result, Status


def to_text(renderables: Iterable[RenderableType], style: Style) -> str:
    """Render rich objects to a string, with or without colour."""
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=style.width,
        force_terminal=style.color,
        no_color=not style.color,
        color_system="standard" if style.color else None,
        highlight=False,
        emoji=False,
    )
    for r in renderables:
        console.print(r)
    return buf.getvalue()


def _count(n: int, colour: str) -> Text:
    return Text(str(n), style=colour if n else "dim")


def _status(status: Status) -> Text:
    colours = {Status.PASS: "green", Status.FAIL: "bold red", Status.ERROR: "bold red"}
    return Text(status.value.upper() if status is not Status.PASS else "pass", colours[status])


def _ulp_cell(g: Group) -> Text:
    text = fmt_ulp(g.max_ulp)
    if text == "inf":
        return Text(text, "red")
    if g.max_ulp is not None and g.max_ulp > 1:
        return Text(text, "yellow")
    return Text(text)


def group_table(report: Report) -> Table:
    """The summary table: one row per (implementation, dtype)."""
    sources = {(r.source, r.vector) for r in report.results}
    table = Table(
        title=f"lsmcheck: {len(sources)} vector{'s' if len(sources) != 1 else ''}, "
        f"reference mpmath (certified, {report.reference.precision_bits}+ bits)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    labels = [len(g.worst.label) for g in report.groups if g.worst is not None]
    table.add_column("algorithm", no_wrap=True)
    table.add_column("dtype", no_wrap=True)
    table.add_column("max ulp", justify="right", no_wrap=True)
    table.add_column("mean ulp", justify="right", no_wrap=True)
    table.add_column("worst vector", min_width=min(max(labels, default=5), 40))
    table.add_column("overflow", justify="right")
    table.add_column("underflow", justify="right")
    table.add_column("nan", justify="right")
    table.add_column("argmax lost", justify="right")
    table.add_column("status", no_wrap=True)
    previous = None
    for g in report.groups:
        if previous is not None and g.algorithm != previous:
            table.add_section()
        previous = g.algorithm
        benign = f" (+{g.underflow_benign} ok)" if g.underflow_benign else ""
        under = _count(g.underflow, "yellow")
        under.append(benign, "dim")
        table.add_row(
            g.algorithm,
            g.dtype,
            _ulp_cell(g),
            fmt_ulp(g.mean_ulp),
            g.worst.label if g.worst is not None and g.max_ulp else "-",
            _count(g.overflow, "red"),
            under,
            _count(g.nan, "red"),
            _count(g.argmax_lost, "red"),
            _status(g.status),
        )
    return table


def findings_text(report: Report) -> Text:
    """What broke and why, merged per (implementation, dtype, event)."""
    merged: dict[tuple[str, str, str, str], list[tuple[Result, int, str]]] = {}
    for r in report.results:
        for f in r.findings:
            if f.kind == "underflow_benign":
                continue
            merged.setdefault((r.algorithm, r.dtype, f.kind, f.event), []).append(
                (r, f.count, f.message)
            )
    text = Text()
    if merged:
        text.append("What broke\n", "bold")
    for (alg, dtype, kind, _), hits in merged.items():
        first, _, message = hits[0]
        elements = sum(n for _, n, _ in hits)
        vectors = len(hits)
        colour = "red" if kind in ("overflow", "nan") else "yellow"
        text.append(f"  {alg} {dtype} ", "bold")
        text.append(f"{kind}", colour)
        text.append(f": {message}")
        more = f" and {vectors - 1} more vector{'s' if vectors > 2 else ''}" if vectors > 1 else ""
        text.append(
            f" [{elements} element{'s' if elements != 1 else ''}, at {first.label}{more}]\n",
            "dim",
        )
    return text


def headroom_text(report: Report) -> Text:
    """Vectors within the danger zone of a measured limit: the closest per group, merged."""
    closest: dict[tuple[str, str, str], tuple[Result, Headroom, int]] = {}
    for r in report.results:
        for h in r.headroom:
            if not h.warning or h.headroom < 0:  # past the limit: "What broke" says it
                continue
            key = (r.algorithm, r.dtype, h.limit)
            prev = closest.get(key)
            if prev is None or h.headroom < prev[1].headroom:
                closest[key] = (r, h, prev[2] + 1 if prev else 1)
            else:
                closest[key] = (prev[0], prev[1], prev[2] + 1)
    merged: dict[tuple[str, str], list[tuple[str, Result, int]]] = {}
    for (alg, _, _), (r, h, count) in closest.items():
        merged.setdefault((r.dtype, h.message), []).append((alg, r, count))
    text = Text()
    if merged:
        text.append("Close to a limit\n", "bold")
    for (_, message), hits in merged.items():
        algs = [a for a, _, _ in hits]
        _, first, count = hits[0]
        more = f" and {count - 1} more vector{'s' if count > 2 else ''}" if count > 1 else ""
        text.append(f"  {', '.join(algs)} ", "bold")
        text.append("warning", "yellow")
        text.append(f": {message}")
        text.append(f" [at {first.label}{more}]\n", "dim")
    return text


def skipped_text(report: Report) -> Text:
    """Vectors that were not audited in a dtype, and why."""
    seen: dict[tuple[str, str, str], None] = {}
    for r in report.results:
        if r.status in (Status.UNDEFINED, Status.UNREPRESENTABLE):
            seen[(r.label, r.dtype, f"{r.status.value}: {r.reason}")] = None
    text = Text()
    if seen:
        text.append("Not audited\n", "bold")
    for label, dtype, why in seen:
        text.append(f"  {label} in {dtype}: {why}\n", "dim")
    return text


def verdict_text(report: Report) -> Text:
    """The closing line: what the gate decided."""
    failed = [r for r in report.results if r.status in (Status.FAIL, Status.ERROR)]
    n = len(report.results)
    if not failed:
        return Text(f"PASS: {n} results", "bold green")
    text = Text(f"FAIL: {len(failed)} of {n} results broke the gate\n", "bold red")
    for r in failed[:10]:
        why = "; ".join(r.failures) or (r.reason or "")
        text.append(f"  {r.algorithm} {r.dtype} {r.label}: {why}\n")
    if len(failed) > 10:
        text.append(f"  ... and {len(failed) - 10} more (see --format json)\n", "dim")
    return text


def render(report: Report, style: Style) -> str:
    """The whole table report."""
    parts: list[RenderableType] = [group_table(report)]
    for part in (findings_text(report), headroom_text(report), skipped_text(report)):
        if part.plain:
            parts.append(part)
    parts.append(verdict_text(report))
    return to_text(parts, style)
