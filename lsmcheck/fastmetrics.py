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

The events of a batch in words (:func:`~lsmcheck.fastfindings.findings_batch`, the vectorised
:func:`lsmcheck.metrics.findings`) are in :mod:`lsmcheck.fastfindings`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.ddarith import fast_two_sum, two_sum
from lsmcheck.dtypes import Format
from lsmcheck.fastref import Values
from lsmcheck.metrics import ERROR_REL_TOL

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
        unit: ``2.0**ue``, and ``to_units``: ``sign * 2.0**-ue``, where every ``ue`` makes them
            normal numbers (multiplying by them is then ``ldexp``), else ``None``.
        other: where the rounding is not settled (a rounding boundary within the bound), the
            value on the other side of that boundary, else ``rounded``; ``None`` when every
            rounding is settled.  The exact value rounds to ``rounded`` or to ``other``.
        straddle: the values whose bound straddles a power of two ``B`` (``None``: none).
            They are counted in ``settled`` with ``ue`` the binade below ``B``:
            :func:`measure_batch` settles those whose ULP error is at most ``2**-8`` off
            whichever side is true.
        p: the format's precision.
        values: the reference kind itself (its bound, for :func:`_negligible` and the relative
            error of outputs of 0, :func:`_zero_rel`); ``emin``: the format's smallest normal
            exponent.
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
    unit: F64 | None = None
    to_units: F64 | None = None
    other: F64 | None = None
    straddle: Bools | None = None
    p: int = 53
    values: Values | None = None
    emin: int = -1022


def prepare(v: Values, fmt: Format) -> Prepared:
    """Bring a reference kind to ``fmt``'s ulp units and settle what can be settled."""
    with np.errstate(all="ignore"):
        return _prepare(v, fmt)


def _pow2(k: npt.NDArray[np.int64]) -> F64:
    """``2.0**k`` for integer ``k`` in ``[-1022, 1023]``, built from the bits."""
    return ((k + 1023) << 52).view(np.float64)


def _multiplier(k: npt.NDArray[np.int64]) -> F64 | None:
    """``2.0**k`` when every ``k`` is in ``[-1022, 1023]`` (``x *`` it is then ``ldexp``: one
    rounding), else ``None``."""
    kmin, kmax = int(k.min(initial=0)), int(k.max(initial=0))
    return _pow2(k) if kmin >= -1022 and kmax <= 1023 else None


def _ldexp(x: F64, k: npt.NDArray[np.int64], m: F64 | None = None) -> F64:
    """``x * 2**k``, rounded once (as ``np.ldexp``, which is ten times slower); ``m``: the
    :func:`_multiplier` of ``k`` when the caller has it (one computed, three uses)."""
    m = _multiplier(k) if m is None else m
    if m is not None:
        return np.asarray(x * m)
    return np.asarray(np.ldexp(x, k))


def _exponent(a: F64) -> npt.NDArray[np.int64]:
    """``floor(log2 a)`` for ``a > 0`` (0 gives -1075)."""
    biased = (a.view(np.int64) >> 52) & 0x7FF
    e = biased - 1023
    sub = biased == 0
    if sub.any():  # subnormals (and 0): from frexp
        _, ex = np.frexp(a[sub])
        e[sub] = np.where(a[sub] == 0, -1075, ex.astype(np.int64) - 1)
    return e


