"""Where the limits are looked for: the probe points and the searches over a dtype's values.

A limit's parameter ``t`` runs over the dtype's values in ``[0, max]``, ordered by their bit
patterns (:func:`_ordinal`).  :func:`float_grid` is the first scan, :func:`search_float` and
:func:`refine` bisect from there to two adjacent floats, :func:`search_int` does the same over
lengths, and :func:`spread_points` are the leads the (not monotone) spread limit runs.  Nothing
here knows what a limit is: a search gets an ``evaluate`` and a ``bad`` predicate
(:mod:`lsmcheck.explore.limits`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from lsmcheck.algorithms import Kind
from lsmcheck.dtypes import Format
from lsmcheck.explore.probe import Sample

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # float8: one byte


def float_grid(fmt: Format) -> list[float]:
    """Scan points in ``[0, max]``: 4 per binade over 2**-6..2**12, sparser above, and max."""
    pts = [0.0] + [2.0 ** (k / 4) for k in range(-24, 49)]
    step = max(1, math.ceil((fmt.emax - 12) / 64))
    pts += [2.0**k for k in range(12 + step, fmt.emax + 1, step)]
    pts.append(fmt.max)
    values = np.asarray(fmt.cast(np.array(pts)), np.float64)
    return sorted({float(v) for v in values if v <= fmt.max})


#: The spread limit's scan: every value of the dtype from 2**-6 to where exp(-t) flushes when
#: its precision is at most this many bits (float16, bfloat16, float8), else a sample there:
#: this many points per binade, and :data:`SPREAD_WINDOW` consecutive values from each of the
#: first :data:`SPREAD_WINDOWS` leads where an exact output falls below a power of two.
SPREAD_EXHAUSTIVE_BITS = 11
SPREAD_PER_BINADE = 64
SPREAD_WINDOW = 1 << 16
SPREAD_WINDOWS = 2
#: Leads per batch of the spread scan; it stops after the first batch with a break.
SPREAD_CHUNK = 1 << 14


def spread_range(fmt: Format) -> tuple[float, float]:
    """The leads the spread limit tries densely: from 2**-6 to where ``exp(-t)`` flushes.

    Beyond, the small element's exact probability rounds to 0 and its log is ``-t`` give or
    take less than an ulp, so the grid is enough there (and the fast tier leaves such tiny
    values to mpmath, one probe at a time).
    """
    return 2.0**-6, min(2.0**12, fmt.max, math.log(2 / fmt.smallest_subnormal))


def spread_crossings(kind: Kind | None, lo: float, hi: float) -> list[tuple[float, bool]]:
    """``(t, falling)`` for each lead ``t`` in ``[lo, hi]`` where an exact output of ``[0, -t]``
    crosses a power of two in magnitude, falling or rising with ``t``, ascending (``kind``
    ``None``: those of every kind).

    The ulp of a value is smallest relative to it just below a power of two, so the same
    rounding error counts most ulp there: just after a falling crossing, just before a rising
    one.  The error of the log-domain algorithms first passes 4 ulp just after a falling one
    (log_softmax ``-log1p(e^-t)`` passes -0.5 at 0.4328 and -0.25 at 1.2587).  In closed form:
    ``log1p(e^-t) = 2**-k`` (log_softmax[0], logsumexp; falling) at ``t = -ln(expm1(2**-k))``;
    ``t + log1p(e^-t) = 2**k`` (log_softmax[1]; rising) at ``t = 2**k + ln(-expm1(-2**k))``;
    ``1 / (1 + e^t) = 2**-k`` (softmax[1]; falling; softmax[0] stays in [1/2, 1)) at
    ``t = ln(2**k - 1)``.
    """
    log = kind is None or kind in (Kind.LOG_SOFTMAX, Kind.LOGSUMEXP, Kind.CROSS_ENTROPY)
    ln2 = math.log(2)

    def upto(f: Callable[[int], float], k: int, falling: bool) -> list[tuple[float, bool]]:
        ts = []
        while (t := f(k)) <= hi:
            ts.append((t, falling))
            k += 1
        return ts

    out = []
    if log:  # 2**-k and 2**k beyond 60: the closed forms are k ln 2 to float64's precision
        out += upto(lambda k: -math.log(math.expm1(2.0**-k)) if k < 60 else k * ln2, 1, True)
        out += upto(lambda k: 2.0**k + math.log(-math.expm1(-(2.0**k))), 0, False)
    if kind is None or not log:
        out += upto(lambda k: math.log(2.0**k - 1) if k < 60 else k * ln2, 2, True)
    return sorted(c for c in out if lo <= c[0] <= hi)


def spread_points(fmt: Format, kind: Kind | None = None, windows: bool = True) -> list[float]:
    """The ``t`` the spread limit runs (see :func:`_spread_points`; computed once per dtype,
    kind and ``windows``)."""
    return list(_spread_points(fmt, kind, windows))


@functools.lru_cache(maxsize=16)
def _spread_points(fmt: Format, kind: Kind | None, windows: bool) -> tuple[float, ...]:
    """The ``t`` the spread limit runs, ascending: every value of the dtype from ``2**-6`` to
    where ``exp(-t)`` flushes (``ln(2 / smallest subnormal)``: 17.33 in float16) for a
    precision of at most :data:`SPREAD_EXHAUSTIVE_BITS` bits; else, there,
    :data:`SPREAD_PER_BINADE` points per binade and (with ``windows``)
    :data:`SPREAD_WINDOW` consecutive values from just before each of the first
    :data:`SPREAD_WINDOWS` falling crossings of :func:`spread_crossings` for ``kind`` (there
    the error jumps up, doubled; at a rising one it drops); outside, those of
    :func:`float_grid`.

    The ULP error of ``[0, -t]`` is a sawtooth (the rounding of ``1 + s`` comes and goes), so
    a coarse grid can step over its first crossing of the bound: float16 log_softmax_stable
    first passes 4 ulp at t = 1.26, between two grid points, and once crossed the grid again
    only at 2.38.  In float32 its first break, at t = 0.434, is one of 3 among the 335 544
    float32 values of [0.43, 0.44); 64 points per binade first found one at 2.16, the windows
    find it.
    """
    lo, hi = spread_range(fmt)
    uint = _UINT[fmt.dtype.itemsize]
    if fmt.p <= SPREAD_EXHAUSTIVE_BITS:
        ordinals = np.arange(_ordinal(lo, fmt), _ordinal(hi, fmt) + 1)
    else:
        steps = np.arange(-6 * SPREAD_PER_BINADE, 12 * SPREAD_PER_BINADE + 1)
        grid = np.asarray(fmt.cast(2.0 ** (steps / SPREAD_PER_BINADE)), fmt.dtype)
        parts = [grid.view(uint).astype(np.int64)]
        if windows:
            # from a few values before each crossing: it is computed in float64
            crossings = [t for t, falling in spread_crossings(kind, lo, hi) if falling]
            starts = [_ordinal(t, fmt) - 64 for t in crossings[:SPREAD_WINDOWS]]
            parts += [np.arange(k, k + SPREAD_WINDOW) for k in starts]
        ordinals = np.clip(np.concatenate(parts), _ordinal(lo, fmt), _ordinal(hi, fmt))
    dense = np.unique(ordinals).astype(uint).view(fmt.dtype).astype(np.float64)
    coarse = np.array([t for t in float_grid(fmt) if not lo <= t <= hi])
    return tuple(np.unique(np.concatenate([coarse, dense])).tolist())


def _ordinal(t: float, fmt: Format) -> int:
    """The position of ``t >= 0`` in the dtype's ordered bit patterns."""
    return int(np.asarray(t, fmt.dtype).view(_UINT[fmt.dtype.itemsize]))


