"""``--format table``: one row per implementation x dtype, then what broke, in words."""

from __future__ import annotations

import io
import operator
from collections.abc import Iterable

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from lsmcheck.formats.cases import more
from lsmcheck.formats.style import Style, fmt_ulp, reference_text
from lsmcheck.report import Group, Report
from lsmcheck.results import Headroom, Result, Status


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
    text = buf.getvalue()
    if not style.color:  # rich pads every line to the width; plain text needs no padding
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text


def _count(n: int, colour: str) -> Text:
    return Text(str(n), style=colour if n else "dim")


def _status(status: Status, gated: bool) -> Text:
    """The status cell; without a gate a result is only reported: ``-``."""
    if status is Status.PASS and not gated:
        return Text("-", "dim")
    colours = {Status.PASS: "green", Status.FAIL: "bold red", Status.ERROR: "bold red"}
    return Text(status.value.upper() if status is not Status.PASS else "pass", colours[status])


def _ulp_cell(g: Group) -> Text:
    text = fmt_ulp(g.max_ulp)
    if text == "inf":
        return Text(text, "red")
    if g.max_ulp is not None and g.max_ulp > 1:
        return Text(text, "yellow")
    return Text(text)


def _title(report: Report) -> str:
    vectors = report.vectors()
    plural = "s" if vectors != 1 else ""
    return f"lsmcheck: {vectors} vector{plural}, reference {reference_text(report)}"


def _events(g: Group) -> Text:
    """The event counts of a group in words, for the compact layout."""
    text = Text()
    parts = [
        (g.overflow, "overflow", "red"),
        (g.underflow, "underflow", "yellow"),
        (g.nan, "nan", "red"),
        (g.argmax_lost, "argmax lost", "red"),
        (g.underflow_benign, "ok flush", "dim"),
    ]
    for n, name, colour in parts:
        if n:
            if text.plain:
                text.append(", ")
            text.append(f"{n} {name}", colour)
    return text if text.plain else Text("-", "dim")


#: Headers of the full layout; below its width the compact one (fewer, wrapped columns) is used.
WIDE = (
    "algorithm", "dtype", "max ulp", "mean ulp", "worst vector",
    "overflow", "underflow", "nan", "argmax lost", "status",
)  # fmt: skip


def group_table(report: Report, width: int = 140) -> Table:
    """The summary table: one row per (implementation, dtype).

    When the full layout does not fit in ``width`` columns, a compact one names the events in
    words instead of one column each, so no figure is cut off.
    """
    rows = []
    for g in report.groups:
        benign = f" (+{g.underflow_benign} ok)" if g.underflow_benign else ""
        under = _count(g.underflow, "yellow")
        under.append(benign, "dim")
        rows.append(
            (
                g,
                [
                    Text(g.algorithm),
                    Text(g.dtype),
                    _ulp_cell(g),
                    Text(fmt_ulp(g.mean_ulp)),
                    Text(g.worst.label if g.worst is not None and g.max_ulp else "-"),
                    _count(g.overflow, "red"),
                    under,
                    _count(g.nan, "red"),
                    _count(g.argmax_lost, "red"),
                    _status(g.status, report.gated),
                ],
            )
        )
    needed = sum(
        max([len(h), *(len(cells[i].plain) for _, cells in rows)]) + 2 for i, h in enumerate(WIDE)
    )
    compact = needed > width
    table = Table(
        title=_title(report),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption="(compact layout for a narrow terminal; -f json has every figure)"
        if compact
        else None,
        caption_justify="left",
    )
    for i, header in enumerate(WIDE):
        if compact and header in ("mean ulp", "overflow", "underflow", "nan", "argmax lost"):
            if header == "overflow":
                table.add_column("events", ratio=1)
            continue
        right = header in ("max ulp", "mean ulp", "overflow", "underflow", "nan", "argmax lost")
        fold = header == "worst vector"
        table.add_column(
            header,
            justify="right" if right else "left",
            no_wrap=(not fold and i < 4) or header == "status",
            overflow="fold" if fold else "ellipsis",
        )
    several = len({g.dtype for g in report.groups}) > 1
    previous = None
    for g, cells in rows:
        if several and previous is not None and g.algorithm != previous:
            table.add_section()
        previous = g.algorithm
        if compact:
            cells = [*cells[:3], cells[4], _events(g), cells[9]]
        table.add_row(*cells)
    return table


