"""What a whole audit produced: the report, its summaries and the baseline comparison.

:class:`Report` holds every :class:`~lsmcheck.results.Result` with one :class:`Group` per
implementation and dtype, the :class:`Aggregate` totals of a streamed run and the
:class:`BaselineSummary`.  The JSON report schema (``lsmcheck.report/1``) is defined here,
next to the types it serialises (each result as :func:`lsmcheck.results.result_to_dict`
writes it).  Later versions add fields and never rename them.
"""

from __future__ import annotations

import json
import math
import operator
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lsmcheck.exactsum import ExactSum
from lsmcheck.results import Result, Status, _where, json_number, result_to_dict
from lsmcheck.vectors import vector_label

SCHEMA = "lsmcheck.report/1"


@dataclass(frozen=True)
class Group:
    """All results of one implementation in one dtype, summarised (one table row).

    Attributes:
        algorithm, kind, dtype: what the row is about.
        vectors: results in the group.
        audited: results with metrics.
        failed: results with status ``fail``; ``errors``: status ``error``.
        skipped: ``undefined`` plus ``unrepresentable`` results.
        max_ulp: the worst ULP error over the group; ``worst``: the result it came from.
        mean_ulp: the mean of the per-vector mean ULP errors.
        overflow, underflow, underflow_benign, nan: summed counts.
        argmax_lost: audited results whose argmax was not preserved.
        max_ulp_histogram: how many audited results have a max ULP error in each bin
            (:data:`ULP_BINS`; filled by the engine).
        max_bound_ratio: the largest measured-error / proven-bound ratio (``None``: no bound).
    """

    algorithm: str
    kind: str
    dtype: str
    vectors: int
    audited: int
    failed: int
    errors: int
    skipped: int
    max_ulp: float | None
    mean_ulp: float | None
    worst: Result | None
    overflow: int
    underflow: int
    underflow_benign: int
    nan: int
    argmax_lost: int
    max_ulp_histogram: tuple[tuple[str, int], ...] = ()
    max_bound_ratio: float | None = None

    @property
    def status(self) -> Status:
        """``fail`` if any result failed the gate, ``error`` if any raised, else ``pass``."""
        if self.failed:
            return Status.FAIL
        if self.errors:
            return Status.ERROR
        return Status.PASS


@dataclass(frozen=True)
class ReferenceInfo:
    """How the reference was computed.

    Attributes:
        method: ``"mpmath"``: every figure is certified against mpmath's arbitrary precision.
        precision_bits: the starting working precision of mpmath.
        max_precision_bits: the highest precision any vector needed to certify.
        mode: ``"auto"`` (the fast certified tier, mpmath for what it cannot settle) or
            ``"mpmath"`` (mpmath for every element).
        settled: how many output elements each tier settled (``"float64"``,
            ``"double-double"``, ``"mpmath"``), over the whole run.
    """

    method: str
    precision_bits: int
    max_precision_bits: int
    mode: str = "mpmath"
    settled: dict[str, int] = field(default_factory=dict)


#: The bins of :attr:`Group.max_ulp_histogram`: each label holds the results whose max ULP
#: error is at most its bound and above the previous one (``"inf"``: infinite or NaN).
ULP_BINS: tuple[tuple[str, float], ...] = (
    ("0", 0.0),
    ("<=0.5", 0.5),
    ("<=1", 1.0),
    ("<=4", 4.0),
    ("<=16", 16.0),
    ("<=256", 256.0),
    ("<=65536", 65536.0),
    (">65536", sys.float_info.max),
    ("inf", math.inf),
)


@dataclass(frozen=True)
class FindingTotal:
    """One kind of event over a whole run, for one implementation and dtype.

    Attributes:
        algorithm, dtype, kind, event: what it is about (see :class:`Finding`).
        message: the message of its first occurrence.
        elements: output elements affected, over every vector.
        vectors: results in which it occurred.
        first: the label of the first vector it occurred in.
    """

    algorithm: str
    dtype: str
    kind: str
    event: str
    message: str
    elements: int
    vectors: int
    first: str


@dataclass(frozen=True)
class Aggregate:
    """Totals of a run whose per-vector results were aggregated while streaming.

    Set on :attr:`Report.aggregated` when the run kept only some results
    (:attr:`Report.results` then holds, per implementation and dtype, the worst vectors and
    the first failing and skipped ones); the groups and these totals cover every result.

    Attributes:
        results: how many results the run produced in all.
        vectors: how many (source, vector) pairs it audited.
        statuses: how many results have each status.
        findings: every kind of event, per implementation and dtype, with totals.
        skipped: results not audited (undefined or unrepresentable), in all.
    """

    results: int
    vectors: int
    statuses: dict[str, int]
    findings: tuple[FindingTotal, ...]
    skipped: int


