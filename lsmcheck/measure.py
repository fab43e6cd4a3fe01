"""Measuring one batch: every implementation's outputs for a batch of equal-length vectors,
against the certified reference of each rounded input, as results (:func:`_measure_batch`,
called by :func:`lsmcheck.audit.audit_chunk` for each batch of a chunk)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck import bounds, fastfindings, fastmetrics, metrics
from lsmcheck.algorithms import Algorithm, Kind, Trace
from lsmcheck.certify import certified, needed_values, value_bounds_of
from lsmcheck.dtypes import Format
from lsmcheck.explore import headroom
from lsmcheck.fastref import DD_TIER, FAST_FORMATS, FLOAT64_TIER, dd_reference, fast_reference
from lsmcheck.options import Options
from lsmcheck.reference import Exact, exact, round_to_format
from lsmcheck.results import (
    Element,
    Finding,
    Result,
    Status,
    make_result_fields,
    result_from_dict,
)
from lsmcheck.vectors import Vector


@dataclass
class _Measured:
    results: dict[tuple[int, int], Result]
    max_bits: int


def _measure_batch(
    vectors: list[Vector],
    batch: npt.NDArray[Any],
    algorithms: list[Algorithm],
    runs: Iterable[list[tuple[Trace, int] | str] | None],
    fmt: Format,
    options: Options,
    tiers: dict[str, int],
) -> _Measured:
    """Measure every implementation's outputs for a batch of equal-length vectors.

    With ``reference="auto"`` the fast tier (:mod:`lsmcheck.fastref`) settles what it can and
    each element it cannot settle goes to the mpmath path: :func:`lsmcheck.reference.exact` for
    its vector (once, shared by every implementation) and
    :func:`lsmcheck.metrics.element_error` for the element.  With ``reference="mpmath"`` every
    element takes the mpmath path.
    """
    x64 = np.asarray(batch, np.float64)
    exacts: dict[int, Exact] = {}

    def exact_row(r: int) -> Exact:
        if r not in exacts:
            exacts[r] = exact(x64[r], fmt, options.precision_bits)
        return exacts[r]

    partial_bits = options.precision_bits  # the most any reference of a few values needed
    tiered = options.reference == "auto" and fmt.storage.name in FAST_FORMATS
    fast = fast_reference(x64, fmt) if tiered else None
    prepared: dict[Kind, fastmetrics.Prepared] = {}
    out: dict[tuple[int, int], Result] = {}
    for ai, (alg, alg_runs) in enumerate(zip(algorithms, runs, strict=True)):
        if alg_runs is None:  # a black box runs once per storage format
            continue
        kind = alg.kind
        ok = [r for r, ran in enumerate(alg_runs) if not isinstance(ran, str)]
        for r, ran in enumerate(alg_runs):
            if isinstance(ran, str):  # a user implementation failed on this vector
                out[r, ai] = _skipped(vectors[r], alg, fmt, Status.ERROR, ran)
        if not ok:
            continue
        if kind.needs_target or options.bounds or fmt.storage.name not in FAST_FORMATS:
            # the exact path, element by element: kinds that depend on a target, the proven
            # bounds, and the formats the fast tier is not certified for (bfloat16, float8)
            for r in ok:
                ran = alg_runs[r]
                assert not isinstance(ran, str)
                ref, values, bound = certified(
                    kind, x64[r], ran[0].out[ran[1]], exact_row(r), fmt, vectors[r].target
                )
                exacts[r] = ref
                n = kind_elements(kind, len(vectors[r].values))
                tiers["mpmath"] = tiers.get("mpmath", 0) + n
                res = _measure_row(
                    vectors[r], x64[r], alg, ran[0], ran[1], ref, (values, bound), fmt, options
                )
                if options.danger_zone is not None and not kind.needs_target:
                    near = headroom.assess(alg, fmt, x64[r], options.danger_zone)
                    res = dataclasses.replace(res, headroom=near)
                out[r, ai] = res
            continue
        trace, sel = _joined(alg_runs, ok)
        n_dd = 0  # elements settled by the double-double second look
        c = np.asarray(trace.out, np.float64)
        over, flush = trace.overflow, trace.flush
        xs = x64 if sel is None else x64[sel]
        if fast is not None:
            if kind not in prepared:
                prepared[kind] = fastmetrics.prepare(fast.of(kind), fmt)
            prep = prepared[kind] if sel is None else fastmetrics.take(prepared[kind], sel)
            flagged = fastmetrics.flagged(c, over, flush)
            b = fastmetrics.measure_batch(c, prep, flagged)
            ulp, abs_e, rel_e = b.ulp, b.abs_error, b.rel_error
            rounded, exact_zero, unsettled = b.rounded, b.exact_zero, b.unsettled
            tier = fast.tier
            if tier == FLOAT64_TIER and unsettled.any():  # a second look, in double-double
                again = np.flatnonzero(unsettled.any(axis=1))
                dd = fastmetrics.prepare(dd_reference(xs[again]).of(kind), fmt)
                b2 = fastmetrics.measure_batch(c[again], dd, flagged[again])
                for whole, part in zip(
                    (ulp, abs_e, rel_e, rounded, exact_zero, unsettled),
                    (b2.ulp, b2.abs_error, b2.rel_error, b2.rounded, b2.exact_zero, b2.unsettled),
                    strict=True,
                ):
                    whole[again] = part
                n_dd = int(again.size * c.shape[1] - b2.unsettled.sum())
                if n_dd:
                    tiers[DD_TIER] = tiers.get(DD_TIER, 0) + n_dd
        else:
            ulp, abs_e, rel_e = (np.empty(c.shape) for _ in range(3))
            rounded, exact_zero = np.empty(c.shape), np.zeros(c.shape, bool)
            unsettled = np.ones(c.shape, bool)
            tier = "mpmath"
        rr, ii = np.nonzero(unsettled)
        by_row = itertools.groupby(zip(rr.tolist(), ii.tolist(), strict=True), key=_first)
        for r, pairs in by_row:
            cols = [i for _, i in pairs]
            x = x64[ok[r]]
            only = needed_values(kind, len(x), cols, ok[r] in exacts or tier == "mpmath")
            if only is None:  # the whole vector's reference, shared by the implementations
                start = exact_row(ok[r])
            else:  # a few elements: those values alone (the row's sum is still computed)
                start = exact(x, fmt, options.precision_bits, only)
            ref, values, _ = certified(kind, x, c[r], start, fmt, None, cols, only)
            if only is None:
                exacts[ok[r]] = ref
            else:
                partial_bits = max(partial_bits, ref.bits)
            done: dict[tuple[float, Any], tuple[float, float, float, float]] = {}
            for i in cols:  # equal outputs of equal logits (a mask) are measured once
                v, ci = values[i], float(c[r, i])
                if (ci, v) not in done:
                    done[ci, v] = (
                        *metrics.element_error(ci, v, fmt, ref.bits),
                        round_to_format(v, fmt),
                    )
                ulp[r, i], abs_e[r, i], rel_e[r, i], rounded[r, i] = done[ci, v]
                exact_zero[r, i] = v == 0 or v == -math.inf  # an mpf
        n_slow = len(rr)
        n_fast = c.size - n_slow - n_dd
        if n_fast:
            tiers[tier] = tiers.get(tier, 0) + n_fast
        if n_slow:
            tiers["mpmath"] = tiers.get("mpmath", 0) + n_slow
        overflow, underflow, benign, nan = metrics.classify(
            kind, c, rounded, exact_zero, over, flush
        )
        rows = _row_stats(kind, xs, c, ulp, abs_e, rel_e, overflow, underflow, benign, nan)
        found = fastfindings.findings_batch(
            (overflow, underflow, benign, nan), over, flush, trace.nan, trace.arg, fmt
        )
        rooms = (
            headroom.assess_rows(alg, fmt, xs, options.danger_zone)
            if options.danger_zone is not None
            else None
        )
        base = _base(alg, fmt)
        for j, r in enumerate(ok):  # j: row in the trace, r: row in the batch
            elements = None
            if options.per_element:
                m = metrics.Measured(
                    c[j], (), ulp[j], abs_e[j], rel_e[j], overflow[j], underflow[j], benign[j],
                    nan[j],
                )  # fmt: skip
                exact_values = metrics.exact_values(kind, exact_row(r))
                own = value_bounds_of(kind, len(x64[r]), exact_row(r))
                elements = metrics.elements(
                    dataclasses.replace(m, exact=exact_values),
                    None if kind.per_vector else x64[r],
                    exact_row(r).rel_bound if own is None else own,
                )
            room = None if rooms is None else rooms[j]
            out[r, ai] = _result(base, vectors[r], found[j], j, rows, elements, room)
    return _Measured(out, max([partial_bits, *(e.bits for e in exacts.values())]))


def _first(pair: tuple[int, int]) -> int:
    return pair[0]


def _joined(
    runs: list[tuple[Trace, int] | str], ok: list[int]
) -> tuple[Trace, npt.NDArray[np.intp] | None]:
    """One trace for the rows in ``ok`` (in order), and their indices (``None``: every row).

    The common case is one trace for the whole batch; when a user implementation failed on
    some vectors, the others ran alone and their rows are stacked.
    """
    first = runs[ok[0]]
    assert not isinstance(first, str)
    whole = len(ok) == len(runs) and all(
        not isinstance(ran, str) and ran[0] is first[0] and ran[1] == r
        for r, ran in enumerate(runs)
    )
    if whole:
        return first[0], None
    picked = [ran for ran in (runs[r] for r in ok) if not isinstance(ran, str)]

    def stack(field: str) -> npt.NDArray[Any]:
        return np.stack([getattr(tr, field)[i] for tr, i in picked])

    trace = Trace(stack("out"), stack("overflow"), stack("flush"), stack("nan"), stack("arg"))
    return trace, np.array(ok)


@dataclass(frozen=True)
class _Rows:
    """Per-row statistics of one implementation's batch (plain Python lists)."""

    worst: list[int]
    max_ulp: list[float]
    mean_ulp: list[float]
    max_abs: list[float]
    max_rel: list[float]
    counts: list[tuple[int, int, int, int]]
    argmax: list[bool | None]
    sum_error: list[float | None]


