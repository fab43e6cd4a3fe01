"""The registry of audited implementations.

Every implementation, built-in or not, is an :class:`Algorithm`: a name, the function it
computes (its :class:`Kind`), a one-line description, and ``run``, which takes a 2-D batch of
logits in the audited dtype (one vector per row) and returns a :class:`Trace`.  Implementations
that take settings (an accumulation dtype, a block size, the target classes) also have
``run_with``, called with a :class:`Setup`.

The built-in algorithms compute every step in the audited dtype with numpy, as a framework
would (sums use numpy's pairwise summation; for float16 numpy accumulates each block in
float32 and rounds once, as PyTorch's CPU kernels do).  For bfloat16 and float8 every numpy
operation computes in float32 and rounds its result back to the dtype (ml_dtypes' ufuncs), and
a sum in the dtype itself is a sequential sum rounded to the dtype after every addition.  With
an accumulation dtype (``Setup.acc``, ``--accumulate``) the max-shift, the sum and the log run
in that dtype while the elementwise results (``exp``, the outputs) are stored in the audited
dtype, as PyTorch's eager ``exp(x - m).sum(dtype=float32)`` pattern and GPU kernels with a
float32 accumulator do.

While they compute, the built-ins record, per output element, the first step that overflowed,
the first step that flushed a nonzero value to zero, and the cause of any NaN.  An
implementation that cannot tell (a black box) leaves those codes at :attr:`Event.NONE` and the
metrics classify its output by value alone.

The registry holds the built-ins (:data:`BUILTINS`), the cross-entropy losses
(:data:`LOSSES`), the backward passes (:mod:`lsmcheck.grad`) and the framework adapters
(:mod:`lsmcheck.frameworks`); :func:`get_algorithm` finds any of them by name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.errors import UsageError

Array = npt.NDArray[Any]

#: The block size of ``softmax_online_blocked`` when ``--block`` is not given.
DEFAULT_BLOCK = 32


class Kind(StrEnum):
    """The mathematical function an implementation computes."""

    SOFTMAX = "softmax"
    LOG_SOFTMAX = "log_softmax"
    LOGSUMEXP = "logsumexp"
    CROSS_ENTROPY = "cross_entropy"
    LOG_SOFTMAX_GRAD = "log_softmax_grad"
    CROSS_ENTROPY_GRAD = "cross_entropy_grad"

    @property
    def per_vector(self) -> bool:
        """True when the function has one output per vector (logsumexp, cross-entropy)."""
        return self in (Kind.LOGSUMEXP, Kind.CROSS_ENTROPY)

    @property
    def needs_target(self) -> bool:
        """True when the function depends on a target class (``--target``)."""
        return self in (Kind.CROSS_ENTROPY, Kind.LOG_SOFTMAX_GRAD, Kind.CROSS_ENTROPY_GRAD)

    @property
    def is_grad(self) -> bool:
        """True for a backward pass: ``d loss / d x = softmax(x) - onehot(target)``."""
        return self in (Kind.LOG_SOFTMAX_GRAD, Kind.CROSS_ENTROPY_GRAD)


class Event(IntEnum):
    """Per-element causes recorded by the built-in algorithms (0 = nothing happened)."""

    NONE = 0
    EXP_OVERFLOW = 1
    SUM_OVERFLOW = 2
    SUB_OVERFLOW = 3
    ADD_OVERFLOW = 4
    EXP_FLUSH = 5
    SUM_FLUSH = 6
    LOG_OF_ZERO = 7
    INF_OVER_INF = 8
    ZERO_OVER_ZERO = 9
    INF_MINUS_INF = 10
    NAN_INPUT = 11
    NAN_FROM_OVERFLOW = 12
    STORE_FLUSH = 13
    CANCELLED = 14
    LOG_BACKWARD = 15


@dataclass
class Trace:
    """What one implementation computed for a batch, and what happened on the way.

    Attributes:
        out: the outputs, shape ``(batch, n)`` (or ``(batch, 1)`` for one value per vector),
            in the dtype.
        overflow: :class:`Event` code of the first step that overflowed, per output element.
        flush: code of the first step that flushed a nonzero value to zero (or to -inf).
        nan: code of the cause of a NaN output.
        arg: the operand that triggered the ``overflow``/``flush`` event (for the message).
    """

    out: Array
    overflow: npt.NDArray[np.uint8]
    flush: npt.NDArray[np.uint8]
    nan: npt.NDArray[np.uint8]
    arg: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Setup:
    """Settings an implementation may use (see ``Algorithm.run_with``).

    Attributes:
        acc: the dtype the max-shift, sums and logs are computed in (``None``: the audited
            dtype itself).
        block: the block size of blocked algorithms.
        targets: the target class of each row, for cross-entropy and the backward passes.
        quiet: compute the outputs only and record no events (see :func:`builtin`: the
            rows whose outputs show that something happened are run again, traced).
    """

    acc: np.dtype[Any] | None = None
    block: int = DEFAULT_BLOCK
    targets: npt.NDArray[np.intp] | None = None
    quiet: bool = False

    def target_array(self, rows: int) -> npt.NDArray[np.intp]:
        """The targets, checked to be there (a usage error names ``--target`` otherwise)."""
        if self.targets is None or len(self.targets) != rows:
            raise UsageError("--target: this algorithm needs a target class per vector")
        return self.targets


#: The settings of a run without any (the audited dtype throughout, no targets).
NO_SETUP = Setup()


@dataclass(frozen=True)
class Algorithm:
    """One audited implementation.

    Attributes:
        name: the name used with ``--algorithm`` and in every report.
        kind: the function it computes.
        description: one line for ``lsmcheck algorithms`` and the README.
        run: batch of logits ``(batch, n)`` in the audited dtype -> :class:`Trace`.
        traced: whether ``run`` records step events (False for black boxes).
        run_with: like ``run``, with a :class:`Setup`; ``None`` when it takes no settings.
        accumulates: whether it computes its sums in ``Setup.acc`` (its results then carry
            the ``/acc=`` label; a black box runs its own kernel and is labelled with the
            storage dtype).
        backward: the name of the algorithm computing its gradient (``--grad``), if any.
    """

    name: str
    kind: Kind
    description: str
    run: Callable[[Array], Trace] = field(repr=False)
    traced: bool = True
    run_with: Callable[[Array, Setup], Trace] | None = field(default=None, repr=False)
    accumulates: bool = False
    backward: str | None = None

    def execute(self, x: Array, setup: Setup) -> Trace:
        """Run on the batch ``x`` with the settings it takes."""
        if self.run_with is not None:
            return self.run_with(x, setup)
        return self.run(x)


def untraced(out: Array) -> Trace:
    """The :class:`Trace` of a black box: its outputs, and no recorded events."""
    shape = out.shape
    zeros = np.zeros(shape, np.uint8)
    return Trace(out, zeros, zeros.copy(), zeros.copy(), np.full(shape, np.nan))


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
        # A format without infinities (float8_e4m3fn) overflows to NaN: name that cause.
        self.nans(Event.NAN_FROM_OVERFLOW, np.isnan(_native(out)) & (self.overflow != 0))
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
    return np.asarray(np.max(_native(values), axis=-1, keepdims=True), np.float64)


def _native(a: Array) -> Array:
    """``a`` itself when numpy's predicates take its dtype, else as float64 (bfloat16, float8)."""
    a = np.asarray(a)
    return a if a.dtype.kind == "f" else np.asarray(a, np.float64)


