"""The built-in algorithms, each a function ``(x, Setup) -> Trace`` of a 2-D batch.

The textbook and max-shifted softmax, log-softmax and logsumexp, and the log of softmax;
the log1p forms (Blanchard, Higham & Higham 2021); online softmax, one column or one block
at a time (Milakov & Gimelshein 2018); and the cross-entropy losses.  They are built from the
traced steps of :mod:`lsmcheck.algorithms.trace`; the registry (:mod:`lsmcheck.algorithms`)
makes each an :class:`~lsmcheck.algorithms.interface.Algorithm` with
:func:`~lsmcheck.algorithms.lazy.builtin`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms.interface import NO_SETUP, Array, Event, Setup, Trace
from lsmcheck.algorithms.trace import (
    _add_max,
    _div,
    _dtypes,
    _exp,
    _finite,
    _is_zero,
    _isnan,
    _mark_shift_nan,
    _nonfinite,
    _row,
    _RowMax,
    _shift,
    _start,
    _store,
    _sub,
    _sum,
    _Tracer,
)


def softmax_naive(x: Array, s: Setup = NO_SETUP) -> Trace:
    d_t, acc = _dtypes(x, s)
    t = _start(x, x.shape, s)
    e = _exp(t, x, rowwise=False, dtype=d_t)
    total = _sum(t, x, e, acc)
    return t.trace(_store(t, _div(t, e.astype(acc, copy=False), total), d_t, Event.SUM_OVERFLOW))


def softmax_stable(x: Array, s: Setup = NO_SETUP) -> Trace:
    d_t, acc = _dtypes(x, s)
    t = _start(x, x.shape, s)
    _, d = _shift(t, x, acc)
    e = _exp(t, d, rowwise=False, dtype=d_t)
    total = _sum(t, x, e, acc)
    return t.trace(_store(t, _div(t, e.astype(acc, copy=False), total), d_t, Event.SUM_OVERFLOW))


def log_softmax_naive(x: Array, s: Setup = NO_SETUP) -> Trace:
    d_t, acc = _dtypes(x, s)
    t = _start(x, x.shape, s)
    e = _exp(t, x, rowwise=True, dtype=d_t)
    total = _sum(t, x, e, acc)
    out = _sub(t, x.astype(acc, copy=False), np.log(total))
    return t.trace(_store(t, out, d_t, Event.SUB_OVERFLOW))


def log_softmax_stable(x: Array, s: Setup = NO_SETUP) -> Trace:
    d_t, acc = _dtypes(x, s)
    t = _start(x, x.shape, s)
    _, d = _shift(t, x, acc)
    e = _exp(t, d, rowwise=True, dtype=d_t)
    total = _sum(t, x, e, acc)
    return t.trace(_store(t, _sub(t, d, np.log(total)), d_t, Event.SUB_OVERFLOW))


def log_of_softmax(x: Array, s: Setup = NO_SETUP) -> Trace:
    inner = softmax_stable(x, s)
    out = np.log(inner.out)
    if s.quiet:
        return Trace(out, inner.overflow, inner.flush, inner.nan, inner.arg)
    zero = _is_zero(inner.out) & _finite(x)
    inner.flush[zero] = Event.LOG_OF_ZERO  # the root cause stays in ``arg``: exp's argument
    # float8_e4m3fn holds log(0) = -inf as NaN
    new_nan = zero & _isnan(out) & (inner.nan == 0)
    inner.nan[new_nan] = Event.NAN_FROM_FLUSH
    return Trace(out, inner.overflow, inner.flush, inner.nan, inner.arg)


def logsumexp_naive(x: Array, s: Setup = NO_SETUP) -> Trace:
    d_t, acc = _dtypes(x, s)
    t = _start(x, (x.shape[0], 1), s)
    e = _exp(t, x, rowwise=True, dtype=d_t)
    total = _sum(t, x, e, acc)
    return t.trace(_store(t, np.log(total), d_t, Event.ADD_OVERFLOW))


def logsumexp_stable(x: Array, s: Setup = NO_SETUP) -> Trace:
    d_t, acc = _dtypes(x, s)
    t = _start(x, (x.shape[0], 1), s)
    m, d = _shift(t, x, acc)
    e = _exp(t, d, rowwise=True, dtype=d_t)
    total = _sum(t, x, e, acc)
    return t.trace(_store(t, _add_max(t, m, np.log(total), acc), d_t, Event.ADD_OVERFLOW))


# --- log1p forms (Blanchard, Higham & Higham 2021) -----------------------------------------


def _log1p_terms(t: _Tracer, x: Array, s: Setup) -> tuple[Array, Array, Array]:
    """``(m, d, L)``: the row max, ``d = x - m`` (in acc) and ``L = log1p(sum_{j != k} e_j)``.

    ``k`` is the first index of the maximum; its term ``exp(0) = 1`` is left out of the sum
    and added exactly by ``log1p``.
    """
    d_t, acc = _dtypes(x, s)
    m, d = _shift(t, x, acc)
    e = _exp(t, d, rowwise=True, dtype=d_t)
    k = np.argmax(np.asarray(x, np.float64), axis=-1)
    e[np.arange(x.shape[0]), k] = 0
    total = _sum(t, x, e, acc)
    if t.active:  # a 0 sum is fine: forget that event, and its operand
        fine = t.flush == Event.SUM_FLUSH
        t.flush[fine] = Event.NONE
        t.arg[fine & (t.overflow == 0)] = np.nan
    return m, d, np.log1p(total)


def log_softmax_log1p(x: Array, s: Setup = NO_SETUP) -> Trace:
    d_t, _ = _dtypes(x, s)
    t = _start(x, x.shape, s)
    _, d, big_l = _log1p_terms(t, x, s)
    return t.trace(_store(t, _sub(t, d, big_l), d_t, Event.SUB_OVERFLOW))


def logsumexp_log1p(x: Array, s: Setup = NO_SETUP) -> Trace:
    d_t, acc = _dtypes(x, s)
    t = _start(x, (x.shape[0], 1), s)
    m, _, big_l = _log1p_terms(t, x, s)
    return t.trace(_store(t, _add_max(t, m, big_l, acc), d_t, Event.ADD_OVERFLOW))


# --- online softmax (Milakov & Gimelshein 2018) --------------------------------------------


def _rescale(old_m: Array, new_m: Array, acc: np.dtype[Any]) -> Array:
    """``exp(old_m - new_m)`` in ``acc``; 0 while nothing was seen (``old_m = -inf``).

    The running maxima are kept in float64 (they are logits, or ``-inf`` before the first
    one): ``-inf - -inf`` would be NaN, and float8_e4m3fn cannot even hold ``-inf``.  Kernels
    guard the empty prefix the same way.
    """
    seen = np.isfinite(old_m)
    old = np.where(seen, old_m, 0).astype(acc)
    new = np.where(seen, new_m, 0).astype(acc)
    return np.asarray(np.where(seen, np.exp(old - new), 0), acc)


def _online_finish(t: _Tracer, x: Array, m: Array, total: Array, s: Setup) -> Trace:
    """The second pass: ``exp(x - M) / S`` with the running maximum ``M`` and sum ``S``."""
    d_t, acc = _dtypes(x, s)
    if t.active:
        x64 = np.asarray(x, np.float64)
        bad = _nonfinite(total) & ~_row(np.isnan(x64))
        # in a format without infinities x - max overflows to NaN (not -inf, whose exp is 0)
        # in the first pass, and the NaN reaches the sum: that is the cause
        _mark_shift_nan(t, x, m, x.astype(acc) - m.astype(acc), bad)
        t.overflowed(Event.SUM_OVERFLOW, bad, _RowMax(x))
    d = _sub(t, x.astype(acc, copy=False), m.astype(acc, copy=False))
    e = _exp(t, d, rowwise=False, dtype=d_t)
    return t.trace(_store(t, _div(t, e.astype(acc, copy=False), total), d_t, Event.SUM_OVERFLOW))


def _shift_of(m: Array, acc: np.dtype[Any]) -> Array:
    """The running maximum as a shift in ``acc`` (0 while only masked classes were seen)."""
    return np.where(np.isfinite(m), m, 0).astype(acc)


def softmax_online(x: Array, s: Setup = NO_SETUP) -> Trace:
    """One pass for the normaliser: ``S = S * exp(m_old - m_new) + exp(x_j - m_new)``."""
    d_t, acc = _dtypes(x, s)
    t = _start(x, x.shape, s)
    rows = x.shape[0]
    x64 = np.asarray(x, np.float64)
    m = np.full((rows, 1), -np.inf)
    total = np.zeros((rows, 1), acc)
    for j in range(x.shape[1]):
        new_m = np.maximum(m, x64[:, j : j + 1])
        term = np.exp(x[:, j : j + 1].astype(acc) - _shift_of(new_m, acc)).astype(d_t)
        total = np.asarray(total * _rescale(m, new_m, acc) + term.astype(acc), acc)
        m = new_m
    return _online_finish(t, x, m, total, s)


def softmax_online_blocked(x: Array, s: Setup = NO_SETUP) -> Trace:
    """Blocks of ``Setup.block`` columns: a local max and sum each, merged by rescaling."""
    d_t, acc = _dtypes(x, s)
    t = _start(x, x.shape, s)
    rows = x.shape[0]
    m = np.full((rows, 1), -np.inf)
    total = np.zeros((rows, 1), acc)
    for start in range(0, x.shape[1], s.block):
        xb = x[:, start : start + s.block]
        mb = np.max(np.asarray(xb, np.float64), axis=-1, keepdims=True)
        eb = np.exp(xb.astype(acc) - _shift_of(mb, acc)).astype(d_t)
        sb = np.sum(eb, axis=-1, keepdims=True, dtype=acc)
        new_m = np.maximum(m, mb)
        total = np.asarray(total * _rescale(m, new_m, acc) + sb * _rescale(mb, new_m, acc), acc)
        m = new_m
    return _online_finish(t, x, m, total, s)


# --- cross-entropy: the negative log-likelihood of a target class --------------------------


def _pick(trace: Trace, targets: npt.NDArray[np.intp], negate: bool = True) -> Trace:
    """Column ``targets[r]`` of each row ``r`` of ``trace``, negated (as a ``(batch, 1)``)."""
    rows = np.arange(len(targets))

    def col(a: Array) -> Array:
        return np.asarray(a[rows, targets][:, None])

    out = col(trace.out)
    return Trace(
        -out if negate else out,
        col(trace.overflow),
        col(trace.flush),
        col(trace.nan),
        col(trace.arg),
    )


def cross_entropy_log_softmax(x: Array, s: Setup = NO_SETUP) -> Trace:
    return _pick(log_softmax_stable(x, s), s.target_array(x.shape[0]))


def cross_entropy_log_of_softmax(x: Array, s: Setup = NO_SETUP) -> Trace:
    return _pick(log_of_softmax(x, s), s.target_array(x.shape[0]))


def cross_entropy_log1p(x: Array, s: Setup = NO_SETUP) -> Trace:
    return _pick(log_softmax_log1p(x, s), s.target_array(x.shape[0]))


def cross_entropy_double_softmax(x: Array, s: Setup = NO_SETUP) -> Trace:
    """The mistake: probabilities fed to a loss that applies log-softmax itself."""
    p = softmax_stable(x, s)
    inner = log_softmax_stable(p.out, s)
    picked = _pick(inner, s.target_array(x.shape[0]))
    # The overflows of the first softmax carry over; its flushes do not: the second softmax
    # turns every probability into a number near 1/n, so the mistake, not the flush, is wrong.
    picked.overflow[:] = _pick(p, s.target_array(x.shape[0]), negate=False).overflow
    return picked