def _row_stats(
    kind: Kind,
    x64: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    ulp: npt.NDArray[np.float64],
    abs_e: npt.NDArray[np.float64],
    rel_e: npt.NDArray[np.float64],
    overflow: npt.NDArray[np.bool_],
    underflow: npt.NDArray[np.bool_],
    benign: npt.NDArray[np.bool_],
    nan: npt.NDArray[np.bool_],
) -> _Rows:
    """Row maxima, means, counts and argmax checks, all at once."""
    b = c.shape[0]
    worst = np.argmax(ulp, axis=1)
    none = np.zeros(b, np.int64)  # (most batches have no event of a kind: no sum to take)
    masks = (overflow, underflow, benign, nan)
    counts = np.stack([m.sum(axis=1) if m.any() else none for m in masks], 1)
    if kind.per_vector:
        argmax: list[bool | None] = [None] * b
    else:
        # as metrics.argmax_preserved: a maximal input keeps the maximal output (ties allowed)
        top_x = np.max(x64, axis=1, keepdims=True)
        top = x64 == top_x
        with np.errstate(invalid="ignore"):
            if np.count_nonzero(top) == b and not np.isnan(top_x).any():
                # one maximal input per row (a row without one has a NaN maximum): no mask
                best_top = c[np.arange(b), np.argmax(x64, axis=1)]
            else:
                best_top = np.where(top, c, -np.inf).max(axis=1)
            kept = (best_top == c.max(axis=1)) & ~nan.any(axis=1)
        # rows that overflowed or underflowed: the first maximal output must be a top input
        first = top[np.arange(b), np.argmax(c, axis=1)]
        strict = overflow.any(axis=1) | underflow.any(axis=1)
        argmax = np.where(strict, first & ~nan.any(axis=1), kept).tolist()
    return _Rows(
        worst=worst.tolist(),
        max_ulp=ulp[np.arange(b), worst].tolist(),
        mean_ulp=np.mean(ulp, axis=1).tolist(),  # per row, as np.mean of the row alone
        max_abs=np.max(abs_e, axis=1).tolist(),
        max_rel=np.max(rel_e, axis=1).tolist(),
        counts=list(map(tuple, counts.tolist())),
        argmax=argmax,
        sum_error=_sum_errors(c) if kind is Kind.SOFTMAX else [None] * b,
    )


