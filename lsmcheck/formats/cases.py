"""Results grouped per implementation x dtype x source: the test cases of the CI formats."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from lsmcheck.report import Group, Recorded, Report
from lsmcheck.results import Result, Status

#: Sources that are not files (an annotation cannot point at them).
NOT_FILES = ("-", "--logits")


@dataclass(frozen=True)
class Case:
    """The results of one implementation in one dtype on one source.

    In an aggregated run (results kept only in part, see :class:`lsmcheck.stream.Accumulator`)
    a case is one implementation in one dtype over every source instead: its counts come from
    the run's group (``totals``), which covers every vector, and ``results`` holds the kept
    ones, which the details list and the worst is chosen from.

    Attributes:
        algorithm, kind, dtype: what the case is about.
        source: the source (in an aggregated run: that of the worst result kept, or ``""``).
        results: its results (kept), in input order.
        totals: the group whose counts the case reports, in an aggregated run; else ``None``.
    """

    algorithm: str
    kind: str
    dtype: str
    source: str
    results: tuple[Result, ...]
    totals: Group | None = None

    @property
    def scope(self) -> str:
        """What the case covers, in words: its source, or every source."""
        return "every source (aggregated)" if self.totals is not None else self.source

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status is Status.FAIL]

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if r.status is Status.ERROR]

    @property
    def vectors(self) -> int:
        return self.totals.vectors if self.totals is not None else len(self.results)

    @property
    def n_failed(self) -> int:
        return self.totals.failed if self.totals is not None else len(self.failed)

    @property
    def n_errors(self) -> int:
        return self.totals.errors if self.totals is not None else len(self.errors)

    @property
    def audited(self) -> int:
        if self.totals is not None:
            return self.totals.audited
        return sum(r.audited for r in self.results)

    @property
    def skipped(self) -> bool:
        """Every vector was undefined or unrepresentable in this dtype: nothing was audited."""
        if self.totals is not None:
            return self.totals.skipped == self.totals.vectors
        return all(r.status in (Status.UNDEFINED, Status.UNREPRESENTABLE) for r in self.results)

    @property
    def worst(self) -> Result | None:
        """The result to point at: the worst failure, else the first error, else the worst
        (``None`` when an aggregated run kept none)."""
        if self.failed:
            return max(self.failed, key=_badness)
        if self.errors:
            return self.errors[0]
        default = self.results[0] if self.results else None
        return max((r for r in self.results if r.audited), key=_badness, default=default)

    @property
    def max_ulp(self) -> float | None:
        if self.totals is not None:
            return self.totals.max_ulp
        values = [r.max_ulp for r in self.results if r.max_ulp is not None]
        return max(values, default=None)

    def total(self, field: str) -> int:
        if self.totals is not None:
            return int(getattr(self.totals, field))
        return sum(int(getattr(r, field)) for r in self.results)


def _badness(r: Result) -> tuple[float, int]:
    ulp = -1.0 if r.max_ulp is None or math.isnan(r.max_ulp) else r.max_ulp
    return (ulp, r.overflow + r.underflow + r.nan)


def cases(report: Report) -> list[Case]:
    """One case per (implementation, dtype, source), in the order results first name them; in
    an aggregated run one per (implementation, dtype), in the order of the run's groups."""
    if report.aggregated is not None:
        kept: dict[tuple[str, str], list[Result]] = {}
        for r in report.results:
            kept.setdefault((r.algorithm, r.dtype), []).append(r)
        out = []
        for g in report.groups:
            case = Case(
                g.algorithm, g.kind, g.dtype, "", tuple(kept.get((g.algorithm, g.dtype), ())), g
            )
            worst = case.worst
            out.append(dataclasses.replace(case, source="" if worst is None else worst.source))
        return out
    keyed: dict[tuple[str, str, str], list[Result]] = {}
    for r in report.results:
        keyed.setdefault((r.algorithm, r.dtype, r.source), []).append(r)
    return [
        Case(alg, rs[0].kind, dtype, source, tuple(rs))
        for (alg, dtype, source), rs in keyed.items()
    ]


def vanished(report: Report) -> dict[tuple[str, str, str], list[Recorded]]:
    """Baseline results this run did not produce, per (implementation, dtype, source)."""
    out: dict[tuple[str, str, str], list[Recorded]] = {}
    if report.baseline is None:
        return out
    for r in report.baseline.vanished:
        out.setdefault((r.algorithm, r.dtype, r.source), []).append(r)
    return out


def more(unlisted: int, kept: int, where: str) -> str:
    """``... and N more``, for ``unlisted`` broken results of which ``kept`` are in the report
    (an aggregated run keeps only some: the others are named nowhere, and saying ``where``
    would send the reader to look for them in vain)."""
    if kept >= unlisted:
        return f"... and {unlisted} more ({where})"
    if kept == 0:
        return (
            f"... and {unlisted} more (not kept in this aggregated run: a larger --keep lists them)"
        )
    return (
        f"... and {unlisted} more ({kept} of them {where}; the rest were not kept in this "
        "aggregated run: a larger --keep lists them)"
    )


def why(r: Result) -> str:
    """Why a result failed or errored, on one line."""
    return "; ".join(r.failures) or (r.reason or r.status.value)


def summary(case: Case) -> str:
    """One line on a failing or erroring case: how many vectors, and the worst one."""
    n = case.vectors
    parts = []
    if case.n_failed:
        parts.append(f"{case.n_failed} of {n} vector{'s' if n != 1 else ''} broke the gate")
    if case.n_errors:
        parts.append(f"{case.n_errors} of {n} vector{'s' if n != 1 else ''} errored")
    text = " and ".join(parts)
    if case.totals is not None:
        text += " over every source (aggregated: some results kept)"
    worst = case.worst
    if worst is None or worst.status not in (Status.FAIL, Status.ERROR):
        return text  # an aggregated run that kept none of them
    which = "worst" if worst.status is Status.FAIL else "first"
    return f"{text}; {which} {worst.label}: {why(worst)}"


def verdict(report: Report) -> str:
    """The closing line every format ends with."""
    counts = report.counts()  # the whole run's, also when only some results were kept
    n_bad = counts[Status.FAIL.value] + counts[Status.ERROR.value]
    gone = len(report.baseline.vanished) if report.baseline is not None else 0
    n = sum(counts.values())
    skipped = report.unaudited()
    unseen = f" ({skipped} not audited)" if skipped else ""  # as the table says it
    if report.passed and not report.gated:
        audited = f"{n - skipped} of {n}" if skipped else str(n)  # as JSON's "audited"
        return f"audited {audited} result{'s' if n != 1 else ''}{unseen} (no gate set)"
    if report.passed:
        return f"PASS: {n} result{'s' if n != 1 else ''}{unseen}"
    text = f"FAIL: {n_bad} of {n} result{'s' if n != 1 else ''} broke the gate{unseen}"
    if gone:
        text += f", {gone} baseline result{'s' if gone != 1 else ''} vanished"
    return text