def _prepare(v: Values, fmt: Format) -> Prepared:
    minf = v.minf
    neg = v.hi < 0
    sign: F64 = np.where(neg, -1.0, 1.0)
    a = np.abs(v.hi)
    b = v.lo * sign  # |value| = a + b (in units of 2**scale)
    err = v.err  # in units of 2**scale (below: err_scale's own units)
    err_scale = v.scale if v.err_scale is None else v.err_scale
    exact = err == 0
    if v.err_scale is not None:
        err = np.ldexp(err, err_scale - v.scale)
    zero = (a == 0) & (b == 0)
    exact_zero = (zero & exact) | minf
    big_e = _exponent(a)  # 2**big_e <= a < 2**(big_e + 1)
    pw = _pow2(np.clip(big_e, -1022, 1023))
    down = (a == pw) & (b < 0)  # a power of two minus a little: the binade below
    if down.any():
        big_e = big_e - down
        pw = np.where(down, pw / 2, pw)
    slack = a * _SLACK
    high = (2 * pw - a) - b - err
    low = (a - pw) + b - err
    in_binade = ((low > slack) & (high > slack)) | exact
    floor_log2 = big_e + v.scale
    emin, p = fmt.emin, fmt.p
    # a value within its bound of a power of two B (a confident softmax's 1 - e**-3000, a
    # log-probability of -1024 - e**-900): measured in the ulps of the binade below B, and
    # settled by measure_batch where the ULP error is small enough not to care which side
    straddle = ~in_binade & ((low > slack) != (high > slack)) & ~zero
    straddle_down = straddle & (low <= slack)  # near the binade's bottom: the one below
    floor_log2 = floor_log2 - straddle_down
    straddle &= floor_log2 >= emin  # both sides normal (2**emin is no ulp boundary)
    # below 2**emin the ulp is the fixed subnormal quantum: only 2**emin itself is a boundary
    binade_ok = in_binade
    low_values = floor_log2 <= emin - 1
    if low_values.any() or zero.any():
        deep_sub = (floor_log2 <= emin - 2) & (err <= a)
        edge_sub = (floor_log2 == emin - 1) & ((high > slack) | exact)
        zero_sub = zero & (np.ldexp(v.err, err_scale) < 2.0**emin)
        binade_ok = ((in_binade | deep_sub | edge_sub) & ~zero) | zero_sub
    binade_ok = binade_ok | straddle
    ue = np.maximum(floor_log2, emin) - p + 1
    ue[zero | minf] = emin - p + 1
    shift = v.scale - ue
    m = _multiplier(shift)
    qh = _ldexp(a, shift, m)
    ql = _ldexp(b, shift, m)
    # rounded up: the product by (1 + 2**-50) covers a normal result's rounding, and 2**-1022
    # ulp (the smallest normal, far above the 2**-1075 a subnormal result can lose; no
    # subnormal constant, as subnormal operands cost x86 a microcode assist per element) a
    # subnormal one's.  A slack of 2**-50 ulp was too coarse where the ulp is huge: the
    # log-probability -3.4e38 of a class masked with float32's lowest, in float32, has an ulp
    # of 2**104, and 2**54 of slack hid its error of about 12 (every such element went to mpmath)
    own = _ldexp(err, shift, m) if v.err_scale is None else _ldexp(v.err, err_scale - ue)
    qe = own * (1 + 2.0**-50) + (v.err > 0) * 2.0**-1022
    qh[minf] = 0.0
    ql[minf] = 0.0
    qe[minf | exact_zero] = 0.0
    settled = (binade_ok & (qe <= MAX_QE)) | minf
    # the correctly rounded value: rint(q), adjusted when ql moves q across the boundary
    r = np.rint(qh)
    t = (qh - r) + ql
    r += (t > 0.5) * 1.0 - (t < -0.5) * 1.0
    t = (qh - r) + ql
    dist = np.abs(np.abs(t) - 0.5)
    tie = (dist == 0) & exact
    if tie.any():
        r = np.where(tie, 2 * np.rint(0.5 * (qh + ql)), r)  # ties to even (exact q only)
    round_settled = ((dist > qe + qh * _SLACK) | tie) & settled
    rounded = _to_format(r, sign, ue, fmt)
    rounded[minf] = -np.inf
    round_settled |= minf | (exact_zero & settled)
    other = None
    open_ = settled & ~round_settled
    if open_.any():  # the boundary near q is the one on t's side: rint(q) +- 1 beyond it
        other = rounded.copy()
        other[open_] = _to_format(r[open_] + np.sign(t[open_]), sign[open_], ue[open_], fmt)
    unit = _multiplier(ue)
    to_units = _multiplier(-ue)
    return Prepared(
        ue, qh, ql, sign, qe, settled, rounded, round_settled, exact_zero, minf,
        unit, None if to_units is None else sign * to_units, other,
        straddle if straddle.any() else None, p, v, emin,
    )  # fmt: skip