def _sum_errors(c: npt.NDArray[np.float64]) -> list[float | None]:
    """``|sum - 1|`` per row: vectorised where the bound settles it, else ``math.fsum``."""
    values, settled = fastmetrics.sum_errors(c)
    return [
        v if ok else metrics.sum_error(row)
        for v, ok, row in zip(values.tolist(), settled.tolist(), c, strict=True)
    ]


def _base(alg: Algorithm, fmt: Format) -> dict[str, Any]:
    """Every field of a result of ``alg`` in ``fmt`` that does not depend on the vector (the
    others at their defaults, or missing): see :func:`_result`."""
    return make_result_fields(algorithm=alg.name, kind=alg.kind.value, dtype=_label(alg, fmt))


def _result(
    base: dict[str, Any],
    v: Vector,
    findings: tuple[Finding, ...],
    r: int,
    rows: _Rows,
    elements: tuple[Element, ...] | None,
    room: Any = None,
) -> Result:
    """The result of row ``r`` of a measured batch (``room``: its headroom, when assessed),
    from its implementation and dtype's :func:`_base`: one per vector, implementation and dtype
    (1.4 million for 65,536 10-class vectors), so the fields are set in one dictionary."""
    values = base.copy()
    values["source"], values["vector"], values["line"] = v.source, v.index, v.line
    values["length"] = len(v.values)
    (values["overflow"], values["underflow"], values["underflow_benign"],
     values["nan"]) = rows.counts[r]  # fmt: skip
    values["max_ulp"], values["mean_ulp"] = rows.max_ulp[r], rows.mean_ulp[r]
    values["max_abs_error"], values["max_rel_error"] = rows.max_abs[r], rows.max_rel[r]
    values["sum_error"], values["argmax_preserved"] = rows.sum_error[r], rows.argmax[r]
    values["worst_index"], values["findings"] = rows.worst[r], findings
    values["elements"] = elements
    if room is not None:
        values["headroom"] = room
    return result_from_dict(values)


