"""The values an audit produces: frozen, plain, and serialisable.

The JSON report schema (``lsmcheck.report/1``) is defined here, next to the types it
serialises.  Later versions add fields and never rename them.  Non-finite numbers are written as
the strings ``"inf"``, ``"-inf"`` and ``"nan"`` so that the document stays strict JSON.
"""

from __future__ import annotations

import json
import math
import operator
import os
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from typing import Any

from lsmcheck.dtypes import get_format
from lsmcheck.exactsum import ExactSum

SCHEMA = "lsmcheck.report/1"


class Status(StrEnum):
    """The verdict on one result.

    ``pass``/``fail`` come from the gate; ``undefined`` marks a vector whose softmax is not a
    vector of numbers (NaN or +inf logit, or no finite logit); ``unrepresentable`` marks an input
    that overflows the dtype when rounded to it; ``error`` marks an implementation that raised.
    """

    PASS = "pass"
    FAIL = "fail"
    UNDEFINED = "undefined"
    UNREPRESENTABLE = "unrepresentable"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One kind of event in one result, in words.

    Attributes:
        kind: ``"overflow"``, ``"underflow"``, ``"underflow_benign"`` or ``"nan"``.
        event: the step that caused it, e.g. ``"exp_overflow"`` (``"output"`` when only the
            output value tells).
        message: what happened and why, e.g. ``"exp(1000) overflowed (...)"``.
        count: how many output elements it affected.
    """

    kind: str
    event: str
    message: str
    count: int


@dataclass(frozen=True)
class Breach:
    """One threshold a result broke, or one way it regressed against a baseline.

    Attributes:
        check: what was checked: ``max_ulp``, ``max_rel_error``, ``overflow``, ``underflow``
            or ``nan`` for a threshold; ``baseline.max_ulp``, ``baseline.overflow``, ... for a
            regression against the baseline.
        value: what the result showed.
        limit: what was allowed (for a regression: the baseline's value, plus the tolerance
            for ``baseline.max_ulp``).
        origin: where the limit came from: ``""`` when given directly (command-line flag or
            Python argument), a config table such as
            ``"pyproject.toml [tool.lsmcheck.thresholds.dtype.float16]"``, or the baseline file.
        message: the whole sentence, e.g. ``"max_ulp 6.5 > 4 by 2.5 (element 3)"``.
    """

    check: str
    value: float
    limit: float
    origin: str
    message: str

    @property
    def excess(self) -> float:
        """By how much the value broke the limit."""
        return self.value - self.limit


@dataclass(frozen=True)
class Element:
    """One output element, for ``--per-element`` and ``explain``.

    Attributes:
        index: position in the output (0 for logsumexp).
        input: the dtype-rounded input logit (``None`` for logsumexp).
        computed: what the implementation returned, as a float (exact for float16/32/64).
        exact: the reference value, 30 significant digits.
        ulp: ``|computed - exact| / ulp(exact)``.
        flags: short labels, e.g. ``("overflow",)``.
    """

    index: int
    input: float | None
    computed: float
    exact: str
    ulp: float
    flags: tuple[str, ...] = ()


def prose_number(x: float) -> str:
    """A limit for prose: two decimals (``11.09``, ``-17.33``), integers as such, big as ``%g``."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e7:  # a gap beyond float64 is -inf
        return str(int(x))
    if abs(x) < 1e5:
        return f"{x:.2f}"
    return f"{x:.4g}"


@dataclass(frozen=True)
class Headroom:
    """How close one vector comes to one measured limit of an implementation in a dtype.

    See :mod:`lsmcheck.explore.headroom`.

    Attributes:
        limit: ``overflow``, ``underflow``, ``flush`` or ``length`` (as ``lsmcheck limits``).
        value: the vector's quantity: its largest logit, its lowest logit minus the largest,
            or its length.
        threshold: the last value of that quantity that holds, as measured.
        headroom: ``(threshold - value) / threshold``: 1 far away, 0 at the limit, negative past.
        warning: within the danger zone or past the limit.
        quantity: what ``value`` is, in words (``largest logit``).
        cause: what happens at the limit, with the dtype (``exp overflows in float16``).
    """

    limit: str
    value: float
    threshold: float
    headroom: float
    warning: bool
    quantity: str
    cause: str

    @property
    def message(self) -> str:
        """In words, e.g. ``largest logit 10.2 of 11.09 before exp overflows in float16: 8%
        headroom`` (the percentage rounded down: a message never claims more room than there
        is).  Built when asked for: most results are never shown one by one."""
        room = self.headroom
        if room < 0:
            how = "past the limit"
        else:
            tenths = math.floor(room * 1000) / 10
            pct = f"{tenths:.1f}" if room < 0.1 else str(math.floor(room * 100))
            how = f"{pct}% headroom"
        return (
            f"{self.quantity} {prose_number(self.value)} of {prose_number(self.threshold)} "
            f"before {self.cause}: {how}"
        )


