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

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import numpy.typing as npt

from lsmcheck import metrics
from lsmcheck.algorithms import Algorithm, Trace
from lsmcheck.dtypes import Format
from lsmcheck.reference import Exact, exact
from lsmcheck.results import Finding

#: Rows of equal logits at least this long use the closed-form reference.
CLOSED_FORM_FROM = 257
#: mpmath working precision of the closed-form reference.
CLOSED_FORM_BITS = 256
#: Rows longer than this are measured on one representative per group of identical elements.
DEDUP_FROM = 64


@dataclass(frozen=True)
class Sample:
    """One probe row, run and measured.

    Attributes:
        x: the row as rounded to the dtype (float64 values).
        measured: the metrics of the measured elements (all of them, or one representative
            per group of identical elements for a long row).
        picked: the indices of the measured elements within the row.
        trace: the algorithm's trace of the whole batch; ``row`` is this sample's row in it.
    """

    x: npt.NDArray[np.float64]
    measured: metrics.Measured
    picked: npt.NDArray[np.intp]
    trace: Trace
    row: int
    fmt: Format

    @property
    def broken(self) -> bool:
        """Whether any element overflowed, underflowed (not benignly) or is NaN."""
        m = self.measured
        return bool(m.overflow.any() or m.underflow.any() or m.nan.any())

    @property
    def max_ulp(self) -> float:
        return float(np.max(self.measured.ulp))

    def flushed(self, index: int) -> bool:
        """Whether element ``index`` of the output was flushed (benignly or not)."""
        hit = np.flatnonzero(self.picked == index)
        if not hit.size:
            return False
        i = int(hit[0])
        return bool(self.measured.underflow[i] or self.measured.benign[i])

    def findings(self) -> tuple[Finding, ...]:
        """What happened, in words (counts are of measured elements)."""
        t, r, p = self.trace, self.row, self.picked
        if t.out.shape[1] != self.x.size:  # per-vector output: codes have one column
            p = np.zeros(1, np.intp)
        return metrics.findings(
            self.measured, t.overflow[r][p], t.flush[r][p], t.nan[r][p], t.arg[r][p], self.fmt
        )

    def event(self) -> str:
        """The first non-benign finding's message ("" when nothing broke)."""
        for f in self.findings():
            if f.kind != "underflow_benign":
                return f.message
        return ""

    def event_kind(self) -> str:
        """The first non-benign finding as ``kind:event`` (e.g. ``overflow:exp_overflow``)."""
        for f in self.findings():
            if f.kind != "underflow_benign":
                return f"{f.kind}:{f.event}"
        return ""


def equal_logits_exact(n: int, c: float, bits: int = CLOSED_FORM_BITS) -> Exact:
    """The exact softmax, log-softmax and logsumexp of ``n`` logits all equal to ``c``."""
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
        """Run ``alg`` on ``rows`` (one probe vector per row) and measure every row.

        Every row must be finite in the dtype (probes never ask for an unrepresentable or
        undefined vector).
        """
        batch = self.cast(rows)
        values = np.asarray(batch, np.float64)
        if not np.isfinite(values).all():
            raise ValueError("probe rows must be finite in the dtype")
        trace = alg.run(batch)
        self.evaluations += len(values)
        samples = []
        for r, x in enumerate(values):
            ref = self.reference(x)
            picked = self._picked(x, trace, r)
            if alg.kind.per_vector:
                m = metrics.measure(
                    alg.kind, trace.out[r], trace.overflow[r], trace.flush[r], ref, self.fmt
                )
                picked = np.zeros(1, np.intp)
            else:
                sub = Exact(
                    tuple(ref.softmax[i] for i in picked),
                    tuple(ref.log_softmax[i] for i in picked),
                    ref.logsumexp,
                    ref.bits,
                )
                m = metrics.measure(
                    alg.kind,
                    trace.out[r][picked],
                    trace.overflow[r][picked],
                    trace.flush[r][picked],
                    sub,
                    self.fmt,
                )
            samples.append(Sample(x, m, picked, trace, r, self.fmt))
        return samples

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
