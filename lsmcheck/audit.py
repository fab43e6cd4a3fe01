"""The engine: vectors x dtypes x implementations -> results.

For each dtype, every vector is rounded to it; vectors that overflow on rounding are reported as
``unrepresentable`` and vectors whose softmax is not a vector of numbers as ``undefined``.  The
rest are batched by length, every implementation runs once per batch, and each output row is
measured against the certified reference of its rounded input (computed once per vector and
dtype, and shared by every implementation).  Results come back in input order: by vector, then
dtype, then implementation.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lsmcheck import bounds, fastmetrics, metrics, targets
from lsmcheck._usercode import one_line
from lsmcheck.algorithms import (
    DEFAULT_ALGORITHMS,
    DEFAULT_BLOCK,
    Algorithm,
    Kind,
    Setup,
    Trace,
    get_algorithm,
)
from lsmcheck.certify import certified, needed_values, value_bounds_of
from lsmcheck.dtypes import DEFAULT_FORMATS, Format, accumulate_all, get_format
from lsmcheck.errors import LsmcheckError, UsageError
from lsmcheck.explore import headroom
from lsmcheck.fastref import DD_TIER, FAST_FORMATS, FLOAT64_TIER, dd_reference, fast_reference
from lsmcheck.gate import Thresholds, judge, nonnegative
from lsmcheck.reference import Exact, exact, round_to_format
from lsmcheck.results import (
    Element,
    Finding,
    ReferenceInfo,
    Report,
    Result,
    Status,
    make_result_fields,
    result_fields,
    result_from_dict,
    result_from_fields,
)
from lsmcheck.userimpl import ImplementationError, SandboxFailure
from lsmcheck.vectors import Vector

if TYPE_CHECKING:
    from lsmcheck.stream import Accumulator

#: The lowest and highest ``--precision`` accepted (bits of the first mpmath attempt).
MIN_BITS, MAX_START_BITS = 64, 4096

#: ``progress(done, total)``: elements audited so far, and in all (an int, or ``None`` when the
#: input is an iterator of unknown length; typed Any so that ``(int, int)`` callbacks fit).
Progress = Callable[[int, Any], None]
#: The reference modes: the tiered fast reference with mpmath fallback, or mpmath everywhere.
REFERENCE_MODES: tuple[str, ...] = ("auto", "mpmath")


@dataclass(frozen=True)
class Options:
    """What to audit and how.

    Attributes:
        dtypes: format names (see :mod:`lsmcheck.dtypes`).
        algorithms: implementation names (see :mod:`lsmcheck.algorithms`) or
            :class:`~lsmcheck.algorithms.Algorithm` objects (e.g. the user's own, from
            :func:`lsmcheck.userimpl.wrap`).
        precision_bits: the first mpmath working precision of the reference.
        per_element: whether results carry per-element detail.
        thresholds: the gate.
        reference: ``"auto"`` (the fast certified tier, mpmath for what it cannot settle) or
            ``"mpmath"`` (mpmath for every element).
        keep: aggregate the results as they stream, keeping per implementation and dtype
            only the ``keep`` worst vectors and the first ``keep`` failing and skipped ones
            (the groups and :class:`~lsmcheck.results.Aggregate` totals cover every vector).
            ``None``: keep every result up to 100,000 results, then aggregate keeping 10.
        aggregate: ``False`` keeps every result however many there are, as comparing with a
            baseline or recording one needs (``keep`` must then be ``None``).
        danger_zone: warn when a vector is within this fraction of a measured limit
            (:mod:`lsmcheck.explore.headroom`); ``None`` computes no headroom.
        accumulate: a wider dtype for sums, shifts and logs (``--accumulate``), or ``None``.
        block: the block size of blocked algorithms (``--block``).
        target: the ``--target`` specification (see :mod:`lsmcheck.targets`), or ``None``.
        grad: whether to audit the backward pass of every algorithm that has one.
        bounds: whether to compare every error with the algorithm's proven error bound
            (:mod:`lsmcheck.bounds`; this takes the mpmath reference for every vector).
    """

    dtypes: tuple[str, ...] = DEFAULT_FORMATS
    algorithms: tuple[str | Algorithm, ...] = DEFAULT_ALGORITHMS
    precision_bits: int = 113
    per_element: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    reference: str = "auto"
    keep: int | None = None
    aggregate: bool = True
    danger_zone: float | None = 0.10
    accumulate: str | None = None
    block: int = DEFAULT_BLOCK
    target: str | None = None
    grad: bool = False
    bounds: bool = False

    def __post_init__(self) -> None:
        if self.block < 1:
            raise UsageError(f"--block: expected a block size >= 1, got {self.block}")
        if self.keep is not None and self.keep < 0:
            raise UsageError(f"--keep: expected a number >= 0, got {self.keep}")
        if self.keep is not None and not self.aggregate:
            raise UsageError(
                "--keep: a baseline compares and records every result, and --keep keeps only "
                "some; drop --keep, or the baseline"
            )
        if self.danger_zone is not None and not (
            nonnegative(self.danger_zone) and self.danger_zone < 1
        ):
            raise UsageError(
                f"--danger-zone: expected a percentage from 0 to below 100, "
                f"got {self.danger_zone * 100:g}"
            )
        if self.reference not in REFERENCE_MODES:
            raise UsageError(
                f"--reference: expected one of {', '.join(REFERENCE_MODES)}, got {self.reference!r}"
            )
        if not MIN_BITS <= self.precision_bits <= MAX_START_BITS:
            raise UsageError(
                f"--precision: expected bits between {MIN_BITS} and {MAX_START_BITS}, "
                f"got {self.precision_bits}"
            )
        if not self.dtypes:
            raise UsageError("--dtype: no dtype selected")
        if not self.algorithms:
            raise UsageError("--algorithm: no algorithm selected")

    def validate(self) -> None:
        """Raise :class:`UsageError` for an unknown dtype or algorithm name."""
        self.formats()
        self.implementations()

    def formats(self) -> list[Format]:
        names = accumulate_all(tuple(dict.fromkeys(self.dtypes)), self.accumulate)
        return [get_format(n) for n in names]

    def implementations(self) -> list[Algorithm]:
        algs = resolve_algorithms(self.algorithms)
        if self.grad:
            backward = [a.backward for a in algs if a.backward is not None]
            if not backward:
                raise UsageError(
                    "--grad: none of the selected algorithms has a backward pass "
                    "(log_softmax_stable, log_softmax_log1p, log_of_softmax, cross_entropy_*, "
                    "torch.log_softmax, torch.nn.functional.cross_entropy)"
                )
            names = {a.name for a in algs}
            algs += [get_algorithm(n) for n in dict.fromkeys(backward) if n not in names]
        needy = [a.name for a in algs if a.kind.needs_target]
        if needy and self.target is None:
            raise UsageError(
                f"--target: {needy[0]} needs the target class of each vector ({targets.FORMS})"
            )
        return algs


def resolve_algorithms(items: Sequence[str | Algorithm]) -> list[Algorithm]:
    """Registered names and Algorithm objects as Algorithms; a name used twice is an error."""
    out: dict[str, Algorithm] = {}
    for item in items:
        alg = item if isinstance(item, Algorithm) else get_algorithm(item)
        if out.setdefault(alg.name, alg) is not alg:
            raise UsageError(f"two different implementations are named {alg.name!r}")
    return list(out.values())


def audit(
    vectors: Iterable[Vector],
    options: Options | None = None,
    progress: Progress | None = None,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
) -> Report:
    """Audit every vector with every implementation in every dtype.

    The vectors are cut into chunks of whole vectors (:func:`lsmcheck.stream.chunks`; with
    workers the last ones are cut smaller, see :mod:`lsmcheck.parallel`), each is audited by
    :func:`audit_chunk` (here, in ``jobs`` worker processes, or on the Dask cluster at
    ``scheduler``), and the outcomes are merged in input order, so the report does not depend
    on how the work was spread.

    ``progress(done, total)`` is called after each chunk with elements audited so far (an
    element is one logit in one dtype); ``total`` is ``None`` when ``vectors`` is not sized.
    """
    from lsmcheck import __version__
    from lsmcheck.parallel import run_chunks
    from lsmcheck.stream import Accumulator, chunks

    options = options or Options()
    options.validate()
    formats = options.formats()
    if options.target is not None:  # targets need the whole input: resolve them up front
        resolved, target_of = targets.resolve(options.target, list(vectors))
        assert target_of is not None
        vectors = [
            dataclasses.replace(v, target=t) for v, t in zip(resolved, target_of, strict=True)
        ]
    total = None
    if isinstance(vectors, Sized):
        total = sum(len(v.values) for v in vectors) * len(formats)
    acc = Accumulator(options.keep, options.aggregate)
    tiers: dict[str, int] = {}
    max_bits = options.precision_bits
    done = 0
    with _fewer_collections():
        summarise = lambda: acc.limit if acc.aggregating else None  # noqa: E731
        work = run_chunks(
            chunks(vectors), options, jobs=jobs, scheduler=scheduler, summarise=summarise
        )
        for outcome in work:
            if outcome.partial is not None:
                acc.merge(outcome.partial)
            else:
                acc.add(outcome.results)
            for tier, count in outcome.tiers.items():
                tiers[tier] = tiers.get(tier, 0) + count
            max_bits = max(max_bits, outcome.max_bits)
            done += outcome.elements
            if progress is not None:
                progress(done, total)
    return Report(
        version=__version__,
        reference=ReferenceInfo(
            "mpmath", options.precision_bits, max_bits, options.reference, _ordered(tiers)
        ),
        results=acc.results(),
        groups=acc.groups(),
        aggregated=acc.aggregate(),
        gated=options.thresholds.active,
    )


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the garbage collector's youngest generation every 100,000 allocations, not 700.

    An audit allocates some thirty containers per result and keeps them (no cycles), so the
    default threshold ran collections for nothing: about 7% of a default audit's CPU, and more
    for unpickling the outcomes of worker processes (which inherit the setting).
    """
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 100_000), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _ordered(tiers: dict[str, int]) -> dict[str, int]:
    order = [FLOAT64_TIER, DD_TIER, "mpmath"]
    return {t: tiers[t] for t in sorted(tiers, key=lambda t: (order.index(t), t))}


