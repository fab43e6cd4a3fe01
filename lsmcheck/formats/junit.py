"""``--format junit``: JUnit XML, as GitLab, Jenkins and the GitHub test-report actions read it.

One ``<testsuite>`` per implementation and one ``<testcase>`` per implementation x dtype x
source.  A case with a result that broke the gate carries a ``<failure>`` whose ``message``
names the broken threshold and the worst vector, and whose text lists every failing vector; a
case whose implementation raised or returned the wrong thing carries an ``<error>``; a case in
which no vector could be audited (undefined or unrepresentable in that dtype) is
``<skipped>``.  Against a baseline, results that vanished become failing cases of their own.
A case's ``file`` is its input's path relative to the current directory (:meth:`Style.file`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from lsmcheck.formats.cases import NOT_FILES, Case, cases, more, summary, vanished, why
from lsmcheck.formats.style import Style, fmt_ulp
from lsmcheck.report import Report

#: Failing vectors listed in a failure's text before the rest is counted.
MAX_LISTED = 100

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    """Drop the characters XML 1.0 cannot hold (e.g. NUL in an exception message)."""
    return _NOT_XML.sub("\ufffd", text)


def _testcase(suite: ET.Element, case: Case, style: Style) -> dict[str, int]:
    element = ET.SubElement(
        suite,
        "testcase",
        {
            "classname": _clean(f"lsmcheck.{case.algorithm}"),
            "name": _clean(f"{case.dtype} {case.scope}"),
        },
    )
    worst = case.worst
    if case.source and case.source not in NOT_FILES:
        element.set("file", _clean(style.file(case.source)))
        if worst is not None and worst.line is not None:
            element.set("line", str(worst.line))
    counts = {"tests": 1, "failures": 0, "errors": 0, "skipped": 0}
    if case.n_failed or case.n_errors:
        kind = "errors" if case.n_errors else "failures"
        counts[kind] = 1
        bad = case.errors + case.failed  # the kept ones, listed
        lines = [f"{r.label}: {r.status.value}: {why(r)}" for r in bad[:MAX_LISTED]]
        unlisted = case.n_failed + case.n_errors - len(lines)
        if unlisted > 0:
            lines.append(more(unlisted, len(bad) - len(lines), "in the JSON report"))
        detail = ET.SubElement(
            element,
            kind[:-1],  # error, failure
            {
                "message": _clean(summary(case)),
                "type": "lsmcheck." + ("error" if case.n_errors else "fail"),
            },
        )
        detail.text = _clean("\n".join(lines))
    elif case.skipped:
        counts["skipped"] = 1
        first = case.results[0] if case.results else None
        reason = "nothing audited" if first is None else (first.reason or first.status.value)
        ET.SubElement(element, "skipped", {"message": _clean(reason)})
    out = ET.SubElement(element, "system-out")
    out.text = _clean(_stats(case))
    return counts


def _stats(case: Case) -> str:
    n = case.vectors
    text = (
        f"{case.algorithm} ({case.kind}) in {case.dtype} on {case.scope}: "
        f"{n} vector{'s' if n != 1 else ''}, {case.audited} audited, "
        f"max ulp {fmt_ulp(case.max_ulp)}, "
        f"overflow {case.total('overflow')}, underflow {case.total('underflow')}, "
        f"nan {case.total('nan')}"
    )
    notes = [f"{r.label}: {r.baseline}: {r.baseline_note}" for r in case.results if r.baseline_note]
    known = [f"{r.label}: known: {b.message}" for r in case.results for b in r.known]
    return "\n".join([text, *notes, *known])


def render(report: Report, style: Style) -> str:
    """The report as a JUnit XML document."""
    root = ET.Element("testsuites", {"name": "lsmcheck"})
    suites: dict[str, ET.Element] = {}
    totals: dict[str, dict[str, int]] = {}

    def suite_for(algorithm: str) -> ET.Element:
        if algorithm not in suites:
            suites[algorithm] = ET.SubElement(root, "testsuite", {"name": _clean(algorithm)})
            totals[algorithm] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        return suites[algorithm]

    for case in cases(report):
        counts = _testcase(suite_for(case.algorithm), case, style)
        for k, v in counts.items():
            totals[case.algorithm][k] += v
    for (algorithm, dtype, source), gone in vanished(report).items():
        element = ET.SubElement(
            suite_for(algorithm),
            "testcase",
            {"classname": _clean(f"lsmcheck.{algorithm}"), "name": _clean(f"{dtype} {source}")},
        )
        assert report.baseline is not None
        labels = ", ".join(r.label for r in gone[:MAX_LISTED])
        failure = ET.SubElement(
            element,
            "failure",
            {
                "message": _clean(
                    f"{len(gone)} result{'s' if len(gone) != 1 else ''} recorded in "
                    f"{report.baseline.path} vanished from this run"
                ),
                "type": "lsmcheck.vanished",
            },
        )
        failure.text = _clean(f"vanished: {labels}")
        totals[algorithm]["tests"] += 1
        totals[algorithm]["failures"] += 1
    grand = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for algorithm, suite in suites.items():
        for k, v in totals[algorithm].items():
            suite.set(k, str(v))
            grand[k] += v
    for k, v in grand.items():
        root.set(k, str(v))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
