"""The engine: vectors x dtypes x implementations -> results.

For each dtype, every vector is rounded to it; vectors that overflow on rounding are reported as
``unrepresentable`` and vectors whose softmax is not a vector of numbers as ``undefined``.  The
rest are batched by length, every implementation runs once per batch, and each output row is
measured against the certified reference of its rounded input (computed once per vector and
dtype, and shared by every implementation).  Results come back in input order: by vector, then
dtype, then implementation.

The run's settings are :class:`lsmcheck.options.Options`; the measuring of one batch is
:mod:`lsmcheck.measure`.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lsmcheck import targets
from lsmcheck._usercode import one_line
from lsmcheck.algorithms import Algorithm, Setup, Trace
from lsmcheck.dtypes import Format
from lsmcheck.errors import LsmcheckError
from lsmcheck.fastref import DD_TIER, FLOAT64_TIER
from lsmcheck.gate import judge
from lsmcheck.measure import _measure_batch, _skipped
from lsmcheck.options import Options
from lsmcheck.report import ReferenceInfo, Report
from lsmcheck.results import Result, Status, result_fields, result_from_fields
from lsmcheck.userimpl import ImplementationError, SandboxFailure
from lsmcheck.vectors import Vector

if TYPE_CHECKING:
    from lsmcheck.stream import Accumulator

#: ``progress(done, total)``: elements audited so far, and in all (an int, or ``None`` when the
#: input is an iterator of unknown length; typed Any so that ``(int, int)`` callbacks fit).
Progress = Callable[[int, Any], None]


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