def _finite(a: Array) -> npt.NDArray[np.bool_]:
    return np.asarray(np.isfinite(_native(a)))


def _nonfinite(a: Array) -> Array:
    """``±inf`` or NaN: what an overflow gives (NaN in a format without infinities)."""
    return ~_finite(a)


_HALF = np.dtype(np.float16)
_HALF_TINY = np.float32(2.0**-14)  # float16's smallest normal
_HALF_QUANTA = np.float32(2.0**24)  # subnormal float16s per unit


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
    """float16 operands as float32: numpy computes a float16 ufunc in float32 and rounds the
    result to float16; rounding it with :func:`_to_half` gives the same float16, faster."""
    return a.astype(np.float32) if a.dtype == _HALF else a


def _exp(t: _Tracer, a: Array, rowwise: bool, dtype: np.dtype[Any]) -> Array:
    """exp(a) stored in ``dtype``, marking overflow (finite a -> inf/NaN) and flush (-> 0)."""
    e = _cast(_cast(np.exp(_wide(a)), a.dtype), dtype)  # exp in a's dtype, then stored
    if not t.active:
        return e
    finite = _finite(a)
    over = finite & _nonfinite(e)
    flush = finite & (e == 0)
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
    bad = _nonfinite(s) & ~_row(np.isnan(_native(x)))
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
    ia, ib = np.isinf(_native(a)), np.isinf(_native(b))
    t.nans(Event.INF_MINUS_INF, ia & ib & np.isnan(_native(d)))
    return d