def _zero_rel(v: Values, emin: int, where: Bools) -> tuple[F64, F64]:
    """The relative error of an output of 0 at the elements ``where``, ``|v| / max(|v|,
    2**emin)``, and its bound.

    From the value at its own scale (``|hi + lo|`` times ``2**scale``): ``q`` in ulps may have
    underflowed (an exact ``e**-2000`` against float64's ulp).  1 exactly where ``|v|`` is
    surely at least ``2**emin``; 0 where both the value and its bound are below
    ``2**(emin - 1076)``: a relative error below ``2**-1076`` is 0 as a float64.
    """
    hi, lo, err, vs = v.hi[where], v.lo[where], v.err[where], v.scale[where]
    es = vs if v.err_scale is None else v.err_scale[where]
    ai, bi = np.abs(hi), np.where(hi < 0, -lo, lo)
    value = _ldexp(ai + bi, vs - emin)
    bound = _ldexp(err, es - emin) * (1 + 2.0**-50) + value * 2.0**-52 + 2.0**-1073
    small_value = (_exponent(ai + np.abs(bi)) + 1 + vs - emin <= -1077) | ((ai == 0) & (bi == 0))
    small_bound = (_exponent(err) + 1 + es - emin <= -1077) | (err == 0)
    negligible = small_value & small_bound
    normal = value - bound >= 1  # |v| >= 2**emin for certain: exactly 1
    rel = np.where(negligible, 0.0, np.minimum(value, 1.0))
    return rel, np.where(negligible | normal, 0.0, bound)


def _to_format(r: F64, sign: F64, ue: npt.NDArray[np.int64], fmt: Format) -> F64:
    """``sign * r * 2**ue`` (``r`` an integer number of ulps), as the format holds it: ``inf``
    beyond its largest finite value (``r * 2**ue`` is then at least ``max + ulp``)."""
    value = sign * _ldexp(r, ue)
    value[np.abs(value) > fmt.max] = np.inf
    return np.copysign(value, sign)


