"""``--format markdown``: a summary for a pull-request comment or ``$GITHUB_STEP_SUMMARY``.

A heading with the verdict, a GitHub-flavoured table with one row per implementation x dtype,
then the failing results and the comparison with the baseline as lists.
"""

from __future__ import annotations

from lsmcheck.formats.cases import more, verdict, why
from lsmcheck.formats.style import Style, fmt_ulp, reference_text
from lsmcheck.report import Report
from lsmcheck.results import Status

#: Failing results listed before the rest is counted.
MAX_LISTED = 20

_SPECIAL = "\\`*<|~"


def escape(text: str) -> str:
    """Text safe in a table cell or list item, on one line.

    Markdown punctuation is backslash-escaped; an underscore only where it could start or end
    emphasis (inside a word, as in ``max_ulp``, it cannot), a ``]`` only before ``(`` (a
    link); the ``[tool.lsmcheck]`` in a message stays readable.
    """
    text = " ".join(text.split())
    out = []
    for i, c in enumerate(text):
        if c == "_":
            inside = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            out.append(c if inside else "\\_")
        elif c == "]" and text[i + 1 : i + 2] == "(":
            out.append("\\]")
        else:
            out.append("\\" + c if c in _SPECIAL else c)
    return "".join(out)


def render(report: Report, style: Style) -> str:
    """The markdown summary."""
    n_vectors = report.vectors()
    mark = ("PASS" if report.gated else "none set") if report.passed else "FAIL"
    lines = [
        f"### lsmcheck: {escape(verdict(report))}",
        "",
        f"{n_vectors} vector{'s' if n_vectors != 1 else ''}, reference "
        f"{reference_text(report)}. Gate: **{mark}**.",
        "",
        "| algorithm | dtype | max ulp | mean ulp | worst vector | overflow | underflow "
        "| nan | status |",
        "|---|---|--:|--:|---|--:|--:|--:|---|",
    ]
    for g in report.groups:
        worst = g.worst.label if g.worst is not None and g.max_ulp else "-"
        status = g.status.value
        cells = [
            escape(g.algorithm),
            escape(g.dtype),
            fmt_ulp(g.max_ulp),
            fmt_ulp(g.mean_ulp),
            escape(worst),
            str(g.overflow),
            str(g.underflow),
            str(g.nan),
            f"**{status.upper()}**"
            if g.status is not Status.PASS
            else (status if report.gated else "-"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    bad = [r for r in report.results if r.status in (Status.FAIL, Status.ERROR)]
    counts = report.counts()  # the whole run's: an aggregated run kept only some of them
    n_bad = counts[Status.FAIL.value] + counts[Status.ERROR.value]
    if n_bad:
        lines += ["", "**What broke the gate**", ""]
        for r in bad[:MAX_LISTED]:
            lines.append(f"- {escape(f'{r.algorithm} {r.dtype} {r.label}: {why(r)}')}")
        listed = min(len(bad), MAX_LISTED)
        if n_bad > listed:
            lines.append("- " + more(n_bad - listed, len(bad) - listed, "in the JSON report"))
    lines += _baseline(report)
    return "\n".join(lines) + "\n"


def _baseline(report: Report) -> list[str]:
    b = report.baseline
    if b is None:
        return []
    lines = [
        "",
        f"**Against the baseline {escape(b.path)}** (tolerance {b.tolerance:g} ulp): "
        f"{b.regressed} regressed, {b.improved} improved, {b.unchanged} unchanged, "
        f"{b.new} new, {len(b.vanished)} vanished",
        "",
    ]
    for r in report.results:
        if r.baseline in ("regressed", "improved") and r.baseline_note:
            text = f"{r.baseline}: {r.algorithm} {r.dtype} {r.label}: {r.baseline_note}"
            lines.append(f"- {escape(text)}")
    for v in b.vanished[:MAX_LISTED]:
        lines.append(f"- {escape(f'vanished: {v.algorithm} {v.dtype} {v.label}')}")
    return lines
