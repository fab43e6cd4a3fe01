"""Double-double elementary kernels: ``exp``, ``log1p`` and row sums, on numpy arrays.

The kernels of the double-double tier of :mod:`lsmcheck.fastref` (the row sums also serve its
float64 tier), and the argument for their accuracy.  Every quantity is an unevaluated sum
``hi + lo`` of two doubles, computed with the error-free transformations TwoSum and TwoProd of
:mod:`lsmcheck.ddarith` (Dekker's splitting: numpy has no FMA), so only IEEE ``+ - * /`` are
trusted (they are correctly rounded).  ``exp`` reduces its argument by ``N ln2 / 256`` with
``ln2/256`` held in three doubles, looks up ``2**(j/256)`` in a table computed at import
(60-digit decimal arithmetic), and sums the Taylor series of ``exp(r) - 1`` for
``|r| <= ln2/512``: terms up to ``r**3/6`` in double-double, ``r**4/24 .. r**8/8!`` in double
(each below ``2**-96`` absolute when evaluated in double; the first omitted term is below
``2**-104``).  The binary exponent of ``exp`` is carried separately (``scale``), so values far
below float64's range (``e**-10000``) are classified right.  ``log1p(s)`` is a float64 guess
refined by one Newton step ``L + log(1 + ((1 + s) exp(-L) - 1))``, or for ``s < 2**-8`` the
alternating series.  Each double-double operation errs by at most ``8 u**2`` relative
(``u = 2**-53``; Joldes, Muller & Popescu, ACM TOMS 44(2), 2017 give ``3-7 u**2``); summing
them, the double-double tier takes ``REL_DD = 2**-90 + ceil(log2 n) 2**-100`` per value, about
``2**8`` over the sum; the float64 ULP figures need ``2**-61``.
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, Decimal, localcontext

import numpy as np
import numpy.typing as npt

from lsmcheck.ddarith import dd_add, dd_add_d, dd_mul, fast_two_sum, two_sum

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Relative error of the double-double exp (see the module docstring; tested against mpmath).
REL_EXP_DD = 2.0**-92


# ---------------------------------------------------------------------------------------------
# Constants, computed once at import with the standard library's decimal arithmetic at 60
# digits (about 199 bits), whose exp and ln are correctly rounded; mpmath would cost 0.07 s
# of every start-up.  The table 2**(j/256) is built by multiplying by 2**(1/256): 255
# roundings of at most 5e-60 leave it within 3e-57 relative (3.2e-58 measured against 256
# exps), far below a double-double's 2**-106, in 0.3 ms instead of 7 ms.
# tests/test_fastref.py checks every constant against mpmath at 300 bits.
# ---------------------------------------------------------------------------------------------


def _dd(v: Decimal) -> tuple[float, float]:
    """``v`` as a double-double: its nearest double and the nearest double to the rest."""
    hi = float(v)
    return hi, float(v - Decimal(hi))


def _chunk(v: Decimal, bits: int) -> float:
    """Positive ``v`` truncated to ``bits`` significant bits (so that small multiples are
    exact)."""
    _, e = math.frexp(float(v))  # 2**(e-1) <= v < 2**e, unless rounding crossed a power of 2
    if v >= Decimal(2) ** e:
        e += 1
    elif v < Decimal(2) ** (e - 1):
        e -= 1
    return math.ldexp(int((v * Decimal(2) ** (bits - e)).to_integral_value(ROUND_FLOOR)), e - bits)


with localcontext() as _context:
    _context.prec = 60
    _ln2_256 = Decimal(2).ln() / 256
    # |N| < 2**20 for |d| <= 2200 ln 2, so 33-bit pieces make N * C1, N * C2 exact.
    _C1 = _chunk(_ln2_256, 33)
    _C2 = _chunk(_ln2_256 - Decimal(_C1), 33)
    _C3 = float(_ln2_256 - Decimal(_C1) - Decimal(_C2))
    _INV_LN2_256 = float(1 / _ln2_256)
    _step = _ln2_256.exp()  # 2**(1/256)
    _powers = [Decimal(1)]
    for _ in range(255):
        _powers.append(_powers[-1] * _step)
    _TABLE = [_dd(p) for p in _powers]  # 2**(j/256)
    _SIXTH = _dd(Decimal(1) / 6)
    _T_HI = np.array([t[0] for t in _TABLE])
    _T_LO = np.array([t[1] for t in _TABLE])
    # 1/24, 1/120, ..., 1/8! as doubles (their rounding is below 2**-96 absolute in the sum)
    _TAIL = [float(1 / Decimal(math.factorial(k))) for k in range(4, 9)]
    _INVERSES = [_dd(1 / Decimal(i)) for i in range(15)[1:]]  # 1/1 .. 1/14


#: Elements per block of the elementwise kernels (their temporaries stay in the cache).
BLOCK = 8192


def exp_dd(dh: F64, dl: F64) -> tuple[F64, F64, I64]:
    """``exp(dh + dl) = (eh + el) * 2**k`` to ``REL_EXP_DD``, for ``|dh| <= 2200 ln 2``.

    ``eh + el`` lies in ``[1, 2)`` (up to rounding at the ends).  1-D arrays.
    """
    if dh.size <= BLOCK:
        return _exp_dd(dh, dl)
    eh, el, k = np.empty_like(dh), np.empty_like(dh), np.empty(dh.shape, np.int64)
    for i in range(0, dh.size, BLOCK):
        sl = slice(i, i + BLOCK)
        eh[sl], el[sl], k[sl] = _exp_dd(dh[sl], dl[sl])
    return eh, el, k


def _exp_dd(dh: F64, dl: F64) -> tuple[F64, F64, I64]:
    n = np.rint(dh * _INV_LN2_256)
    ni = n.astype(np.int64)
    j = ni & 255
    k = (ni - j) >> 8
    t1 = dh - n * _C1  # exact: N*C1 is exact and within a factor 2 of dh (Sterbenz)
    t2h, t2l = two_sum(t1, -(n * _C2))
    rh, rl = two_sum(t2h, t2l + (dl - n * _C3))
    # tail(r) = r/4! + r**2/5! + ... + r**5/8!, in double on rh
    tail = _TAIL[4] * rh
    for c in (_TAIL[3], _TAIL[2], _TAIL[1], _TAIL[0]):
        tail = (tail + c) * rh
    ih, il = dd_add_d(_SIXTH[0], _SIXTH[1], tail)  # 1/6 + r/24 + ...
    mh, ml = dd_mul(rh, rl, ih, il)
    mh, ml = dd_add_d(mh, ml, 0.5)  # 1/2 + r/6 + ...
    r2h, r2l = dd_mul(rh, rl, rh, rl)
    sh, sl = dd_mul(r2h, r2l, mh, ml)
    sh, sl = dd_add(rh, rl, sh, sl)  # exp(r) - 1
    eh, el = fast_two_sum(1.0, sh)
    eh, el = fast_two_sum(eh, el + sl)
    eh, el = dd_mul(_T_HI[j], _T_LO[j], eh, el)
    return eh, el, k


def log1p_dd(sh: F64, sl: F64) -> tuple[F64, F64]:
    """``log1p(sh + sl)`` in double-double for ``s >= 0`` (per row: cost is no concern)."""
    out_h = np.zeros_like(sh)
    out_l = np.zeros_like(sh)
    small = sh < 2.0**-8
    if small.any():
        # log1p(s) = s - s**2/2 + s**3/3 - ...; s < 2**-8: 14 terms leave < 2**-110 relative
        xh, xl = sh[small], sl[small]
        acc_h = np.zeros_like(xh)
        acc_l = np.zeros_like(xh)
        for i in range(14, 0, -1):
            # acc = 1/i - s * acc
            ch, cl = _INVERSES[i - 1]
            ph, pl = dd_mul(xh, xl, acc_h, acc_l)
            acc_h, acc_l = dd_add(np.full_like(xh, ch), np.full_like(xh, cl), -ph, -pl)
        out_h[small], out_l[small] = dd_mul(xh, xl, acc_h, acc_l)
    big = ~small
    if big.any():
        xh, xl = sh[big], sl[big]
        l0 = np.log1p(xh)
        fh, fl, fk = exp_dd(-l0, np.zeros_like(l0))
        fh, fl = np.ldexp(fh, fk), np.ldexp(fl, fk)  # exp(-L0) >= 1/(1+s): no underflow
        ph, pl = dd_mul(*dd_add_d(xh, xl, 1.0), fh, fl)  # (1 + s) exp(-L0) = 1 + delta
        dh, dl = fast_two_sum(ph - 1.0, pl)  # ph - 1 exact (Sterbenz)
        # log(1 + delta) = delta - delta**2/2 + delta**3/3, |delta| < 2**-40
        corr_h, corr_l = dd_add_d(dh, dl, -0.5 * dh * dh + dh * dh * dh / 3)
        out_h[big], out_l[big] = dd_add_d(corr_h, corr_l, l0)
    return out_h, out_l


# ---------------------------------------------------------------------------------------------
# Sums along rows
# ---------------------------------------------------------------------------------------------


def tree_sum(a: F64) -> tuple[F64, int]:
    """Row sums of ``a`` by a pairwise tree, and the tree's depth.

    Every level adds two halves elementwise, so each term passes through at most ``depth``
    roundings: for nonnegative terms the error is at most ``depth * u * sum``.
    """
    depth = 0
    while a.shape[1] > 1:
        half = (a.shape[1] + 1) // 2
        top = a[:, :half].copy()
        top[:, : a.shape[1] - half] += a[:, half:]
        a = top
        depth += 1
    return a[:, 0], depth


def tree_sum_dd(h: F64, lo: F64) -> tuple[F64, F64, int]:
    """Row sums of double-doubles ``h + lo`` by a pairwise tree of :func:`dd_add`."""
    depth = 0
    while h.shape[1] > 1:
        half = (h.shape[1] + 1) // 2
        rest = h.shape[1] - half
        th, tl = h[:, :half].copy(), lo[:, :half].copy()
        th[:, :rest], tl[:, :rest] = dd_add(th[:, :rest], tl[:, :rest], h[:, half:], lo[:, half:])
        h, lo = th, tl
        depth += 1
    return h[:, 0], lo[:, 0], depth


__all__ = [
    "REL_EXP_DD",
    "exp_dd",
    "log1p_dd",
    "tree_sum",
    "tree_sum_dd",
]
