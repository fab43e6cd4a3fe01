"""An independent mpmath oracle for the tests.

Written separately from ``lsmcheck.reference`` on purpose: a fixed 300-bit working precision,
the cancellation-free form written out directly, and ulp computed through ``mpmath.floor`` /
``log`` rather than bit fiddling.  The issue defines "the true value" as what this gives.
"""

from __future__ import annotations

import math
from typing import Any

import mpmath

BITS = 300

FORMATS = {
    # name: (p, emin, emax)
    "float16": (11, -14, 15),
    "float32": (24, -126, 127),
    "float64": (53, -1022, 1023),
    # ml_dtypes' formats (OCP 8-bit floating point spec; bfloat16 = float32's exponent, p = 8)
    "bfloat16": (8, -126, 127),
    "float8_e4m3fn": (4, -6, 8),
    "float8_e5m2": (3, -14, 15),
}


def truth(values: list[float]) -> tuple[list[Any], list[Any], Any]:
    """(softmax, log_softmax, logsumexp) of finite/-inf ``values`` at 300 bits."""
    with mpmath.workprec(BITS + 2200):  # x - m exact for any pair of float64 values
        xs = [mpmath.mpf(v) for v in values]
        m = max(x for x in xs if mpmath.isfinite(x))
        d = [x - m if mpmath.isfinite(x) else mpmath.mpf("-inf") for x in xs]
    k = d.index(mpmath.mpf(0))
    with mpmath.workprec(BITS):
        terms = [mpmath.exp(dj) for j, dj in enumerate(d) if j != k]
        s = mpmath.fsum(terms)
        log1p_s = mpmath.log1p(s)
        softmax = [mpmath.exp(dj) / (1 + s) for dj in d]
    with mpmath.workprec(BITS + 2200):  # d_i exact: a tiny log1p(s) beside it is kept
        log_softmax = [dj - log1p_s for dj in d]
        lse = m + log1p_s
    return softmax, log_softmax, lse


def ulp(y: Any, fmt: str) -> Any:
    """ulp(y) = 2**(max(floor(log2|y|), emin) - p + 1); ulp(0) = smallest subnormal."""
    p, emin, _ = FORMATS[fmt]
    with mpmath.workprec(BITS):
        if y == 0 or not mpmath.isfinite(y):
            e = emin
        else:
            e = int(mpmath.floor(mpmath.log(abs(y), 2)))
            # guard the floor against log rounding at exact powers of two
            if mpmath.mpf(2) ** (e + 1) <= abs(y):
                e += 1
            elif mpmath.mpf(2) ** e > abs(y):
                e -= 1
        return mpmath.mpf(2) ** (max(e, emin) - p + 1)


def ulp_error(computed: float, exact: Any, fmt: str) -> float:
    """|computed - exact| / ulp(exact), with the documented conventions for non-finite values."""
    if math.isnan(computed):
        return math.inf
    if not mpmath.isfinite(exact):
        return 0.0 if computed == float(exact) else math.inf
    if math.isinf(computed):
        return math.inf
    with mpmath.workprec(BITS):
        return float(abs(mpmath.mpf(computed) - exact) / ulp(exact, fmt))


def close(value: Any, true: Any, fmt: str) -> bool:
    """Whether ``value`` is within 1e-20 relative of ``true`` (or 1e-3 smallest subnormal)."""
    if not mpmath.isfinite(true):
        return bool(value == true)
    p, emin, _ = FORMATS[fmt]
    with mpmath.workprec(BITS):
        tol = max(abs(true) * mpmath.mpf("1e-20"), mpmath.mpf(2) ** (emin - p + 1) / 1000)
        return bool(abs(mpmath.mpf(value) - true) <= tol)
