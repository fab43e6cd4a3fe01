"""Run a registered algorithm on probe vectors and classify each row with the audit's metrics.

A :class:`Prober` belongs to one dtype.  It rounds probe vectors to the dtype, calls
``Algorithm.run`` on the whole batch (the real float computation, as the audit does), and
classifies every row with :func:`lsmcheck.metrics.measure` against the certified reference of
:func:`lsmcheck.reference.exact`.  References are cached per vector, so algorithms probed at the
same points share them.

Two shortcuts keep long probes cheap, neither of which changes a classification:

* Elements with the same input, output and step events get the same exact value and hence the
  same metrics, so a long row is measured on one representative of each such group.
* A row whose logits are all equal has the exact values ``1/n``, ``-ln n`` and ``c + ln n``;
  for rows longer than :data:`CLOSED_FORM_FROM` these are computed directly with mpmath at
  :data:`CLOSED_FORM_BITS` bits instead of by :func:`~lsmcheck.reference.exact` (whose
  per-element certification of 65 520 equal values takes seconds).  A test checks the two agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck import metrics
from lsmcheck.algorithms import Algorithm, Kind, Setup, Trace
from lsmcheck.dtypes import Format
from lsmcheck.reference import Exact, exact
from lsmcheck.results import Finding

#: Rows of equal logits at least this long use the closed-form reference.
CLOSED_FORM_FROM = 257
#: mpmath working precision of the closed-form reference.
CLOSED_FORM_BITS = 256
#: Rows longer than this are measured on one representative per group of identical elements.
DEDUP_FROM = 64


class Sample:
    """One probe row, run; measured on demand.

    A row is *clean* when the algorithm recorded no step event for it and every output is
    finite (and, for softmax, nonzero).  :func:`lsmcheck.metrics.measure` classifies an element
    as overflowed only with an overflow event or an infinite output, as (benignly) underflowed
    only with a flush event or a flushed output (0, or -inf in the log domain), and as NaN only
    when it is NaN; so a clean row is neither broken nor flushed, and is not measured unless its
    ULP error is asked for.

    Attributes:
        x: the row as rounded to the dtype (float64 values).
        trace: the algorithm's trace of the whole batch; ``row`` is this sample's row in it.
    """

    def __init__(
        self, x: npt.NDArray[np.float64], alg: Algorithm, trace: Trace, row: int, prober: Prober
    ) -> None:
        self.x = x
        self.alg = alg
        self.trace = trace
        self.row = row
        self.fmt = prober.fmt
        self._prober = prober
        self._measured: tuple[metrics.Measured, npt.NDArray[np.intp]] | None = None

    @property
    def clean(self) -> bool:
        t, r = self.trace, self.row
        if t.overflow[r].any() or t.flush[r].any() or t.nan[r].any():
            return False
        out = np.asarray(t.out[r], np.float64)
        if not np.isfinite(out).all():
            return False
        return not (self.alg.kind is Kind.SOFTMAX and (out == 0).any())

    def _measure(self) -> tuple[metrics.Measured, npt.NDArray[np.intp]]:
        if self._measured is None:
            self._measured = self._prober.measure(self.alg, self.x, self.trace, self.row)
        return self._measured

    @property
    def measured(self) -> metrics.Measured:
        """The metrics of the measured elements (all, or one per group of identical ones)."""
        return self._measure()[0]

    @property
    def picked(self) -> npt.NDArray[np.intp]:
        """The indices within the row of the measured elements."""
        return self._measure()[1]

    @property
    def broken(self) -> bool:
        """Whether any element overflowed, underflowed (not benignly) or is NaN."""
        if self.clean:
            return False
        m = self.measured
        return bool(m.overflow.any() or m.underflow.any() or m.nan.any())

    @property
    def overflowed(self) -> bool:
        """Whether any element overflowed, or is NaN that no flush explains.

        A format without infinities (float8_e4m3fn) turns the ``-inf`` of ``log(0)`` into NaN:
        log_of_softmax of ``[t, 0]`` is NaN there once ``exp(-t)`` flushes, which is the flush
        limit (the same break, seen from ``[0, -t]``), not an overflow of the largest logit.
        """
        if self.clean:
            return False
        m = self.measured
        flushed = self.trace.flush[self.row][self.picked] != 0
        return bool(m.overflow.any() or (m.nan & ~flushed).any())

    @property
    def underflowed(self) -> bool:
        """Whether any element underflowed (not benignly) or is NaN."""
        if self.clean:
            return False
        m = self.measured
        return bool(m.underflow.any() or m.nan.any())

    @property
    def max_ulp(self) -> float:
        return float(np.max(self.measured.ulp))

    def flushed(self, index: int) -> bool:
        """Whether element ``index`` of the output was flushed (benignly or not)."""
        if self.clean:
            return False
        hit = np.flatnonzero(self.picked == index)
        if not hit.size:
            return False
        i = int(hit[0])
        return bool(self.measured.underflow[i] or self.measured.benign[i])

    def findings(self) -> tuple[Finding, ...]:
        """What happened, in words (counts are of measured elements)."""
        t, r, p = self.trace, self.row, self.picked
        return metrics.findings(
            self.measured, t.overflow[r][p], t.flush[r][p], t.nan[r][p], t.arg[r][p], self.fmt
        )

    def _first(self) -> Finding | None:
        """The finding that names the break: an overflow, else a NaN, else an underflow."""
        found = [f for f in self.findings() if f.kind != "underflow_benign"]
        for kind in ("overflow", "nan", "underflow"):
            for f in found:
                if f.kind == kind:
                    return f
        return None

    def event(self) -> str:
        """The message of the finding that names the break ("" when nothing broke)."""
        f = self._first()
        return "" if f is None else f.message

    def event_kind(self) -> str:
        """That finding as ``kind:event`` (e.g. ``overflow:exp_overflow``)."""
        f = self._first()
        return "" if f is None else f"{f.kind}:{f.event}"


def equal_logits_exact(n: int, c: float, bits: int = CLOSED_FORM_BITS) -> Exact:
    """The exact softmax, log-softmax and logsumexp of ``n`` logits all equal to ``c``."""
    import mpmath

    with mpmath.workprec(bits):
        p = mpmath.mpf(1) / n
        log_n = mpmath.log(n)
        return Exact((p,) * n, (-log_n,) * n, mpmath.mpf(c) + log_n, bits)


class Prober:
    """Runs algorithms on probe rows in one dtype and measures them (see the module docstring)."""

    def __init__(self, fmt: Format, precision_bits: int = 113) -> None:
        self.fmt = fmt
        self.precision_bits = precision_bits
        self._refs: dict[tuple[int, bytes], Exact] = {}
        self.evaluations = 0

    def reference(self, x: npt.NDArray[np.float64]) -> Exact:
        key = (x.size, x.tobytes())
        ref = self._refs.get(key)
        if ref is None:
            if x.size >= CLOSED_FORM_FROM and np.all(x == x[0]) and np.isfinite(x[0]):
                ref = equal_logits_exact(x.size, float(x[0]))
            else:
                ref = exact(x, self.fmt, self.precision_bits)
            self._refs[key] = ref
        return ref

    def cast(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        return self.fmt.cast(np.atleast_2d(np.asarray(rows, np.float64)))

    def probe(self, alg: Algorithm, rows: npt.NDArray[np.float64]) -> list[Sample]:
        """Run ``alg`` on ``rows`` (one probe vector per row); rows are measured on demand.

        Every row must be finite in the dtype (probes never ask for an unrepresentable or
        undefined vector).
        """
        batch = self.cast(rows)
        values = np.asarray(batch, np.float64)
        if not np.isfinite(values).all():
            raise ValueError("probe rows must be finite in the dtype")
        acc = self.fmt.accumulate  # a mixed-precision format probes with its accumulator
        trace = alg.execute(batch, Setup(acc=None if acc is None else acc.dtype))
        self.evaluations += len(values)
        return [Sample(x, alg, trace, r, self) for r, x in enumerate(values)]

    def covers(self, alg: Algorithm) -> bool:
        """Whether :meth:`fast_scan` measures ``alg`` in this format."""
        from lsmcheck.fastref import FAST_FORMATS

        return self.fmt.storage.name in FAST_FORMATS and not alg.kind.needs_target

    def fast_scan(
        self, alg: Algorithm, rows: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
        """Run ``alg`` on every row at once and measure them with the audit's certified fast
        tier: per row, the max ULP error (NaN where the tier leaves an element to mpmath; ask
        :meth:`probe` for those rows) and whether it overflowed, underflowed or gave NaN.
        ``None`` for a format the fast tier does not cover (bfloat16, float8).
        """
        from lsmcheck import fastmetrics
        from lsmcheck.fastref import fast_reference

        if not self.covers(alg):
            return None
        batch = self.cast(rows)
        x = np.asarray(batch, np.float64)
        acc = self.fmt.accumulate
        trace = alg.execute(batch, Setup(acc=None if acc is None else acc.dtype))
        self.evaluations += len(x)
        c = np.asarray(trace.out, np.float64)
        prep = fastmetrics.prepare(fast_reference(x, self.fmt).of(alg.kind), self.fmt)
        b = fastmetrics.measure_batch(c, prep, fastmetrics.flagged(c, trace.overflow, trace.flush))
        over, under, _, nan = metrics.classify(
            alg.kind, c, b.rounded, b.exact_zero, trace.overflow, trace.flush
        )
        worst = b.ulp.max(axis=1)
        worst[b.unsettled.any(axis=1)] = np.nan  # its classes may hang on those elements too
        broke: npt.NDArray[np.bool_] = np.asarray((over | under | nan).any(axis=1))
        return worst, broke

    def measure(
        self, alg: Algorithm, x: npt.NDArray[np.float64], trace: Trace, r: int
    ) -> tuple[metrics.Measured, npt.NDArray[np.intp]]:
        """Row ``r`` of ``trace`` measured against the reference, and the elements measured."""
        ref = self.reference(x)
        if alg.kind.per_vector:
            m = metrics.measure(
                alg.kind, trace.out[r], trace.overflow[r], trace.flush[r], ref, self.fmt
            )
            return m, np.zeros(1, np.intp)
        picked = self._picked(x, trace, r)
        sub = Exact(
            tuple(ref.softmax[i] for i in picked),
            tuple(ref.log_softmax[i] for i in picked),
            ref.logsumexp,
            ref.bits,
        )
        out = trace.out[r][picked]
        m = metrics.measure(
            alg.kind, out, trace.overflow[r][picked], trace.flush[r][picked], sub, self.fmt
        )
        return m, picked

    @staticmethod
    def _picked(x: npt.NDArray[np.float64], trace: Trace, r: int) -> npt.NDArray[np.intp]:
        """All element indices, or one per group of identical (input, output, events)."""
        n = x.size
        if n <= DEDUP_FROM or trace.out.shape[1] != n:
            return np.arange(n, dtype=np.intp)
        out = np.asarray(trace.out[r], np.float64)
        keys = np.stack(
            [
                x.view(np.int64),
                out.view(np.int64),
                trace.overflow[r].astype(np.int64),
                trace.flush[r].astype(np.int64),
                trace.nan[r].astype(np.int64),
            ],
            axis=1,
        )
        if np.all(keys == keys[0]):  # the common case of a long probe: every element alike
            return np.zeros(1, np.intp)
        _, first = np.unique(keys, axis=0, return_index=True)
        return np.sort(first).astype(np.intp)