@dataclass(frozen=True)
class Result:
    """The audit of one vector by one implementation in one dtype.

    Attributes:
        source: where the vector came from.
        vector: its 0-based index in that source.
        line: its 1-based line in a text source, else ``None``.
        length: number of logits.
        algorithm: the implementation's name.
        kind: ``softmax``, ``log_softmax`` or ``logsumexp``.
        dtype: the audited format.
        max_ulp: the largest element ULP error (``None`` when there is no reference).
        mean_ulp: the mean element ULP error.
        max_abs_error: the largest ``|computed - exact|``.
        max_rel_error: the largest ``|computed - exact| / max(|exact|, 2**emin)``, ``2**emin``
            the format's smallest normal number.
        overflow: elements whose computation overflowed (and came out wrong).
        underflow: elements flushed to 0 (or -inf) although the exact result rounds to a
            nonzero (finite) value.
        underflow_benign: elements flushed to 0 whose exact result also rounds to 0.
        nan: NaN outputs.
        sum_error: ``|sum(computed) - 1|`` for softmax, else ``None``.
        argmax_preserved: whether the output's argmax is a maximal input logit (``None``
            for logsumexp).
        worst_index: the element with the largest ULP error.
        findings: the events, in words, with counts.
        status: the verdict (see :class:`Status`).
        failures: for a failed result, each threshold it broke and by how much.
        reason: for ``undefined``/``unrepresentable``/``error``, why.
        elements: per-element detail, when asked for.
        headroom: how close the vector comes to each measured limit of the implementation.
        breaches: the same failures as structured :class:`Breach` values.
        baseline: against a baseline, ``"new"``, ``"unchanged"``, ``"improved"`` or
            ``"regressed"`` (``None`` without a baseline).
        baseline_note: what changed against the baseline, e.g. ``"max_ulp 0.5 -> inf"``.
        known: thresholds the result breaks that its baseline entry already broke (accepted
            by the baseline, so they do not fail it).
        target: the target class, for cross-entropy and gradients (``--target``).
        bound_ratio: the measured error over the algorithm's proven leading-order error bound
            (the largest over the elements; above 1 the bound is broken), ``None`` when no
            bound applies (see :mod:`lsmcheck.bounds`).
        bound_rel_error: the bound, as a relative error, at the element with that ratio.
    """

    source: str
    vector: int
    line: int | None
    length: int
    algorithm: str
    kind: str
    dtype: str
    max_ulp: float | None = None
    mean_ulp: float | None = None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    overflow: int = 0
    underflow: int = 0
    underflow_benign: int = 0
    nan: int = 0
    sum_error: float | None = None
    argmax_preserved: bool | None = None
    worst_index: int | None = None
    findings: tuple[Finding, ...] = ()
    status: Status = Status.PASS
    failures: tuple[str, ...] = ()
    reason: str | None = None
    elements: tuple[Element, ...] | None = None
    headroom: tuple[Headroom, ...] = ()
    breaches: tuple[Breach, ...] = ()
    baseline: str | None = None
    baseline_note: str | None = None
    known: tuple[Breach, ...] = ()
    target: int | None = None
    bound_ratio: float | None = None
    bound_rel_error: float | None = None

    @property
    def label(self) -> str:
        """``source:line`` for text sources, ``source[vector]`` otherwise."""
        return (
            f"{self.source}:{self.line}"
            if self.line is not None
            else f"{self.source}[{self.vector}]"
        )

    @property
    def audited(self) -> bool:
        """Whether the result carries metrics (it had a reference and ran)."""
        return self.max_ulp is not None


#: Every field of :class:`Result` with its default (``_REQUIRED`` for those without one).
_REQUIRED = object()
_RESULT_TEMPLATE: dict[str, Any] = {
    f.name: _REQUIRED if f.default is MISSING else f.default for f in fields(Result)
}


