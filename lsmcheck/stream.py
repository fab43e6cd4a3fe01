"""Cutting a stream of vectors into chunks: the unit of work of the engine.

A chunk is a run of whole, consecutive vectors holding about :data:`CHUNK_ELEMENTS` logits (a
vector longer than that is a chunk of its own).  The cut depends only on the input; with
workers, the last chunks may be cut further into runs of whole vectors
(:mod:`lsmcheck.parallel`).  Every result belongs to one vector and the outcomes are merged in
input order, so the report is the same whatever ``--jobs`` is and however the chunks were cut.
"""

from __future__ import annotations

import bisect
import heapq
import math
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lsmcheck.exactsum import ExactSum
from lsmcheck.report import ULP_BINS, Aggregate, FindingTotal, Group
from lsmcheck.results import Result, Status
from lsmcheck.vectors import Vector

#: Logits per chunk: large enough to amortise the per-batch work, small enough to spread a
#: 1000 x 1000 matrix over a few cores and to keep a chunk's temporaries small.
CHUNK_ELEMENTS = 1 << 17
#: Vectors per chunk at most: a chunk's results (one per vector, implementation and dtype,
#: about 1.3 KB each) are held until merged, so short vectors must not make a chunk of
#: 65,536 vectors (1.4 million results for 2 logits each: 2 GB, measured).
CHUNK_VECTORS = 1 << 10


def chunks(vectors: Iterable[Vector], size: int | None = None) -> Iterator[list[Vector]]:
    """Yield consecutive runs of ``vectors`` of about ``size`` logits each (and at most
    :data:`CHUNK_VECTORS` vectors), lazily.

    ``size`` defaults to :data:`CHUNK_ELEMENTS` (both read at call time).
    """
    size = size or CHUNK_ELEMENTS
    most = CHUNK_VECTORS
    chunk: list[Vector] = []
    elements = 0
    for v in vectors:
        chunk.append(v)
        elements += len(v.values)
        if elements >= size or len(chunk) >= most:
            yield chunk
            chunk, elements = [], 0
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------------------------
# Aggregation: results summarised as they stream
# ---------------------------------------------------------------------------------------------

#: Without an explicit ``keep``, a run holds every result until it has this many, then switches
#: to aggregation keeping :data:`AUTO_KEEP` results of each kind per implementation and dtype.
AUTO_AGGREGATE = 100_000
AUTO_KEEP = 10


_BIN_BOUNDS = [bound for _, bound in ULP_BINS]
_BIN_LABELS = [label for label, _ in ULP_BINS]


def _bin(x: float | None) -> str:
    """The label of the first of :data:`ULP_BINS` whose bound ``x`` does not exceed."""
    if x is None or x != x or x == math.inf:
        return "inf"
    i = bisect.bisect_left(_BIN_BOUNDS, x)
    return _BIN_LABELS[i] if i < len(_BIN_LABELS) else "inf"


@dataclass
class _GroupTotals:
    kind: str
    vectors: int = 0
    audited: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    worst: Result | None = None
    worst_key: float = -math.inf  # worst's max ULP error as a sort key (NaN lowest)
    means: ExactSum = field(default_factory=ExactSum)
    pending_means: list[float] = field(default_factory=list)  # not yet in means
    overflow: int = 0
    underflow: int = 0
    underflow_benign: int = 0
    nan: int = 0
    argmax_lost: int = 0
    histogram: dict[str, int] = field(default_factory=dict)
    # kept when aggregating: (key, seq) heaps / first-N lists
    worst_heap: list[tuple[float, int, int]] = field(default_factory=list)
    first_failed: list[int] = field(default_factory=list)
    first_skipped: list[int] = field(default_factory=list)


#: The counts of a group, summed by :meth:`Accumulator.merge`.
_COUNTS = (
    "vectors", "audited", "failed", "errors", "skipped", "overflow", "underflow",
    "underflow_benign", "nan", "argmax_lost",
)  # fmt: skip


def _kept(g: _GroupTotals) -> set[int]:
    """The sequence numbers of the results a group keeps."""
    return {seq for _, _, seq in g.worst_heap} | set(g.first_failed) | set(g.first_skipped)


#: The fields of a result the accumulator reads, at once.
_FIELDS = operator.attrgetter(
    "source", "vector", "status", "algorithm", "dtype", "max_ulp", "mean_ulp", "overflow",
    "underflow", "underflow_benign", "nan", "argmax_preserved", "findings",
)  # fmt: skip