def source_key(source: str) -> str:
    """A source as a baseline matches it: ``./data/x.csv``, ``data//x.csv`` and ``data/x.csv``
    name one file (``os.path.normpath``), whichever way a run and its baseline were typed."""
    return source if source == "-" else os.path.normpath(source)


@dataclass(frozen=True)
class Recorded:
    """One result as a baseline file records it (see :mod:`lsmcheck.baseline`).

    Attributes:
        source, vector, line, algorithm, kind, dtype, status: as in :class:`Result`.
        max_ulp, max_rel_error, overflow, underflow, nan: the figures a later run is
            compared with (``None`` for a result without metrics).
    """

    source: str
    vector: int
    line: int | None
    algorithm: str
    kind: str
    dtype: str
    status: str
    max_ulp: float | None
    max_rel_error: float | None
    overflow: int
    underflow: int
    nan: int

    @property
    def key(self) -> tuple[str, int, str, str]:
        """What identifies a result across runs: (source, vector, algorithm, dtype), the
        source as :func:`source_key` spells it."""
        return (source_key(self.source), self.vector, self.algorithm, self.dtype)

    @property
    def label(self) -> str:
        """``source:line`` for text sources, ``source[vector]`` otherwise."""
        return vector_label(self.source, self.line, self.vector)


@dataclass(frozen=True)
class BaselineSummary:
    """How a report compares with a recorded baseline.

    Attributes:
        path: the baseline file.
        tolerance: how many ulp ``max_ulp`` may grow before it is a regression.
        regressed, improved, unchanged, new: how many results are in each state.
        vanished: baseline results that this run did not produce (each is a regression).
    """

    path: str
    tolerance: float
    regressed: int
    improved: int
    unchanged: int
    new: int
    vanished: tuple[Recorded, ...] = ()


@dataclass(frozen=True)
class Report:
    """Everything one audit produced.

    Attributes:
        version: the lsmcheck version.
        reference: how the reference was computed.
        results: one per (vector, implementation, dtype), in input order.
        baseline: the comparison with a baseline, when one was given.
        gated: whether any threshold or baseline judged the results (without one, ``run``
            only reports: every audited result passes).
    """

    version: str
    reference: ReferenceInfo
    results: tuple[Result, ...]
    groups: tuple[Group, ...] = field(default=())
    baseline: BaselineSummary | None = None
    aggregated: Aggregate | None = None
    gated: bool = False

    @property
    def audited(self) -> int:
        """How many results carry metrics (over every result, when aggregated)."""
        if self.aggregated is not None:
            return sum(g.audited for g in self.groups)
        return sum(r.audited for r in self.results)

    @property
    def passed(self) -> bool:
        """True when no result failed the gate or errored, and no baseline result vanished."""
        if self.baseline is not None and self.baseline.vanished:
            return False
        counts = self.counts()
        return not (counts[Status.FAIL.value] or counts[Status.ERROR.value])

    @property
    def exit_code(self) -> int:
        """0 when the report passes, 1 when a result fails the gate."""
        return 0 if self.passed else 1

    def counts(self) -> dict[str, int]:
        """How many results have each status."""
        return dict(self._counts)

    @cached_property
    def _counts(self) -> dict[str, int]:  # read several times by every format
        if self.aggregated is not None:
            return {s.value: self.aggregated.statuses.get(s.value, 0) for s in Status}
        statuses = list(map(_status, self.results))  # counted in C: Enum hashing is slow
        return {s.value: operator.countOf(statuses, s) for s in Status}

    def unaudited(self) -> int:
        """How many results were not audited (undefined or unrepresentable in their dtype, or
        failed for that by ``--fail-on unaudited``), over the whole run when aggregated."""
        if self.aggregated is not None:
            return self.aggregated.skipped
        return sum(
            r.reason is not None and r.status is not Status.ERROR and r.max_ulp is None
            for r in self.results
        )

    def vectors(self) -> int:
        """How many vectors were audited (over the whole run, when aggregated)."""
        if self.aggregated is not None:
            return self.aggregated.vectors
        return len(set(map(_where_key, self.results)))

    def to_json(self, indent: int | None = 2) -> str:
        """The report as a ``lsmcheck.report/1`` JSON document."""
        return json.dumps(report_to_dict(self), indent=indent, allow_nan=False)


_status = operator.attrgetter("status")
_where_key = operator.attrgetter("source", "vector")


def recorded_to_dict(r: Recorded) -> dict[str, Any]:
    """One baseline entry as JSON (the baseline file and the report's ``baseline.vanished``)."""
    return {
        "source": r.source,
        "vector": r.vector,
        "line": r.line,
        "algorithm": r.algorithm,
        "kind": r.kind,
        "dtype": r.dtype,
        "status": r.status,
        "max_ulp": json_number(r.max_ulp),
        "max_rel_error": json_number(r.max_rel_error),
        "overflow": r.overflow,
        "underflow": r.underflow,
        "nan": r.nan,
    }