@dataclass(frozen=True)
class ChunkOutcome:
    """What auditing one chunk of vectors produced.

    Attributes:
        results: by vector, then dtype, then implementation.
        tiers: output elements settled by each reference tier.
        max_bits: the highest mpmath precision any fallback needed.
        elements: logits x dtypes audited (for progress).
        partial: instead of ``results``, what a worker counted of them (see
            :func:`lsmcheck.parallel.run_chunks`'s ``summarise``).
    """

    results: tuple[Result, ...]
    tiers: dict[str, int]
    max_bits: int
    elements: int
    partial: Accumulator | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle results as tuples of their fields (3x cheaper to load than dataclasses)."""
        rows = [result_fields(r) for r in self.results]
        return (_outcome, (rows, self.tiers, self.max_bits, self.elements, self.partial))


def _outcome(
    rows: list[tuple[Any, ...]],
    tiers: dict[str, int],
    max_bits: int,
    elements: int,
    partial: Accumulator | None = None,
) -> ChunkOutcome:
    results = tuple(map(result_from_fields, rows))
    return ChunkOutcome(results, tiers, max_bits, elements, partial)


def audit_chunk(vectors: Sequence[Vector], options: Options) -> ChunkOutcome:
    """Audit one chunk of vectors: the unit of work of every execution mode.

    For each dtype, every vector is rounded to it and classified (unrepresentable, undefined,
    or audited); the audited ones are batched by length, every implementation runs once per
    batch, and :func:`_measure_batch` measures the outputs against the reference.
    """
    formats, algorithms = options.formats(), options.implementations()
    keyed: dict[tuple[int, int, int], Result] = {}
    tiers: dict[str, int] = {}
    max_bits = options.precision_bits
    if not vectors:
        return ChunkOutcome((), {}, options.precision_bits, 0)
    lengths = [len(v.values) for v in vectors]
    joined = np.concatenate([v.values for v in vectors])
    cuts = np.cumsum(lengths[:-1])
    finite = min(lengths) > 0 and bool(np.isfinite(joined).all())
    for fi, fmt in enumerate(formats):
        flat = fmt.cast(joined)  # every vector rounded at once (short vectors: 10 logits)
        rounded = np.split(flat, cuts)
        # every logit finite before and after rounding, none empty: nothing to skip (one
        # check for the chunk instead of two per vector)
        plain = finite and bool(np.isfinite(np.asarray(flat, np.float64)).all())
        runnable: dict[int, list[int]] = {}
        for vi, (v, x) in enumerate(zip(vectors, rounded, strict=True)):
            if plain:
                runnable.setdefault(len(x), []).append(vi)
                continue
            reason = _unrepresentable(v.values, x, fmt)
            status = Status.UNREPRESENTABLE
            if reason is None:
                reason = _undefined(x)
                status = Status.UNDEFINED
            if reason is None:
                runnable.setdefault(len(x), []).append(vi)
                continue
            for ai, alg in enumerate(algorithms):
                if _applies(alg, fmt, formats):
                    skipped = _skipped(v, alg, fmt, status, reason)
                    keyed[vi, fi, ai] = judge(skipped, options.thresholds)
        for rows in _sub_batches(runnable.items()):
            batch = np.stack([rounded[vi] for vi in rows])
            chosen = [vectors[vi].target for vi in rows]
            setup = Setup(
                acc=None if fmt.accumulate is None else fmt.accumulate.dtype,
                block=options.block,
                targets=None if options.target is None else np.array(chosen, np.intp),
            )
            runs = (  # each run when its outputs are measured: one trace alive at a time
                _run(alg, batch, setup) if _applies(alg, fmt, formats) else None
                for alg in algorithms
            )
            measured = _measure_batch(
                [vectors[vi] for vi in rows], batch, algorithms, runs, fmt, options, tiers
            )
            max_bits = max(max_bits, measured.max_bits)
            gate = options.thresholds.active
            for (r, ai), res in measured.results.items():
                # default thresholds set no limit: every result passes (its default status)
                keyed[rows[r], fi, ai] = judge(res, options.thresholds) if gate else res
    return ChunkOutcome(
        results=tuple(keyed[k] for k in sorted(keyed)),
        tiers=tiers,
        max_bits=max_bits,
        elements=sum(len(v.values) for v in vectors) * len(formats),
    )


#: Logits per batch at most: a chunk (2**17 logits and at most one vector more) is one batch.
#: Smaller batches cost more in per-call overhead, about 1.3 ms per implementation x dtype x
#: batch: 2**15 took 28% more CPU on the benchmark's matrix, and the cache they spare two
#: busy cores does not win it back (``--jobs 2`` was slower too; see docs/performance.md).
BATCH_ELEMENTS = 1 << 18


def _sub_batches(groups: Iterable[tuple[int, list[int]]]) -> Iterator[list[int]]:
    """Split each group of vectors of one length into batches of about ``BATCH_ELEMENTS``."""
    for length, rows in groups:
        pieces = -(-len(rows) * max(1, length) // BATCH_ELEMENTS)  # ceil: balanced batches
        n = -(-len(rows) // max(1, pieces))
        for i in range(0, len(rows), n):
            yield rows[i : i + n]


@dataclass
class _Measured:
    results: dict[tuple[int, int], Result]
    max_bits: int


def _measure_batch(
    vectors: list[Vector],
    batch: npt.NDArray[Any],
    algorithms: list[Algorithm],
    runs: Iterable[list[tuple[Trace, int] | str] | None],
    fmt: Format,
    options: Options,
    tiers: dict[str, int],
) -> _Measured:
    """Measure every implementation's outputs for a batch of equal-length vectors.

    With ``reference="auto"`` the fast tier (:mod:`lsmcheck.fastref`) settles what it can and
    each element it cannot settle goes to the mpmath path: :func:`lsmcheck.reference.exact` for
    its vector (once, shared by every implementation) and
    :func:`lsmcheck.metrics.element_error` for the element.  With ``reference="mpmath"`` every
    element takes the mpmath path.
    """
    x64 = np.asarray(batch, np.float64)
    exacts: dict[int, Exact] = {}

    def exact_row(r: int) -> Exact:
        if r not in exacts:
            exacts[r] = exact(x64[r], fmt, options.precision_bits)
        return exacts[r]

    partial_bits = options.precision_bits  # the most any reference of a few values needed
    tiered = options.reference == "auto" and fmt.storage.name in FAST_FORMATS
    fast = fast_reference(x64, fmt) if tiered else None
    prepared: dict[Kind, fastmetrics.Prepared] = {}
    out: dict[tuple[int, int], Result] = {}
    for ai, (alg, alg_runs) in enumerate(zip(algorithms, runs, strict=True)):
        if alg_runs is None:  # a black box runs once per storage format
            continue
        kind = alg.kind
        ok = [r for r, ran in enumerate(alg_runs) if not isinstance(ran, str)]
        for r, ran in enumerate(alg_runs):
            if isinstance(ran, str):  # a user implementation failed on this vector
                out[r, ai] = _skipped(vectors[r], alg, fmt, Status.ERROR, ran)
        if not ok:
            continue
        if kind.needs_target or options.bounds or fmt.storage.name not in FAST_FORMATS:
            # the exact path, element by element: kinds that depend on a target, the proven
            # bounds, and the formats the fast tier is not certified for (bfloat16, float8)
            for r in ok:
                ran = alg_runs[r]
                assert not isinstance(ran, str)
                ref, values, bound = certified(
                    kind, x64[r], ran[0].out[ran[1]], exact_row(r), fmt, vectors[r].target
                )
                exacts[r] = ref
                n = kind_elements(kind, len(vectors[r].values))
                tiers["mpmath"] = tiers.get("mpmath", 0) + n
                res = _measure_row(
                    vectors[r], x64[r], alg, ran[0], ran[1], ref, (values, bound), fmt, options
                )
                if options.danger_zone is not None and not kind.needs_target:
                    near = headroom.assess(alg, fmt, x64[r], options.danger_zone)
                    res = dataclasses.replace(res, headroom=near)
                out[r, ai] = res
            continue
        trace, sel = _joined(alg_runs, ok)
        n_dd = 0  # elements settled by the double-double second look
        c = np.asarray(trace.out, np.float64)
        over, flush = trace.overflow, trace.flush
        xs = x64 if sel is None else x64[sel]
        if fast is not None:
            if kind not in prepared:
                prepared[kind] = fastmetrics.prepare(fast.of(kind), fmt)
            prep = prepared[kind] if sel is None else fastmetrics.take(prepared[kind], sel)
            flagged = fastmetrics.flagged(c, over, flush)
            b = fastmetrics.measure_batch(c, prep, flagged)
            ulp, abs_e, rel_e = b.ulp, b.abs_error, b.rel_error
            rounded, exact_zero, unsettled = b.rounded, b.exact_zero, b.unsettled
            tier = fast.tier
            if tier == FLOAT64_TIER and unsettled.any():  # a second look, in double-double
                again = np.flatnonzero(unsettled.any(axis=1))
                dd = fastmetrics.prepare(dd_reference(xs[again]).of(kind), fmt)
                b2 = fastmetrics.measure_batch(c[again], dd, flagged[again])
                for whole, part in zip(
                    (ulp, abs_e, rel_e, rounded, exact_zero, unsettled),
                    (b2.ulp, b2.abs_error, b2.rel_error, b2.rounded, b2.exact_zero, b2.unsettled),
                    strict=True,
                ):
                    whole[again] = part
                n_dd = int(again.size * c.shape[1] - b2.unsettled.sum())
                if n_dd:
                    tiers[DD_TIER] = tiers.get(DD_TIER, 0) + n_dd
        else:
            ulp, abs_e, rel_e = (np.empty(c.shape) for _ in range(3))
            rounded, exact_zero = np.empty(c.shape), np.zeros(c.shape, bool)
            unsettled = np.ones(c.shape, bool)
            tier = "mpmath"
        rr, ii = np.nonzero(unsettled)
        by_row = itertools.groupby(zip(rr.tolist(), ii.tolist(), strict=True), key=_first)
        for r, pairs in by_row:
            cols = [i for _, i in pairs]
            x = x64[ok[r]]
            only = needed_values(kind, len(x), cols, ok[r] in exacts or tier == "mpmath")
            if only is None:  # the whole vector's reference, shared by the implementations
                start = exact_row(ok[r])
            else:  # a few elements: those values alone (the row's sum is still computed)
                start = exact(x, fmt, options.precision_bits, only)
            ref, values, _ = certified(kind, x, c[r], start, fmt, None, cols, only)
            if only is None:
                exacts[ok[r]] = ref
            else:
                partial_bits = max(partial_bits, ref.bits)
            done: dict[tuple[float, Any], tuple[float, float, float, float]] = {}
            for i in cols:  # equal outputs of equal logits (a mask) are measured once
                v, ci = values[i], float(c[r, i])
                if (ci, v) not in done:
                    done[ci, v] = (
                        *metrics.element_error(ci, v, fmt, ref.bits),
                        round_to_format(v, fmt),
                    )
                ulp[r, i], abs_e[r, i], rel_e[r, i], rounded[r, i] = done[ci, v]
                exact_zero[r, i] = v == 0 or v == -math.inf  # an mpf
        n_slow = len(rr)
        n_fast = c.size - n_slow - n_dd
        if n_fast:
            tiers[tier] = tiers.get(tier, 0) + n_fast
        if n_slow:
            tiers["mpmath"] = tiers.get("mpmath", 0) + n_slow
        overflow, underflow, benign, nan = metrics.classify(
            kind, c, rounded, exact_zero, over, flush
        )
        rows = _row_stats(kind, xs, c, ulp, abs_e, rel_e, overflow, underflow, benign, nan)
        found = fastmetrics.findings_batch(
            (overflow, underflow, benign, nan), over, flush, trace.nan, trace.arg, fmt
        )
        rooms = (
            headroom.assess_rows(alg, fmt, xs, options.danger_zone)
            if options.danger_zone is not None
            else None
        )
        base = _base(alg, fmt)
        for j, r in enumerate(ok):  # j: row in the trace, r: row in the batch
            elements = None
            if options.per_element:
                m = metrics.Measured(
                    c[j], (), ulp[j], abs_e[j], rel_e[j], overflow[j], underflow[j], benign[j],
                    nan[j],
                )  # fmt: skip
                exact_values = metrics.exact_values(kind, exact_row(r))
                own = value_bounds_of(kind, len(x64[r]), exact_row(r))
                elements = metrics.elements(
                    dataclasses.replace(m, exact=exact_values),
                    None if kind.per_vector else x64[r],
                    exact_row(r).rel_bound if own is None else own,
                )
            room = None if rooms is None else rooms[j]
            out[r, ai] = _result(base, vectors[r], found[j], j, rows, elements, room)
    return _Measured(out, max([partial_bits, *(e.bits for e in exacts.values())]))


def _first(pair: tuple[int, int]) -> int:
    return pair[0]


def _joined(
    runs: list[tuple[Trace, int] | str], ok: list[int]
) -> tuple[Trace, npt.NDArray[np.intp] | None]:
    """One trace for the rows in ``ok`` (in order), and their indices (``None``: every row).

    The common case is one trace for the whole batch; when a user implementation failed on
    some vectors, the others ran alone and their rows are stacked.
    """
    first = runs[ok[0]]
    assert not isinstance(first, str)
    whole = len(ok) == len(runs) and all(
        not isinstance(ran, str) and ran[0] is first[0] and ran[1] == r
        for r, ran in enumerate(runs)
    )
    if whole:
        return first[0], None
    picked = [ran for ran in (runs[r] for r in ok) if not isinstance(ran, str)]

    def stack(field: str) -> npt.NDArray[Any]:
        return np.stack([getattr(tr, field)[i] for tr, i in picked])

    trace = Trace(stack("out"), stack("overflow"), stack("flush"), stack("nan"), stack("arg"))
    return trace, np.array(ok)


@dataclass(frozen=True)
class _Rows:
    """Per-row statistics of one implementation's batch (plain Python lists)."""

    worst: list[int]
    max_ulp: list[float]
    mean_ulp: list[float]
    max_abs: list[float]
    max_rel: list[float]
    counts: list[tuple[int, int, int, int]]
    argmax: list[bool | None]
    sum_error: list[float | None]


