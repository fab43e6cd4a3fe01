"""Search for the inputs that break an implementation worst (``lsmcheck hunt``).

Every candidate goes through :func:`lsmcheck.audit.audit` (the engine of ``lsmcheck run``), in
rounds of :data:`BATCH` vectors.  The rounds, all drawn from one seeded generator:

1. a baseline round of standard normal logits (what "ordinary" inputs give);
2. then, alternately, a *sampling* round and a *refinement* round.

Sampling spreads candidates over the whole float range by drawing exponents, not only values:
half the candidates draw every logit as ``±m * 2**e`` with ``e`` uniform over the dtype's
exponent range; the other half draw a centre the same way and add gaps ``±m * 2**e`` with ``e``
uniform over ``-12..12`` (softmax depends only on differences, and gaps of every size matter).

Refinement mutates the best candidates found so far (a pool of :data:`POOL`): nudging one logit
by a few ulps (through the ordered bit patterns), doubling or halving one logit's gap to the
maximum, shifting the whole vector by ``±2**e``, or copying one logit onto another; a mutant
enters the pool when it scores higher than the pool's weakest.

A candidate's score orders by whether it broke (overflow, underflow or NaN), then by its max
ULP error.  The search stops when the time budget is spent (but not before one round of each
kind has run), or after exactly ``evals`` candidates when that is given (so
``--seed S --evals N`` repeats a hunt exactly on any machine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import BUILTINS, Algorithm
from lsmcheck.audit import audit
from lsmcheck.dtypes import Format, get_format
from lsmcheck.errors import UsageError
from lsmcheck.explain import INACCURATE_ULP, verdict
from lsmcheck.options import Options
from lsmcheck.results import Result, repr_float
from lsmcheck.vectors import Vector, beyond_memory

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[float, float], None]

#: Candidates audited per round.
BATCH = 32
#: How many of the best candidates refinement works on.
POOL = 8
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # bits of each width


@dataclass(frozen=True)
class Found:
    """One candidate and its audit.

    Attributes:
        values: the logits, values of the dtype (as float64).
        result: the audit of ``values`` by the implementation in the dtype.
        origin: ``baseline``, ``sampling`` or ``refinement``.
    """

    values: FloatArray
    result: Result
    origin: str

    @property
    def broken(self) -> bool:
        r = self.result
        return bool(r.overflow or r.underflow or r.nan)

    @property
    def score(self) -> tuple[bool, float]:
        ulp = self.result.max_ulp
        return self.broken, (-1.0 if ulp is None or math.isnan(ulp) else ulp)

    def case_lines(self, algorithm: str, seed: int) -> list[str]:
        """A comment naming what it breaks, and the vector as a CSV line of the dtype's values.

        ``algorithm`` is how the command line names the implementation (``-a NAME`` or
        ``--impl KIND=MODULE:FUNCTION``)."""
        r = self.result
        what = [f"max_ulp {_fmt_ulp(r.max_ulp)}"]
        what += [f"{k} {getattr(r, k)}" for k in ("overflow", "underflow", "nan") if getattr(r, k)]
        line = ",".join(repr_float(float(v), r.dtype) for v in self.values)
        return [
            f"# lsmcheck hunt {algorithm} -d {r.dtype} --seed {seed}: {', '.join(what)}",
            line,
        ]

    @property
    def signature(self) -> tuple[float, ...]:
        """The sorted gaps to the maximum to 2 digits: near-copies of a vector share it."""
        gaps = np.sort(self.values - np.max(self.values))
        return tuple(float(f"{g:.2g}") for g in gaps)


@dataclass(frozen=True)
class HuntReport:
    """A finished hunt.

    Attributes:
        algorithm, dtype, length, seed: what was hunted, and the draw.
        evaluations: candidates audited; ``rounds``: rounds run; ``seconds``: time spent.
        worst: the worst candidates, worst first, near-copies left out (see
            :attr:`Found.signature`).
        baseline: the worst max ULP error of the baseline round of standard normal logits.
        broken: candidates that overflowed, underflowed or returned NaN.
        unaudited: why the first candidate that could not be audited was not (e.g. the
            implementation raised or timed out), or ``None``.
        kind: what the implementation computes (``softmax``, ``log_softmax``, ``logsumexp``).
        implementation: the implementation itself (to audit the worst again).
    """

    algorithm: str
    dtype: str
    length: int
    seed: int
    evaluations: int
    rounds: int
    seconds: float
    worst: tuple[Found, ...]
    baseline: float
    broken: int
    kind: str = ""
    implementation: Algorithm | None = None
    unaudited: str | None = None

    @property
    def flag(self) -> str:
        """The implementation as a command-line flag: ``-a NAME`` for a built-in or a framework
        adapter (``-a torch.softmax``), ``--impl KIND=NAME`` for the user's own."""
        if self.algorithm in BUILTINS:
            return f"-a {self.algorithm}"
        from lsmcheck import frameworks  # only when needed: importlib.metadata, ~30 ms

        if self.algorithm in frameworks.NAMES:
            return f"-a {self.algorithm}"
        return f"--impl {self.kind}={self.algorithm}"

    def case_text(self) -> str:
        """The worst vectors as ready-to-use case lines (with a comment each)."""
        lines = []
        for f in self.worst:
            lines += f.case_lines(self.flag, self.seed)
        return "\n".join(lines) + "\n"

    def verdict(self) -> str:
        return hunt_verdict(self)


