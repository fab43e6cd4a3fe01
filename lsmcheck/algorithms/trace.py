"""The tracer and the traced steps the built-in algorithms are made of.

A built-in computes with the steps here (``_exp``, ``_sum``, ``_sub``, ``_div``, ``_store``,
``_add_max``, ``_shift``), each of which records on a :class:`_Tracer`, per output element,
the first step that overflowed, the first that flushed a nonzero value to zero and the cause
of any NaN.  The helpers before them compute in the audited dtype as numpy does (float16
rounded by :func:`_to_half`; the predicates of bfloat16 and float8 taken in float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms.interface import Array, Event, Setup, Trace


class _Tracer:
    """Collects per-element events while a built-in algorithm computes.

    An inactive tracer (``Setup.quiet``) records nothing, and the steps skip computing the
    masks they would record: the arithmetic is the same, so the outputs are bit-identical.
    """

    def __init__(self, shape: tuple[int, ...], active: bool = True) -> None:
        self.active = active
        self.overflow = np.zeros(shape, np.uint8)
        self.flush = np.zeros(shape, np.uint8)
        self.nan = np.zeros(shape, np.uint8)
        self.arg = np.full(shape, np.nan)

    def _mark(
        self,
        codes: npt.NDArray[np.uint8],
        event: Event,
        mask: Array,
        arg: Array | float | Callable[[], Array],
    ) -> None:
        """Record ``event`` where ``mask`` holds and nothing was recorded yet; ``arg``: the
        operands (or a function computing them, called only when something is recorded)."""
        if not self.active:
            return
        new = np.broadcast_to(mask, codes.shape) & (codes == 0)
        if not new.any():
            return
        np.copyto(codes, np.uint8(event), where=new)
        if codes is not self.nan:
            # one operand per element: an overflow's, once there is one (a later flush of the
            # same element, exp(-64) after x - max gave NaN, keeps it)
            if codes is self.flush:
                new &= self.overflow == 0
            operands = arg() if callable(arg) else arg
            np.copyto(self.arg, _native(np.asarray(operands)), where=new)

    def overflowed(self, event: Event, mask: Array, arg: Array | Callable[[], Array]) -> None:
        self._mark(self.overflow, event, mask, arg)

    def flushed(self, event: Event, mask: Array, arg: Array | Callable[[], Array]) -> None:
        self._mark(self.flush, event, mask, arg)

    def nans(self, event: Event, mask: Array) -> None:
        self._mark(self.nan, event, mask, math.nan)  # a NaN has no operand to name

    def trace(self, out: Array) -> Trace:
        if not self.active:
            return Trace(out, self.overflow, self.flush, self.nan, self.arg)
        # A format without infinities (float8_e4m3fn) overflows to NaN, and holds the -inf of
        # log(0) after a flush as NaN: name that cause.
        nan = _isnan(out)
        self.nans(Event.NAN_FROM_OVERFLOW, nan & (self.overflow != 0))
        self.nans(Event.NAN_FROM_FLUSH, nan & (self.flush != 0))
        return Trace(out, self.overflow, self.flush, self.nan, self.arg)


def _row(mask: Array) -> Array:
    """Reduce an element mask to a per-row mask (shape ``(batch, 1)``)."""
    return np.asarray(np.any(mask, axis=-1, keepdims=True))


class _RowMax:
    """The row maxima of ``x`` as a float64 column, computed once, when first asked for."""

    def __init__(self, x: Array) -> None:
        self.x = x
        self.value: Array | None = None

    def __call__(self) -> Array:
        if self.value is None:
            self.value = _row_max(self.x)
        return self.value


def _row_max(values: Array) -> Array:
    return np.asarray(_max(_native(values)), np.float64)


def _max(x: Array) -> Array:
    """``np.max(x, axis=-1, keepdims=True)``, faster for float16, whose max numpy takes one
    converted element at a time (some 4 times slower than converting them all to float32 and
    taking the max there, which is exact).  Where the maximum is a zero the rows are taken
    again in float16: which of ``-0`` and ``+0`` numpy returns differs between the dtypes.  A
    NaN maximum may come back with the other sign bit (NaN all the same)."""
    if x.dtype != _HALF:
        return np.asarray(np.max(x, axis=-1, keepdims=True))
    m = np.max(x.astype(np.float32), axis=-1, keepdims=True).astype(_HALF)
    zero = _is_zero(m)
    if zero.any():
        m = np.where(zero, np.max(x, axis=-1, keepdims=True), m)
    return np.asarray(m)


def _native(a: Array) -> Array:
    """``a`` itself when numpy's predicates take its dtype, else as float64 (bfloat16, float8)."""
    a = np.asarray(a)
    return a if a.dtype.kind == "f" else np.asarray(a, np.float64)


_HALF = np.dtype(np.float16)
_HALF_TINY = np.float32(2.0**-14)  # float16's smallest normal
_HALF_QUANTA = np.float32(2.0**24)  # subnormal float16s per unit