def _row_stats(
    kind: Kind,
    x64: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    ulp: npt.NDArray[np.float64],
    abs_e: npt.NDArray[np.float64],
    rel_e: npt.NDArray[np.float64],
    overflow: npt.NDArray[np.bool_],
    underflow: npt.NDArray[np.bool_],
    benign: npt.NDArray[np.bool_],
    nan: npt.NDArray[np.bool_],
) -> _Rows:
    """Row maxima, means, counts and argmax checks, all at once."""
    b = c.shape[0]
    worst = np.argmax(ulp, axis=1)
    none = np.zeros(b, np.int64)  # (most batches have no event of a kind: no sum to take)
    masks = (overflow, underflow, benign, nan)
    counts = np.stack([m.sum(axis=1) if m.any() else none for m in masks], 1)
    if kind.per_vector:
        argmax: list[bool | None] = [None] * b
    else:
        # as metrics.argmax_preserved: a maximal input keeps the maximal output (ties allowed)
        top_x = np.max(x64, axis=1, keepdims=True)
        top = x64 == top_x
        with np.errstate(invalid="ignore"):
            if np.count_nonzero(top) == b and not np.isnan(top_x).any():
                # one maximal input per row (a row without one has a NaN maximum): no mask
                best_top = c[np.arange(b), np.argmax(x64, axis=1)]
            else:
                best_top = np.where(top, c, -np.inf).max(axis=1)
            kept = (best_top == c.max(axis=1)) & ~nan.any(axis=1)
        # rows that overflowed or underflowed: the first maximal output must be a top input
        first = top[np.arange(b), np.argmax(c, axis=1)]
        strict = overflow.any(axis=1) | underflow.any(axis=1)
        argmax = np.where(strict, first & ~nan.any(axis=1), kept).tolist()
    return _Rows(
        worst=worst.tolist(),
        max_ulp=ulp[np.arange(b), worst].tolist(),
        mean_ulp=np.mean(ulp, axis=1).tolist(),  # per row, as np.mean of the row alone
        max_abs=np.max(abs_e, axis=1).tolist(),
        max_rel=np.max(rel_e, axis=1).tolist(),
        counts=list(map(tuple, counts.tolist())),
        argmax=argmax,
        sum_error=_sum_errors(c) if kind is Kind.SOFTMAX else [None] * b,
    )


