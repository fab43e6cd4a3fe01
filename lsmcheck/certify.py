"""The mpmath path: certified exact values for what the fast tiers leave open.

:mod:`lsmcheck.measure` measures each output element against the fast tiers
(:mod:`lsmcheck.fastref`, :mod:`lsmcheck.fastmetrics`) and hands the elements they cannot settle
here: :func:`certified` raises the working precision of :func:`lsmcheck.reference.exact` until
the absolute and relative error of each of them is certified, computing only the values they
need (:func:`needed_values`) and using each value's own bound (:func:`value_bounds_of`).  The
kinds that depend on a target class (cross-entropy and gradients) take this path for every
element (:func:`target_exact`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck import metrics
from lsmcheck.algorithms import Kind
from lsmcheck.dtypes import Format
from lsmcheck.reference import Exact, exact, exact_nll_grad

#: A fallback for more than this share of a vector's elements computes its whole reference.
FEW = 1 / 8


def _numbered(kind: Kind, n: int) -> range | None:
    """Where the values of ``kind`` are in :func:`lsmcheck.reference.exact`'s numbering (its
    ``only``, and :attr:`~lsmcheck.reference.Exact.value_bounds`), for ``n`` logits; ``None``
    for the kinds that depend on a target class (not among them)."""
    if kind is Kind.SOFTMAX:
        return range(n)
    if kind is Kind.LOG_SOFTMAX:
        return range(n, 2 * n)
    if kind is Kind.LOGSUMEXP:
        return range(2 * n, 2 * n + 1)
    return None


def needed_values(kind: Kind, n: int, cols: list[int], whole: bool) -> list[int] | None:
    """The values of :func:`lsmcheck.reference.exact` that elements ``cols`` of ``kind`` need
    (numbered as its ``only``), or ``None`` for the whole reference: when ``whole`` (it exists
    already, or every element takes the mpmath path) or for more than a few elements."""
    at = _numbered(kind, n)
    if whole or at is None or len(cols) > max(1, n * FEW):
        return None
    return [at[i] for i in cols]


def certified(
    kind: Kind,
    x: npt.NDArray[np.float64],
    out: npt.NDArray[Any],
    ref: Exact,
    fmt: Format,
    target: int | None,
    only: Sequence[int] | None = None,
    values_only: Sequence[int] | None = None,
) -> tuple[Exact, tuple[Any, ...], Any]:
    """``ref``, computed again at a higher precision until the absolute and relative error of
    every output (of those in ``only``) is certified (:func:`lsmcheck.metrics.error_bits`);
    the exact values of ``kind`` it gives (the target's loss or gradient, for those); and
    their relative bound.  ``values_only``: ``ref`` holds only these values (see
    :func:`lsmcheck.reference.exact`), and so do its recomputations."""
    c64 = np.asarray(out, np.float64).ravel()
    cols = np.arange(c64.size) if only is None else np.asarray(only, np.intp)
    while True:
        bits, bound = ref.bits, ref.rel_bound
        if kind.is_grad and target is not None:  # exact_nll_grad's bound: 4(n + 4)u
            values, bits = exact_nll_grad(x, fmt, target, ref.bits)
            bound = 4 * (len(x) + 4) * 2.0 ** (1 - bits)
        else:
            values = target_exact(kind, x, ref, fmt, target) or metrics.exact_values(kind, ref)
        # in float64 first: a difference far above both float64's rounding and the reference's
        # bound is certified as it is (a bfloat16 output is some 2**-9 of itself off)
        c = c64[cols]
        v64 = np.array([float(values[i]) for i in cols.tolist()])
        # each value's own bound where the reference has them (a confident vector's top
        # probability 1 - e**-3000 is known to e**-3000 times 2**-100, not to 2**-100)
        own = value_bounds_of(kind, len(x), ref)
        at = [bound if own is None else own[i] for i in cols.tolist()]
        with np.errstate(all="ignore"):
            scale = np.maximum(np.abs(c), np.abs(v64))
            rel = np.array([float(b) for b in at]) / metrics.ERROR_REL_TOL
            margin = scale * 2.0**-50 + np.abs(v64) * rel
            hard = ~(np.abs(c - v64) > 2 * margin)
        distinct = dict.fromkeys(
            (float(c64[i]), values[i], b)
            for i, b, h in zip(cols.tolist(), at, hard.tolist(), strict=True)
            if h
        )
        needs = (metrics.error_bits(ci, v, b, bits) for ci, v, b in distinct)
        more = max((b for b in needs if b is not None), default=None)
        if more is None:
            return ref, tuple(values), bound
        ref = exact(x, fmt, more, values_only)


def value_bounds_of(kind: Kind, n: int, ref: Exact) -> list[Any] | None:
    """The relative bound of each value of ``kind`` in ``ref``, where it has them."""
    at = _numbered(kind, n)
    if ref.value_bounds is None or at is None:
        return None
    return [ref.value_bounds[i] for i in at]


def target_exact(
    kind: Kind, x: npt.NDArray[np.float64], ref: Exact, fmt: Format, target: int | None
) -> tuple[Any, ...] | None:
    """The exact values of a kind that depends on the target class (else ``None``)."""
    if target is None or not kind.needs_target:
        return None
    if kind is Kind.CROSS_ENTROPY:
        import mpmath

        # exactly: a bare -x rounds to mpmath's working precision (53 bits outside workprec),
        # which made every float64 loss its own exact value (0 ulp)
        return (mpmath.fneg(ref.log_softmax[target], exact=True),)
    grad, _ = exact_nll_grad(x, fmt, target, ref.bits)
    return grad


__all__ = ["FEW", "certified", "needed_values", "target_exact", "value_bounds_of"]
