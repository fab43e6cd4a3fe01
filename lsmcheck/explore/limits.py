"""Measured breaking points of every algorithm in every dtype (``lsmcheck limits``).

Each limit is found by running the registered algorithm on a family of probe vectors with one
parameter ``t`` and classifying every result with the audit's metrics (see
:mod:`lsmcheck.explore.probe`); nothing is looked up in a table.  The probes:

==========  ===============  ====================================================================
limit       probe            breaks when
==========  ===============  ====================================================================
overflow    ``[t, 0]``       an output overflows or is NaN other than by a flush (the largest
                             logit; float8_e4m3fn has no infinity, so log(0) is NaN there)
underflow   ``[-t, -t]``     an output underflows or is NaN (the lowest maximum logit)
flush       ``[0, -t]``      the small element's output is flushed (0, or -inf in the log
                             domain); the flush is *early* when the exact value still rounds to
                             a nonzero number in the dtype (lowest logit relative to the maximum)
spread      ``[0, -t]``      the max ULP error passes ``ulp_bound`` or anything breaks
length      ``[0] * t``      anything breaks (the sum of ``t`` terms ``exp(0) = 1`` overflows)
==========  ===============  ====================================================================

The parameter runs over the dtype's values in ``[0, max]`` (``[1, max_length]`` for length).
The search first evaluates a grid (four points per binade from 2**-6 to 2**12, sparser above,
and the format's maximum), then bisects between the last grid point that holds and the first
that breaks, over the dtype's ordered bit patterns, until the two are adjacent floats.  A
predicate that is not monotone would thus be reported at its first crossing on the grid: the
ULP error of ``spread`` is not, so spread runs its own scan (:func:`spread_points`), every
value of a format of at most 11 bits, a *sample* of float32 and float64, where the result is
the first break found (:attr:`Limit.sampled`: a smaller lead not tried may break too).

The analytical values beside them follow from the format: ``ln(max)`` (exp overflows),
``ln(smallest subnormal / 2)`` (exp, or a probability, rounds to 0) and the overflow threshold
``max + ulp(max)/2`` (the sum of that many ones rounds to infinity).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import Algorithm, Kind, get_algorithm
from lsmcheck.dtypes import Format, get_format
from lsmcheck.errors import UsageError
from lsmcheck.explore.probe import Prober, Sample
from lsmcheck.gate import nonnegative
from lsmcheck.reference import round_to_format
from lsmcheck.results import prose_number
from lsmcheck.userimpl import ImplementationError

Progress = Callable[[int, int], None]

#: The limits, in table order.
LIMITS: tuple[str, ...] = ("overflow", "underflow", "flush", "spread", "length")
#: Default ULP bound of the spread limit.
DEFAULT_ULP_BOUND = 4.0
#: Default largest length searched by the length limit.
DEFAULT_MAX_LENGTH = 1 << 17

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # float8: one byte


@dataclass(frozen=True)
class Spec:
    """How one limit is probed and reported.

    Attributes:
        name: the limit's name (one of :data:`LIMITS`).
        quantity: what the reported value is, in words.
        form: the probe vector, in terms of the parameter ``t``.
        sign: the reported value is ``sign * t``.
    """

    name: str
    quantity: str
    form: str
    sign: int


SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("overflow", "largest logit", "[t, 0]", 1),
        Spec("underflow", "lowest maximum logit (every logit equal)", "[-t, -t]", -1),
        Spec("flush", "lowest logit relative to the maximum", "[0, -t]", -1),
        Spec("spread", "lead of the top logit over the rest", "[0, -t]", 1),
        Spec("length", "vector length (equal logits)", "[0] * t", 1),
    )
}


@dataclass(frozen=True)
class Limit:
    """One measured limit of one algorithm in one dtype.

    Values are the probe parameter ``t >= 0``; :attr:`value` applies the sign.

    Attributes:
        algorithm, dtype, name: what it is about.
        last_ok: the largest ``t`` that holds (``None`` if even ``t = 0`` breaks, and for a
            :attr:`sampled` limit, where not every smaller ``t`` was tried).
        first_bad: the adjacent ``t`` that breaks (``None``: nothing broke up to ``searched``);
            for a :attr:`sampled` limit, the smallest ``t`` found to break, an upper bound of
            the first that does.
        searched: the largest ``t`` tried (the format's max, or the max length).
        analytical: the analytical value of ``t`` where one exists.
        event: what broke at ``first_bad``, in words ("" when nothing broke).
        event_kind: ``kind:event`` of that finding, e.g. ``overflow:exp_overflow``.
        early: for ``flush``, whether the first flush is an underflow (the exact value still
            rounds to a nonzero number); ``None`` otherwise.
        applicable: ``False`` where the limit does not apply (``flush`` of logsumexp, which has
            one output per vector).
        bound: the ULP bound of ``spread``.
        sampled: ``True`` for a ``spread`` limit measured on a sample of the dtype's values
            (float32, float64): the error is not monotone in ``t``, so an untried ``t`` below
            :attr:`first_bad` may break too, and "nothing broke" covers the tried values only.
        tried: for ``spread``, how many leads below :attr:`first_bad` (or in the whole range,
            when nothing broke) were run, every one within the bound.
    """

    algorithm: str
    dtype: str
    name: str
    last_ok: float | None
    first_bad: float | None
    searched: float
    analytical: float | None
    event: str = ""
    event_kind: str = ""
    early: bool | None = None
    applicable: bool = True
    bound: float | None = None
    sampled: bool = False
    tried: int | None = None

    @property
    def spec(self) -> Spec:
        return SPECS[self.name]

    @property
    def found(self) -> bool:
        """Whether the algorithm broke within the searched range."""
        return self.applicable and self.first_bad is not None

    @property
    def value(self) -> float | None:
        """The signed last value that holds (e.g. ``-17.33`` for underflow); ``None`` where
        it is not known (a :attr:`sampled` limit)."""
        if self.last_ok is None:
            return None
        return self.spec.sign * self.last_ok

    @property
    def breaks(self) -> bool:
        """Whether crossing this limit makes the result wrong (a flush only when early)."""
        if not self.found:
            return False
        return self.name != "flush" or bool(self.early)


@dataclass(frozen=True)
class DtypeFacts:
    """What each dtype allows, measured from the reference and stated analytically.

    Attributes:
        dtype: the format.
        max, smallest_subnormal: the format's constants.
        overflow_threshold: the magnitude from which values overflow, exactly (an integer:
            float64's is not a float64).
        ln_max: ``ln(max)``, the largest argument exp takes without overflowing.
        ln_tiny: ``ln(smallest_subnormal / 2)``, below which exp rounds to 0.
        representable: the largest ``t`` for which the exact probability of the small element
            of ``[0, -t]`` still rounds to a nonzero number (from the certified reference),
            and the adjacent ``t`` where it rounds to 0.
    """

    dtype: str
    max: float
    smallest_subnormal: float
    overflow_threshold: int
    ln_max: float
    ln_tiny: float
    representable: tuple[float, float] | None


def analytical(name: str, fmt: Format) -> float | None:
    """The analytical value of limit ``name``'s parameter in ``fmt`` (``None``: none)."""
    if name == "overflow":
        return math.log(fmt.max)
    if name in ("underflow", "flush"):
        return math.log(2) - math.log(fmt.smallest_subnormal)
    if name == "length":
        threshold = fmt.overflow_threshold  # beyond float64 for float64: use max (1 ulp off)
        if not math.isfinite(threshold):
            return fmt.max
        # the sum n rounds to max + ulp/2 itself only when max's significand is odd (ties to
        # even go up); when it is even (float8_e4m3fn: 464 -> 448) the first overflow is above
        odd = int(fmt.max / 2.0 ** (fmt.emax - fmt.p + 1)) % 2 == 1
        return math.ceil(threshold) + (0 if odd or threshold != int(threshold) else 1)
    return None


def probe_rows(name: str, ts: Sequence[float]) -> npt.NDArray[np.float64]:
    """The probe vectors of limit ``name`` at parameters ``ts`` (not for ``length``)."""
    t = np.asarray(ts, np.float64)
    zero = np.zeros_like(t)
    if name == "overflow":
        return np.stack([t, zero], axis=1)
    if name == "underflow":
        return np.stack([-t, -t], axis=1)
    if name in ("flush", "spread"):
        return np.stack([zero, -t], axis=1)
    raise ValueError(f"no fixed-length probe for {name!r}")


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


def _not_applicable(alg: Algorithm, fmt: Format, name: str, event: str = "") -> Limit:
    """The entry of a limit that has no meaning for ``alg`` (or that it failed to compute)."""
    return Limit(
        alg.name,
        fmt.name,
        name,
        last_ok=None,
        first_bad=None,
        searched=fmt.max,
        analytical=analytical(name, fmt),
        event=event,
        applicable=False,
    )


class Explorer:
    """Measures limits, caching references per dtype (one :class:`Prober` each)."""

    def __init__(
        self,
        ulp_bound: float = DEFAULT_ULP_BOUND,
        max_length: int = DEFAULT_MAX_LENGTH,
        precision_bits: int = 113,
    ) -> None:
        if not nonnegative(ulp_bound):  # NaN, negative, or -0.0 (a slip)
            raise UsageError(f"--ulp-bound: expected a number >= 0, got {ulp_bound!r}")
        if max_length < 2:
            raise UsageError(f"--max-length: expected at least 2, got {max_length}")
        self.ulp_bound = ulp_bound
        self.max_length = max_length
        self.precision_bits = precision_bits
        self._probers: dict[str, Prober] = {}
        self._facts: dict[str, DtypeFacts] = {}

    def prober(self, fmt: Format) -> Prober:
        if fmt.name not in self._probers:
            self._probers[fmt.name] = Prober(fmt, self.precision_bits)
        return self._probers[fmt.name]

    @property
    def evaluations(self) -> int:
        """How many probe vectors were run so far."""
        return sum(p.evaluations for p in self._probers.values())

    def limit(self, alg: Algorithm, fmt: Format, name: str) -> Limit:
        """Measure limit ``name`` of ``alg`` in ``fmt``.

        A user implementation that fails on a probe (:class:`ImplementationError`) gets a limit
        that is not applicable, with the error as its ``event``: no number is made up.
        """
        try:
            return self._limit(alg, fmt, name)
        except ImplementationError as e:
            return _not_applicable(alg, fmt, name, event=f"error: {e}")

    def _limit(self, alg: Algorithm, fmt: Format, name: str) -> Limit:
        prober = self.prober(fmt)
        ana = analytical(name, fmt)
        sampled, tried = False, None  # spread's (see Limit)
        if name == "flush" and alg.kind.per_vector:
            return _not_applicable(alg, fmt, name)
        if name == "length":

            def evaluate(ts: list[float]) -> list[Sample]:
                return [s for t in ts for s in prober.probe(alg, np.zeros((1, int(t))))]

            last, first, sample = search_int(self.max_length, evaluate, _broken)
            searched: float = self.max_length
        else:

            def evaluate(ts: list[float]) -> list[Sample]:
                return prober.probe(alg, probe_rows(name, ts))

            bad: Bad = {"overflow": _overflowed, "underflow": _underflowed}.get(name, _broken)
            if name == "flush":
                bad = _flushed_or_broken
            elif name == "spread":
                bound = self.ulp_bound

                def bad(s: Sample) -> bool:
                    return s.broken or not s.max_ulp <= bound

            if name == "spread":
                last, first, sample, sampled, tried = self._spread(alg, fmt, evaluate, bad)
            else:
                last, first, sample = search_float(fmt, evaluate, bad)
            searched = fmt.max
        early = None
        if name == "flush" and sample is not None:
            early = sample.broken
        return Limit(
            alg.name,
            fmt.name,
            name,
            last_ok=last,
            first_bad=first,
            searched=searched,
            analytical=ana,
            event=sample.event() if sample is not None else "",
            event_kind=sample.event_kind() if sample is not None else "",
            early=early,
            bound=self.ulp_bound if name == "spread" else None,
            sampled=sampled,
            tried=tried,
        )

    def _spread(
        self, alg: Algorithm, fmt: Format, evaluate: Evaluate, bad: Bad
    ) -> tuple[float | None, float | None, Sample | None, bool, int]:
        """The spread limit: the first ``t`` of :func:`spread_points` whose error passes the
        bound (or that breaks), refined between it and the point before; and whether that was
        a sample (not every value of the dtype below it was tried), and how many leads below
        it were run.

        The points are measured in batches of :data:`SPREAD_CHUNK` by the audit's fast tier
        where it covers the format and kind (each row it cannot settle by the probes' mpmath
        reference), up to the first batch with a break; otherwise one probe at a time through
        the mpmath reference, on the points without the windows (that many rows would take
        minutes there)."""
        prober = self.prober(fmt)
        fast = prober.covers(alg)
        ts = spread_points(fmt, alg.kind, windows=fast)
        first, sample = None, None
        step = SPREAD_CHUNK if fast else ROUND * 16
        for start in range(0, len(ts), step):
            part = ts[start : start + step]
            scan = prober.fast_scan(alg, probe_rows("spread", part)) if fast else None
            if scan is None:
                samples = evaluate(part)
                j = _first_bad(samples, bad)
                if j is not None:
                    first, sample = start + j, samples[j]
            else:
                worst, broke = scan
                with np.errstate(invalid="ignore"):
                    odd = np.isnan(worst) | broke | ~(worst <= self.ulp_bound)
                suspect = np.flatnonzero(odd)
                # the probes' own measurement decides (one run, measured lazily in order)
                samples = evaluate([part[i] for i in suspect.tolist()]) if suspect.size else []
                j = _first_bad(samples, bad)
                if j is not None:
                    first, sample = start + int(suspect[j]), samples[j]
            if first is not None:
                break
        lo, hi = spread_range(fmt)
        every = fmt.p <= SPREAD_EXHAUSTIVE_BITS
        if first is None or sample is None:
            return (None if not every else ts[-1]), None, None, not every, len(ts)
        if first == 0:
            return None, ts[0], sample, False, 0
        tried: list[float] = []

        def recorded(points: list[float]) -> list[Sample]:
            tried.extend(points)
            return evaluate(points)

        last, first_bad, sample = refine(fmt, recorded, bad, ts[first - 1], ts[first], sample)
        sampled = not (every and lo <= first_bad <= hi)
        below = first + sum(1 for t in tried if t < first_bad)
        return (None if sampled else last), first_bad, sample, sampled, below

    def facts(self, fmt: Format) -> DtypeFacts:
        """The dtype's constants and the reference's representable limit."""
        if fmt.name not in self._facts:
            prober = self.prober(fmt)

            def evaluate(ts: list[float]) -> list[float]:
                return [
                    round_to_format(prober.reference(row).softmax[1], fmt)
                    for row in np.asarray(fmt.cast(probe_rows("flush", ts)), np.float64)
                ]

            self._facts[fmt.name] = DtypeFacts(
                dtype=fmt.name,
                max=fmt.max,
                smallest_subnormal=fmt.smallest_subnormal,
                overflow_threshold=fmt.overflow_threshold_exact,
                ln_max=math.log(fmt.max),
                ln_tiny=math.log(fmt.smallest_subnormal) - math.log(2),
                representable=_representable(fmt, evaluate),
            )
        return self._facts[fmt.name]


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


def _broken(s: Sample) -> bool:
    return s.broken


def _overflowed(s: Sample) -> bool:
    return s.overflowed


def _underflowed(s: Sample) -> bool:
    return s.underflowed


def _flushed_or_broken(s: Sample) -> bool:
    return s.broken or s.flushed(1)


@dataclass(frozen=True)
class LimitsReport:
    """Every measured limit, the dtype facts, and verdicts in words.

    Attributes:
        limits: one per (algorithm, dtype, limit), by dtype, then algorithm, then limit.
        facts: one per dtype.
        ulp_bound: the spread limit's bound.
        max_length: the largest length searched.
        evaluations: probe vectors run.
    """

    limits: tuple[Limit, ...]
    facts: tuple[DtypeFacts, ...]
    ulp_bound: float
    max_length: int
    evaluations: int

    def get(self, algorithm: str, dtype: str, name: str) -> Limit:
        for lim in self.limits:
            if (lim.algorithm, lim.dtype, lim.name) == (algorithm, dtype, name):
                return lim
        raise KeyError((algorithm, dtype, name))

    def verdicts(self) -> list[str]:
        return verdicts(self.limits)


def measure_limits(
    algorithms: Sequence[str | Algorithm],
    dtypes: Sequence[str],
    names: Sequence[str] = LIMITS,
    ulp_bound: float = DEFAULT_ULP_BOUND,
    max_length: int = DEFAULT_MAX_LENGTH,
    progress: Progress | None = None,
) -> LimitsReport:
    """Measure every limit in ``names`` for every algorithm in every dtype."""
    algs = [a if isinstance(a, Algorithm) else get_algorithm(a) for a in dict.fromkeys(algorithms)]
    fmts = [get_format(d) for d in dict.fromkeys(dtypes)]
    for n in names:
        if n not in SPECS:
            raise UsageError(f"--limit: unknown limit {n!r} (choose from {', '.join(LIMITS)})")
    explorer = Explorer(ulp_bound, max_length)
    total = len(algs) * len(fmts) * len(names) + len(fmts)
    done = 0
    out = []
    facts = []
    for fmt in fmts:
        facts.append(explorer.facts(fmt))
        done += 1
        if progress:
            progress(done, total)
        for alg in algs:
            for n in names:
                out.append(explorer.limit(alg, fmt, n))
                done += 1
                if progress:
                    progress(done, total)
    return LimitsReport(tuple(out), tuple(facts), ulp_bound, max_length, explorer.evaluations)


# ---------------------------------------------------------------------------------------------
# Verdicts in plain words
# ---------------------------------------------------------------------------------------------


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _advice(lim: Limit) -> str:
    if lim.name in ("overflow", "underflow"):
        return "shift by the maximum first"
    if lim.name == "flush":
        return "compute log_softmax directly: (x - max) - log(sum(exp(x - max)))"
    if lim.name == "length":
        return "accumulate the sum in a wider type (float32)"
    if "log" in lim.algorithm:
        return "log(1 + s) loses the small sum s of the other terms, log1p(s) keeps it"
    return "compute in a wider type"


#: Third person singular and plural of the verbs the verdicts use.
_VERBS = {
    "overflow": ("overflows", "overflow"),
    "underflow": ("underflows", "underflow"),
    "nan": ("returns NaN", "return NaN"),
    "flush": ("flushes", "flush"),
    "off": ("is off", "are off"),
}


def _what(lim: Limit, plural: bool) -> str:
    """What happens past the limit, in a few words, with the verb agreeing."""

    def verb(key: str) -> str:
        return _VERBS[key][plural]

    last = prose_number(lim.value or 0.0)
    kind = lim.event_kind.split(":")[0]
    if lim.name == "overflow":
        return f"{verb(kind)} once any logit exceeds {last}"
    if lim.name == "underflow":
        return f"{verb(kind)} once every logit is below {last}"
    if lim.name == "flush":
        zero = "0" if lim.algorithm.startswith("softmax") else "-inf"
        if zero == "-inf" and not get_format(lim.dtype).has_inf:
            zero = f"NaN (-inf, which {lim.dtype} cannot hold)"
        return (
            f"{verb('flush')} a logit more than {prose_number(lim.last_ok or 0.0)} below the "
            f"maximum to {zero} although its exact value is representable"
        )
    if lim.name == "spread":
        fmt = get_format(lim.dtype)
        first = lim.first_bad or 0.0
        if lim.sampled:
            return (
                f"{verb('off')} by more than {prose_number(lim.bound or 0.0)} ulp when the top "
                f"logit leads the rest by {prose_number(first)}, the smallest lead found to "
                f"break ({lim.tried} smaller {fmt.name} leads tried hold, but not every value; "
                "an untried one may break too)"
            )
        if first == 0:
            tried = "already with no lead"
        else:
            tried = f"every smaller {fmt.name} lead down to 2**-6 holds"
        return (
            f"{verb('off')} by more than {prose_number(lim.bound or 0.0)} ulp first when the top "
            f"logit leads the rest by {prose_number(first)} ({tried})"
        )
    return f"{verb(kind)} from a length of {prose_number(lim.first_bad or 0.0)} equal logits"


def verdicts(limits: Sequence[Limit]) -> list[str]:
    """One sentence per (dtype, limit, outcome), algorithms with the same outcome grouped."""
    everyone = {d: {x.algorithm for x in limits if x.dtype == d} for d in {x.dtype for x in limits}}
    grouped: dict[tuple[str, str, str, str], list[Limit]] = {}
    for lim in limits:
        if lim.breaks or (lim.name == "spread" and lim.found):
            key = (lim.dtype, lim.name, _what(lim, False), _advice(lim))
            grouped.setdefault(key, []).append(lim)
    out = []
    for (dtype, _, _, advice), lims in grouped.items():
        algs = [lim.algorithm for lim in lims]
        every = len(algs) > 2 and set(algs) == everyone[dtype]
        who = "every algorithm" if every else _join(algs)
        sentence = f"{who} in {dtype} {_what(lims[0], len(algs) > 1 and not every)}: {advice}."
        out.append(sentence[0].upper() + sentence[1:] if every else sentence)
    failed: dict[tuple[str, str], str] = {}
    for lim in limits:
        if lim.event.startswith("error"):
            failed.setdefault((lim.algorithm, lim.dtype), lim.event)
    for (alg, dtype), error in failed.items():
        out.append(f"{alg} in {dtype} could not be probed: {error}.")
    survivors: dict[str, list[str]] = {}
    for lim in limits:
        if lim.name == "overflow" and lim.applicable and not lim.found:
            survivors.setdefault(lim.dtype, []).append(lim.algorithm)
    for dtype, algs in survivors.items():
        fmt = get_format(dtype)
        verb = "never overflows" if len(algs) == 1 else "never overflow"
        out.append(
            f"{_join(algs)} in {dtype} {verb} on [t, 0], up to the format's maximum "
            f"{prose_number(fmt.max)}."
        )
    return out