def _sum_errors(c: npt.NDArray[np.float64]) -> list[float | None]:
    """``|sum - 1|`` per row: vectorised where the bound settles it, else ``math.fsum``."""
    values, settled = fastmetrics.sum_errors(c)
    return [
        v if ok else metrics.sum_error(row)
        for v, ok, row in zip(values.tolist(), settled.tolist(), c, strict=True)
    ]


def _base(alg: Algorithm, fmt: Format) -> dict[str, Any]:
    """Every field of a result of ``alg`` in ``fmt`` that does not depend on the vector (the
    others at their defaults, or missing): see :func:`_result`."""
    return make_result_fields(algorithm=alg.name, kind=alg.kind.value, dtype=_label(alg, fmt))


def _result(
    base: dict[str, Any],
    v: Vector,
    findings: tuple[Finding, ...],
    r: int,
    rows: _Rows,
    elements: tuple[Element, ...] | None,
    room: Any = None,
) -> Result:
    """The result of row ``r`` of a measured batch (``room``: its headroom, when assessed),
    from its implementation and dtype's :func:`_base`: one per vector, implementation and dtype
    (1.4 million for 65,536 10-class vectors), so the fields are set in one dictionary."""
    values = base.copy()
    values["source"], values["vector"], values["line"] = v.source, v.index, v.line
    values["length"] = len(v.values)
    (values["overflow"], values["underflow"], values["underflow_benign"],
     values["nan"]) = rows.counts[r]  # fmt: skip
    values["max_ulp"], values["mean_ulp"] = rows.max_ulp[r], rows.mean_ulp[r]
    values["max_abs_error"], values["max_rel_error"] = rows.max_abs[r], rows.max_rel[r]
    values["sum_error"], values["argmax_preserved"] = rows.sum_error[r], rows.argmax[r]
    values["worst_index"], values["findings"] = rows.worst[r], findings
    values["elements"] = elements
    if room is not None:
        values["headroom"] = room
    return result_from_dict(values)