def baseline_to_dict(b: BaselineSummary) -> dict[str, Any]:
    """The comparison with a baseline in the JSON schema."""
    return {
        "path": b.path,
        "tolerance": b.tolerance,
        "regressed": b.regressed,
        "improved": b.improved,
        "unchanged": b.unchanged,
        "new": b.new,
        "vanished": [recorded_to_dict(r) for r in b.vanished],
    }


def group_to_dict(g: Group) -> dict[str, Any]:
    """One (implementation, dtype) summary in the JSON schema."""
    return {
        "algorithm": g.algorithm,
        "kind": g.kind,
        "dtype": g.dtype,
        "vectors": g.vectors,
        "audited": g.audited,
        "failed": g.failed,
        "errors": g.errors,
        "skipped": g.skipped,
        "max_ulp": json_number(g.max_ulp),
        "mean_ulp": json_number(g.mean_ulp),
        "worst": None if g.worst is None else _where(g.worst),
        "overflow": g.overflow,
        "underflow": g.underflow,
        "underflow_benign": g.underflow_benign,
        "nan": g.nan,
        "argmax_lost": g.argmax_lost,
        "max_bound_ratio": json_number(g.max_bound_ratio),
        "status": g.status.value,
        "max_ulp_histogram": dict(g.max_ulp_histogram),
    }


def report_to_dict(report: Report) -> dict[str, Any]:
    """The whole report in the JSON schema."""
    return {
        "schema": SCHEMA,
        "version": report.version,
        "reference": {
            "method": report.reference.method,
            "precision_bits": report.reference.precision_bits,
            "max_precision_bits": report.reference.max_precision_bits,
            "mode": report.reference.mode,
            "settled": dict(report.reference.settled),
        },
        "results": [result_to_dict(r) for r in report.results],
        "baseline": None if report.baseline is None else baseline_to_dict(report.baseline),
        "summary": {
            "passed": report.passed,
            "gated": report.gated,
            "audited": report.audited,
            "results": len(report.results),
            "statuses": report.counts(),
            "groups": [group_to_dict(g) for g in report.groups],
            "aggregated": _aggregate_to_dict(report.aggregated),
        },
    }


def _aggregate_to_dict(a: Aggregate | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "results": a.results,
        "vectors": a.vectors,
        "skipped": a.skipped,
        "findings": [
            {
                "algorithm": f.algorithm,
                "dtype": f.dtype,
                "kind": f.kind,
                "event": f.event,
                "message": f.message,
                "elements": f.elements,
                "vectors": f.vectors,
                "first": f.first,
            }
            for f in a.findings
        ],
    }


def summarise(results: Sequence[Result]) -> tuple[Group, ...]:
    """One :class:`Group` per (implementation, dtype): by implementation, then dtype."""
    keyed: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        keyed.setdefault((r.algorithm, r.dtype), []).append(r)
    algorithms = list(dict.fromkeys(r.algorithm for r in results))
    dtypes = list(dict.fromkeys(r.dtype for r in results))
    order = sorted(keyed, key=lambda k: (algorithms.index(k[0]), dtypes.index(k[1])))
    groups = []
    for alg, dtype in order:
        rs = keyed[alg, dtype]
        audited = [r for r in rs if r.audited]
        worst = max(audited, key=lambda r: _order(r.max_ulp), default=None)
        means = ExactSum()
        means.add_many(r.mean_ulp for r in audited if r.mean_ulp is not None)
        groups.append(
            Group(
                algorithm=alg,
                kind=rs[0].kind,
                dtype=dtype,
                vectors=len(rs),
                audited=len(audited),
                failed=sum(r.status is Status.FAIL for r in rs),
                errors=sum(r.status is Status.ERROR for r in rs),
                skipped=sum(r.status in (Status.UNDEFINED, Status.UNREPRESENTABLE) for r in rs),
                max_ulp=None if worst is None else worst.max_ulp,
                mean_ulp=means.mean(),
                worst=worst,
                overflow=sum(r.overflow for r in rs),
                underflow=sum(r.underflow for r in rs),
                underflow_benign=sum(r.underflow_benign for r in rs),
                nan=sum(r.nan for r in rs),
                argmax_lost=sum(r.argmax_preserved is False for r in rs),
                max_bound_ratio=max(
                    (r.bound_ratio for r in rs if r.bound_ratio is not None), default=None
                ),
            )
        )
    return tuple(groups)


def _order(x: float | None) -> float:
    """Sort key for ULP errors: NaN and None sort lowest, inf highest."""
    if x is None or math.isnan(x):
        return -1.0
    return x