def findings_table(report: Report) -> Table | None:
    """What broke and why, merged per (implementation, dtype, event)."""
    rows = _finding_rows(report)
    if not rows:
        return None
    grid = Table(
        title="What broke", title_justify="left", title_style="bold", box=None, pad_edge=False
    )
    for name in ("algorithm", "dtype", "event", "n", "where", "why"):
        grid.add_column(name, no_wrap=name != "why", justify="right" if name == "n" else "left")
    grid.show_header = False
    for alg, dtype, kind, n, where, message in rows:
        colour = "red" if kind in ("overflow", "nan") else "yellow"
        grid.add_row(alg, dtype, Text(kind, colour), str(n), Text(where, "dim"), message)
    return grid


def _finding_rows(report: Report) -> list[tuple[str, str, str, int, str, str]]:
    """(algorithm, dtype, kind, elements, where, message) per event, benign flushes left out.

    An aggregated run has the totals already; otherwise the results are merged here.
    """
    if report.aggregated is not None:
        return [
            (f.algorithm, f.dtype, f.kind, f.elements, _where(f.first, f.vectors), f.message)
            for f in report.aggregated.findings
            if f.kind != "underflow_benign"
        ]
    merged: dict[tuple[str, str, str, str], list[tuple[Result, int, str]]] = {}
    for r in filter(_findings, report.results):
        for f in r.findings:
            if f.kind != "underflow_benign":
                key = (r.algorithm, r.dtype, f.kind, f.event)
                merged.setdefault(key, []).append((r, f.count, f.message))
    return [
        (
            alg,
            dtype,
            kind,
            sum(n for _, n, _ in hits),
            _where(hits[0][0].label, len(hits)),
            hits[0][2],
        )
        for (alg, dtype, kind, _), hits in merged.items()
    ]


_findings = operator.attrgetter("findings")
_headroom = operator.attrgetter("headroom")


def _where(first: str, vectors: int) -> str:
    return first + (f" +{vectors - 1}" if vectors > 1 else "")


def headroom_table(report: Report) -> Table | None:
    """Vectors within the danger zone of a measured limit: the closest per group, merged.

    Only results that did not break: one that overflowed, underflowed or gave NaN is in
    "What broke", and a warning that it comes close to a limit would only blur that.
    """
    closest: dict[tuple[str, str, str], tuple[Result, Headroom, int]] = {}
    for r in filter(_headroom, report.results):
        if r.overflow or r.underflow or r.nan:
            continue
        for h in r.headroom:
            if not h.warning or h.headroom < 0:  # past the limit: "What broke" says it
                continue
            key = (r.algorithm, r.dtype, h.limit)
            prev = closest.get(key)
            if prev is None or h.headroom < prev[1].headroom:
                closest[key] = (r, h, prev[2] + 1 if prev else 1)
            else:
                closest[key] = (prev[0], prev[1], prev[2] + 1)
    if not closest:
        return None
    merged: dict[tuple[str, str], list[tuple[str, Result, int]]] = {}
    for (alg, _, _), (r, h, count) in closest.items():
        merged.setdefault((r.dtype, h.message), []).append((alg, r, count))
    grid = Table(
        title="Close to a limit", title_justify="left", title_style="bold", box=None, pad_edge=False
    )
    grid.add_column("where", no_wrap=True)
    grid.add_column("why")
    grid.show_header = False
    for (_, message), hits in merged.items():
        _, first, count = hits[0]
        more = f" +{count - 1}" if count > 1 else ""
        why = Text(", ".join(a for a, _, _ in hits), "bold").append(": " + message, "yellow")
        grid.add_row(Text(first.label + more, "dim"), why)
    return grid