def _run(alg: Algorithm, batch: npt.NDArray[Any], setup: Setup) -> list[tuple[Trace, int] | str]:
    """Per row of ``batch``: (trace, row in it), or why the implementation failed on it.

    A user implementation fails with :class:`ImplementationError`; when it fails on a batch,
    each row is run alone so that the error names the vectors it failed on, unless it timed
    out, ran out of memory or killed its process (:class:`SandboxFailure`, see
    :mod:`lsmcheck.sandbox`): re-running those row by row would multiply the timeout.  A framework
    adapter (a black box) that raises (PyTorch has no float8 softmax) fails every row with the
    library's message; a built-in that raises is a bug in lsmcheck and is not caught.
    """
    try:
        trace = alg.execute(batch, setup)
    except SandboxFailure as e:
        return [str(e)] * len(batch)
    except ImplementationError as e:
        if len(batch) == 1:
            return [str(e)]
        return [_run(alg, batch[r : r + 1], _row_setup(setup, r))[0] for r in range(len(batch))]
    except LsmcheckError:
        raise
    except Exception as e:
        if alg.traced:
            raise
        first = one_line((str(e).strip().splitlines() or [""])[0])
        return [f"{alg.name} raised {type(e).__name__}: {first}"] * len(batch)
    expected = (batch.shape[0], 1) if alg.kind.per_vector else batch.shape
    if trace.out.shape != expected:
        return [f"{alg.name} returned shape {trace.out.shape}, expected {expected}"] * len(batch)
    return [(trace, r) for r in range(len(batch))]


