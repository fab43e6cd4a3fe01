"""The values the audit of one vector produces: frozen, plain, and serialisable.

One :class:`Result` per vector, implementation and dtype, with its findings, breaches,
elements and headroom.  Each result's part of the JSON report schema (``lsmcheck.report/1``,
the document itself in :mod:`lsmcheck.report`) is defined here, next to the types it
serialises.  Later versions add fields and never rename them.  Non-finite numbers are written
as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` so that the document stays strict JSON.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from typing import Any

from lsmcheck.dtypes import get_format
from lsmcheck.vectors import vector_label


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
        return vector_label(self.source, self.line, self.vector)

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