def skipped_text(report: Report) -> Text:
    """Vectors that were not audited in some dtype, and why (one line per vector and reason)."""
    seen: dict[tuple[str, str], list[str]] = {}
    counts = report.counts()
    skipped = counts[Status.UNDEFINED.value] or counts[Status.UNREPRESENTABLE.value]
    for r in report.results if skipped else ():
        if r.status in (Status.UNDEFINED, Status.UNREPRESENTABLE):
            dtypes = seen.setdefault((r.label, f"{r.status.value}: {r.reason}"), [])
            if r.dtype not in dtypes:
                dtypes.append(r.dtype)
    text = Text()
    if seen:
        text.append("\nNot audited", "bold")
    for (label, why), dtypes in seen.items():
        text.append(f"\n  {label} in {', '.join(dtypes)}: {why}", "dim")
    return text


def baseline_text(report: Report) -> Text:
    """The comparison with the baseline: what regressed, improved and vanished."""
    b = report.baseline
    text = Text()
    if b is None:
        return text
    text.append(f"\nAgainst the baseline {b.path}", "bold")
    text.append(
        f" (tolerance {b.tolerance:g} ulp): {b.regressed} regressed, {b.improved} improved, "
        f"{b.unchanged} unchanged, {b.new} new, {len(b.vanished)} vanished"
    )
    for r in report.results:
        if r.baseline in ("regressed", "improved") and r.baseline_note:
            text.append(f"\n  {r.baseline:<9}", "red" if r.baseline == "regressed" else "green")
            text.append(f" {r.algorithm} {r.dtype} {r.label}: {r.baseline_note}")
    for v in b.vanished:
        text.append("\n  vanished ", "red")
        text.append(f" {v.algorithm} {v.dtype} {v.label}")
    return text


def verdict_text(report: Report) -> Text:
    """The closing line: what the gate decided, or that there was no gate."""
    counts = report.counts()
    n = sum(counts.values())
    n_failed = counts[Status.FAIL.value] + counts[Status.ERROR.value]
    skipped = report.unaudited()
    unseen = f" ({skipped} not audited)" if skipped else ""
    if report.aggregated is not None:
        unseen += f" (aggregated: {len(report.results)} results kept in the report)"
    counted = f"{n} result{'s' if n != 1 else ''}{unseen}"
    if report.passed and not report.gated:
        audited = f"{n - skipped} of {counted}" if skipped else counted  # as JSON's "audited"
        return Text(
            f"\nAudited {audited}; no gate set (--max-ulp, --fail-on or a config's thresholds "
            "make this a pass/fail check)",
            "bold",
        )
    if report.passed:
        return Text(f"\nPASS: {counted}", "bold green")
    text = Text(
        f"\nFAIL: {n_failed} of {n} result{'s' if n != 1 else ''} broke the gate{unseen}\n",
        "bold red",
    )
    if report.baseline is not None and report.baseline.vanished:
        text.append(f"  and {len(report.baseline.vanished)} baseline results vanished\n")
    failed = [r for r in report.results if r.status in (Status.FAIL, Status.ERROR)]
    for r in failed[:10]:
        why = "; ".join(r.failures) or (r.reason or "")
        text.append(f"  {r.algorithm} {r.dtype} {r.label}: {why}\n")
    listed = min(len(failed), 10)
    if n_failed > listed:
        line = more(n_failed - listed, len(failed) - listed, "in --format json")
        text.append(f"  {line}\n", "dim")
    return text


def render(report: Report, style: Style) -> str:
    """The whole table report."""
    parts: list[RenderableType] = [group_table(report, style.width)]
    findings = findings_table(report)
    if findings is not None:
        parts.append(findings)
    headroom = headroom_table(report)
    if headroom is not None:
        parts.append(Text(""))
        parts.append(headroom)
    for part in (skipped_text(report), baseline_text(report)):
        if part.plain:
            parts.append(part)
    parts.append(verdict_text(report))
    return to_text(parts, style)