def _row_setup(setup: Setup, r: int) -> Setup:
    """The settings of row ``r`` alone (its target)."""
    if setup.targets is None:
        return setup
    return dataclasses.replace(setup, targets=setup.targets[r : r + 1])


def _applies(alg: Algorithm, fmt: Format, formats: list[Format]) -> bool:
    """Whether ``alg`` runs in ``fmt``.

    A black box runs its own kernel whatever the accumulation format: it runs once per storage
    format, under the storage name, so not again in ``float16/acc=float32`` next to ``float16``.
    """
    if fmt.accumulate is None or alg.accumulates:
        return True
    return fmt.storage.name not in {f.name for f in formats}


def _identity(v: Vector, alg: Algorithm, fmt: Format) -> dict[str, Any]:
    """The fields that say which vector, implementation and dtype a result is about."""
    return {
        "source": v.source,
        "vector": v.index,
        "line": v.line,
        "length": len(v.values),
        "algorithm": alg.name,
        "kind": alg.kind.value,
        "dtype": _label(alg, fmt),
    }


def _label(alg: Algorithm, fmt: Format) -> str:
    """The dtype a result is reported under: a black box ignores the accumulation format."""
    return fmt.name if alg.accumulates else fmt.storage.name


def kind_elements(kind: Kind, n: int) -> int:
    """Output elements of ``kind`` for a vector of ``n`` logits."""
    return 1 if kind.per_vector else n


