"""The fast certified tier of the reference: vectorised numpy with a rigorous error bound.

:func:`fast_reference` computes softmax, log-softmax and logsumexp of a batch of vectors (one per
row, already rounded to the audited format) in the same cancellation-free form as
:mod:`lsmcheck.reference`, but over whole arrays at once, and returns with every value an
absolute error bound.  :mod:`lsmcheck.fastmetrics` decides per element whether that bound settles
what the report needs (the ulp binade, the ULP error to within 0.01 ulp, and where it matters the
correctly rounded value); every element it cannot settle goes to the mpmath path.  The bounds
are deliberately loose (safety factors of 2**6 and more): a loose bound only sends a few more
elements to mpmath, a tight one that is wrong would report a wrong figure.

Two tiers, chosen by the target format:

``float64`` (float16 and float32 targets: ``p <= 24``)
    Plain float64.  ``d = x - m`` is computed with its rounding error ``dl`` (TwoSum: exact for
    float16 inputs, and bounded for float32 ones), then ``e = exp(d)``,
    ``s = sum_{j != k} e_j`` by a pairwise tree whose error is at most ``ceil(log2 n) u s``,
    ``L = log1p(s)``, ``softmax = e / (1 + s)``, ``log_softmax = d - L``, ``lse = m + L``.
    numpy's float64 ``exp``/``log1p`` are not correctly rounded: they come from the platform's
    libm (glibc documents at most 1-2 ulp for exp/log1p on x86-64) or, on AVX-512 hosts, from
    Intel SVML, whose vector functions are documented to stay within 4 ulp.  We assume
    ``REL_LIBM = 2**-44`` (64 ulp: a factor 16 over the worst documented bound) and add an
    absolute ``2**-1070`` for results in float64's subnormal range.  What the float16/32 figures
    need is about ``2**-33`` relative, so the margin is large; ``tests/test_fastref.py`` checks
    the assumption against mpmath on random arguments.

``double-double`` (float64 targets)
    Every quantity is a double-double ``hi + lo``, and ``exp``, ``log1p`` and the row sums are
    the kernels of :mod:`lsmcheck.ddkernels`, whose docstring has the argument for their
    accuracy and for the bound this tier takes, ``REL_DD`` per value.

Both tiers return :class:`Values`: the true value ``v`` satisfies
``|v - (hi + lo) * 2**scale| <= err * 2**scale``; ``err == 0`` means exact, and ``minf`` marks an
exact ``-inf`` (a masked class's log-probability).  ``err = inf`` means "not computed here": the
element goes to mpmath.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from lsmcheck.ddarith import (
    U,
    dd_add_d,
    dd_add_d_err,
    dd_add_err,
    dd_div,
    dd_mul,
    two_sum,
)
from lsmcheck.ddkernels import REL_EXP_DD, exp_dd, log1p_dd, tree_sum, tree_sum_dd
from lsmcheck.dtypes import Format

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: Assumed relative error of numpy's float64 exp and log1p (see the module docstring).
REL_LIBM = 2.0**-44
#: Absolute error allowed for a float64 result in the subnormal range.
TINY = 2.0**-1070
#: The same for the float64 tier, as a normal number: subnormal operands cost x86 a microcode
#: assist per element, and for float16/32 targets 2**-1020 is still 2**-871 of an ulp.
TINY_NORMAL = 2.0**-1020
#: Below ``d = x - max = -DEEP_BITS ln 2`` the double-double tier treats exp(d) as "below
#: ``2**-DEEP_BITS``": so far below float64's range that a relative error of that size, even
#: over float16's smallest normal, is 0 as a float64 (2**-2200 / 2**-14 < 2**-1076); above it,
#: ``exp`` is computed, with its binary exponent apart.
DEEP_BITS = 2200
DEEP = -DEEP_BITS * math.log(2)

#: The tier used for a format of precision ``p``.
FLOAT64_TIER, DD_TIER = "float64", "double-double"


def tier_for(fmt: Format) -> str:
    """``float64`` for formats of at most 24 bits, ``double-double`` beyond."""
    return FLOAT64_TIER if fmt.p <= 24 else DD_TIER


@dataclass(frozen=True)
class Values:
    """Reference values of one kind for a batch, with absolute error bounds.

    The true value is within ``err * 2**err_scale`` of ``(hi + lo) * 2**scale``;
    ``err_scale`` is ``scale`` unless given (a logsumexp ``m + L`` with ``L`` below
    ``2**-1075``: ``m`` at scale 0, within ``2**l_max`` of the truth).  ``err == 0`` means
    exact, ``err == inf`` means not computed (the mpmath path decides); ``minf`` marks an
    exact ``-inf``.  All arrays have the same shape.
    """

    hi: F64
    lo: F64
    err: F64
    scale: I64
    minf: Bools
    err_scale: I64 | None = None


#: The storage formats the fast tier is certified (and tested against mpmath) for; the others
#: (bfloat16, float8) take the mpmath path for every element.
FAST_FORMATS = frozenset({"float16", "float32", "float64"})


class FastReference:
    """The fast tier's softmax, log-softmax (shape ``(B, n)``) and logsumexp (``(B, 1)``).

    Each kind is computed on first use (an audit of softmax alone needs no log-softmax).
    """

    def __init__(
        self,
        tier: str,
        softmax: Callable[[], Values],
        log_softmax: Callable[[], Values],
        logsumexp: Callable[[], Values],
    ) -> None:
        self.tier = tier
        self._make = {"softmax": softmax, "log_softmax": log_softmax, "logsumexp": logsumexp}

    def _get(self, kind: str) -> Values:
        with np.errstate(all="ignore"):
            return self._make[kind]()

    def of(self, kind: str) -> Values:
        """The values of ``kind``: ``softmax``, ``log_softmax``, else the logsumexp."""
        if kind in ("softmax", "log_softmax"):
            return self.softmax if kind == "softmax" else self.log_softmax
        return self.logsumexp

    @cached_property
    def softmax(self) -> Values:
        return self._get("softmax")

    @cached_property
    def log_softmax(self) -> Values:
        return self._get("log_softmax")

    @cached_property
    def logsumexp(self) -> Values:
        return self._get("logsumexp")


# ---------------------------------------------------------------------------------------------
# The two tiers
# ---------------------------------------------------------------------------------------------


def _max_and_shift(x: F64) -> tuple[F64, I64, F64, F64, Bools]:
    """Row max ``m``, its first index ``k``, ``d = x - m`` as ``dh + dl`` (exact), finite mask."""
    finite = np.isfinite(x)
    k = np.argmax(x, axis=1)
    m = x[np.arange(x.shape[0]), k]
    with np.errstate(invalid="ignore", over="ignore"):
        dh, dl = two_sum(x, -m[:, None])
    dl = np.where(finite & np.isfinite(dh), dl, 0.0)
    return m, k, dh, dl, finite


def _exact_ties(dh: F64, dl: F64, finite: Bools) -> Bools:
    """The elements whose softmax is exactly a power of two: those of rows whose finite logits
    all equal their maximum, 2**k of them (a tie, or one finite logit), where it is ``2**-k``.

    Their bound is then 0, as it must be for the fast tier to settle an exact 0 error (a row
    of 32,768 zeros otherwise went to mpmath element by element, at some 1,800 bits).
    """
    count = finite.sum(axis=1)
    at_max = (dh == 0) & (dl == 0)
    rows = (at_max | ~finite).all(axis=1) & ((count & (count - 1)) == 0)
    ties: Bools = rows[:, None] & finite
    return ties


def _zeros_int(shape: tuple[int, ...]) -> I64:
    return np.zeros(shape, np.int64)


def fast_reference(x: F64, fmt: Format) -> FastReference:
    """The fast tier's reference of a batch ``x`` (rows: vectors already rounded to ``fmt``).

    Every row must hold at least one finite value and no NaN or ``+inf`` (the engine audits
    nothing else); ``-inf`` entries are masked classes.
    """
    with np.errstate(all="ignore"):
        if tier_for(fmt) == FLOAT64_TIER:
            return _float64_tier(x)
        return _dd_tier(x)


def dd_reference(x: F64) -> FastReference:
    """The double-double tier's reference of ``x``, whatever the format: the second look at
    rows the float64 tier could not settle (a float32 logsumexp a hair from its exact value,
    whose absolute error needs the reference far closer than 0.01 ulp)."""
    with np.errstate(all="ignore"):
        return _dd_tier(x)


def _float64_tier(x: F64) -> FastReference:
    b, n = x.shape
    rows = np.arange(b)
    m, k, d, dl, finite = _max_and_shift(x)
    e = np.exp(d)  # 0 for masked classes
    e[rows, k] = 1.0
    eb = e * (REL_LIBM + 2 * np.abs(dl)) + np.where(finite, TINY_NORMAL, 0.0)
    eb[rows, k] = 0.0
    terms = e.copy()
    terms[rows, k] = 0.0
    s, depth = tree_sum(terms)
    eb_sum, _ = tree_sum(eb)
    sb = (eb_sum + (depth + 2) * U * s) * (1 + 4 * n * U)  # |s_true - s|
    one_s = 1.0 + s
    log_l = np.log1p(s)
    lone = (s == 0) & (sb == 0)  # one finite logit: L = log1p(0) = 0 exactly
    # |log1p(s_true) - L|: log1p is 1-Lipschitz on s >= 0
    lb = np.where(lone, 0.0, sb + REL_LIBM * log_l + TINY_NORMAL)

    def softmax() -> Values:
        p = e / one_s[:, None]  # 1 / n exactly for a tie of n = 2**k: exp(0) and the sum exact
        pb = 1.01 * (eb / one_s[:, None] + p * (sb / one_s + 4 * U)[:, None]) + TINY_NORMAL
        pb = np.where(finite & ~_exact_ties(d, dl, finite), pb, 0.0)
        lo = np.zeros_like(x)
        # A confident row's top probability 1 / (1 + s) = 1 - t, t = s / (1 + s) < 2**-30,
        # held as 1 - t: its bound is then t's (s's bound, and 2 roundings of t), not the
        # rounding of p to 1 (2**-53), which could not tell |1 - p| = t to 0.1% of itself
        # for t below 2**-41: an output of 1 sent every such row to the double-double look.
        # t is below 2**-54 of 1 but not of an ulp of float16/32 (1 - t then rounds to 1).
        sure = (s < 2.0**-30) & ~lone
        if sure.any():
            r, top = rows[sure], k[sure]
            t = s[sure] / one_s[sure]
            p[r, top], lo[r, top] = 1.0, -t
            pb[r, top] = 1.01 * (sb[sure] + 4 * U * t) + TINY_NORMAL
        return Values(p, lo, pb, _zeros_int(x.shape), np.zeros(x.shape, bool))

    def log_softmax() -> Values:
        ls = d - log_l[:, None]
        lsb = np.where(finite, 1.01 * (np.abs(dl) + lb[:, None] + U * np.abs(ls)), 0.0)
        ls = np.where(finite, ls, -np.inf)
        return Values(ls, np.zeros_like(x), lsb, _zeros_int(x.shape), ~finite)

    def logsumexp() -> Values:
        lse = m + log_l
        lseb = np.where(lone, 0.0, 1.01 * (lb + U * np.abs(lse)))  # m + 0 is m
        zero = np.zeros((b, 1))
        return Values(lse[:, None], zero, lseb[:, None], _zeros_int((b, 1)), zero != 0)

    return FastReference(FLOAT64_TIER, softmax, log_softmax, logsumexp)


def _dd_tier(x: F64) -> FastReference:
    b, n = x.shape
    rows = np.arange(b)
    m, k, dh, dl, finite = _max_and_shift(x)
    rel = REL_EXP_DD * 4 + (math.ceil(math.log2(max(n, 2))) + 16) * 2.0**-100
    # x - m beyond float64 (only for float64 inputs near its range): exp is then deep, and
    # log_softmax (beyond -1.8e308) is left to mpmath.
    overflowed = finite & ~np.isfinite(dh)
    deep = finite & (overflowed | (dh < DEEP))  # 0 < exp(d) < 2**-DEEP_BITS
    live = finite & ~deep
    # exp(d) = (eh + el) * 2**ek for live elements; the max element is exactly 1.
    eh = np.zeros_like(x)
    el = np.zeros_like(x)
    ek = _zeros_int(x.shape)
    eh[live], el[live], ek[live] = exp_dd(dh[live], dl[live])
    eh[rows, k], el[rows, k], ek[rows, k] = 0.0, 0.0, 0
    term = live.copy()
    term[rows, k] = False
    has_terms = term.any(axis=1)
    n_deep = deep.sum(axis=1)
    # s = sum_{j != k} exp(d_j) = (sh + sl) * 2**big_k, big_k the largest exponent of a term
    big_k = np.where(has_terms, np.where(term, ek, -(2**40)).max(axis=1), 0)
    shift = np.where(term, ek - big_k[:, None], 0)
    sh, sl, _ = tree_sum_dd(
        np.where(term, np.ldexp(eh, shift), 0.0), np.where(term, np.ldexp(el, shift), 0.0)
    )
    # Relative error of s: the exps and the sum (rel); terms that underflow in the shift
    # (below 2**-1074 each, in units of 2**big_k where s >= 1); deep terms left out (below
    # 2**-DEEP_BITS each, absolute).
    s_rel = rel + n * 2.0**-1070 + n_deep * np.ldexp(2.2, np.minimum(-DEEP_BITS - big_k, 0))
    # L = log1p(s).  For 2**big_k < 2**-900, L = s (1 - s/2 + ...) = s to 2**-880 relative,
    # kept with the exponent big_k; with no live term but deep ones, 0 < L < n 2**-DEEP_BITS.
    plain = has_terms & (big_k > -900)
    tiny_s = has_terms & ~plain
    only_deep = ~has_terms & (n_deep > 0)
    no_s = ~has_terms & (n_deep == 0)  # a lone finite logit: s = 0 exactly
    kp = np.where(plain, big_k, 0)
    s_plain_h = np.where(plain, np.ldexp(sh, kp), 0.0)
    s_plain_l = np.where(plain, np.ldexp(sl, kp), 0.0)
    lh, ll = log1p_dd(s_plain_h, s_plain_l)
    l_scale = np.zeros(b, np.int64)
    l_err = np.abs(lh) * (rel + s_rel)  # in units of 2**l_scale
    lh, ll = np.where(tiny_s, sh, lh), np.where(tiny_s, sl, ll)
    l_scale = np.where(tiny_s, big_k, l_scale)
    l_err = np.where(tiny_s, np.abs(sh) * (rel + s_rel + 2.0**-880), l_err)
    deep_scale = -DEEP_BITS + np.ceil(np.log2(np.maximum(n_deep, 1))).astype(np.int64)
    lh, ll = np.where(only_deep, 0.5, lh), np.where(only_deep, 0.0, ll)
    l_scale = np.where(only_deep, deep_scale, l_scale)
    l_err = np.where(only_deep, 0.5, l_err)
    l_err = np.where(no_s, 0.0, l_err)
    # L at scale 0 (what is below 2**-1074 there is lost: TINY covers it)
    l0h, l0l = np.ldexp(lh, l_scale), np.ldexp(ll, l_scale)
    l0_err = np.ldexp(l_err, l_scale) + np.where(l_scale < 0, TINY, 0.0)
    # R = 1 / (1 + s) per row; s below 2**-880 is left out of it (covered by s_extra)
    one_h, one_l = dd_add_d(s_plain_h, s_plain_l, 1.0)
    rh, rl = dd_div(np.ones(b), np.zeros(b), one_h, one_l)
    r_rel = rel + s_rel + np.where(plain | no_s, 0.0, 2.0**-880)
    # softmax_i = exp(d_i) / (1 + s) = (E_i * R) * 2**k_i
    ph, pl = dd_mul(eh, el, rh[:, None], rl[:, None])
    p_scale = ek.copy()
    ph[rows, k], pl[rows, k], p_scale[rows, k] = rh, rl, 0
    p_err = np.abs(ph) * (rel + r_rel[:, None])
    p_err[rows, k] = np.where(no_s, 0.0, np.abs(rh) * r_rel)  # a lone finite logit: 1
    _, s_exp = np.frexp(sh)  # s < 2**(s_exp + big_k)
    sure = has_terms & (s_exp + big_k <= -54)
    if sure.any():  # 1 - t, as in the float64 tier: the bound is t's, not 2**-90 of 1
        r, top, kt = rows[sure], k[sure], big_k[sure]
        th, _ = dd_mul(sh[sure], sl[sure], rh[sure], rl[sure])  # t = s R, scale 2**big_k
        # at a scale 2**-w that keeps t normal (t > 2**-1080 here, else the row is lost:
        # _top_beside_deep below); t's low part dropped: 2**-52 of t
        w = np.clip(-1000 - (s_exp[sure] + kt), 0, 1023)
        t_w = np.ldexp(np.abs(th), kt + w)
        ph[r, top], pl[r, top], p_scale[r, top] = np.ldexp(1.0, w), -t_w, -w
        p_err[r, top] = t_w * (2.0**-52 + 2 * (rel + s_rel[sure] + r_rel[sure]))
    ph, pl = np.where(deep, 0.5, ph), np.where(deep, 0.0, pl)  # 0 < p < 2**-DEEP_BITS
    p_scale = np.where(deep, 1 - DEEP_BITS, p_scale)
    p_err = np.where(deep, 0.5, p_err)
    ties = _exact_ties(dh, dl, finite)
    if ties.any():  # exactly 1 / n: 1 / (1 + s) with s = n - 1 exact
        ph = np.where(ties, 1.0 / finite.sum(axis=1)[:, None], ph)
        pl, p_scale = np.where(ties, 0.0, pl), np.where(ties, 0, p_scale)
    p_err = np.where(finite & ~ties, p_err, 0.0)
    ph = np.where(finite, ph, 0.0)
    pl = np.where(finite, pl, 0.0)
    # log_softmax_i = d_i - L; where d_i = 0 it is -L with L's exponent
    qh, ql, q_rounding = dd_add_err(dh, dl, -l0h[:, None], -l0l[:, None])
    q_err = q_rounding + l0_err[:, None]
    q_scale = _zeros_int(x.shape)
    at_max = finite & (dh == 0) & (dl == 0)
    qh = np.where(at_max, -lh[:, None], qh)
    ql = np.where(at_max, -ll[:, None], ql)
    q_scale = np.where(at_max, l_scale[:, None], q_scale)
    q_err = np.where(at_max, l_err[:, None], q_err)
    l_max, lost = _deep_bound(lh, ll, l_err, l_scale)
    q_err_scale: I64 | None = None  # (the bound's own exponent, where it is not the value's)
    p_err_scale: I64 | None = None
    if lost.any():
        qh, ql, q_err, q_scale, q_err_scale = _beside_deep(
            dh, dl, (qh, ql, q_err, q_scale), l_max, lost
        )
        ph, pl, p_err, p_scale, p_err_scale = _top_beside_deep(
            (ph, pl, p_err, p_scale), rows, k, l_max, lost
        )
    q_err = np.where(overflowed, np.inf, q_err)
    qh = np.where(finite, qh, -np.inf)
    ql = np.where(finite, ql, 0.0)
    q_err = np.where(finite, q_err, 0.0)
    # lse = m + L: may cancel for m < 0; the bound is absolute and judged relative later
    zh, zl, z_rounding = dd_add_d_err(l0h, l0l, m)
    z_err = l0_err + z_rounding
    m_zero = m == 0
    zh, zl = np.where(m_zero, lh, zh), np.where(m_zero, ll, zl)
    z_scale = np.where(m_zero, l_scale, 0)
    z_err = np.where(m_zero, l_err, z_err)
    z_err_scale: I64 | None = None
    if lost.any():  # m + L with L < 2**l_max <= 2**-1075: m, bounded at L's own scale (at
        # scale 0 only TINY survives, and the error L of an output m could not be told)
        far = lost & ~m_zero
        zh, zl, z_err = np.where(far, m, zh), np.where(far, 0.0, zl), np.where(far, 1.0, z_err)
        z_err_scale = np.where(far, l_max, z_scale)[:, None]
    sm = Values(ph, pl, p_err, p_scale, np.zeros(x.shape, bool), p_err_scale)
    ls = Values(qh, ql, q_err, q_scale, ~finite, q_err_scale)
    lse = Values(
        zh[:, None], zl[:, None], z_err[:, None], z_scale[:, None], np.zeros((b, 1), bool),
        z_err_scale,
    )  # fmt: skip
    return FastReference(DD_TIER, lambda: sm, lambda: ls, lambda: lse)


def _deep_bound(lh: F64, ll: F64, l_err: F64, l_scale: I64) -> tuple[I64, Bools]:
    """Per row, ``l_max`` with ``L < 2**l_max``, and whether that is below ``2**-1075``: every
    other logit far below the maximum (a one-hot row with the rest at -1e9), where at scale 0
    only a ``TINY`` bound survives of ``L`` (and of ``s``), and ``|computed - exact|`` for a
    log-probability ``d - L`` or the top probability ``1 - t`` (``t = s / (1 + s) <= L``)
    could not be told from ``2**-1070``."""
    _, l_exp = np.frexp((np.abs(lh) + np.abs(ll) + l_err) * (1 + 2.0**-50))
    l_max = l_exp.astype(np.int64) + l_scale
    return l_max, (l_scale < 0) & (l_max <= -1075)


def _beside_deep(
    dh: F64, dl: F64, q: tuple[F64, F64, F64, I64], l_max: I64, lost: Bools
) -> tuple[F64, F64, F64, I64, I64 | None]:
    """``log_softmax = d - L`` in the rows where ``L`` is ``lost`` (see :func:`_deep_bound`):
    ``d`` exactly, with ``L``'s bound ``2**l_max`` at its own exponent (the returned
    ``err_scale``).  ``q``: the values at scale 0, returned elsewhere."""
    qh, ql, q_err, q_scale = q
    sel = lost[:, None] & (dh != 0) & np.isfinite(dh) & (q_scale == 0)
    if not sel.any():
        return qh, ql, q_err, q_scale, None
    err_scale = np.where(sel, l_max[:, None], q_scale)
    return (
        np.where(sel, dh, qh),
        np.where(sel, dl, ql),
        np.where(sel, 1.0, q_err),
        q_scale,
        err_scale,
    )


def _top_beside_deep(
    p: tuple[F64, F64, F64, I64], rows: I64, k: I64, l_max: I64, lost: Bools
) -> tuple[F64, F64, F64, I64, I64]:
    """The top probability ``1 / (1 + s) = 1 - t`` in the rows where ``L`` is ``lost``:
    ``0 < t <= L < 2**l_max``, so 1, with that bound at its own exponent (the returned
    ``err_scale``)."""
    ph, pl, p_err, p_scale = p[0].copy(), p[1].copy(), p[2].copy(), p[3].copy()
    err_scale = p_scale.copy()
    r, kk = rows[lost], k[lost]
    ph[r, kk], pl[r, kk], p_err[r, kk], p_scale[r, kk] = 1.0, 0.0, 1.0, 0
    err_scale[r, kk] = l_max[lost]
    return ph, pl, p_err, p_scale, err_scale


__all__ = [
    "DD_TIER",
    "FLOAT64_TIER",
    "FastReference",
    "Values",
    "fast_reference",
    "tier_for",
]