def _fmt_ulp(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if math.isfinite(x) else str(x)


class Hunter:
    """The search state: the generator, the pool of best candidates, and counters."""

    def __init__(
        self, algorithm: str | Algorithm, fmt: Format, length: int, seed: int, bits: int
    ) -> None:
        self.fmt = fmt
        self.length = length
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.options = Options(
            dtypes=(fmt.name,), algorithms=(algorithm,), precision_bits=bits, danger_zone=None
        )
        (self.implementation,) = self.options.implementations()
        self.pool: list[Found] = []
        self.best: dict[bytes, Found] = {}
        self.evaluations = 0
        self.broken = 0
        self.rounds = 0
        self.unaudited: str | None = None  # why the first unaudited candidate was not

    # -- candidates ---------------------------------------------------------------------------

    def _finite(self, x: FloatArray) -> FloatArray:
        """``x`` rounded to the dtype, with values beyond it clipped to ``±max``."""
        with np.errstate(over="ignore", invalid="ignore"):
            y = np.asarray(self.fmt.cast(np.clip(x, -self.fmt.max, self.fmt.max)), np.float64)
        y = np.where(np.isposinf(y), self.fmt.max, y)
        y = np.where(np.isneginf(y), -self.fmt.max, y)
        return np.where(np.isnan(y), 0.0, y)

    def _exponential(self, shape: tuple[int, ...], lo: int, hi: int) -> FloatArray:
        sign = self.rng.choice([-1.0, 1.0], size=shape)
        mant = self.rng.uniform(1.0, 2.0, size=shape)
        exps = self.rng.integers(lo, hi + 1, size=shape)
        return np.asarray(sign * np.ldexp(mant, exps), np.float64)

    def baseline(self) -> list[FloatArray]:
        z = self.rng.standard_normal((BATCH, self.length))
        return [self._finite(row) for row in z]

    def sample(self) -> list[FloatArray]:
        """Candidates spread over the float range: exponents drawn, not only values."""
        fmt, n = self.fmt, self.length
        half = BATCH // 2
        low = max(fmt.emin - fmt.p, -60)  # below this every exp argument is just 0
        free = self._exponential((half, n), low, fmt.emax)
        centre = self._exponential((BATCH - half, 1), -4, fmt.emax)
        gaps = self._exponential((BATCH - half, n), -12, 12)
        gaps[np.arange(BATCH - half), self.rng.integers(0, n, BATCH - half)] = 0.0
        return [self._finite(row) for row in np.concatenate([free, centre + gaps])]

    def _nudge(self, x: FloatArray) -> FloatArray:
        """Move one logit by 1 to 2**11 ulps (through the ordered bit patterns of its magnitude)."""
        y = x.copy()
        i = int(self.rng.integers(0, self.length))
        steps = int(self.rng.integers(1, 1 << int(self.rng.integers(1, 12))))
        uint = _UINT[self.fmt.dtype.itemsize]
        top = int(np.asarray(self.fmt.max, self.fmt.dtype).view(uint))
        bits = int(np.asarray(abs(y[i]), self.fmt.dtype).view(uint))
        bits = bits + steps if self.rng.random() < 0.5 else bits - steps
        magnitude = float(np.asarray(min(max(bits, 0), top), uint).view(self.fmt.dtype))
        y[i] = -magnitude if y[i] < 0 else magnitude
        return y

    def mutate(self, parent: FloatArray) -> FloatArray:
        x = parent.copy()
        kind = int(self.rng.integers(0, 4))
        top = float(np.max(x))
        if kind == 0:
            x = self._nudge(x)
        elif kind == 1:
            i = int(self.rng.integers(0, self.length))
            x[i] = top + (x[i] - top) * (2.0 if self.rng.random() < 0.5 else 0.5)
        elif kind == 2:
            x = x + float(self._exponential((1,), -8, self.fmt.emax)[0])
        else:
            i, j = self.rng.integers(0, self.length, size=2)
            x[i] = x[j]
            x = self._nudge(x)
        return self._finite(x)

    def refine(self) -> list[FloatArray]:
        if not self.pool:
            return self.sample()
        weights = np.linspace(2.0, 1.0, len(self.pool))
        parents = self.rng.choice(len(self.pool), size=BATCH, p=weights / weights.sum())
        return [self.mutate(self.pool[int(k)].values) for k in parents]

    # -- auditing -----------------------------------------------------------------------------

    def evaluate(self, candidates: list[FloatArray], origin: str) -> list[Found]:
        vectors = [Vector("hunt", self.evaluations + i, None, x) for i, x in enumerate(candidates)]
        report = audit(vectors, self.options)
        self.evaluations += len(vectors)
        self.rounds += 1
        found = []
        for x, r in zip(candidates, report.results, strict=True):
            if not r.audited:
                if self.unaudited is None and r.reason:
                    self.unaudited = r.reason
                continue
            f = Found(x, r, origin)
            found.append(f)
            self.broken += f.broken
            key = x.tobytes()
            if key not in self.best or f.score > self.best[key].score:
                self.best[key] = f
        self.pool = sorted([*self.pool, *found], key=lambda f: f.score, reverse=True)
        unique: dict[bytes, Found] = {}
        for f in self.pool:
            unique.setdefault(f.values.tobytes(), f)
        self.pool = list(unique.values())[:POOL]
        return found


def hunt(
    algorithm: str | Algorithm,
    dtype: str,
    *,
    length: int = 8,
    budget: float = 5.0,
    evals: int | None = None,
    seed: int = 0,
    top: int = 5,
    precision_bits: int = 113,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> HuntReport:
    """Hunt for the worst inputs of ``algorithm`` in ``dtype`` (see the module docstring)."""
    if length < 1:
        raise UsageError(f"--length: expected at least 1, got {length}")
    too_big = beyond_memory(BATCH * length)
    if too_big is not None:
        size, memory = too_big
        raise UsageError(
            f"--length: {BATCH} candidates of {length:,} logits (audited together) need about "
            f"{size} to audit at once, more than half this machine's {memory} of memory"
        )
    if not budget > 0:
        raise UsageError(f"--budget: expected seconds > 0, got {budget}")
    if evals is not None and evals < 1:
        raise UsageError(f"--evals: expected at least 1, got {evals}")
    if top < 1:
        raise UsageError(f"--top: expected at least 1, got {top}")
    fmt = get_format(dtype)
    hunter = Hunter(algorithm, fmt, length, seed, precision_bits)
    start = clock()
    baseline = hunter.evaluate(hunter.baseline()[:evals], "baseline")  # [:None]: all
    base = max((f.score[1] for f in baseline), default=math.nan)

    def left() -> bool:
        if evals is not None:
            return hunter.evaluations < evals
        return hunter.rounds < 3 or clock() - start < budget  # baseline, sampling, refinement

    while left():
        if progress is not None:
            done = hunter.evaluations / evals if evals else (clock() - start) / budget
            progress(min(done, 1.0), 1.0)
        if hunter.rounds % 2 == 1:
            batch = hunter.sample()
            origin = "sampling"
        else:
            batch = hunter.refine()
            origin = "refinement"
        if evals is not None:
            batch = batch[: evals - hunter.evaluations]
        hunter.evaluate(batch, origin)
    if progress is not None:
        progress(1.0, 1.0)
    worst: list[Found] = []
    seen: set[tuple[float, ...]] = set()
    for f in sorted(hunter.best.values(), key=lambda f: f.score, reverse=True):
        if f.signature not in seen and len(worst) < top:
            seen.add(f.signature)
            worst.append(f)
    impl = hunter.implementation
    return HuntReport(
        algorithm=impl.name,
        dtype=fmt.name,
        length=length,
        seed=seed,
        evaluations=hunter.evaluations,
        rounds=hunter.rounds,
        seconds=clock() - start,
        worst=tuple(worst),
        baseline=base,
        broken=hunter.broken,
        kind=impl.kind.value,
        implementation=impl,
        unaudited=hunter.unaudited,
    )


#: Advice by the first event of the worst candidate.
_ADVICE = {
    "overflow:exp_overflow": "shift by the maximum first",
    "overflow:sum_overflow": "accumulate the sum in a wider type",
    "underflow:exp_flush": "shift by the maximum first",
    "underflow:sum_flush": "shift by the maximum first",
    "underflow:log_of_zero": "compute log_softmax directly instead of log(softmax)",
    "nan:inf_over_inf": "shift by the maximum first",
    "nan:zero_over_zero": "shift by the maximum first",
    "nan:output": "a NaN usually comes from exp overflowing to inf (inf/inf): shift by the "
    "maximum first",
    "overflow:output": "shift by the maximum first, or use a wider type",
    "underflow:output": "compute in the log domain (log_softmax), or use a wider type",
}


def hunt_verdict(h: HuntReport) -> str:
    """A few sentences on what the hunt found, in plain words."""
    if not h.worst:
        why = f" (the first: {h.unaudited})" if h.unaudited else ""
        return f"{h.algorithm} in {h.dtype}: no candidate could be audited{why}."
    w = h.worst[0]
    r = w.result
    tried = f"{h.evaluations} inputs of length {h.length} tried in {h.seconds:.1f} s"
    base = f"random normal logits give at most {_fmt_ulp(h.baseline)} ulp"
    if w.broken:
        found = [f for f in r.findings if f.kind != "underflow_benign"]
        first = next(f for k in ("overflow", "nan", "underflow") for f in found if f.kind == k)
        advice = _ADVICE.get(f"{first.kind}:{first.event}", "use a wider type")
        return (
            f"{h.algorithm} in {h.dtype} breaks: {h.broken} of {tried} overflowed, underflowed "
            f"or returned NaN; the worst: {first.message}: {advice}."
        )
    text = (
        f"{h.algorithm} in {h.dtype} never overflowed or underflowed in {tried}; its worst ULP "
        f"error found is {_fmt_ulp(r.max_ulp)} (element {r.worst_index}), where {base}."
    )
    if (r.max_ulp or 0.0) > INACCURATE_ULP:
        detail = audit(
            [Vector("hunt", 0, None, w.values)],
            Options(
                dtypes=(h.dtype,),
                algorithms=(h.implementation or h.algorithm,),
                per_element=True,
                danger_zone=None,
            ),
        ).results
        text += " " + verdict(h.dtype, list(detail))
    return text


__all__ = ["BATCH", "POOL", "Found", "HuntReport", "hunt", "hunt_verdict"]