def _measure_row(
    v: Vector,
    x: npt.NDArray[np.float64],
    alg: Algorithm,
    trace: Trace,
    row: int,
    ref: Exact,
    certified: tuple[tuple[Any, ...], Any],
    fmt: Format,
    options: Options,
) -> Result:
    """Row ``row`` of ``trace`` measured element by element against the mpmath reference
    ``ref`` and the exact values of its kind with their relative bound, ``certified`` (from
    :func:`lsmcheck.certify.certified`).

    The path for kinds whose exact values depend on the target class, for ``--bounds``, and for
    the formats without a fast tier.
    """
    over, flush, nan_c = trace.overflow[row], trace.flush[row], trace.nan[row]
    values, rel_bound = certified
    target = v.target
    m = metrics.measure(alg.kind, trace.out[row], over, flush, ref, fmt, values)
    found = metrics.findings(m, over, flush, nan_c, trace.arg[row], fmt)
    bound = None
    if options.bounds and not (m.overflow.any() or m.nan.any()):
        bound = bounds.verdict(alg.name, x, ref, fmt, m.abs_error, m.exact, options.block, target)
    if bound is not None and bound.over and not m.underflow.any():  # else underflow explains it
        found += (_beyond_bound(alg, fmt, bound),)
    worst = int(np.argmax(m.ulp))
    return Result(
        **_identity(v, alg, fmt),
        max_ulp=float(m.ulp[worst]),
        mean_ulp=float(np.mean(m.ulp)),
        max_abs_error=float(np.max(m.abs_error)),
        max_rel_error=float(np.max(m.rel_error)),
        overflow=int(m.overflow.sum()),
        underflow=int(m.underflow.sum()),
        underflow_benign=int(m.benign.sum()),
        nan=int(m.nan.sum()),
        sum_error=metrics.sum_error(m.computed) if alg.kind is Kind.SOFTMAX else None,
        argmax_preserved=None
        if alg.kind.per_vector or alg.kind.is_grad
        else metrics.argmax_preserved(x, m.computed, bool(m.overflow.any() or m.underflow.any())),
        worst_index=worst,
        findings=found,
        elements=metrics.elements(m, None if alg.kind.per_vector else x, rel_bound)
        if options.per_element
        else None,
        target=target,
        bound_ratio=None if bound is None else bound.ratio,
        bound_rel_error=None if bound is None else bound.bound_rel,
    )