def take(prep: Prepared, rows: npt.NDArray[np.intp]) -> Prepared:
    """``prep`` restricted to some rows of its batch."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(prep):
        a = getattr(prep, f.name)
        if isinstance(a, Values):
            a = dataclasses.replace(
                a, **{g.name: getattr(a, g.name)[rows] for g in dataclasses.fields(a)
                      if getattr(a, g.name) is not None}
            )  # fmt: skip
        fields[f.name] = a[rows] if isinstance(a, np.ndarray) else a
    return Prepared(**fields)


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
        # |c - exact| / ulp = |cs - q|, cs = c / 2**ue * sign(exact) (exact when finite)
        cs = _ldexp(c * prep.sign, -prep.ue) if prep.to_units is None else c * prep.to_units
        sh, sl = two_sum(cs, -prep.qh)
        sh, sl = fast_two_sum(sh, sl - prep.ql)
        ulp = np.abs(sh)
        abs_error = _ldexp(ulp, prep.ue, prep.unit)
        # relative to |exact| or to the smallest normal, whichever is larger (see
        # metrics.element_error): in ulps, to q or 2**(p - 1); as the ulp is fixed below the
        # smallest normal, the floor needs no accuracy of q there (values known only in range)
        q = prep.qh + prep.ql
        floor = float(2 ** (prep.p - 1))
        qm = np.maximum(q, floor)
        rel = ulp / qm
        czero = c == 0
        special = inf | nan | prep.minf
        # an output of 0 against a value q far below an ulp: q may have underflowed in ulps,
        # and its bound's floor (2**-1022 ulp) may exceed it; from the value itself there
        zero_out = czero & ~prep.exact_zero & (q < 2.0**-900)
        zero_rel = None
        if zero_out.any():
            assert prep.values is not None
            zero_rel = _zero_rel(prep.values, prep.emin, zero_out)
            rel[zero_out] = zero_rel[0]
        if special.any():
            minf = prep.minf
            bad = np.where(minf, np.where(c == -np.inf, 0.0, np.inf), np.inf)
            bad = np.where(inf & ~minf & (prep.rounded == c), 0.0, bad)
            for arr in (ulp, abs_error, rel):
                arr[special] = bad[special]
        # the classification looks at the rounded exact value only through whether it is c,
        # 0 or infinite: a rounding left open (the exact value next to a rounding boundary,
        # e.g. -895.25 - 1e-300 in float16) settles it when both sides answer alike
        open_ = (flagged | inf) & ~prep.round_settled
        if prep.other is not None and open_.any():
            r, o = prep.rounded, prep.other
            alike = ((r == c) == (o == c)) & ((r == 0) == (o == 0)) & (np.isinf(r) == np.isinf(o))
            open_ &= ~alike
        unsettled = ~prep.settled | open_
        if prep.straddle is not None:
            # the error in ulps of B's binade is half that in ulps of the binade below: the
            # figure (below) is within U/2 + qe of both when U + 2 qe <= 2**-7
            # (an infinite or NaN output's error is that whichever side: -inf against
            # -1024 - e**-900 in float16)
            unsettled |= prep.straddle & ~special & ~(ulp + 2 * prep.qe <= 2.0**-7)
        unsettled |= np.isinf(cs) & ~inf  # c / ulp(exact) beyond float64
        unsettled &= ~nan
        # the rows' largest absolute and relative errors, to ERROR_REL_TOL of themselves: the
        # bound qe on the ULP error is absolute (a computed value within qe of the exact one
        # has an error known only to be below 2 qe ulps)
        # the absolute error of an output of 0 is the exact value, known only to its bound (it
        # read 0 for an exact 2.7e-323 known to 2**-1020)
        exact_abs = special | prep.exact_zero
        exact_any = exact_abs.any()
        qe = prep.qe + ulp * 2.0**-50
        if exact_any:
            qe[exact_abs] = 0.0
        d_abs = _ldexp(qe, prep.ue, prep.unit)
        d_rel = qe * (1 + rel) / qm * (1 + 2.0**-40)
        if exact_any:
            d_rel[exact_abs] = 0.0
        if zero_rel is not None:
            d_rel[zero_out] = zero_rel[1]
        known = ~unsettled & ~nan
        # an absolute error below 2**-1076 is 0 as a float64, whatever it is exactly: the
        # log-probability -e**-1e9 of a one-hot row's class computed as 0, or -1e9 - e**-1e9
        # of a masked one computed as -1e9
        maybe = known & (d_abs > 0) & (d_abs < 2.0**-1000)  # (d_abs = 0: already exact)
        if maybe.any():
            negligible = _negligible(ulp[maybe], prep, maybe)
            abs_error[maybe] = np.where(negligible, 0.0, abs_error[maybe])
            d_abs[maybe] = np.where(negligible, 0.0, d_abs[maybe])
            # and so is the relative error of an exact value of at least 1/2 (m + e**-1e4,
            # 1 - e**-2000): below 2**-1075
            big = negligible & (_exponent(prep.qh[maybe]) + prep.ue[maybe] >= -1)
            rel[maybe] = np.where(big, 0.0, rel[maybe])
            d_rel[maybe] = np.where(big, 0.0, d_rel[maybe])
        # likewise a relative error below 2**-1076 (an output of 0 against e**-1200 in float64:
        # 2**-1731 / 2**-1022), known only to be so small where the exact value is deep
        tiny = known & (d_rel > 0) & (rel + d_rel < 2.0**-1076)
        rel[tiny], d_rel[tiny] = 0.0, 0.0
        # (a NaN output's errors are infinite: its row's largest is then certain)
        unsettled |= _maybe_largest(abs_error, d_abs, known, nan)
        unsettled |= _maybe_largest(rel, d_rel, known, nan)
        # A NaN output is wrong whatever its exact value (these formats hold infinities), so
        # it never takes the mpmath path; where its reference was left open (x - max beyond
        # float64: err = inf) the rounded value is a NaN of the fast tier's own, which
        # classify() would read as NaN rounding to NaN, i.e. correct: any number says wrong
        rounded = prep.rounded
        open_nan = nan & np.isnan(rounded)
        if open_nan.any():
            rounded = np.where(open_nan, 0.0, rounded)
        return Batch(ulp, abs_error, rel, rounded, prep.exact_zero.copy(), unsettled)


def _negligible(ulp: F64, prep: Prepared, where: Bools) -> Bools:
    """Whether ``|c - exact|`` is certainly below ``2**-1076`` at the elements ``where``,
    given their ULP errors ``ulp`` as computed: both the computed part, ``ulp * 2**ue``, and
    the reference's bound, ``err * 2**err_scale``, below ``2**-1077``."""
    v = prep.values
    assert v is not None
    err, ue = v.err[where], prep.ue[where]
    scale = (v.scale if v.err_scale is None else v.err_scale)[where]
    computed = (ulp == 0) | (_exponent(ulp * (1 + 2.0**-40)) + 1 + ue <= -1077)
    reference = (err == 0) | (_exponent(err) + 1 + scale <= -1077)
    return np.asarray(computed & reference & np.isfinite(ulp))


