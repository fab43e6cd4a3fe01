"""How a traced function becomes an :class:`~lsmcheck.algorithms.interface.Algorithm`.

:func:`builtin` wraps it with floating-point warnings silenced (the trace records them) and,
for a ``lazy`` one, runs it quietly first and traced again only on the rows
:func:`eventful_rows` picks: recording events costs several times the arithmetic, and most
rows of real logits have none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms.interface import NO_SETUP, Algorithm, Array, Kind, Setup, Trace
from lsmcheck.algorithms.trace import _finite, _is_zero


def _errstate(fn: Callable[[Array, Setup], Trace]) -> Callable[[Array, Setup], Trace]:
    """Run ``fn`` with floating-point warnings silenced: the trace records them instead."""

    def run(x: Array, s: Setup) -> Trace:
        with np.errstate(all="ignore"):
            return fn(x, s)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def eventful_rows(x: Array, out: Array) -> npt.NDArray[np.intp]:
    """The rows of a batch in which a step of a built-in may have recorded an event.

    Every event a built-in records leaves a mark on its outputs or comes from its inputs: an
    overflow gives ``±inf`` or NaN (the sum, and so every output of the row, included), a flush
    gives 0 (or ``-inf`` after a log), every NaN cause gives NaN, and a NaN or infinite input is
    an input that is not finite.  A row whose inputs and outputs are all finite and whose
    outputs are nonzero recorded nothing (``tests/test_lazy_trace.py`` checks this against
    the fully traced run).
    """
    calm = _finite(x).all(axis=-1) & _finite(out).all(axis=-1) & ~_is_zero(out).any(axis=-1)
    return np.flatnonzero(~calm)


def _lazily(fn: Callable[[Array, Setup], Trace]) -> Callable[[Array, Setup], Trace]:
    """Run ``fn`` quietly (outputs only), then traced again on the rows that need it.

    Recording events costs several times the arithmetic; most rows of real logits have none.
    The outputs of the traced rows replace the quiet ones (the same arithmetic on the same row:
    the values are identical either way).  When most rows of the previous batch in the same
    dtypes needed tracing (float16 softmax of wide logits flushes in every row), the batch is
    traced at once rather than twice: which way is taken changes the time, never the trace.
    """
    busy: dict[tuple[np.dtype[Any], np.dtype[Any] | None], bool] = {}

    def run(x: Array, s: Setup) -> Trace:
        if s.quiet or x.ndim != 2 or x.shape[0] < 2:
            return fn(x, s)
        key = (x.dtype, s.acc)
        if busy.get(key, False):
            full = fn(x, s)
            busy[key] = 2 * eventful_rows(x, full.out).size > x.shape[0]
            return full
        quick = fn(x, dataclasses.replace(s, quiet=True))
        redo = eventful_rows(x, quick.out)
        busy[key] = 2 * redo.size > x.shape[0]
        if redo.size == 0:
            return quick
        if redo.size == x.shape[0]:
            return fn(x, s)
        targets = None if s.targets is None else s.targets[redo]
        full = fn(x[redo], dataclasses.replace(s, targets=targets))
        for name in ("out", "overflow", "flush", "nan", "arg"):
            getattr(quick, name)[redo] = getattr(full, name)
        return quick

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def builtin(
    name: str,
    kind: Kind,
    description: str,
    fn: Callable[[Array, Setup], Trace],
    backward: str | None = None,
    lazy: bool = False,
) -> Algorithm:
    """A traced built-in that honours every :class:`Setup` field.

    ``lazy``: trace only the rows :func:`eventful_rows` picks (for functions whose every step
    honours ``Setup.quiet``).
    """
    with_setup = _errstate(_lazily(fn) if lazy else fn)

    def run(x: Array) -> Trace:
        return with_setup(x, NO_SETUP)

    return Algorithm(
        name,
        kind,
        description,
        run,
        run_with=with_setup,
        accumulates=True,
        backward=backward,
    )