def _identity(v: Vector, alg: Algorithm, fmt: Format) -> dict[str, Any]:
    """The fields that say which vector, implementation and dtype a result is about."""
    return {
        "source": v.source,
        "vector": v.index,
        "line": v.line,
        "length": len(v.values),
        "algorithm": alg.name,
        "kind": alg.kind.value,
        "dtype": _label(alg, fmt),
    }


def _label(alg: Algorithm, fmt: Format) -> str:
    """The dtype a result is reported under: a black box ignores the accumulation format."""
    return fmt.name if alg.accumulates else fmt.storage.name


def kind_elements(kind: Kind, n: int) -> int:
    """Output elements of ``kind`` for a vector of ``n`` logits."""
    return 1 if kind.per_vector else n


def _measure_row(
    v: Vector,
    x: npt.NDArray[np.float64],
    alg: Algorithm,
    trace: Trace,
    row: int,
    ref: Exact,
    certified: tuple[tuple[Any, ...], Any],
    fmt: Format,
    options: Options,
) -> Result:
    """Row ``row`` of ``trace`` measured element by element against the mpmath reference
    ``ref`` and the exact values of its kind with their relative bound, ``certified`` (from
    :func:`lsmcheck.certify.certified`).

    The path for kinds whose exact values depend on the target class, for ``--bounds``, and for
    the formats without a fast tier.
    """
    over, flush, nan_c = trace.overflow[row], trace.flush[row], trace.nan[row]
    values, rel_bound = certified
    target = v.target
    m = metrics.measure(alg.kind, trace.out[row], over, flush, ref, fmt, values)
    found = metrics.findings(m, over, flush, nan_c, trace.arg[row], fmt)
    bound = None
    if options.bounds and not (m.overflow.any() or m.nan.any()):
        bound = bounds.verdict(alg.name, x, ref, fmt, m.abs_error, m.exact, options.block, target)
    if bound is not None and bound.over and not m.underflow.any():  # else underflow explains it
        found += (_beyond_bound(alg, fmt, bound),)
    worst = int(np.argmax(m.ulp))
    return Result(
        **_identity(v, alg, fmt),
        max_ulp=float(m.ulp[worst]),
        mean_ulp=float(np.mean(m.ulp)),
        max_abs_error=float(np.max(m.abs_error)),
        max_rel_error=float(np.max(m.rel_error)),
        overflow=int(m.overflow.sum()),
        underflow=int(m.underflow.sum()),
        underflow_benign=int(m.benign.sum()),
        nan=int(m.nan.sum()),
        sum_error=metrics.sum_error(m.computed) if alg.kind is Kind.SOFTMAX else None,
        argmax_preserved=None
        if alg.kind.per_vector or alg.kind.is_grad
        else metrics.argmax_preserved(x, m.computed, bool(m.overflow.any() or m.underflow.any())),
        worst_index=worst,
        findings=found,
        elements=metrics.elements(m, None if alg.kind.per_vector else x, rel_bound)
        if options.per_element
        else None,
        target=target,
        bound_ratio=None if bound is None else bound.ratio,
        bound_rel_error=None if bound is None else bound.bound_rel,
    )


def _beyond_bound(alg: Algorithm, fmt: Format, b: bounds.Verdict) -> Finding:
    return Finding(
        "beyond_bound",
        "output",
        f"the error is {b.ratio:.3g} times the proven leading-order bound of {alg.name} in "
        f"{fmt.name} (relative {b.bound_rel:.3g}): a defect, or not the algorithm it claims",
        b.over,
    )


def _skipped(v: Vector, alg: Algorithm, fmt: Format, status: Status, reason: str) -> Result:
    return Result(
        **_identity(v, alg, fmt),
        status=status,
        reason=reason,
    )
