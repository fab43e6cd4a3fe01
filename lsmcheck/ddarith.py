"""Error-free transformations and double-double arithmetic, elementwise on numpy arrays.

A double-double ``(h, l)`` stands for ``h + l`` with ``|l| <= ulp(h) / 2``: 106 bits.  TwoSum
and TwoProd are exact (Knuth; Dekker's splitting, as numpy has no fused multiply-add); each
double-double operation errs by at most ``8 u**2`` relative (``u = 2**-53``; Joldes, Muller &
Popescu, ACM TOMS 44(2), 2017 give ``3-7 u**2``).  The ``_err`` forms also return a bound on
what their roundings lose, in absolute terms, for results far larger than those roundings.
Used by :mod:`lsmcheck.ddkernels`, :mod:`lsmcheck.fastref` and :mod:`lsmcheck.fastmetrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The unit roundoff of float64.
U = 2.0**-53


_SPLITTER = 134217729.0  # 2**27 + 1


def two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """``s + e == a + b`` exactly, ``s = fl(a + b)`` (Knuth)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def fast_two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """``s + e == a + b`` exactly when ``|a| >= |b|`` (Dekker)."""
    s = a + b
    e = b - (s - a)
    return s, e


def _split(a: Any) -> tuple[Any, Any]:
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a: Any, b: Any) -> tuple[Any, Any]:
    """``p + e == a * b`` exactly (Dekker; operands below 2**996 in magnitude)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def dd_add(ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any]:
    """Accurate double-double sum (Joldes-Muller-Popescu Alg. 6: at most 3u**2 relative)."""
    sh, sl = two_sum(ah, bh)
    th, tl = two_sum(al, bl)
    vh, vl = fast_two_sum(sh, sl + th)
    return fast_two_sum(vh, tl + vl)


def dd_add_err(ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any, Any]:
    """Double-double plus double-double, and a bound on its error: what two roundings lose.

    Every step is error-free (TwoSum) but ``w = sl + th`` and ``z = tl + vl``, each off by at
    most ``u`` of itself.  Tighter than :func:`dd_add`'s ``4u**2`` of the result where the
    result is huge and one operand exact: a class masked with -3.4e38 minus a log-sum of 7 is
    off by some 2**-100, not 2**24 (whose slack sent every such log-probability to mpmath).
    """
    sh, sl = two_sum(ah, bh)
    th, tl = two_sum(al, bl)
    w = sl + th
    vh, vl = two_sum(sh, w)
    z = tl + vl
    hi, lo = two_sum(vh, z)
    return hi, lo, 2 * U * (np.abs(w) + np.abs(z))


def dd_add_d(ah: Any, al: Any, b: Any) -> tuple[Any, Any]:
    """Double-double plus double (at most 2u**2 relative)."""
    sh, sl = two_sum(ah, b)
    return fast_two_sum(sh, al + sl)


def dd_add_d_err(ah: Any, al: Any, b: Any) -> tuple[Any, Any, Any]:
    """Double-double plus double, and a bound on its error: the one rounding, of
    ``al + sl``.  A logsumexp ``m + L`` of a confident row (m = 80, L = 1e-32) is then known
    to some 1e-48, not to :func:`dd_add_d`'s 2u**2 of 80 (4e-30, which cannot tell the error
    of an output equal to m, L itself, to 0.1%)."""
    sh, sl = two_sum(ah, b)
    w = al + sl
    hi, lo = two_sum(sh, w)
    return hi, lo, 2 * U * np.abs(w)


def dd_mul(ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any]:
    """Double-double product (at most 7u**2 relative without FMA)."""
    p, e = two_prod(ah, bh)
    e = e + (ah * bl + al * bh)
    return fast_two_sum(p, e)


def dd_mul_d(ah: Any, al: Any, b: Any) -> tuple[Any, Any]:
    """Double-double times double (at most 3u**2 relative)."""
    p, e = two_prod(ah, b)
    return fast_two_sum(p, e + al * b)


def dd_div(ah: Any, al: Any, bh: Any, bl: Any) -> tuple[Any, Any]:
    """Double-double quotient (long division with one correction: a few u**2 relative)."""
    q1 = ah / bh
    ph, pl = dd_mul_d(bh, bl, q1)
    rh, rl = dd_add(ah, al, -ph, -pl)
    q2 = rh / bh
    ph, pl = dd_mul_d(bh, bl, q2)
    rh, rl = dd_add(rh, rl, -ph, -pl)
    q3 = rh / bh
    qh, ql = fast_two_sum(q1, q2)
    return dd_add_d(qh, ql, q3)


__all__ = [
    "U",
    "dd_add",
    "dd_add_d",
    "dd_add_d_err",
    "dd_add_err",
    "dd_div",
    "dd_mul",
    "dd_mul_d",
    "fast_two_sum",
    "two_prod",
    "two_sum",
]