def _beyond_bound(alg: Algorithm, fmt: Format, b: bounds.Verdict) -> Finding:
    return Finding(
        "beyond_bound",
        "output",
        f"the error is {b.ratio:.3g} times the proven leading-order bound of {alg.name} in "
        f"{fmt.name} (relative {b.bound_rel:.3g}): a defect, or not the algorithm it claims",
        b.over,
    )


def _undefined(x: npt.NDArray[Any]) -> str | None:
    from lsmcheck.reference import undefined_reason

    return undefined_reason(np.asarray(x, np.float64))


def _unrepresentable(
    values: npt.NDArray[np.float64], rounded: npt.NDArray[Any], fmt: Format
) -> str | None:
    """Why ``values`` cannot be audited in ``fmt`` (a finite logit overflows), else None."""
    if not fmt.has_inf:
        masked = np.flatnonzero(np.isinf(values))
        if masked.size:
            i = int(masked[0])
            return f"x[{i}]={values[i]:g}: {fmt.name} has no infinities"
    bad = np.flatnonzero(np.isfinite(values) & ~np.isfinite(np.asarray(rounded, np.float64)))
    if not bad.size:
        return None
    i = int(bad[0])
    # every digit of the input (464.000000001 overflows e4m3fn, while 464 rounds to 448)
    given = repr(float(values[i])).removesuffix(".0")
    return f"x[{i}]={given} overflows {fmt.name} (max {fmt.max:.6g})"


def _skipped(v: Vector, alg: Algorithm, fmt: Format, status: Status, reason: str) -> Result:
    return Result(
        **_identity(v, alg, fmt),
        status=status,
        reason=reason,
    )