# float16's predicates from its bits: numpy converts every float16 element to float32 for
# ``isfinite``, ``isnan``, ``isinf`` and ``== 0`` (some 15 times slower than these).
_HALF_EXP = 0x7C00  # the exponent bits: all set in ±inf and NaN
_HALF_MAG = 0x7FFF  # all but the sign


def _finite(a: Array) -> npt.NDArray[np.bool_]:
    a = np.asarray(a)
    if a.dtype == _HALF:
        return np.asarray((a.view(np.uint16) & _HALF_EXP) != _HALF_EXP)
    return np.asarray(np.isfinite(_native(a)))


def _isnan(a: Array) -> npt.NDArray[np.bool_]:
    a = np.asarray(a)
    if a.dtype == _HALF:
        return np.asarray((a.view(np.uint16) & _HALF_MAG) > _HALF_EXP)
    return np.asarray(np.isnan(_native(a)))


def _isinf(a: Array) -> npt.NDArray[np.bool_]:
    a = np.asarray(a)
    if a.dtype == _HALF:
        return np.asarray((a.view(np.uint16) & _HALF_MAG) == _HALF_EXP)
    return np.asarray(np.isinf(_native(a)))


def _is_zero(a: Array) -> npt.NDArray[np.bool_]:
    """``a == 0`` (either sign)."""
    a = np.asarray(a)
    if a.dtype == _HALF:
        return np.asarray((a.view(np.uint16) & _HALF_MAG) == 0)
    return np.asarray(_native(a) == 0)


def _nonfinite(a: Array) -> Array:
    """``±inf`` or NaN: what an overflow gives (NaN in a format without infinities)."""
    return ~_finite(a)


def _to_half(v: Array) -> Array:
    """``v`` (float32 or float64) rounded to float16, as ``v.astype(np.float16)``.

    numpy rounds a result in float16's subnormal range with a slow branchy routine (about
    70 ns an element; softmax outputs in float16 are full of them).  Below 2**-14 the float16
    is the multiple of 2**-24 nearest ``v`` (ties to even), which ``rint`` gives exactly; the
    bits of that integer are those of the float16 (1024 is the bit pattern of 2**-14).
    """
    a = np.abs(v)
    small = a < _HALF_TINY
    if not small.any():
        return v.astype(_HALF)
    bits = np.where(small, v.dtype.type(0), v).astype(_HALF).view(np.uint16)
    sub = np.rint(np.minimum(a, _HALF_TINY) * _HALF_QUANTA).astype(np.uint16)
    sub |= np.signbit(v).astype(np.uint16) << 15
    return np.where(small, sub, bits).view(_HALF)


def _cast(v: Array, dtype: np.dtype[Any]) -> Array:
    """``v.astype(dtype)`` (no copy when it has that dtype already)."""
    if dtype == _HALF and v.dtype in (np.float32, np.float64):
        return _to_half(v)
    return v.astype(dtype, copy=False)


def _wide(a: Array) -> Array:
    """float16 operands as float32, for ``/``: its float32 result rounded once to float16 (with
    :func:`_to_half`, faster than numpy's own float16 division) is the correctly rounded
    quotient, as numpy's (float32 has more than twice float16's 11 bits, so the double rounding
    is harmless).  Not for ``exp``: numpy's float16 ``exp`` is a kernel of its own on some
    CPUs (with AVX-512 it differs from ``exp`` in float32 and rounding in 4 of the 63,488
    finite inputs), and faster than the float32 route there."""
    return a.astype(np.float32) if a.dtype == _HALF else a


def _exp(t: _Tracer, a: Array, rowwise: bool, dtype: np.dtype[Any]) -> Array:
    """exp(a) stored in ``dtype``, marking overflow (finite a -> inf/NaN) and flush (-> 0)."""
    e = _cast(np.exp(a), dtype)  # exp in a's dtype (numpy's own, see _wide), then stored
    if not t.active:
        return e
    finite = _finite(a)
    over = finite & _nonfinite(e)
    flush = finite & _is_zero(e)
    if rowwise:
        t.overflowed(Event.EXP_OVERFLOW, _row(over), lambda: _row_max(np.where(over, a, -np.inf)))
    else:
        t.overflowed(Event.EXP_OVERFLOW, over, a)
        t.flushed(Event.EXP_FLUSH, flush, a)
    return e


def _sum(t: _Tracer, x: Array, e: Array, acc: np.dtype[Any]) -> Array:
    """Row sums of ``e`` in ``acc``, marking a sum of finite terms that overflowed or is 0."""
    s: Array = np.asarray(np.sum(e, axis=-1, keepdims=True, dtype=acc))
    if not t.active:
        return s
    finite_x = _finite(x)
    term_over = _row(_nonfinite(e) & finite_x)
    bad = _nonfinite(s) & ~_row(_isnan(x))
    _spread_overflow(t, bad)
    top = _RowMax(x)
    t.overflowed(Event.EXP_OVERFLOW, bad & term_over, top)
    t.overflowed(Event.SUM_OVERFLOW, bad & ~term_over, top)
    t.flushed(Event.SUM_FLUSH, (s == 0) & _row(finite_x), top)
    return s