class Accumulator:
    """Group totals, event totals and the results worth keeping, as results stream in.

    Args:
        keep: keep only, per implementation and dtype, the ``keep`` worst results (by max ULP
            error), the first ``keep`` failing ones and the first ``keep`` skipped ones, and
            report totals in :class:`~lsmcheck.report.Aggregate`.  ``None``: keep every result
            while there are at most :data:`AUTO_AGGREGATE`, then aggregate with
            :data:`AUTO_KEEP`.
        aggregate: ``False`` keeps every result however many there are (with ``keep=None``).

    Results must arrive in input order (by vector, then dtype, then implementation); the
    groups are then exactly those of :func:`lsmcheck.report.summarise`.
    """

    def __init__(self, keep: int | None = None, aggregate: bool = True) -> None:
        self.keep = keep
        self.may_aggregate = aggregate  # False: never switch to aggregation (for baselines)
        self._limit = keep if keep is not None else AUTO_KEEP
        self._all: list[Result] | None = [] if keep is None else None
        self._held: dict[int, Result] = {}
        self._seq = 0
        self._groups: dict[tuple[str, str], _GroupTotals] = {}
        self._algorithms: dict[str, int] = {}
        self._dtypes: dict[str, int] = {}
        self._findings: dict[tuple[str, str, str, str], list[Any]] = {}
        self._statuses: dict[str, int] = {}
        self._vectors = 0
        self._first: tuple[str, int] | None = None  # the first result's vector
        self._last: tuple[str, int] | None = None

    @property
    def aggregating(self) -> bool:
        """Whether only totals and the results worth keeping are held (no longer every one)."""
        return self._all is None

    @property
    def limit(self) -> int:
        """How many results of each kind are kept per implementation and dtype."""
        return self._limit

    def add(self, results: Iterable[Result]) -> None:
        """Count ``results`` in (the next ones in input order).

        One pass with the fields read at once and the state in local names: a chunk of short
        vectors brings hundreds of thousands of results (10-class logits: 25 us each before).
        """
        groups, statuses, held, totals = self._groups, self._statuses, self._held, self._findings
        algorithms, dtypes, everything = self._algorithms, self._dtypes, self._all
        limit, seq, last, vectors = self._limit, self._seq, self._last, self._vectors
        first = self._first
        fail, error, unaudited = (
            Status.FAIL,
            Status.ERROR,
            (Status.UNDEFINED, Status.UNREPRESENTABLE),
        )
        for r in results:
            (source, vector, status, alg, dtype, max_ulp, mean_ulp, over, under, benign, nan,
             argmax, findings) = _FIELDS(r)  # fmt: skip
            if everything is not None:
                everything.append(r)
            if (source, vector) != last:
                if not vectors:
                    first = (source, vector)
                vectors += 1
                last = (source, vector)
            value = status._value_
            statuses[value] = statuses.get(value, 0) + 1
            g = groups.get((alg, dtype))
            if g is None:
                algorithms.setdefault(alg, len(algorithms))
                dtypes.setdefault(dtype, len(dtypes))
                g = groups[alg, dtype] = _GroupTotals(r.kind)
            g.vectors += 1
            keep = False
            if max_ulp is not None:  # audited
                g.audited += 1
                key = -1.0 if max_ulp != max_ulp else max_ulp  # NaN sorts lowest, inf highest
                if g.worst is None or key > g.worst_key:
                    g.worst, g.worst_key = r, key
                if mean_ulp is not None:
                    g.pending_means.append(mean_ulp)
                label = _bin(max_ulp)
                g.histogram[label] = g.histogram.get(label, 0) + 1
                item = (key, -seq, seq)
                heap = g.worst_heap
                if len(heap) < limit:
                    heapq.heappush(heap, item)
                    keep = True
                elif limit and item > heap[0]:
                    self._release(heapq.heapreplace(heap, item)[2])
                    keep = True
            if status is not Status.PASS:
                if status is fail or status is error:
                    if status is fail:
                        g.failed += 1
                    else:
                        g.errors += 1
                    if len(g.first_failed) < limit:
                        g.first_failed.append(seq)
                        keep = True
                elif status in unaudited:
                    g.skipped += 1
                    if len(g.first_skipped) < limit:
                        g.first_skipped.append(seq)
                        keep = True
            g.overflow += over
            g.underflow += under
            g.underflow_benign += benign
            g.nan += nan
            g.argmax_lost += argmax is False
            for f in findings:
                key4 = (alg, dtype, f.kind, f.event)
                total = totals.get(key4)
                if total is None:
                    totals[key4] = [f.message, f.count, 1, r.label]
                else:
                    total[1] += f.count
                    total[2] += 1
            if keep:
                held[seq] = r
            seq += 1
        self._seq, self._first, self._last, self._vectors = seq, first, last, vectors
        for g in groups.values():
            if g.pending_means:
                g.means.add_many(g.pending_means)
                g.pending_means.clear()
        if self.may_aggregate and everything is not None and len(everything) > AUTO_AGGREGATE:
            self._all = None  # switch to aggregation: the heaps hold what is kept

    def merge(self, other: Accumulator) -> None:
        """Count in ``other``, an aggregating accumulator of the results that come next in
        input order (a worker's unit): the state is then exactly as if they had been added
        here one by one.  Only while this one aggregates too, with the same limit: what each
        keeps is then what it would keep of the whole."""
        if not (self.aggregating and other.aggregating and other._limit == self._limit):
            raise ValueError("merge: both accumulators must aggregate, with the same limit")
        if other._seq == 0:
            return
        off = self._seq
        self._seq += other._seq
        self._vectors += other._vectors - (other._first == self._last)
        if self._first is None:
            self._first = other._first
        self._last = other._last
        for status, n in other._statuses.items():
            self._statuses[status] = self._statuses.get(status, 0) + n
        for alg in other._algorithms:
            self._algorithms.setdefault(alg, len(self._algorithms))
        for dtype in other._dtypes:
            self._dtypes.setdefault(dtype, len(self._dtypes))
        for event, (message, count, vectors, first) in other._findings.items():
            total = self._findings.get(event)
            if total is None:
                self._findings[event] = [message, count, vectors, first]
            else:
                total[1] += count
                total[2] += vectors
        for where, og in other._groups.items():
            g = self._groups.get(where)
            if g is None:
                g = self._groups[where] = _GroupTotals(og.kind)
            self._merge_group(g, og, other._held, off)

    def _merge_group(
        self, g: _GroupTotals, og: _GroupTotals, their_held: dict[int, Result], off: int
    ) -> None:
        for name in _COUNTS:
            setattr(g, name, getattr(g, name) + getattr(og, name))
        if og.worst is not None and (g.worst is None or og.worst_key > g.worst_key):
            g.worst, g.worst_key = og.worst, og.worst_key  # ties: the earlier one stays
        g.means.merge(og.means)
        for label, n in og.histogram.items():
            g.histogram[label] = g.histogram.get(label, 0) + n
        before = _kept(g)
        limit = self._limit
        heap = g.worst_heap + [(key, -(seq + off), seq + off) for key, _, seq in og.worst_heap]
        g.worst_heap = heapq.nlargest(limit, heap)
        heapq.heapify(g.worst_heap)
        g.first_failed = (g.first_failed + [s + off for s in og.first_failed])[:limit]
        g.first_skipped = (g.first_skipped + [s + off for s in og.first_skipped])[:limit]
        after = _kept(g)
        for seq in before - after:
            del self._held[seq]
        for seq in after - before:
            self._held[seq] = their_held[seq - off]

    def _release(self, seq: int) -> None:
        """Drop a held result unless another list still keeps it."""
        r = self._held.get(seq)
        if r is None:
            return
        g = self._groups[r.algorithm, r.dtype]
        if seq not in g.first_failed and seq not in g.first_skipped:
            del self._held[seq]

    def groups(self) -> tuple[Group, ...]:
        order = sorted(self._groups, key=lambda k: (self._algorithms[k[0]], self._dtypes[k[1]]))
        out = []
        for alg, dtype in order:
            g = self._groups[alg, dtype]
            out.append(
                Group(
                    algorithm=alg,
                    kind=g.kind,
                    dtype=dtype,
                    vectors=g.vectors,
                    audited=g.audited,
                    failed=g.failed,
                    errors=g.errors,
                    skipped=g.skipped,
                    max_ulp=None if g.worst is None else g.worst.max_ulp,
                    mean_ulp=g.means.mean(),
                    worst=g.worst,
                    overflow=g.overflow,
                    underflow=g.underflow,
                    underflow_benign=g.underflow_benign,
                    nan=g.nan,
                    argmax_lost=g.argmax_lost,
                    max_ulp_histogram=tuple(
                        (label, g.histogram[label]) for label, _ in ULP_BINS if label in g.histogram
                    ),
                )
            )
        return tuple(out)

    def results(self) -> tuple[Result, ...]:
        """Every result (when not aggregating), else the kept ones in input order."""
        if self._all is not None:
            return tuple(self._all)
        return tuple(self._held[s] for s in sorted(self._held))

    def aggregate(self) -> Aggregate | None:
        """The run's totals, when results were aggregated (else ``None``)."""
        if self._all is not None:
            return None
        findings = tuple(
            FindingTotal(alg, dtype, kind, event, message, elements, vectors, first)
            for (alg, dtype, kind, event), (message, elements, vectors, first) in (
                self._findings.items()
            )
        )
        return Aggregate(
            results=self._seq,
            vectors=self._vectors,
            statuses=dict(self._statuses),
            findings=findings,
            skipped=sum(g.skipped for g in self._groups.values()),
        )


__all__ = ["AUTO_AGGREGATE", "AUTO_KEEP", "CHUNK_ELEMENTS", "Accumulator", "chunks"]
