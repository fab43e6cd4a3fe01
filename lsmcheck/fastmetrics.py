"""Vectorised metrics against the fast reference, settled element by element.

The definitions are those of :mod:`lsmcheck.metrics` (ULP, absolute and relative error;
overflow, underflow and benign flush).  Here they are computed for whole batches from a
:class:`~lsmcheck.fastref.Values` (a value and an absolute error bound per element), in units of
the ulp of the exact value, where every quantity of interest is a modest number:

* ``ue``: the exponent of ``ulp(exact)``.  It is *settled* when the whole interval the bound
  allows lies in one binade (or entirely below the format's smallest normal, where the ulp is
  the fixed subnormal quantum).
* ``q = exact / 2**ue`` (a double-double) and ``qe``, its bound in ulps.  The ULP error
  ``|c / 2**ue - q|`` is then computed to double-double accuracy, so the reported figure is
  within ``qe + 2**-50 * value`` of the truth; ``qe <= 2**-8`` (0.004 ulp) is required.
* The correctly rounded value ``rint(q) * 2**ue`` is settled when no rounding boundary (a
  half-integer ``q``) lies within ``qe``.  It is only needed where the classification looks at
  it (outputs that are 0, ``±inf`` or carry a traced event) and for the relative error of a
  value whose ``q`` underflowed.

Every element that is not settled is marked in :attr:`Batch.unsettled`; the engine gives those to
the mpmath path (:func:`lsmcheck.reference.exact` and :func:`lsmcheck.metrics.element_error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import Kind
from lsmcheck.dtypes import Format
from lsmcheck.fastref import Values, fast_two_sum, two_sum

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

#: The largest reference error (in ulps of the exact value) the fast tier accepts.
MAX_QE = 2.0**-8
#: Slack for the roundings of the settling tests themselves (relative to the values tested).
_SLACK = 2.0**-100


@dataclass(frozen=True)
class Prepared:
    """A reference kind, in ulp units of one format (see the module docstring).

    Attributes:
        ue: ulp exponent per element.
        qh, ql: ``|exact| / 2**ue`` as a double-double; ``sign``: the sign of the exact value.
        qe: the bound on ``q``, in ulps.
        settled: the ulp binade is settled and ``qe <= MAX_QE``.
        rounded: the exact value correctly rounded to the format (a float64); valid where
            ``round_settled``.
        round_settled: no rounding boundary within the bound.
        exact_zero: the exact value is 0 (``-inf`` counts, as in :mod:`lsmcheck.metrics`).
        minf: the exact value is ``-inf``.
    """

    ue: npt.NDArray[np.int64]
    qh: F64
    ql: F64
    sign: F64
    qe: F64
    settled: Bools
    rounded: F64
    round_settled: Bools
    exact_zero: Bools
    minf: Bools


def prepare(v: Values, fmt: Format) -> Prepared:
    """Bring a reference kind to ``fmt``'s ulp units and settle what can be settled."""
    with np.errstate(all="ignore"):
        return _prepare(v, fmt)


def _prepare(v: Values, fmt: Format) -> Prepared:
    minf = v.minf
    sign = np.where(v.hi < 0, -1.0, 1.0)
    a = np.abs(v.hi)
    b = v.lo * sign  # |value| = a + b (in units of 2**scale)
    err = v.err
    zero = (a == 0) & (b == 0)
    exact_zero = (zero & (err == 0)) | minf
    _, ex = np.frexp(a)
    big_e = ex.astype(np.int64) - 1  # 2**big_e <= a < 2**(big_e + 1)
    pw = np.ldexp(1.0, big_e)
    down = (a == pw) & (b < 0)  # a power of two minus a little: the binade below
    big_e = np.where(down, big_e - 1, big_e)
    pw = np.where(down, pw / 2, pw)
    slack = a * _SLACK
    low = (a - pw) + b - err
    high = (2 * pw - a) - b - err
    in_binade = ((low > slack) & (high > slack)) | (err == 0)
    floor_log2 = big_e + v.scale
    emin, p = fmt.emin, fmt.p
    # below 2**emin the ulp is the fixed subnormal quantum: only 2**emin itself is a boundary
    deep_sub = (floor_log2 <= emin - 2) & (err <= a)
    edge_sub = (floor_log2 == emin - 1) & ((high > slack) | (err == 0))
    zero_sub = zero & (np.ldexp(err, v.scale) < 2.0**emin)
    binade_ok = ((in_binade | deep_sub | edge_sub) & ~zero) | zero_sub
    ue = np.maximum(floor_log2, emin) - p + 1
    ue = np.where(zero | minf, emin - p + 1, ue)
    shift = v.scale - ue
    qh = np.ldexp(a, shift)
    ql = np.ldexp(b, shift)
    qe = np.ldexp(err, shift) * (1 + 2.0**-50) + 2.0**-1073
    qh, ql = np.where(minf, 0.0, qh), np.where(minf, 0.0, ql)
    qe = np.where(minf | exact_zero, 0.0, qe)
    settled = (binade_ok & (qe <= MAX_QE)) | minf
    # the correctly rounded value: rint(q), adjusted when ql moves q across the boundary
    r = np.rint(qh)
    t = (qh - r) + ql
    r = np.where(t > 0.5, r + 1, np.where(t < -0.5, r - 1, r))
    t = (qh - r) + ql
    dist = np.abs(np.abs(t) - 0.5)
    tie = (dist == 0) & (qe == 0)
    r = np.where(tie, 2 * np.rint(0.5 * (qh + ql)), r)  # ties to even (exact q only)
    round_settled = ((dist > qe + np.abs(qh) * _SLACK) | tie) & settled
    rounded = sign * np.ldexp(r, ue)
    rounded = np.where(np.abs(rounded) > fmt.max, sign * np.inf, rounded)
    rounded = np.where(minf, -np.inf, rounded)
    round_settled |= minf | (exact_zero & settled)
    return Prepared(ue, qh, ql, sign, qe, settled, rounded, round_settled, exact_zero, minf)


