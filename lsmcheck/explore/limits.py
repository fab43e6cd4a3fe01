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
ULP error of ``spread`` is not, so spread runs its own scan
(:func:`~lsmcheck.explore.search.spread_points`), every value of a format of at most 11 bits, a
*sample* of float32 and float64, where the result is the first break found
(:attr:`Limit.sampled`: a smaller lead not tried may break too).  The grid, the scan and the
searches are in :mod:`lsmcheck.explore.search`; the verdicts in words in
:mod:`lsmcheck.explore.verdicts`.

The analytical values beside them follow from the format: ``ln(max)`` (exp overflows),
``ln(smallest subnormal / 2)`` (exp, or a probability, rounds to 0) and the overflow threshold
``max + ulp(max)/2`` (the sum of that many ones rounds to infinity).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import Algorithm, get_algorithm
from lsmcheck.dtypes import Format, get_format
from lsmcheck.errors import UsageError
from lsmcheck.explore.probe import Prober, Sample
from lsmcheck.explore.search import (
    ROUND,
    SPREAD_CHUNK,
    SPREAD_EXHAUSTIVE_BITS,
    Bad,
    Evaluate,
    _first_bad,
    _representable,
    refine,
    search_float,
    search_int,
    spread_points,
    spread_range,
)
from lsmcheck.explore.verdicts import verdicts
from lsmcheck.gate import nonnegative
from lsmcheck.reference import round_to_format
from lsmcheck.userimpl import ImplementationError

Progress = Callable[[int, int], None]

#: The limits, in table order.
LIMITS: tuple[str, ...] = ("overflow", "underflow", "flush", "spread", "length")
#: Default ULP bound of the spread limit.
DEFAULT_ULP_BOUND = 4.0
#: Default largest length searched by the length limit.
DEFAULT_MAX_LENGTH = 1 << 17


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
