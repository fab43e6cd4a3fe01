"""Results grouped per implementation x dtype x source: the test cases of the CI formats."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lsmcheck.results import Group, Recorded, Report, Result, Status

#: Sources that are not files (an annotation cannot point at them).
NOT_FILES = ("-", "--logits")


@dataclass(frozen=True)
class Case:
    """The results of one implementation in one dtype on one source.

    Attributes:
        algorithm, kind, dtype, source: what the case is about.
        results: its results, in input order (when the run was aggregated, only those kept).
        totals: when the run was aggregated, its implementation-and-dtype group, whose counts
            cover every vector of the run (over every source); ``None`` otherwise.
    """

    algorithm: str
    kind: str
    dtype: str
    source: str
    results: tuple[Result, ...]
    totals: Group | None = None

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status is Status.FAIL]

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if r.status is Status.ERROR]

    @property
    def skipped(self) -> bool:
        """Every vector was undefined or unrepresentable in this dtype: nothing was audited."""
        return all(r.status in (Status.UNDEFINED, Status.UNREPRESENTABLE) for r in self.results)

    @property
    def worst(self) -> Result:
        """The result to point at: the worst failure, else the first error, else the worst."""
        if self.failed:
            return max(self.failed, key=_badness)
        if self.errors:
            return self.errors[0]
        return max((r for r in self.results if r.audited), key=_badness, default=self.results[0])

    @property
    def max_ulp(self) -> float | None:
        values = [r.max_ulp for r in self.results if r.max_ulp is not None]
        return max(values, default=None)

    def total(self, field: str) -> int:
        return sum(int(getattr(r, field)) for r in self.results)


def _badness(r: Result) -> tuple[float, int]:
    ulp = -1.0 if r.max_ulp is None or math.isnan(r.max_ulp) else r.max_ulp
    return (ulp, r.overflow + r.underflow + r.nan)


def cases(report: Report) -> list[Case]:
    """One case per (implementation, dtype, source), in the order results first name them."""
    keyed: dict[tuple[str, str, str], list[Result]] = {}
    for r in report.results:
        keyed.setdefault((r.algorithm, r.dtype, r.source), []).append(r)
    totals = {}  # only an aggregated run needs its groups' counts
    if report.aggregated is not None:
        totals = {(g.algorithm, g.dtype): g for g in report.groups}
    return [
        Case(alg, rs[0].kind, dtype, source, tuple(rs), totals.get((alg, dtype)))
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


def why(r: Result) -> str:
    """Why a result failed or errored, on one line."""
    return "; ".join(r.failures) or (r.reason or r.status.value)


def summary(case: Case) -> str:
    """One line on a failing or erroring case: how many vectors, and the worst one.

    For an aggregated run the counts are the whole run's (its group's totals, over every
    source), not the few results it kept."""
    totals = case.totals
    if totals is None:
        n, n_failed, n_errors, scope = len(case.results), len(case.failed), len(case.errors), ""
    else:
        n, n_failed, n_errors = totals.vectors, totals.failed, totals.errors
        scope = " in the whole run (aggregated: some results kept)"
    parts = []
    if n_failed:
        parts.append(f"{n_failed} of {n} vector{'s' if n != 1 else ''} broke the gate")
    if n_errors:
        parts.append(f"{n_errors} of {n} vector{'s' if n != 1 else ''} errored")
    worst = case.worst
    which = "worst" if case.failed else "first"
    return f"{' and '.join(parts)}{scope}; {which} {worst.label}: {why(worst)}"


def verdict(report: Report) -> str:
    """The closing line every format ends with."""
    counts = report.counts()  # the whole run's, also when only some results were kept
    n_bad = counts[Status.FAIL.value] + counts[Status.ERROR.value]
    gone = len(report.baseline.vanished) if report.baseline is not None else 0
    n = sum(counts.values())
    if report.passed and not report.gated:
        return f"audited {n} result{'s' if n != 1 else ''} (no gate set)"
    if report.passed:
        return f"PASS: {n} result{'s' if n != 1 else ''}"
    text = f"FAIL: {n_bad} of {n} results broke the gate"
    if gone:
        text += f", {gone} baseline result{'s' if gone != 1 else ''} vanished"
    return text
