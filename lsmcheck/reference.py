"""Certified exact values of softmax, log-softmax and logsumexp (mpmath).

The reference is computed from the logits *as rounded to the audited dtype* (so the audit
measures the algorithm, not the rounding of the input), in a cancellation-free form
(Blanchard, Higham & Higham, "Accurately computing the log-sum-exp and softmax functions",
IMA J. Numer. Anal. 41(4), 2021)::

    m   = max x,  k = an index with x_k = m
    d_j = x_j - m                       (exact: computed without rounding)
    s   = sum_{j != k} exp(d_j)         (positive terms: no cancellation)
    L   = log1p(s)
    softmax_i     = exp(d_i) / (1 + s)
    log_softmax_i = d_i - L             (both terms <= 0: no cancellation)
    logsumexp     = m + L               (may cancel when m < 0: bounded below)

At working precision ``P`` every mpmath operation has relative error at most
``u = 2**(1-P)`` (basic arithmetic is correctly rounded; exp/log carry guard bits).  Summing the
bounds gives a relative error of at most ``4(n+4)u`` for every softmax and log-softmax element
(the factor 4 is a margin over the first-order sum), and for logsumexp an absolute error of at
most ``4(n+2)u|L| + u|m + L|`` (``m + L`` is formed unrounded where that takes at most
:data:`MAX_BITS` bits: the second term is then 0; likewise the top probability ``1 - t``).
A value is *certified* for a target format when its bound is below ``2**-80`` relative and the
whole interval it allows rounds to the same value of the format with the same ulp; otherwise
the precision is doubled and everything recomputed (as Herbie's ground truth does).
``x = [710, 0]`` shows why: ``log_softmax[0] = -log1p(e**-710)`` is
``-4.476e-309``, which ``x - logsumexp(x)`` evaluated at 200 digits returns as 0.

Vectors whose softmax is not a number follow a policy and get no reference values:
a NaN logit (every output is NaN), a ``+inf`` logit (softmax is only a limit), or no finite
logit at all (every logit ``-inf``: softmax is 0/0).  ``-inf`` logits are masked classes:
their probability is exactly 0 and their log-probability exactly ``-inf``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from lsmcheck.dtypes import Format

#: Every certified value is within this relative distance of the true value.
TARGET_REL_ERROR = 2.0**-80
#: A bug guard: the doubling never needs to go this far for any float64 input.
MAX_BITS = 1 << 16

#: An mpmath number (mpmath ships no type hints); ``mpf`` builds one.
Mpf: TypeAlias = Any


def mpf(x: Any) -> Mpf:
    """``mpmath.mpf(x)``.

    mpmath is imported where it is first needed, not with this module: a run whose elements
    the fast tiers settle (:mod:`lsmcheck.fastref`) never loads it (0.07 s of start-up).
    """
    import mpmath

    return mpmath.mpf(x)


@dataclass(frozen=True)
class Exact:
    """Reference values for one vector, certified for one format.

    Attributes:
        softmax: exact probabilities (``0`` for masked classes).
        log_softmax: exact log-probabilities (``-inf`` for masked classes).
        logsumexp: the exact log-sum-exp.
        bits: the mpmath working precision that certified every value.
        undefined: why the vector has no reference (the policy), else ``None``; the value
            tuples are then empty.
        rel_bound: every value is within this relative distance of the true value (0: every
            value is exact); at most :data:`TARGET_REL_ERROR` once certified (an mpmath
            number: at a few thousand bits it is below float64's range).
        value_bounds: each value's own relative bound (at most ``rel_bound``), numbered as
            :func:`exact`'s ``only``; ``None``: ``rel_bound`` for each.
    """

    softmax: tuple[Mpf, ...]
    log_softmax: tuple[Mpf, ...]
    logsumexp: Mpf
    bits: int
    undefined: str | None = None
    rel_bound: Mpf = TARGET_REL_ERROR
    value_bounds: tuple[Mpf, ...] | None = None


def undefined_reason(values: npt.NDArray[np.float64]) -> str | None:
    """Why softmax of ``values`` is not a vector of numbers, or ``None`` when it is."""
    nan = np.flatnonzero(np.isnan(values))
    if nan.size:
        return f"NaN logit at index {nan[0]}: every output is NaN"
    pos = np.flatnonzero(values == np.inf)
    if pos.size:
        return f"+inf logit at index {pos[0]}: softmax is only a limit there"
    if not np.isfinite(values).any():
        return "no finite logit (all -inf): softmax is 0/0"
    return None


def round_to_format(v: Mpf, fmt: Format) -> float:
    """``v`` correctly rounded (to nearest, ties to even) to ``fmt``, as a float.

    ``v`` is rounded on the grid of ``p``-bit significands (subnormals: the fixed quantum
    ``2**(emin - p + 1)``); a result beyond the largest finite value overflows, to ``±inf``,
    or to NaN in a format without infinities (float8_e4m3fn: 464 -> 448, 465 -> NaN; see
    :mod:`lsmcheck.dtypes`).  Exact for every format up to float64.
    """
    import mpmath

    if not mpmath.isfinite(v):
        return float(v) if fmt.has_inf or mpmath.isnan(v) else math.nan
    sign, man, exp, bc = v._mpf_
    if man == 0:
        return -0.0 if sign else 0.0
    top = exp + bc - 1  # 2**top <= |v| < 2**(top + 1)
    if top < fmt.emin - fmt.p:  # below half the smallest subnormal
        return -0.0 if sign else 0.0
    over = math.copysign(fmt.overflow_value, -1.0 if sign else 1.0)
    if top > fmt.emax:
        return over
    q = max(top, fmt.emin) - fmt.p + 1
    if exp < q:
        shift = q - exp
        r = man >> shift
        rem = man & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and r & 1):
            r += 1
    else:
        r, q = man << (exp - q), q
    if r.bit_length() - 1 + q > fmt.emax:  # rounded up to 2**(emax + 1)
        return over
    rounded = math.ldexp(r, q)
    if rounded > fmt.max:  # float8_e4m3fn: 480 is a NaN code, not a number
        return over
    return -rounded if sign else rounded


def ulp_exponent(v: Mpf, fmt: Format) -> int:
    """``k`` such that ``ulp(v) = 2**k`` in ``fmt``.

    ``ulp(y) = 2**(max(floor(log2|y|), emin) - p + 1)``; ``ulp(0)`` is the smallest subnormal.
    """
    import mpmath

    if not mpmath.isfinite(v) or v == 0:
        return fmt.emin - fmt.p + 1
    _, _, exp, bc = v._mpf_
    return int(max(exp + bc - 1, fmt.emin) - fmt.p + 1)


def _settled(v: Mpf, rel: Mpf, fmt: Format, side: int = 0) -> bool:
    """Whether every value the bound allows rounds to the same value with the same ulp.

    The bound allows the magnitudes within relative distance ``rel`` of ``v``; with ``side``
    -1 (+1) only those not above (not below) ``|v|``: ``v`` was nudged off a power of two the
    true value is known to lie strictly below (above) in magnitude (see :func:`_nudge`).
    """
    import mpmath

    if rel == 0 or not mpmath.isfinite(v) or v == 0:
        return True
    if rel > TARGET_REL_ERROR:
        return False
    _, _, _, bc = v._mpf_
    with mpmath.workprec(bc + 2 * int(-mpmath.log(rel, 2)) + 64):  # the ends exactly enough
        lo = v if side > 0 else v * (1 - rel)
        hi = v if side < 0 else v * (1 + rel)
    r_lo, r_hi = round_to_format(lo, fmt), round_to_format(hi, fmt)
    same = r_lo == r_hi or (math.isnan(r_lo) and math.isnan(r_hi))  # both overflow to NaN
    return same and ulp_exponent(lo, fmt) == ulp_exponent(hi, fmt)


def _power_of_two(v: Mpf) -> bool:
    import mpmath

    return bool(mpmath.isfinite(v) and v != 0 and v._mpf_[1] == 1)


def _nudge(v: Mpf, side: int, bits: int) -> Mpf:
    """``v`` moved by ``2**-(bits+16)`` of itself, down (side -1) or up (+1) in magnitude.

    Used where the working precision absorbed a positive term into a power of two: the true
    value is then strictly on one side of ``v``, closer to it than any working precision can
    show, and the nudged value lies between the two, in the true value's binade.
    """
    import mpmath

    with mpmath.workprec(bits + 32):
        return v * (1 + side * mpf(2) ** -(bits + 16))


def exact(
    values: npt.NDArray[np.float64],
    fmt: Format,
    start_bits: int = 113,
    only: Collection[int] | None = None,
) -> Exact:
    """The certified reference of one vector of (already dtype-rounded) logits.

    Parameters
    ----------
    values : 1-D float64 array
        The logits as rounded to ``fmt``; every value is exactly representable.
    fmt : Format
        The format whose rounding and ulp the certification must settle.
    start_bits : int
        The first mpmath working precision tried; it is doubled until every value is certified.
    only : indices, optional
        Compute and certify only these values, numbered as ``softmax`` (``0 .. n-1``), then
        ``log_softmax`` (``n .. 2n-1``), then ``logsumexp`` (``2n``); the others are ``None``.
        For the few elements of a long vector the fast tiers leave open: the sum over every
        logit is still computed, but not the ``2n + 1`` values and their certification.

    Examples
    --------
    >>> import numpy as np
    >>> from lsmcheck.dtypes import FORMATS
    >>> r = exact(np.array([710.0, 0.0]), FORMATS["float64"])
    >>> mpmath.nstr(r.log_softmax[0], 5)
    '-4.4762e-309'
    """
    reason = undefined_reason(values)
    if reason is not None:
        return Exact((), (), mpf("nan"), start_bits, undefined=reason)
    wanted = None if only is None else frozenset(only)
    bits = start_bits
    while bits <= MAX_BITS:
        result, every_bound, sides = _evaluate(values, bits, wanted)
        flat, bounds = _flat(result), every_bound
        if wanted is not None:
            keep = sorted(wanted)
            flat, bounds, sides = ([a[i] for i in keep] for a in (flat, bounds, sides))
        # a vector of many equal logits (a mask of -1e9s) has as many equal values: each
        # distinct one is checked once
        checks = dict.fromkeys(zip(flat, bounds, sides, strict=True))
        if all(_settled(v, b, fmt, side) for v, b, side in checks):
            return dataclasses.replace(
                result, rel_bound=_largest(flat, bounds), value_bounds=tuple(every_bound)
            )
        bits *= 2
    raise RuntimeError(f"reference not certified at {MAX_BITS} bits: {values!r}")


def _largest(values: list[Mpf], bounds: list[Mpf]) -> Mpf:
    """The largest relative bound of the values that can be off (finite and nonzero)."""
    import mpmath

    live = [b for v, b in zip(values, bounds, strict=True) if mpmath.isfinite(v) and v != 0]
    return max(live, default=mpf(0))


def _flat(r: Exact) -> list[Mpf]:
    return [*r.softmax, *r.log_softmax, r.logsumexp]


def _evaluate(
    values: npt.NDArray[np.float64], bits: int, only: frozenset[int] | None = None
) -> tuple[Exact, list[Mpf], list[int]]:
    """Values at working precision ``bits``, their relative error bounds and known sides
    (the values not in ``only`` are ``None``; see :func:`exact`).

    A value that came out exactly equal to its anchor although the true value differs from it
    by a positive term the precision absorbed (``s`` beside a tie's ``1/c``, ``log1p(s)`` beside
    ``d_i`` or ``m``) is nudged to the known side (:func:`_nudge`): where the anchor is a power
    of two or a rounding tie of the format, the side decides the ulp binade or the rounding,
    which no finite precision would settle.
    """
    import mpmath

    finite = np.isfinite(values)
    m_float = float(values[finite].max())
    k = int(np.flatnonzero(values == m_float)[0])
    n = int(finite.sum())
    with mpmath.workprec(bits):
        u = mpf(2) ** (1 - bits)
        m = mpf(m_float)
        d, sums = _terms(values, m, k, bits)
        if sums is None:
            # Every finite logit equals the maximum: s is the integer count - 1.
            count = mpf(n)
            p_tie = 1 / count
            sm = tuple(p_tie if mpmath.isfinite(dj) else mpf(0) for dj in d)
            log_c = mpmath.log(count)
            ls = tuple(-log_c if mpmath.isfinite(dj) else mpf("-inf") for dj in d)
            lse = m + log_c
            exact_1_over_c = n & (n - 1) == 0
            rel_p = mpf(0) if exact_1_over_c else u
            rel_l = mpf(0) if n == 1 else 2 * u
            rel_lse = mpf(0) if n == 1 else _lse_bound(m, log_c, 2 * u, u, lse)
        else:
            e, s, log1p_s, denom = sums
            size = len(e)
            p_at: Sequence[int]
            l_at: Sequence[int]
            if only is None:
                p_at, l_at = range(size), range(size)
            else:
                p_at = sorted(i for i in only if i < size)
                l_at = sorted(i - size for i in only if size <= i < 2 * size)
            p_of = {e[i]: e[i] / denom if e[i] != 0 else mpf(0) for i in p_at}
            top_whole = False  # the top probability is 1 - s/(1 + s) unrounded: see _sum_whole
            if s < 1 and k in p_at:
                p_of[e[k]], top_whole = _sum_whole(mpf(1), -(s / denom))
            sm = _spread(size, p_at, (p_of[e[i]] for i in p_at))
            l_of = {d[i]: d[i] - log1p_s for i in l_at}
            ls = _spread(size, l_at, (l_of[d[i]] for i in l_at))
            lse, whole = _sum_whole(m, log1p_s)
            rel_p = rel_l = 4 * (n + 4) * u
            rel_lse = _lse_bound(m, log1p_s, 4 * (n + 2) * u, 0 if whole else u, lse)
            sm, ls, lse, sides = _absorbed(d, sm, ls, lse, m, bits)
            result = Exact(sm, ls, lse, bits)
            nudge = mpf(2) ** -(bits + 15)  # room for the nudges (3 distinct bounds, once each)
            rel_p, rel_l = rel_p + nudge, rel_l + nudge
            if sides[-1]:  # logsumexp is nudged only where m + L was rounded to m
                rel_lse += nudge
            bounds = [rel_p] * len(sm) + [rel_l] * len(ls) + [rel_lse]
            if top_whole:  # s/(1 + s) within 4(n+4)u of itself: of 1 - t, that times t/(1 - t)
                bounds[k] = 4 * (n + 4) * u * s
            return result, bounds, sides
    result = Exact(sm, ls, lse, bits)
    bounds = [rel_p] * len(sm) + [rel_l] * len(ls) + [rel_lse]
    return result, bounds, [0] * len(bounds)


#: The terms of the vectors evaluated last, by (logits, precision): the mpmath fallback asks for
#: a few values of one vector once per implementation (see :func:`exact`'s ``only``).  At most
#: this many logits x bits are kept (2**17 logits at 128 bits: some 350 bytes each, 45 MB).
_TERMS: dict[tuple[str, bytes, int], tuple[list[Mpf], Any]] = {}
_TERMS_KEPT = (1 << 17) * 128


def _terms(
    values: npt.NDArray[np.float64], m: Mpf, k: int, bits: int
) -> tuple[list[Mpf], tuple[list[Mpf], Mpf, Mpf, Mpf] | None]:
    """``d_j = x_j - m`` (exact), and (unless every finite logit is a maximum: ``None``)
    ``e_j = exp(d_j)`` (1 at ``k``), ``s``, ``log1p(s)`` and ``1 + s`` at working precision
    ``bits`` (the caller's).  Remembered for the last few vectors: numbers are immutable."""
    import mpmath

    key = (values.dtype.str, values.tobytes(), bits)
    hit = _TERMS.get(key)
    if hit is not None:
        return hit
    # each distinct logit once: a masked vector repeats one value thousands of times
    d_of = {
        x: mpmath.fsub(mpf(x), m, exact=True) if math.isfinite(x) else mpf("-inf")
        for x in dict.fromkeys(values.tolist())
    }
    d = [d_of[x] for x in values.tolist()]
    sums = None
    if not all(dj == 0 for dj in d if mpmath.isfinite(dj)):
        exp_of = {dj: mpmath.exp(dj) for dj in d_of.values()}
        e = [exp_of[dj] if j != k else mpf(1) for j, dj in enumerate(d)]
        s = mpmath.fsum(ej for j, ej in enumerate(e) if j != k)
        sums = (e, s, mpmath.log1p(s), 1 + s)
    size = len(d) * bits
    if size <= _TERMS_KEPT:
        while _TERMS and sum(len(t[0]) * at[2] for at, t in _TERMS.items()) + size > _TERMS_KEPT:
            del _TERMS[next(iter(_TERMS))]
        _TERMS[key] = (d, sums)
    return d, sums


def _spread(size: int, at: Sequence[int], values: Iterable[Mpf]) -> tuple[Mpf, ...]:
    """A tuple of ``size`` holding ``values`` at the indices ``at`` and ``None`` elsewhere."""
    if len(at) == size:
        return tuple(values)
    out: list[Mpf] = [None] * size
    for i, v in zip(at, values, strict=True):
        out[i] = v
    return tuple(out)


def _absorbed(
    d: list[Mpf], sm: tuple[Mpf, ...], ls: tuple[Mpf, ...], lse: Mpf, m: Mpf, bits: int
) -> tuple[tuple[Mpf, ...], tuple[Mpf, ...], Mpf, list[int]]:
    """Nudge the values where a positive ``s`` (some logit below the maximum) was absorbed.

    With ``s > 0``: a tie's probability ``1/(c + s')`` is below ``1/c``; a log-probability
    ``d_i - log1p(s)`` is below ``d_i``; ``logsumexp = m + log1p(s)`` is above ``m``.  Values
    not computed (``None``, see :func:`exact`) stay so.
    """
    ties = sum(1 for dj in d if dj == 0)
    p_tie = mpf(1) / ties
    sm_sides = [
        -1 if p is not None and dj == 0 and p == p_tie and _power_of_two(p) else 0
        for dj, p in zip(d, sm, strict=True)
    ]
    # d_i (exact) can be a power of two or a rounding tie of the format: either way the
    # absorbed -log1p(s) decides the rounding, and its side is known.
    ls_sides = [
        1 if lp is not None and lp == dj and dj != 0 else 0 for dj, lp in zip(d, ls, strict=True)
    ]
    lse_side = (1 if m > 0 else -1) if lse == m and m != 0 else 0
    sm = tuple(_nudge(p, side, bits) if side else p for p, side in zip(sm, sm_sides, strict=True))
    ls = tuple(
        _nudge(lp, side, bits) if side else lp for lp, side in zip(ls, ls_sides, strict=True)
    )
    if lse_side:
        lse = _nudge(lse, lse_side, bits)
    return sm, ls, lse, [*sm_sides, *ls_sides, lse_side]


def _sum_whole(m: Mpf, term: Mpf) -> tuple[Mpf, bool]:
    """``m + term``, unrounded when that takes at most :data:`MAX_BITS` bits (and whether it
    is): a confident vector's logsumexp is its maximum plus a tiny ``log1p(s)`` (``e**-3000``
    beside ``7e4``), and its top probability ``1 - s/(1 + s)``; ``|computed - exact|`` is then
    that tiny term, known to the term's own accuracy; rounded to the working precision it would
    take thousands of bits to see.  (For the probability, with ``s < 1``, the term's error is
    below ``4(n+4)u`` of ``1 - t`` too: the bound stands.)"""
    import mpmath

    if m == 0 or term == 0:
        return m + term, False
    gap = (m._mpf_[2] + m._mpf_[3]) - (term._mpf_[2] + term._mpf_[3])
    if abs(gap) > MAX_BITS:  # e**-1e9 beside 5: rounded, and nudged to its side
        return m + term, False
    return mpmath.fadd(m, term, exact=True), True


def _lse_bound(m: Mpf, log_term: Mpf, rel_log: Mpf, u: Mpf, lse: Mpf) -> Mpf:
    """Relative error bound of ``lse = m + log_term`` (cancels when m < 0)."""
    if lse == 0:
        return mpf("inf")
    return (abs(log_term) * rel_log + abs(lse) * u) / abs(lse)


def exact_nll_grad(
    values: npt.NDArray[np.float64], fmt: Format, target: int, start_bits: int = 113
) -> tuple[tuple[Mpf, ...], int]:
    """``softmax(x) - onehot(target)``, certified for ``fmt``; and the bits that certified it.

    This is the gradient of the cross-entropy ``-log_softmax(x)[target]`` with respect to the
    logits, and equally the vector-Jacobian product ``g - softmax(x) * sum(g)`` of log-softmax
    for the upstream gradient ``g = -onehot(target)`` that the NLL loss sends back.

    Certification.  With ``m`` the maximum and ``e_j = exp(x_j - m)`` (``e_j = 1`` exactly for
    the maxima), ``softmax_j = e_j / sum(e)`` and the target entry is computed as
    ``-(sum_{j != t} e_j) / sum(e)``, never as ``p_t - 1``: every term is positive, so there is
    no cancellation (``p_t - 1`` for a dominant class is ``-1.9e-22`` at ``x = [0, -50]``).
    Each of the ``n + 4`` mpmath operations on a path (exp, at most ``n`` additions, the
    division) has relative error at most ``u = 2**(1-P)``, so every entry is within
    ``4(n+4)u`` relative (a factor 4 over the first-order sum, as in :func:`exact`).  The
    precision is doubled until that interval rounds and ulps alike (:func:`_settled`).  When
    every finite logit ties, the values are the rationals ``1/c`` and ``-(c-1)/c``: exact when
    ``c`` is a power of two, within ``2u`` otherwise.  A masked target (``x_t = -inf``) has
    ``p_t = 0`` and gradient exactly ``-1``.  Where the working precision absorbed the positive
    sum of the smaller terms into a power of two (``1/(2 + e^-40098)`` computed as ``1/2``;
    ``1 - p_t`` as 1 for a target below the maximum; as ``1/2`` for one of two maxima), the true
    value's side is known and the value is nudged to it (:func:`_nudge`), as :func:`exact`
    does.  Otherwise no entry is a rounding boundary (a ratio of sums of exponentials of
    distinct rationals is transcendental), so the doubling terminates.
    """
    import mpmath

    finite = np.isfinite(values)
    n = int(finite.sum())
    m_float = float(values[finite].max())
    c = int(np.sum(values[finite] == m_float))  # maximal classes
    bits = start_bits
    while bits <= MAX_BITS:
        with mpmath.workprec(bits):
            u = mpf(2) ** (1 - bits)
            m = mpf(m_float)
            e = [
                mpmath.exp(mpmath.fsub(mpf(float(x)), m, exact=True)) if math.isfinite(x) else None
                for x in values
            ]
            e = [mpf(0) if ej is None else ej for ej in e]
            ties = n == c
            exact_tie = ties and c & (c - 1) == 0  # 1/c and (c-1)/c are exact for c = 2**k
            rel = mpf(0) if exact_tie else (2 * u if ties else 4 * (n + 4) * u)
            denom = mpmath.fsum(e)
            grad = [ej / denom for ej in e]
            rels = [rel] * len(grad)
            sides = [0] * len(grad)
            if not math.isfinite(values[target]):  # a masked target: p_t = 0 exactly
                grad[target], rels[target] = mpf(-1), mpf(0)
            else:
                grad[target] = -mpmath.fsum(ej for j, ej in enumerate(e) if j != target) / denom
            if not ties:  # some class is below the maximum: its e_j may have been absorbed
                for j, g in enumerate(grad):
                    if not _power_of_two(g) or rels[j] == 0:
                        continue
                    is_max = values[j] == m_float
                    if j == target:  # |g| = 1 - p_t: above (c-1)/c for a maximum, below 1 else
                        anchor = mpf(c - 1) / c if is_max else mpf(1)
                        side = 1 if is_max else -1
                    else:  # p_j of a maximum is below 1/c
                        anchor, side = (mpf(1) / c, -1) if is_max else (None, 0)
                    if anchor is not None and abs(g) == anchor:
                        grad[j], sides[j] = _nudge(g, side, bits), side
                        rels[j] += mpf(2) ** -(bits + 15)
        if all(_settled(v, r, fmt, side) for v, r, side in zip(grad, rels, sides, strict=True)):
            return tuple(grad), bits
        bits *= 2
    raise RuntimeError(f"gradient reference not certified at {MAX_BITS} bits: {values!r}")


__all__ = [
    "MAX_BITS",
    "TARGET_REL_ERROR",
    "Exact",
    "exact",
    "exact_nll_grad",
    "mpf",
    "round_to_format",
    "ulp_exponent",
    "undefined_reason",
]