@dataclass(frozen=True)
class Batch:
    """Per-element metrics of a batch of outputs, shape ``(B, m)``.

    ``unsettled`` marks the elements the fast tier could not settle; their other entries are
    meaningless until the engine fills them in from the mpmath path.
    """

    ulp: F64
    abs_error: F64
    rel_error: F64
    rounded: F64
    exact_zero: Bools
    unsettled: Bools


def measure_batch(c: F64, prep: Prepared, flagged: Bools) -> Batch:
    """Errors of the outputs ``c`` (float64 of the format's values) against ``prep``.

    ``flagged`` marks the elements whose classification looks at the rounded exact value
    (outputs 0 or ``±inf``, or with a traced overflow/flush event).
    """
    with np.errstate(all="ignore"):
        nan = np.isnan(c)
        inf = np.isinf(c)
        cs = np.ldexp(np.abs(c), -prep.ue) * np.where(c < 0, -1.0, 1.0) * prep.sign
        # |c - exact| / ulp = |cs - q|, cs = c / 2**ue * sign(exact) (exact when finite)
        sh, sl = two_sum(cs, -prep.qh)
        sh, sl = fast_two_sum(sh, sl - prep.ql)
        ulp = np.abs(sh)
        abs_error = np.ldexp(ulp, prep.ue)
        q = prep.qh + prep.ql
        rel = np.where(q > 0, ulp / q, np.where(ulp == 0, 0.0, np.inf))
        # c = 0 against a nonzero exact value: exactly 1.  Otherwise the relative error needs
        # q to a relative accuracy the bound may not give (deep values known only in range).
        rel = np.where((c == 0) & ~prep.exact_zero, 1.0, rel)
        rel_unknown = (prep.qe > q * 2.0**-20) & ~prep.exact_zero & (c != 0)
        minf = prep.minf
        ulp = np.where(minf, np.where(c == -np.inf, 0.0, np.inf), ulp)
        abs_error = np.where(minf, np.where(c == -np.inf, 0.0, np.inf), abs_error)
        rel = np.where(minf, np.where(c == -np.inf, 0.0, np.inf), rel)
        inf_ok = inf & (prep.rounded == c)
        for arr in (ulp, abs_error, rel):
            arr[inf & ~minf] = np.where(inf_ok, 0.0, np.inf)[inf & ~minf]
            arr[nan] = np.inf
        unsettled = ~nan & ~prep.settled
        unsettled |= ~nan & (flagged | inf) & ~prep.round_settled
        unsettled |= ~nan & ~inf & rel_unknown & ~minf
        unsettled |= ~nan & ~inf & np.isinf(cs)  # c / ulp(exact) beyond float64
        return Batch(ulp, abs_error, rel, prep.rounded, prep.exact_zero.copy(), unsettled)


def classify(
    kind: Kind,
    c: F64,
    rounded: F64,
    exact_zero: Bools,
    overflow_codes: npt.NDArray[np.uint8],
    flush_codes: npt.NDArray[np.uint8],
) -> tuple[Bools, Bools, Bools, Bools]:
    """``(overflow, underflow, benign, nan)`` masks, as defined in :mod:`lsmcheck.metrics`.

    The same rules as :func:`lsmcheck.metrics.measure`, on arrays of any shape.
    """
    with np.errstate(invalid="ignore"):
        wrong = ~(c == rounded)
        if kind is Kind.SOFTMAX:
            flushed = c == 0
            looks_flushed = flushed & (rounded != 0)
        else:
            flushed = c == -np.inf
            looks_flushed = flushed & np.isfinite(rounded)
        traced_over = overflow_codes != 0
        traced_flush = flush_codes != 0
        overflow = wrong & (
            traced_over | (~traced_flush & ~looks_flushed & np.isinf(c) & np.isfinite(rounded))
        )
        underflow = wrong & ~overflow & (traced_flush | looks_flushed)
        benign = ~wrong & flushed & ~exact_zero & ~traced_over
    return overflow, underflow, benign, np.isnan(c)


def flagged(c: F64, overflow_codes: Any, flush_codes: Any) -> Bools:
    """Elements whose classification needs the correctly rounded exact value."""
    return np.asarray((c == 0) | np.isinf(c) | (overflow_codes != 0) | (flush_codes != 0))


__all__ = ["MAX_QE", "Batch", "Prepared", "classify", "flagged", "measure_batch", "prepare"]
