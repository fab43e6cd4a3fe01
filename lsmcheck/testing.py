"""Assertions for pytest users: gate your own softmax in your own test suite.

Example::

    from lsmcheck.testing import assert_stable

    def test_my_log_softmax_is_stable():
        assert_stable(my_log_softmax, kind="log_softmax",
                      logits=[[1000.0, 1001.0, 1002.0], [-800.0, -800.0], [0.0, -50.0]],
                      dtypes=["float32", "float64"], max_ulp=4)

When the gate fails, the :class:`AssertionError` message is a plain-text table of the results
that broke it (which vector, which dtype, which threshold, by how much).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lsmcheck.api import _names, as_vectors, audit
from lsmcheck.dtypes import DEFAULT_FORMATS
from lsmcheck.gate import FAIL_ON_CHOICES, UNAUDITED
from lsmcheck.report import Report
from lsmcheck.results import Result, Status
from lsmcheck.vectors import Vector

__all__ = ["assert_stable", "failure_table"]

#: Rows shown in the message before the rest is counted.
MAX_ROWS = 30

#: Characters of a vector's logits shown in the message.
MAX_LOGITS = 40


def assert_stable(
    fn: Callable[[Any], Any],
    kind: str = "log_softmax",
    *,
    logits: Any,
    dtypes: str | Iterable[str] = DEFAULT_FORMATS,
    max_ulp: float | None = None,
    max_rel_error: float | None = None,
    fail_on: str | Iterable[str] = (*FAIL_ON_CHOICES, UNAUDITED),
    precision_bits: int = 113,
) -> Report:
    """Fail with a readable table unless ``fn`` passes the gate on every vector and dtype.

    Args:
        fn: your implementation; it gets a 2-D array in the audited dtype (vectors of one
            length along axis 0) and returns the same shape and dtype (``(batch,)`` for
            logsumexp).
        kind: ``"softmax"``, ``"log_softmax"`` or ``"logsumexp"``.
        logits: one vector (a list of numbers) or several (a list of lists, or an array with
            classes on the last axis).
        dtypes: where to audit it (default float16, float32 and float64).
        max_ulp, max_rel_error: the largest allowed errors (default: no limit).
        fail_on: events of which one occurrence fails (default overflow, underflow, nan and
            unaudited: a vector that could not be audited in a dtype, being undefined or not
            representable there, fails, so that a test never passes what ``fn`` was not given;
            ``()`` for none).  Correct flushes to zero are never counted.
        precision_bits: the reference's first mpmath precision.

    Returns:
        The report, when everything passed.

    Raises:
        AssertionError: a result broke the gate or ``fn`` raised or returned the wrong
            shape or dtype.
    """
    vectors = list(as_vectors(logits))
    fail_on = _names(fail_on, "fail_on")  # one name, or several
    report = audit(
        vectors,
        implementations=[fn],
        kind=kind,
        dtypes=dtypes,
        max_ulp=max_ulp,
        max_rel_error=max_rel_error,
        fail_on=fail_on,
        precision_bits=precision_bits,
    )
    if not report.passed:
        gate = _gate_text(max_ulp, max_rel_error, fail_on)
        raise AssertionError(failure_table(report, vectors, gate))
    return report


def _gate_text(max_ulp: float | None, max_rel_error: float | None, fail_on: Iterable[str]) -> str:
    parts = []
    if max_ulp is not None:
        parts.append(f"max_ulp <= {max_ulp:g}")
    if max_rel_error is not None:
        parts.append(f"max_rel_error <= {max_rel_error:g}")
    events = list(fail_on)
    if events:
        parts.append("no " + ", ".join(events))
    return "; ".join(parts) or "no threshold"


def _logits_text(vector: Vector | None) -> str:
    if vector is None:
        return ""
    text = "[" + ", ".join(f"{v:.6g}" for v in vector.values.tolist()) + "]"
    return text if len(text) <= MAX_LOGITS else text[: MAX_LOGITS - 4] + "...]"


def _row(r: Result, vectors: dict[tuple[str, int], Vector]) -> list[str]:
    why = "; ".join(r.failures) or (r.reason or "")
    ulp = "-" if r.max_ulp is None else f"{r.max_ulp:.4g}"
    return [
        r.label,
        _logits_text(vectors.get((r.source, r.vector))),
        r.dtype,
        ulp,
        str(r.overflow),
        str(r.underflow),
        str(r.nan),
        r.status.value.upper(),
        why,
    ]


def failure_table(report: Report, vectors: Sequence[Vector] = (), gate: str = "") -> str:
    """The results that broke the gate as a plain-text table (the assertion message)."""
    bad = [r for r in report.results if r.status in (Status.FAIL, Status.ERROR)]
    names = ", ".join(dict.fromkeys(f"{r.algorithm} ({r.kind})" for r in report.results))
    head = f"{names} broke the gate in {len(bad)} of {len(report.results)} results"
    if gate:
        head += f" (gate: {gate})"
    by_key = {(v.source, v.index): v for v in vectors}
    header = ["vector", "logits", "dtype", "max ulp", "overflow", "underflow", "nan", "status"]
    header.append("why")
    rows = [_row(r, by_key) for r in bad[:MAX_ROWS]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    right = {3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ]
        return "  ".join([*padded, cells[-1]]).rstrip()

    lines = [head, "", line(header), *[line(row) for row in rows]]
    if len(bad) > MAX_ROWS:
        lines.append(f"... and {len(bad) - MAX_ROWS} more")
    return "\n".join(lines)