def make_result_fields(**fields: Any) -> dict[str, Any]:
    """Every field of a :class:`Result`, in order: its defaults with ``fields`` over them (the
    required fields not given hold a placeholder until set: see :func:`result_from_dict`).

    A frozen dataclass sets each of its fields through ``object.__setattr__``; the engine makes
    one result per vector, implementation and dtype (21,000 for a 1000-vector default audit,
    1.4 million for 65,536 10-class vectors), so it fills one dictionary of the fields that do
    not change per vector, copies it per result and sets the instance's dictionary at once.
    """
    return {**_RESULT_TEMPLATE, **fields}


def result_from_dict(values: dict[str, Any]) -> Result:
    """The :class:`Result` whose fields are ``values`` (from :func:`make_result_fields`, every
    required field set), several times faster than ``Result(**values)``."""
    if _REQUIRED in values.values():
        missing = sorted(k for k, v in values.items() if v is _REQUIRED)
        raise TypeError(f"result_from_dict: missing {missing}")
    result = object.__new__(Result)
    result.__dict__.update(values)
    return result


#: Every field of a :class:`Result` as a tuple, in field order (what a worker sends back).
result_fields = operator.attrgetter(*_RESULT_TEMPLATE)


def result_from_fields(row: Sequence[Any]) -> Result:
    """The :class:`Result` whose :func:`result_fields` are ``row``: as :func:`result_from_dict`,
    without its defaults and checks, since every field is there (2.6x faster)."""
    result = object.__new__(Result)
    result.__dict__.update(zip(_RESULT_TEMPLATE, row, strict=True))
    return result


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
        return (
            f"{self.source}:{self.line}"
            if self.line is not None
            else f"{self.source}[{self.vector}]"
        )


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


def json_number(x: float | None) -> float | str | None:
    """A float for JSON: non-finite values become the strings ``inf``, ``-inf``, ``nan``."""
    if x is None:
        return None
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _where(r: Result) -> dict[str, Any]:
    return {"source": r.source, "vector": r.vector, "line": r.line}


def result_to_dict(r: Result) -> dict[str, Any]:
    """One result in the JSON schema."""
    d: dict[str, Any] = {
        **_where(r),
        "length": r.length,
        "algorithm": r.algorithm,
        "kind": r.kind,
        "dtype": r.dtype,
        "max_ulp": json_number(r.max_ulp),
        "mean_ulp": json_number(r.mean_ulp),
        "max_abs_error": json_number(r.max_abs_error),
        "max_rel_error": json_number(r.max_rel_error),
        "overflow": r.overflow,
        "underflow": r.underflow,
        "underflow_benign": r.underflow_benign,
        "nan": r.nan,
        "sum_error": json_number(r.sum_error),
        "argmax_preserved": r.argmax_preserved,
        "worst_index": r.worst_index,
        "status": r.status.value,
        "failures": list(r.failures),
        "breaches": [breach_to_dict(b) for b in r.breaches],
        "baseline": r.baseline,
        "baseline_note": r.baseline_note,
        "known": [breach_to_dict(b) for b in r.known],
        "reason": r.reason,
        "target": r.target,
        "bound_ratio": json_number(r.bound_ratio),
        "bound_rel_error": json_number(r.bound_rel_error),
        "findings": [
            {"kind": f.kind, "event": f.event, "message": f.message, "count": f.count}
            for f in r.findings
        ],
        "headroom": [
            {
                "limit": h.limit,
                "value": json_number(h.value),
                "threshold": json_number(h.threshold),
                "headroom": json_number(h.headroom),
                "warning": h.warning,
                "message": h.message,
            }
            for h in r.headroom
        ],
    }
    if r.elements is not None:
        d["elements"] = [
            {
                "index": e.index,
                "input": None if e.input is None else repr_float(e.input, r.dtype),
                "computed": repr_float(e.computed, r.dtype),
                "exact": e.exact,
                "ulp": json_number(e.ulp),
                "flags": list(e.flags),
            }
            for e in r.elements
        ]
    return d


def breach_to_dict(b: Breach) -> dict[str, Any]:
    """One broken threshold in the JSON schema."""
    return {
        "check": b.check,
        "value": json_number(b.value),
        "limit": json_number(b.limit),
        "excess": json_number(b.excess),
        "origin": b.origin,
        "message": b.message,
    }


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


def repr_float(x: float, dtype: str = "float64") -> str:
    """The shortest string that parses back to exactly ``x`` in ``dtype`` (``inf``, ``nan``).

    ``x`` must be a value of ``dtype``; float32 ``0.1`` prints as ``0.1``, not as the float64
    expansion of the same number.
    """
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if dtype == "float64":
        return repr(x)
    return str(get_format(dtype).dtype.type(x))  # "float16/acc=float32": stored in float16


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
