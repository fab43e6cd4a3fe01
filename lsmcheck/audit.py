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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck import bounds, metrics, targets
from lsmcheck.algorithms import (
    DEFAULT_ALGORITHMS,
    DEFAULT_BLOCK,
    Algorithm,
    Kind,
    Setup,
    Trace,
    get_algorithm,
)
from lsmcheck.dtypes import DEFAULT_FORMATS, Format, accumulate_all, get_format
from lsmcheck.errors import LsmcheckError, UsageError
from lsmcheck.explore import headroom
from lsmcheck.gate import Thresholds, judge
from lsmcheck.reference import Exact, exact, exact_nll_grad
from lsmcheck.results import Finding, ReferenceInfo, Report, Result, Status, summarise
from lsmcheck.userimpl import ImplementationError
from lsmcheck.vectors import Vector

#: The lowest and highest ``--precision`` accepted (bits of the first mpmath attempt).
MIN_BITS, MAX_START_BITS = 64, 4096

Progress = Callable[[int, int], None]


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
        danger_zone: warn when a vector is within this fraction of a measured limit
            (:mod:`lsmcheck.explore.headroom`); ``None`` computes no headroom.
        accumulate: a wider dtype for sums, shifts and logs (``--accumulate``), or ``None``.
        block: the block size of blocked algorithms (``--block``).
        target: the ``--target`` specification (see :mod:`lsmcheck.targets`), or ``None``.
        grad: whether to audit the backward pass of every algorithm that has one.
    """

    dtypes: tuple[str, ...] = DEFAULT_FORMATS
    algorithms: tuple[str | Algorithm, ...] = DEFAULT_ALGORITHMS
    precision_bits: int = 113
    per_element: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    danger_zone: float | None = 0.10
    accumulate: str | None = None
    block: int = DEFAULT_BLOCK
    target: str | None = None
    grad: bool = False

    def __post_init__(self) -> None:
        if self.block < 1:
            raise UsageError(f"--block: expected a block size >= 1, got {self.block}")
        if self.danger_zone is not None and not 0 <= self.danger_zone < 1:
            raise UsageError(
                f"--danger-zone: expected a percentage from 0 to below 100, "
                f"got {self.danger_zone * 100:g}"
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
            algs += [get_algorithm(n) for n in dict.fromkeys(backward) if n not in _names(algs)]
        needy = [a.name for a in algs if a.kind.needs_target]
        if needy and self.target is None:
            raise UsageError(
                f"--target: {needy[0]} needs the target class of each vector ({targets.FORMS})"
            )
        return algs


def _names(algs: list[Algorithm]) -> set[str]:
    return {a.name for a in algs}


def resolve_algorithms(items: Sequence[str | Algorithm]) -> list[Algorithm]:
    """Registered names and Algorithm objects as Algorithms; a name used twice is an error."""
    out: dict[str, Algorithm] = {}
    for item in items:
        alg = item if isinstance(item, Algorithm) else get_algorithm(item)
        if out.setdefault(alg.name, alg) is not alg:
            raise UsageError(f"two different implementations are named {alg.name!r}")
    return list(out.values())


def audit(
    vectors: Sequence[Vector],
    options: Options | None = None,
    progress: Progress | None = None,
) -> Report:
    """Audit every vector with every implementation in every dtype.

    ``progress(done, total)`` is called as vectors are measured (total = vectors x dtypes).
    """
    from lsmcheck import __version__

    options = options or Options()
    formats, algorithms = options.formats(), options.implementations()
    vectors, target_of = targets.resolve(options.target, vectors)
    keyed: dict[tuple[int, int, int], Result] = {}
    max_bits = options.precision_bits
    done, total = 0, len(vectors) * len(formats)
    for fi, fmt in enumerate(formats):
        rounded = [fmt.cast(v.values) for v in vectors]
        runnable: dict[int, list[int]] = {}
        for vi, (v, x) in enumerate(zip(vectors, rounded, strict=True)):
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
            done += 1
        for rows in runnable.values():
            batch = np.stack([rounded[vi] for vi in rows])
            setup = Setup(
                acc=None if fmt.accumulate is None else fmt.accumulate.dtype,
                block=options.block,
                targets=None if target_of is None else np.array([target_of[vi] for vi in rows]),
            )
            traces = [
                _run(alg, batch, setup) if _applies(alg, fmt, formats) else None
                for alg in algorithms
            ]
            for r, vi in enumerate(rows):
                x = rounded[vi]
                ref = exact(np.asarray(x, np.float64), fmt, options.precision_bits)
                max_bits = max(max_bits, ref.bits)
                target = None if target_of is None else target_of[vi]
                for ai, (alg, runs) in enumerate(zip(algorithms, traces, strict=True)):
                    if runs is None:
                        continue
                    ran = runs[r]
                    if isinstance(ran, str):
                        keyed[vi, fi, ai] = _skipped(vectors[vi], alg, fmt, Status.ERROR, ran)
                        continue
                    res = _measure(vectors[vi], x, alg, ran[0], ran[1], ref, fmt, options, target)
                    if options.danger_zone is not None and not alg.kind.needs_target:
                        room = headroom.assess(
                            alg, fmt, np.asarray(x, np.float64), options.danger_zone
                        )
                        res = dataclasses.replace(res, headroom=room)
                    keyed[vi, fi, ai] = judge(res, options.thresholds)
                done += 1
                if progress is not None:
                    progress(done, total)
    results = tuple(keyed[k] for k in sorted(keyed))
    return Report(
        version=__version__,
        reference=ReferenceInfo("mpmath", options.precision_bits, max_bits),
        results=results,
        groups=summarise(results),
        gated=options.thresholds.active,
    )


def _run(alg: Algorithm, batch: npt.NDArray[Any], setup: Setup) -> list[tuple[Trace, int] | str]:
    """Per row of ``batch``: (trace, row in it), or why the implementation failed on it.

    A user implementation fails with :class:`ImplementationError`; when it fails on a batch,
    each row is run alone so that the error names the vectors it failed on.  A framework
    adapter (a black box) that raises (PyTorch has no float8 softmax) fails every row with the
    library's message; a built-in that raises is a bug in lsmcheck and is not caught.
    """
    try:
        trace = alg.execute(batch, setup)
    except ImplementationError as e:
        if len(batch) == 1:
            return [str(e)]
        return [_run(alg, batch[r : r + 1], _row_setup(setup, r))[0] for r in range(len(batch))]
    except LsmcheckError:
        raise
    except Exception as e:
        if alg.traced:
            raise
        first = (str(e).strip().splitlines() or [""])[0]
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


def _label(alg: Algorithm, fmt: Format) -> str:
    """The dtype a result is reported under: a black box ignores the accumulation format."""
    return fmt.name if alg.accumulates else fmt.storage.name


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
    return f"x[{i}]={values[i]:.6g} overflows {fmt.name} (max {fmt.max:.6g})"


def _skipped(v: Vector, alg: Algorithm, fmt: Format, status: Status, reason: str) -> Result:
    return Result(
        source=v.source,
        vector=v.index,
        line=v.line,
        length=len(v.values),
        algorithm=alg.name,
        kind=alg.kind.value,
        dtype=_label(alg, fmt),
        status=status,
        reason=reason,
    )


def _measure(
    v: Vector,
    x: npt.NDArray[Any],
    alg: Algorithm,
    trace: Trace,
    row: int,
    ref: Exact,
    fmt: Format,
    options: Options,
    target: int | None,
) -> Result:
    """The result of row ``row`` of ``trace`` (the vector ``v`` rounded to ``x``)."""
    over, flush, nan_c = trace.overflow[row], trace.flush[row], trace.nan[row]
    inputs = np.asarray(x, np.float64)
    values = _target_exact(alg.kind, inputs, ref, fmt, target)
    m = metrics.measure(alg.kind, trace.out[row], over, flush, ref, fmt, values)
    found = metrics.findings(m, over, flush, nan_c, trace.arg[row], fmt)
    bound = None
    if not (m.overflow.any() or m.nan.any()):
        bound = bounds.verdict(
            alg.name, inputs, ref, fmt, m.abs_error, m.exact, options.block, target
        )
    if bound is not None and bound.over and not m.underflow.any():  # else underflow explains it
        found += (_beyond_bound(alg, fmt, bound),)
    worst = int(np.argmax(m.ulp))
    mean = float(np.mean(m.ulp))
    return Result(
        source=v.source,
        vector=v.index,
        line=v.line,
        length=len(v.values),
        algorithm=alg.name,
        kind=alg.kind.value,
        dtype=_label(alg, fmt),
        max_ulp=float(m.ulp[worst]),
        mean_ulp=mean,
        max_abs_error=float(np.max(m.abs_error)),
        max_rel_error=float(np.max(m.rel_error)),
        overflow=int(m.overflow.sum()),
        underflow=int(m.underflow.sum()),
        underflow_benign=int(m.benign.sum()),
        nan=int(m.nan.sum()),
        sum_error=metrics.sum_error(m.computed) if alg.kind is Kind.SOFTMAX else None,
        argmax_preserved=None
        if alg.kind.per_vector or alg.kind.is_grad
        else metrics.argmax_preserved(inputs, m.computed),
        worst_index=worst,
        findings=found,
        elements=metrics.elements(m, None if alg.kind.per_vector else inputs)
        if options.per_element
        else None,
        target=target,
        bound_ratio=None if bound is None else bound.ratio,
        bound_rel_error=None if bound is None else bound.bound_rel,
    )


def _target_exact(
    kind: Kind, x: npt.NDArray[np.float64], ref: Exact, fmt: Format, target: int | None
) -> tuple[Any, ...] | None:
    """The exact values of a kind that depends on the target class (else ``None``)."""
    if target is None or not kind.needs_target:
        return None
    if kind is Kind.CROSS_ENTROPY:
        return (-ref.log_softmax[target],)
    grad, _ = exact_nll_grad(x, fmt, target, ref.bits)
    return grad


def _beyond_bound(alg: Algorithm, fmt: Format, b: bounds.Verdict) -> Finding:
    return Finding(
        "beyond_bound",
        "output",
        f"the error is {b.ratio:.3g} times the proven leading-order bound of {alg.name} in "
        f"{fmt.name} (relative {b.bound_rel:.3g}): a defect, or not the algorithm it claims",
        b.over,
    )
