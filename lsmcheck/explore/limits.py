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
predicate that is not monotone (the ULP error of ``spread`` is not) is thus reported at its
first crossing on the grid, refined exactly.

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
        last_ok: the largest ``t`` that holds (``None`` if even ``t = 0`` breaks).
        first_bad: the adjacent ``t`` that breaks (``None``: nothing broke up to ``searched``).
        searched: the largest ``t`` tried (the format's max, or the max length).
        analytical: the analytical value of ``t`` where one exists.
        event: what broke at ``first_bad``, in words ("" when nothing broke).
        event_kind: ``kind:event`` of that finding, e.g. ``overflow:exp_overflow``.
        early: for ``flush``, whether the first flush is an underflow (the exact value still
            rounds to a nonzero number); ``None`` otherwise.
        applicable: ``False`` where the limit does not apply (``flush`` of logsumexp, which has
            one output per vector).
        bound: the ULP bound of ``spread``.
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

    @property
    def spec(self) -> Spec:
        return SPECS[self.name]

    @property
    def found(self) -> bool:
        """Whether the algorithm broke within the searched range."""
        return self.applicable and self.first_bad is not None

    @property
    def value(self) -> float | None:
        """The signed last value that holds (e.g. ``-17.33`` for underflow)."""
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
#: its precision is at most this many bits (float16, bfloat16, float8), else this many points
#: per binade.
SPREAD_EXHAUSTIVE_BITS = 11
SPREAD_PER_BINADE = 64


def spread_range(fmt: Format) -> tuple[float, float]:
    """The leads the spread limit tries densely: from 2**-6 to where ``exp(-t)`` flushes.

    Beyond, the small element's exact probability rounds to 0 and its log is ``-t`` give or
    take less than an ulp, so the grid is enough there (and the fast tier leaves such tiny
    values to mpmath, one probe at a time).
    """
    return 2.0**-6, min(2.0**12, fmt.max, math.log(2 / fmt.smallest_subnormal))


def spread_points(fmt: Format) -> list[float]:
    """The ``t`` the spread limit runs, ascending: every value of the dtype from ``2**-6`` to
    where ``exp(-t)`` flushes (``ln(2 / smallest subnormal)``: 17.33 in float16) for a
    precision of at most :data:`SPREAD_EXHAUSTIVE_BITS` bits, else :data:`SPREAD_PER_BINADE`
    points per binade there; outside, those of :func:`float_grid`.

    The ULP error of ``[0, -t]`` is a sawtooth (the rounding of ``1 + s`` comes and goes), so
    a coarse grid can step over its first crossing of the bound: float16 log_softmax_stable
    first passes 4 ulp at t = 1.26, between two grid points, and once crossed the grid again
    only at 2.38.
    """
    lo, hi = spread_range(fmt)
    if fmt.p <= SPREAD_EXHAUSTIVE_BITS:
        ordinals = np.arange(_ordinal(lo, fmt), _ordinal(hi, fmt) + 1)
        dense = ordinals.astype(_UINT[fmt.dtype.itemsize]).view(fmt.dtype).astype(np.float64)
    else:
        steps = np.arange(-6 * SPREAD_PER_BINADE, 12 * SPREAD_PER_BINADE + 1)
        dense = np.asarray(fmt.cast(2.0 ** (steps / SPREAD_PER_BINADE)), np.float64)
    coarse = [t for t in float_grid(fmt) if not lo <= t <= hi]
    return sorted({*coarse, *(float(t) for t in dense if t <= hi)})


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
        if not ulp_bound >= 0:
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
                last, first, sample = self._spread(alg, fmt, evaluate, bad)
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
        )

    def _spread(
        self, alg: Algorithm, fmt: Format, evaluate: Evaluate, bad: Bad
    ) -> tuple[float | None, float | None, Sample | None]:
        """The spread limit: the first ``t`` of :func:`spread_points` whose error passes the
        bound (or that breaks), refined to adjacent values.  The points are measured all at
        once by the audit's fast tier where it covers the format (each row it cannot settle,
        and every row of a format it does not cover, by the probes' mpmath reference)."""
        ts = spread_points(fmt)
        scan = self.prober(fmt).fast_scan(alg, probe_rows("spread", ts))
        if scan is None:
            first, sample = None, None
            for start in range(0, len(ts), ROUND * 16):
                samples = evaluate(ts[start : start + ROUND * 16])
                j = _first_bad(samples, bad)
                if j is not None:
                    first, sample = start + j, samples[j]
                    break
        else:
            worst, broke = scan
            with np.errstate(invalid="ignore"):
                suspect = np.flatnonzero(np.isnan(worst) | broke | ~(worst <= self.ulp_bound))
            # the probes' own measurement decides (one run, measured lazily in order)
            samples = evaluate([ts[i] for i in suspect.tolist()]) if suspect.size else []
            j = _first_bad(samples, bad)
            first, sample = (None, None) if j is None else (int(suspect[j]), samples[j])
        if first is None or sample is None:
            return ts[-1], None, None
        if first == 0:
            return None, ts[0], sample
        return refine(fmt, evaluate, bad, ts[first - 1], ts[first], sample)  # adjacent: as is

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
        lo, hi = spread_range(fmt)
        first = lim.first_bad or 0.0
        if not lo <= first <= hi:
            tried = "the first found on the grid, outside the leads tried one by one"
        elif fmt.p <= SPREAD_EXHAUSTIVE_BITS:
            tried = f"every smaller {fmt.name} lead down to 2**-6 holds"
        else:
            tried = f"the first found of {SPREAD_PER_BINADE} leads tried per binade"
        return (
            f"{verb('off')} by more than {prose_number(lim.bound or 0.0)} ulp first when the top "
            f"logit leads the rest by {prose_number(lim.first_bad or 0.0)} ({tried})"
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