def _from_ordinal(k: int, fmt: Format) -> float:
    return float(np.asarray(k, _UINT[fmt.dtype.itemsize]).view(fmt.dtype))


Bad = Callable[[Sample], bool]
Evaluate = Callable[[list[float]], list[Sample]]

#: Points tried per round of the refinement (one batched run each): 16x narrower per round.
ROUND = 15


def _first_bad(samples: Sequence[Sample], bad: Bad) -> int | None:
    """The index of the first sample that breaks; later samples are never classified."""
    for i, s in enumerate(samples):
        if bad(s):
            return i
    return None


def search_float(
    fmt: Format, evaluate: Evaluate, bad: Bad
) -> tuple[float | None, float | None, Sample | None]:
    """``(last_ok, first_bad, sample at first_bad)`` over the dtype's values in ``[0, max]``.

    The grid is run as one batch; then each round runs :data:`ROUND` points spread evenly over
    the ordered bit patterns between the last good and first bad point, until they are adjacent.
    """
    grid = float_grid(fmt)
    samples = evaluate(grid)
    i = _first_bad(samples, bad)
    if i is None:
        return grid[-1], None, None
    if i == 0:
        return None, grid[0], samples[0]
    return refine(fmt, evaluate, bad, grid[i - 1], grid[i], samples[i])


def refine(
    fmt: Format, evaluate: Evaluate, bad: Bad, good: float, broken: float, sample: Sample
) -> tuple[float, float, Sample]:
    """Narrow ``good < broken`` (``sample``: the run at ``broken``) down to adjacent values."""
    lo, hi = _ordinal(good, fmt), _ordinal(broken, fmt)
    while hi - lo > 1:
        k = min(ROUND, hi - lo - 1)
        points = sorted({lo + (hi - lo) * j // (k + 1) for j in range(1, k + 1)} - {lo, hi})
        tried = evaluate([_from_ordinal(p, fmt) for p in points])
        j = _first_bad(tried, bad)
        if j is None:
            lo = points[-1]
        else:
            hi, sample = points[j], tried[j]
            if j > 0:
                lo = points[j - 1]
    return _from_ordinal(lo, fmt), _from_ordinal(hi, fmt), sample


def search_int(
    top: int, evaluate: Evaluate, bad: Bad
) -> tuple[float | None, float | None, Sample | None]:
    """``(last_ok, first_bad, sample)`` over the integers ``1..top`` (powers of 2, then bisect)."""
    grid = sorted({*(1 << k for k in range(top.bit_length()) if 1 << k <= top), top})
    prev = None
    for n in grid:
        (s,) = evaluate([float(n)])
        if bad(s):
            if prev is None:
                return None, float(n), s
            lo, hi, sample = prev, n, s
            while hi - lo > 1:
                mid = (lo + hi) // 2
                (s,) = evaluate([float(mid)])
                if bad(s):
                    hi, sample = mid, s
                else:
                    lo = mid
            return float(lo), float(hi), sample
        prev = n
    return float(top), None, None


def _representable(
    fmt: Format, rounded: Callable[[list[float]], list[float]]
) -> tuple[float, float] | None:
    """Where the exact probability of ``[0, -t]``'s small element first rounds to 0."""
    grid = float_grid(fmt)
    values = rounded(grid)
    zero = [i for i, v in enumerate(values) if v == 0]
    if not zero or zero[0] == 0:
        return None
    lo, hi = _ordinal(grid[zero[0] - 1], fmt), _ordinal(grid[zero[0]], fmt)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if rounded([_from_ordinal(mid, fmt)])[0] == 0:
            hi = mid
        else:
            lo = mid
    return _from_ordinal(lo, fmt), _from_ordinal(hi, fmt)