def _div(t: _Tracer, a: Array, b: Array) -> Array:
    """a / b, naming the cause of inf/inf and 0/0."""
    q = _to_half(_wide(a) / _wide(b)) if a.dtype == b.dtype == _HALF else a / b
    if not t.active:
        return q
    a_, b_ = _native(a), _native(b)
    t.nans(Event.INF_OVER_INF, np.isinf(a_) & np.isinf(b_))
    t.nans(Event.ZERO_OVER_ZERO, (a_ == 0) & (b_ == 0))
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
    nan_x = np.isnan(_native(x))
    t.nans(Event.NAN_INPUT, nan_x if out_shape == x.shape else _row(nan_x))
    return t


def _shift(t: _Tracer, x: Array, acc: np.dtype[Any]) -> tuple[Array, Array]:
    """``(m, x - m)`` with ``m`` the row maximum; the difference is computed in ``acc``."""
    m = np.max(x, axis=-1, keepdims=True)
    if t.overflow.shape != x.shape:  # one output per row: x - max overflowing is harmless
        return m, x.astype(acc, copy=False) - m.astype(acc, copy=False)
    return m, _sub(t, x.astype(acc, copy=False), m.astype(acc, copy=False))


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
    zero = (inner.out == 0) & _finite(x)
    inner.flush[zero] = Event.LOG_OF_ZERO  # the root cause stays in ``arg``: exp's argument
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
    calm = _finite(x).all(axis=-1) & _finite(out).all(axis=-1) & (out != 0).all(axis=-1)
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


BUILTINS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        builtin(
            "softmax_naive",
            Kind.SOFTMAX,
            "exp(x) / sum(exp(x)): the textbook formula",
            softmax_naive,
            lazy=True,
        ),
        builtin(
            "softmax_stable",
            Kind.SOFTMAX,
            "exp(x - max) / sum(exp(x - max)): shifted by the maximum",
            softmax_stable,
            lazy=True,
        ),
        builtin(
            "log_softmax_naive",
            Kind.LOG_SOFTMAX,
            "x - log(sum(exp(x)))",
            log_softmax_naive,
            lazy=True,
        ),
        builtin(
            "log_softmax_stable",
            Kind.LOG_SOFTMAX,
            "(x - max) - log(sum(exp(x - max)))",
            log_softmax_stable,
            backward="log_softmax_stable.grad",
            lazy=True,
        ),
        builtin(
            "log_of_softmax",
            Kind.LOG_SOFTMAX,
            "log(softmax_stable(x)): the log of probabilities, a common mistake",
            log_of_softmax,
            backward="log_of_softmax.grad",
            lazy=True,
        ),
        builtin(
            "logsumexp_naive",
            Kind.LOGSUMEXP,
            "log(sum(exp(x)))",
            logsumexp_naive,
            lazy=True,
        ),
        builtin(
            "logsumexp_stable",
            Kind.LOGSUMEXP,
            "max + log(sum(exp(x - max)))",
            logsumexp_stable,
            lazy=True,
        ),
        builtin(
            "softmax_online",
            Kind.SOFTMAX,
            "one-pass running-max normaliser, then exp(x - M) / S (Milakov & Gimelshein 2018)",
            softmax_online,
            lazy=True,
        ),
        builtin(
            "softmax_online_blocked",
            Kind.SOFTMAX,
            "online softmax over blocks of --block columns, merged by rescaling (fused kernels)",
            softmax_online_blocked,
            lazy=True,
        ),
        builtin(
            "log_softmax_log1p",
            Kind.LOG_SOFTMAX,
            "(x - max) - log1p(sum_{j != argmax} exp(x_j - max)) (Blanchard, Higham & Higham)",
            log_softmax_log1p,
            backward="log_softmax_log1p.grad",
            lazy=True,
        ),
        builtin(
            "logsumexp_log1p",
            Kind.LOGSUMEXP,
            "max + log1p(sum_{j != argmax} exp(x_j - max)) (Blanchard, Higham & Higham)",
            logsumexp_log1p,
            lazy=True,
        ),
    )
}

