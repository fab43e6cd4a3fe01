"""``lsmcheck.audit``: the one entry point of the Python API, also used by the command line.

It takes logits as :class:`~lsmcheck.vectors.Vector` objects or as plain numbers (a list, a list
of lists, a numpy array with classes on the last axis), implementations as names, callables
or ``"KIND=module:function"`` strings, and returns a :class:`~lsmcheck.report.Report`
(``.results``, ``.passed``, ``.exit_code``, ``.to_json()``).

Example (your own function is a black box: lsmcheck sees its outputs only, so the overflow
of ``exp`` inside it shows as the NaN of ``inf/inf``; a built-in is traced, and says
``overflow``)::

    >>> import numpy as np, lsmcheck
    >>> def naive(x):
    ...     e = np.exp(x)
    ...     return e / e.sum(axis=-1, keepdims=True)
    >>> report = lsmcheck.audit([[1000.0, 1001.0]], implementations=[naive], kind="softmax",
    ...                         dtypes=["float32"], fail_on=["overflow", "nan"])
    >>> report.passed, report.results[0].failures
    (False, ('nan 2 > 0',))
    >>> lsmcheck.audit([[1000.0, 1001.0]], algorithms="softmax_naive", dtypes="float32",
    ...                fail_on="overflow").results[0].failures
    ('overflow 2 > 0',)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from lsmcheck import baseline as baseline_file
from lsmcheck.algorithms import DEFAULT_ALGORITHMS, Algorithm, Kind
from lsmcheck.audit import Progress
from lsmcheck.audit import audit as run_audit
from lsmcheck.baseline import Baseline
from lsmcheck.errors import UsageError
from lsmcheck.gate import DEFAULT_TOLERANCE, Thresholds, compare, parse_fail_on
from lsmcheck.impllimits import Limits
from lsmcheck.options import Options
from lsmcheck.report import Report
from lsmcheck.userimpl import load, wrap
from lsmcheck.vectors import Vector

__all__ = ["as_vectors", "audit", "implementations"]

Implementation = Algorithm | Callable[[Any], Any] | str


def as_vectors(logits: Any, source: str = "logits") -> list[Vector] | Iterator[Vector]:
    """Plain logits as vectors: a list of numbers or a 1-D array is one vector; a list of
    lists (they may differ in length) or an array of any higher rank is one vector per row of
    its last axis.  :class:`~lsmcheck.vectors.Vector` objects pass through, and an iterator
    (of Vectors, or of rows of numbers) is read as the audit streams."""
    if isinstance(logits, Vector):
        return [logits]
    if isinstance(logits, Iterator):  # a stream: read lazily by the engine
        return _stream(logits, source)
    if isinstance(logits, Sequence) and logits and all(isinstance(v, Vector) for v in logits):
        return list(logits)
    rows: list[Any]
    if isinstance(logits, np.ndarray) or not isinstance(logits, Sequence):
        array = _floats(logits, source)
        rows = [array] if array.ndim == 1 else list(array.reshape(-1, array.shape[-1]))
    elif logits and all(np.ndim(v) == 0 for v in logits):
        rows = [_floats(logits, source)]
    else:
        rows = [_floats(v, f"{source}[{i}]") for i, v in enumerate(logits)]
    if not rows:
        raise UsageError(f"{source}: no logit vector given")
    vectors = []
    for i, row in enumerate(rows):
        if row.ndim != 1 or row.size == 0:
            raise UsageError(f"{source}[{i}]: expected a non-empty vector of numbers")
        vectors.append(Vector(source, i, None, np.array(row, np.float64)))
    return vectors


def _check_kinds(numbers: dict[str, Any], whole: dict[str, Any]) -> None:
    """A UsageError naming the argument for a number or a whole number of the wrong kind
    (``max_ulp="4"``), before it fails deep inside; ``None`` means not given."""
    for name, value in numbers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise UsageError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    for name, value in whole.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(
                f"{name}: expected a whole number, got {type(value).__name__} {value!r}"
            )


def _stream(items: Iterator[Any], source: str) -> Iterator[Vector]:
    """A stream of Vectors, or of rows of numbers (each one vector), as Vectors."""
    for i, item in enumerate(items):
        if isinstance(item, Vector):
            yield item
            continue
        row = _floats(item, f"{source}[{i}]")
        if row.ndim != 1:
            raise UsageError(f"{source}[{i}]: expected a non-empty vector of numbers")
        yield Vector(source, i, None, row)


def _names(value: str | Iterable[Any], where: str) -> tuple[Any, ...]:
    """One name or several: ``"float32"`` is ``("float32",)``, not its letters (``"all"`` is
    expanded by :class:`Options`)."""
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise UsageError(
            f"{where}: expected a name or a list of names, got {type(value).__name__}"
        ) from None
    for name in names:
        if not isinstance(name, str | Algorithm):
            raise UsageError(f"{where}: expected names, got {type(name).__name__} {name!r}")
    return names


def _floats(value: Any, where: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise UsageError(f"{where}: expected numbers: {e}") from None
    if array.ndim == 0 or array.size == 0:
        raise UsageError(f"{where}: expected a non-empty vector of numbers")
    return array


def implementations(
    items: Iterable[Implementation], kind: str | Kind | None, limits: Limits | None = None
) -> list[Algorithm]:
    """Algorithms from Algorithm objects, ``"KIND=module:function"`` specs (each run in a
    sandbox process with ``limits``, see :mod:`lsmcheck.sandbox`) and callables (run in this
    process; a callable needs ``kind``)."""
    out = []
    for item in items:
        if isinstance(item, Algorithm):
            out.append(item)
        elif isinstance(item, str):
            out.append(load(item, "implementations", limits=limits))
        elif callable(item):
            if kind is None:
                raise UsageError("implementations: a callable needs kind= (softmax, ...)")
            out.append(wrap(item, kind))
        else:
            raise UsageError(f"implementations: expected a callable, got {type(item).__name__}")
    return out


def audit(
    logits: Any,
    options: Options | None = None,
    progress: Progress | None = None,
    *,
    implementations: Iterable[Implementation] = (),
    kind: str | Kind | None = None,
    algorithms: Iterable[str] | None = None,
    dtypes: Iterable[str] | None = None,
    max_ulp: float | None = None,
    max_rel_error: float | None = None,
    fail_on: Iterable[str] = (),
    thresholds: Thresholds | None = None,
    precision_bits: int | None = None,
    per_element: bool | None = None,
    baseline: str | os.PathLike[str] | Baseline | None = None,
    baseline_tolerance: float = DEFAULT_TOLERANCE,
    reference: str | None = None,
    keep: int | None = None,
    jobs: int = 1,
    scheduler: str | None = None,
    impl_timeout: float | None = None,
    impl_memory: str | int | None = None,
) -> Report:
    """Audit logits with built-in algorithms and your own implementations.

    Args:
        logits: vectors, or plain numbers (see :func:`as_vectors`).
        options: every setting at once; the keyword arguments below override its fields.
        progress: ``progress(done, total)``, called as vectors are measured.
        implementations: your own, as callables (with ``kind``), ``"KIND=module:function"``
            strings or :class:`~lsmcheck.algorithms.Algorithm` objects.  Each callable gets a
            2-D array in the audited dtype and must return the same shape and dtype
            (``(batch,)`` for logsumexp).  A string runs in a sandbox process of its own (a
            hang, a crash or running out of memory is an ``error`` result, see
            :mod:`lsmcheck.sandbox`); a callable runs in this process.
        kind: ``"softmax"``, ``"log_softmax"`` or ``"logsumexp"``: what the callables compute.
        algorithms: built-in algorithm names; default all of them, or none when
            ``implementations`` are given.  With ``options``, implementations are added to
            its algorithms (or to ``algorithms`` when given).
        dtypes: dtype names (default float16, float32, float64).
        max_ulp, max_rel_error, fail_on: the gate (``fail_on`` names overflow, underflow,
            nan, unaudited, or all of them); or pass ``thresholds``.
        precision_bits: the reference's first mpmath precision (default 113).
        per_element: keep per-element detail in the results.
        baseline: a baseline file (or a loaded :class:`~lsmcheck.baseline.Baseline`); then
            only regressions fail (see :func:`lsmcheck.gate.compare`).
        baseline_tolerance: ulp ``max_ulp`` may grow before it counts as a regression.
        reference: ``"auto"`` (default: the fast certified tier, mpmath for what it cannot
            settle) or ``"mpmath"`` (mpmath for every element).
        keep: aggregate results as they stream, keeping this many per group (see
            :class:`~lsmcheck.options.Options`).
        jobs: worker processes (the report is the same whatever the number).
        scheduler: the address of a Dask distributed scheduler to run the chunks on.
        impl_timeout: seconds a call of a string implementation may take (default 60; 0: no
            limit), as ``--impl-timeout``.
        impl_memory: the memory cap of its process (``"2G"``, ``"25%"``, bytes; default half
            the physical memory; 0: no cap), as ``--impl-memory``.

    Returns:
        The report: ``report.passed``, ``report.results``, ``report.to_json()``.
    """
    numbers = {"max_ulp": max_ulp, "max_rel_error": max_rel_error}
    numbers["baseline_tolerance"] = baseline_tolerance
    _check_kinds(numbers, {"keep": keep, "jobs": jobs, "precision_bits": precision_bits})
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise UsageError(f"thresholds: expected a Thresholds, got {type(thresholds).__name__}")
    if options is not None and not isinstance(options, Options):
        raise UsageError(f"options: expected an Options, got {type(options).__name__}")
    vectors = as_vectors(logits)
    base = options or Options()
    limits = Limits.make(impl_timeout, impl_memory, "impl_timeout", "impl_memory")
    user = globals()["implementations"](implementations, kind, limits)
    changes: dict[str, Any] = {}
    if options is None:
        if algorithms is not None:
            names: tuple[str | Algorithm, ...] = _names(algorithms, "algorithms")
        else:
            names = () if user else DEFAULT_ALGORITHMS
        changes["algorithms"] = (*names, *user)
    elif algorithms is not None or user:  # [] means none, as without options
        names = _names(algorithms, "algorithms") if algorithms is not None else base.algorithms
        changes["algorithms"] = (*names, *user)
    if dtypes is not None:
        changes["dtypes"] = _names(dtypes, "dtypes")
    if precision_bits is not None:
        changes["precision_bits"] = precision_bits
    if per_element is not None:
        changes["per_element"] = per_element
    if reference is not None:
        changes["reference"] = reference
    if keep is not None:
        changes["keep"] = keep
    if baseline is not None:  # compared result by result: none may be aggregated away
        changes["aggregate"] = False
    if thresholds is not None:
        changes["thresholds"] = thresholds
    direct: dict[str, Any] = {"max_ulp": max_ulp, "max_rel_error": max_rel_error}
    direct = {k: v for k, v in direct.items() if v is not None}
    fail_on = list(_names(fail_on or (), "fail_on"))
    if fail_on:
        direct["fail_on"] = parse_fail_on(fail_on)
    if direct:
        changes["thresholds"] = dataclasses.replace(
            changes.get("thresholds", base.thresholds), **direct
        )
    opts = dataclasses.replace(base, **changes) if changes else base
    opts.validate()
    report = run_audit(vectors, opts, progress, jobs=jobs, scheduler=scheduler)
    if baseline is not None:
        loaded = baseline if isinstance(baseline, Baseline) else baseline_file.load(str(baseline))
        report = compare(report, loaded, baseline_tolerance)
    return report