def _spread_overflow(t: _Tracer, rows: Array) -> None:
    """An earlier overflow in a row whose sum it spoiled is the cause for the whole row.

    In float8_e4m3fn ``x - max`` overflows to NaN (not ``-inf``, whose exp would be 0), and
    the NaN reaches every output through the sum.
    """
    if t.overflow.shape[-1] == 1:
        return
    marked = t.overflow != 0
    spread = rows[:, 0] & marked.any(axis=-1)
    if not spread.any():
        return
    r = np.flatnonzero(spread)
    first = np.argmax(marked[r], axis=-1)
    fresh = ~marked[r]
    t.overflow[r] = np.where(fresh, t.overflow[r, first][:, None], t.overflow[r])
    t.arg[r] = np.where(fresh, t.arg[r, first][:, None], t.arg[r])


def _sub(t: _Tracer, a: Array, b: Array, event: Event = Event.SUB_OVERFLOW) -> Array:
    """a - b, marking finite operands whose difference overflowed, and inf - inf."""
    d = a - b
    if not t.active:
        return d
    fa, fb = _finite(a), _finite(b)
    t.overflowed(event, fa & fb & _nonfinite(d), np.broadcast_to(a, d.shape))
    t.nans(Event.INF_MINUS_INF, _isinf(a) & _isinf(b) & _isnan(d))
    return d


def _div(t: _Tracer, a: Array, b: Array) -> Array:
    """a / b, naming the cause of inf/inf and 0/0."""
    q = _to_half(_wide(a) / _wide(b)) if a.dtype == b.dtype == _HALF else a / b
    if not t.active:
        return q
    t.nans(Event.INF_OVER_INF, _isinf(a) & _isinf(b))
    t.nans(Event.ZERO_OVER_ZERO, _is_zero(a) & _is_zero(b))
    return q


def _store(t: _Tracer, v: Array, dtype: np.dtype[Any], event: Event) -> Array:
    """``v`` (computed in the accumulation dtype) rounded to the audited ``dtype``.

    Marks a finite value that overflows the dtype (``event``) and a nonzero one that flushes.
    Without an accumulation dtype ``v`` is already in ``dtype`` and nothing happens.
    """
    if v.dtype == dtype:
        return v
    out = _cast(v, dtype)
    if not t.active:
        return out
    v64 = np.asarray(v, np.float64)
    t.overflowed(event, np.isfinite(v64) & _nonfinite(out), v64)
    t.flushed(Event.STORE_FLUSH, np.isfinite(v64) & (v64 != 0) & (out == 0), v64)
    return out


def _add_max(t: _Tracer, m: Array, log_sum: Array, acc: np.dtype[Any]) -> Array:
    """``m + log_sum`` in ``acc`` (logsumexp's last step), marking a finite maximum whose sum
    overflowed."""
    out = m.astype(acc, copy=False) + log_sum
    if t.active:
        m64 = np.asarray(m, np.float64)
        t.overflowed(Event.ADD_OVERFLOW, np.isfinite(m64) & _nonfinite(out), m64)
    return out


def _dtypes(x: Array, s: Setup) -> tuple[np.dtype[Any], np.dtype[Any]]:
    """The audited dtype and the accumulation dtype."""
    return x.dtype, (x.dtype if s.acc is None else s.acc)


def _start(x: Array, out_shape: tuple[int, ...], s: Setup) -> _Tracer:
    t = _Tracer(out_shape, active=not s.quiet)
    if s.quiet:
        return t
    nan_x = _isnan(x)
    t.nans(Event.NAN_INPUT, nan_x if out_shape == x.shape else _row(nan_x))
    return t


def _shift(t: _Tracer, x: Array, acc: np.dtype[Any]) -> tuple[Array, Array]:
    """``(m, x - m)`` with ``m`` the row maximum; the difference is computed in ``acc``."""
    m = _max(x)
    if t.overflow.shape != x.shape:  # one output per row: x - max overflowing to -inf is
        # harmless (its exp is 0), but in a format without infinities it is NaN, which the
        # sum spreads to the row's output: the cause, marked for the row at its lowest x
        d = x.astype(acc, copy=False) - m.astype(acc, copy=False)
        if t.active:
            _mark_shift_nan(t, x, m, d)
        return m, d
    return m, _sub(t, x.astype(acc, copy=False), m.astype(acc, copy=False))


def _mark_shift_nan(t: _Tracer, x: Array, m: Array, d: Array, rows: Array | None = None) -> None:
    """Mark ``x - m`` (computed as ``d``) that overflowed to NaN, as it does in a format
    without infinities, as the cause for the whole row (of those in ``rows``): the NaN
    reaches every output through the sum.  The operand named is the row's lowest such x."""
    over = _finite(x) & _finite(m) & _isnan(d)
    if not over.any():
        return
    lowest = lambda: -_row_max(np.where(over, -_native(x), -np.inf))  # noqa: E731
    t.overflowed(Event.SUB_OVERFLOW, _row(over) if rows is None else rows & _row(over), lowest)