#: The cross-entropy losses: one value per vector, ``-log softmax(x)[target]``.
LOSSES: dict[str, Algorithm] = {
    a.name: a
    for a in (
        builtin(
            "cross_entropy_log_softmax",
            Kind.CROSS_ENTROPY,
            "-log_softmax_stable(x)[target]: what frameworks compute",
            cross_entropy_log_softmax,
            backward="cross_entropy_log_softmax.grad",
        ),
        builtin(
            "cross_entropy_log_of_softmax",
            Kind.CROSS_ENTROPY,
            "-log(softmax_stable(x)[target]): the log of a probability",
            cross_entropy_log_of_softmax,
            backward="cross_entropy_log_of_softmax.grad",
        ),
        builtin(
            "cross_entropy_double_softmax",
            Kind.CROSS_ENTROPY,
            "-log_softmax(softmax(x))[target]: probabilities fed to a loss that applies "
            "log-softmax itself (a mistake)",
            cross_entropy_double_softmax,
            backward="cross_entropy_double_softmax.grad",
        ),
        builtin(
            "cross_entropy_log1p",
            Kind.CROSS_ENTROPY,
            "-log_softmax_log1p(x)[target]: accurate for the dominant class too",
            cross_entropy_log1p,
            backward="cross_entropy_log1p.grad",
        ),
    )
}

#: The foundation's seven algorithms: what ``lsmcheck run`` audits without ``--algorithm``.
DEFAULT_ALGORITHMS: tuple[str, ...] = (
    "softmax_naive",
    "softmax_stable",
    "log_softmax_naive",
    "log_softmax_stable",
    "log_of_softmax",
    "logsumexp_naive",
    "logsumexp_stable",
)


def registered() -> dict[str, Algorithm]:
    """Every algorithm that runs without a framework: built-ins, losses and backward passes."""
    from lsmcheck.grad import GRADS

    return {**BUILTINS, **LOSSES, **GRADS}


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name``; :class:`UsageError` for an unknown one.

    Framework adapters (``torch.log_softmax``) are found too; asking for one whose framework
    is not installed is a usage error that says why.
    """
    algs = registered()
    if name in algs:
        return algs[name]
    from lsmcheck import frameworks

    adapter = frameworks.get(name)
    if adapter is not None:
        return adapter
    known = ", ".join([*algs, *frameworks.NAMES])
    raise UsageError(f"--algorithm: unknown algorithm {name!r} (choose from {known})")


def describe_event(
    event: Event, lo: float, hi: float, fmt_name: str, fmt_max: float, tiny: float
) -> str:
    """One phrase naming what happened, e.g. ``exp(1000) overflowed (...)``.

    ``lo``..``hi`` is the range of the operands that triggered the event (equal for one);
    ``fmt_max`` is the format's largest finite value and ``tiny`` its smallest subnormal.
    """
    max_exp = math.log(fmt_max)
    min_exp = math.log(tiny) - math.log(2)
    a = f"{lo:.6g}" if lo == hi else f"{lo:.6g}..{hi:.6g}"
    big = f"{fmt_name} max {fmt_max:.6g}"
    messages = {
        Event.EXP_OVERFLOW: f"exp({a}) overflowed ({fmt_name} max exp argument ~{max_exp:.2f})",
        Event.SUM_OVERFLOW: f"the sum of exp terms overflowed ({big})",
        Event.SUB_OVERFLOW: f"x - max overflowed at x={a} ({big})",
        Event.ADD_OVERFLOW: f"max + log(sum) overflowed at max={a} ({big})",
        Event.EXP_FLUSH: f"exp({a}) underflowed to 0 ({fmt_name} min exp argument ~{min_exp:.2f})",
        Event.SUM_FLUSH: "every exp term underflowed, so the sum is 0 and its log -inf",
        Event.LOG_OF_ZERO: f"log(0) = -inf: the probability exp({a}) underflowed "
        f"({fmt_name} min exp argument ~{min_exp:.2f})",
        Event.INF_OVER_INF: "inf/inf after an overflow",
        Event.ZERO_OVER_ZERO: "0/0 after every exp term underflowed",
        Event.INF_MINUS_INF: "inf - inf",
        Event.NAN_INPUT: "a NaN input",
        Event.NAN_FROM_OVERFLOW: f"an overflow gave NaN ({fmt_name} has no infinities)",
        Event.STORE_FLUSH: f"the result {a} underflowed to 0 when stored in {fmt_name}",
        Event.CANCELLED: f"p - 1 cancelled to 0 at the target (log p = {a}): p rounds to 1 in "
        f"{fmt_name}, so the gradient 1 - p of a confident prediction is lost",
        Event.LOG_BACKWARD: "the backward of log divides by a probability that underflowed "
        "to 0 (0/0 = NaN), and the softmax backward spreads the NaN over the row",
    }
    return messages.get(event, event.name.lower())