def _maybe_largest(e: F64, d: F64, known: Bools, nan: Bools) -> Bools:
    """The ``known`` elements that may hold the largest ``e`` of their row (each within ``d``
    of the truth), in the rows where that largest is not certified to ``ERROR_REL_TOL`` of
    itself, and whose own ``e`` is not: they go to the mpmath path, which certifies each.
    A ``nan`` output's ``e`` is infinite, and so is its row's largest."""
    if known.all():  # the usual batch: no masks to apply (np.where costs 4 to 15 additions)
        lo = (e - d).max(axis=1, initial=-np.inf, keepdims=True)
        hi_each = e + d
    else:
        lo = np.where(known | nan, e - d, -np.inf).max(axis=1, initial=-np.inf, keepdims=True)
        hi_each = np.where(known, e + d, -np.inf)
    hi = hi_each.max(axis=1, initial=-np.inf, keepdims=True)
    with np.errstate(invalid="ignore"):
        certain = (hi <= lo * (1 + ERROR_REL_TOL)) | (hi == lo)  # (inf, or no known element)
    if certain.all():
        return np.zeros(known.shape, np.bool_)
    with np.errstate(invalid="ignore"):
        own = d <= e * ERROR_REL_TOL  # this element's e is certified (0 when d = e = 0)
    return np.asarray(known & ~certain & (hi_each >= lo) & ~own)


def flagged(c: F64, overflow_codes: Any, flush_codes: Any) -> Bools:
    """Elements whose classification needs the correctly rounded exact value."""
    return np.asarray((c == 0) | np.isinf(c) | (overflow_codes != 0) | (flush_codes != 0))


#: Extraction rounds per row before :func:`sum_errors` leaves a row to ``math.fsum``.
_MAX_LEVELS = 30


def sum_errors(c: F64) -> tuple[F64, Bools]:
    """``|sum(row) - 1|`` per row of softmax outputs, correctly rounded, and where settled.

    Each row is summed exactly by error-free extraction (Rump, Ogita & Oishi, "Accurate
    floating-point summation", SIAM J. Sci. Comput. 2008, ExtractVector): with ``sigma`` a power
    of two at least ``2**M max|r|`` and ``2**M >= n + 2``, ``q = (sigma + r) - sigma`` and
    ``r - q`` are exact, every ``q`` is a multiple of ``2**-52 sigma`` below ``2**-M sigma``,
    so their sum (in any order) is exact; the residuals ``r - q`` are extracted again, ~40 bits
    further down each round, until they are all 0.  The sum is then a handful of floats, and
    ``math.fsum`` of them and -1 rounds once.  Rows with a negative or non-finite output, or
    whose residuals reach the subnormal range, are not settled (:func:`lsmcheck.metrics.
    sum_error` sums them).
    """
    b, n = c.shape
    with np.errstate(all="ignore"):
        ok: Bools = np.asarray(np.isfinite(c).all(axis=1) & (c >= 0).all(axis=1))
        big_m = math.ceil(math.log2(n + 2))
        rows = np.flatnonzero(ok)
        r = c[rows]
        parts: list[list[float]] = [[] for _ in range(b)]
        for _ in range(_MAX_LEVELS):
            top = np.abs(r).max(axis=1) if r.size else np.zeros(len(rows))
            live = top > 0
            rows, r, top = rows[live], r[live], top[live]
            if not rows.size:
                break
            k = _exponent(top) + 1 + big_m  # sigma = 2**k >= 2**M top
            deep = k < -1000  # keep every quantity normal: the lemma assumes no underflow
            if deep.any():
                ok[rows[deep]] = False
                rows, r, k = rows[~deep], r[~deep], k[~deep]
            sigma = _pow2(k)[:, None]
            q = (sigma + r) - sigma
            r = r - q
            for row, tau in zip(rows.tolist(), q.sum(axis=1).tolist(), strict=True):
                parts[row].append(tau)
        ok[rows] = False  # residuals left after the last round
        out = np.array([abs(math.fsum([*p, -1.0])) for p in parts]) if b else np.zeros(0)
        return out, ok


__all__ = [
    "MAX_QE",
    "Batch",
    "Prepared",
    "flagged",
    "measure_batch",
    "prepare",
    "sum_errors",
    "take",
]
