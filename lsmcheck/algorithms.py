"""The registry of audited implementations.

Every implementation, built-in or not, is an :class:`Algorithm`: a name, the function it
computes (its :class:`Kind`), a one-line description, and ``run``, which takes a 2-D batch of
logits in the audited dtype (one vector per row) and returns a :class:`Trace`.

The built-in algorithms compute every step in the audited dtype with numpy, as a framework
would (sums use numpy's pairwise summation; for float16 numpy accumulates each block in
float32 and rounds once, as PyTorch's CPU kernels do).  While they compute they record, per
output element, the first step that overflowed, the first step that flushed a nonzero value
to zero, and the cause of any NaN.  An implementation that cannot tell (a black box) leaves
those codes at :attr:`Event.NONE` and the metrics classify its output by value alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.errors import UsageError

Array = npt.NDArray[Any]


class Kind(StrEnum):
    """The mathematical function an implementation computes."""

    SOFTMAX = "softmax"
    LOG_SOFTMAX = "log_softmax"
    LOGSUMEXP = "logsumexp"

    @property
    def per_vector(self) -> bool:
        """True when the function has one output per vector (logsumexp)."""
        return self is Kind.LOGSUMEXP


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


@dataclass
class Trace:
    """What one implementation computed for a batch, and what happened on the way.

    Attributes:
        out: the outputs, shape ``(batch, n)`` (or ``(batch, 1)`` for logsumexp), in the dtype.
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
class Algorithm:
    """One audited implementation.

    Attributes:
        name: the name used with ``--algorithm`` and in every report.
        kind: the function it computes.
        description: one line for ``lsmcheck algorithms`` and the README.
        run: batch of logits ``(batch, n)`` in the audited dtype -> :class:`Trace`.
        traced: whether ``run`` records step events (False for black boxes).
    """

    name: str
    kind: Kind
    description: str
    run: Callable[[Array], Trace] = field(repr=False)
    traced: bool = True


class _Tracer:
    """Collects per-element events while a built-in algorithm computes."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.overflow = np.zeros(shape, np.uint8)
        self.flush = np.zeros(shape, np.uint8)
        self.nan = np.zeros(shape, np.uint8)
        self.arg = np.full(shape, np.nan)

    def _mark(self, codes: npt.NDArray[np.uint8], event: Event, mask: Array, arg: Array) -> None:
        mask = np.broadcast_to(mask, codes.shape)
        arg = np.broadcast_to(np.asarray(arg, np.float64), codes.shape)
        new = mask & (codes == 0)
        codes[new] = event
        if codes is not self.nan:
            self.arg[new] = arg[new]

    def overflowed(self, event: Event, mask: Array, arg: Array) -> None:
        self._mark(self.overflow, event, mask, arg)

    def flushed(self, event: Event, mask: Array, arg: Array) -> None:
        self._mark(self.flush, event, mask, arg)

    def nans(self, event: Event, mask: Array) -> None:
        self._mark(self.nan, event, mask, np.full(self.nan.shape, np.nan))

    def trace(self, out: Array) -> Trace:
        return Trace(out, self.overflow, self.flush, self.nan, self.arg)


def _row(mask: Array) -> Array:
    """Reduce an element mask to a per-row mask (shape ``(batch, 1)``)."""
    return np.asarray(np.any(mask, axis=-1, keepdims=True))


def _row_max(values: Array) -> Array:
    return np.asarray(np.max(np.asarray(values, np.float64), axis=-1, keepdims=True))


def _exp(t: _Tracer, a: Array, rowwise: bool) -> Array:
    """exp(a), marking overflow (finite a -> inf) and flush (finite a -> 0)."""
    e = np.exp(a)
    finite = np.isfinite(a)
    over = finite & np.isinf(e)
    flush = finite & (e == 0)
    if rowwise:
        t.overflowed(Event.EXP_OVERFLOW, _row(over), _row_max(np.where(over, a, -np.inf)))
    else:
        t.overflowed(Event.EXP_OVERFLOW, over, a)
        t.flushed(Event.EXP_FLUSH, flush, a)
    return e


def _sum(t: _Tracer, x: Array, e: Array) -> Array:
    """Row sums of ``e``, marking a sum of finite terms that overflowed or that is 0."""
    s = np.sum(e, axis=-1, keepdims=True, dtype=e.dtype)
    term_over = _row(np.isinf(e) & np.isfinite(x))
    t.overflowed(Event.EXP_OVERFLOW, np.isinf(s) & term_over, _row_max(x))
    t.overflowed(Event.SUM_OVERFLOW, np.isinf(s) & ~term_over, _row_max(x))
    t.flushed(Event.SUM_FLUSH, (s == 0) & _row(np.isfinite(x)), _row_max(x))
    return s


def _sub(t: _Tracer, a: Array, b: Array, event: Event = Event.SUB_OVERFLOW) -> Array:
    """a - b, marking finite operands whose difference overflowed, and inf - inf."""
    d = a - b
    over = np.isfinite(a) & np.isfinite(b) & np.isinf(d)
    t.overflowed(event, over, np.broadcast_to(a, d.shape))
    t.nans(Event.INF_MINUS_INF, np.isinf(a) & np.isinf(b) & np.isnan(d))
    return d


def _div(t: _Tracer, a: Array, b: Array) -> Array:
    """a / b, naming the cause of inf/inf and 0/0."""
    q = a / b
    t.nans(Event.INF_OVER_INF, np.isinf(a) & np.isinf(b))
    t.nans(Event.ZERO_OVER_ZERO, (a == 0) & (b == 0))
    return q


def _start(x: Array, out_shape: tuple[int, ...]) -> _Tracer:
    t = _Tracer(out_shape)
    nan_in = np.isnan(x) if out_shape == x.shape else _row(np.isnan(x))
    t.nans(Event.NAN_INPUT, nan_in)
    return t


def softmax_naive(x: Array) -> Trace:
    t = _start(x, x.shape)
    e = _exp(t, x, rowwise=False)
    s = _sum(t, x, e)
    return t.trace(_div(t, e, s))


def softmax_stable(x: Array) -> Trace:
    t = _start(x, x.shape)
    d = _sub(t, x, np.max(x, axis=-1, keepdims=True))
    e = _exp(t, d, rowwise=False)
    s = _sum(t, x, e)
    return t.trace(_div(t, e, s))


def log_softmax_naive(x: Array) -> Trace:
    t = _start(x, x.shape)
    e = _exp(t, x, rowwise=True)
    s = _sum(t, x, e)
    return t.trace(_sub(t, x, np.log(s)))


def log_softmax_stable(x: Array) -> Trace:
    t = _start(x, x.shape)
    d = _sub(t, x, np.max(x, axis=-1, keepdims=True))
    e = _exp(t, d, rowwise=True)
    s = _sum(t, x, e)
    return t.trace(_sub(t, d, np.log(s)))


def log_of_softmax(x: Array) -> Trace:
    inner = softmax_stable(x)
    out = np.log(inner.out)
    zero = (inner.out == 0) & np.isfinite(x)
    inner.flush[zero] = Event.LOG_OF_ZERO  # the root cause stays in ``arg``: exp's argument
    return Trace(out, inner.overflow, inner.flush, inner.nan, inner.arg)


def logsumexp_naive(x: Array) -> Trace:
    t = _start(x, (x.shape[0], 1))
    e = _exp(t, x, rowwise=True)
    s = _sum(t, x, e)
    return t.trace(np.log(s))


def logsumexp_stable(x: Array) -> Trace:
    t = _start(x, (x.shape[0], 1))
    m = np.max(x, axis=-1, keepdims=True)
    d = x - m
    e = _exp(t, d, rowwise=True)
    s = _sum(t, x, e)
    log_s = np.log(s)
    out = m + log_s
    t.overflowed(Event.ADD_OVERFLOW, np.isfinite(m) & np.isinf(out), m)
    return t.trace(out)


def _errstate(fn: Callable[[Array], Trace]) -> Callable[[Array], Trace]:
    """Run ``fn`` with floating-point warnings silenced: the trace records them instead."""

    def run(x: Array) -> Trace:
        with np.errstate(all="ignore"):
            return fn(x)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


BUILTINS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm(
            "softmax_naive",
            Kind.SOFTMAX,
            "exp(x) / sum(exp(x)): the textbook formula",
            _errstate(softmax_naive),
        ),
        Algorithm(
            "softmax_stable",
            Kind.SOFTMAX,
            "exp(x - max) / sum(exp(x - max)): shifted by the maximum",
            _errstate(softmax_stable),
        ),
        Algorithm(
            "log_softmax_naive",
            Kind.LOG_SOFTMAX,
            "x - log(sum(exp(x)))",
            _errstate(log_softmax_naive),
        ),
        Algorithm(
            "log_softmax_stable",
            Kind.LOG_SOFTMAX,
            "(x - max) - log(sum(exp(x - max)))",
            _errstate(log_softmax_stable),
        ),
        Algorithm(
            "log_of_softmax",
            Kind.LOG_SOFTMAX,
            "log(softmax_stable(x)): the log of probabilities, a common mistake",
            _errstate(log_of_softmax),
        ),
        Algorithm(
            "logsumexp_naive",
            Kind.LOGSUMEXP,
            "log(sum(exp(x)))",
            _errstate(logsumexp_naive),
        ),
        Algorithm(
            "logsumexp_stable",
            Kind.LOGSUMEXP,
            "max + log(sum(exp(x - max)))",
            _errstate(logsumexp_stable),
        ),
    )
}

DEFAULT_ALGORITHMS: tuple[str, ...] = tuple(BUILTINS)


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name``; :class:`UsageError` for an unknown one."""
    try:
        return BUILTINS[name]
    except KeyError:
        known = ", ".join(BUILTINS)
        raise UsageError(f"--algorithm: unknown algorithm {name!r} (choose from {known})") from None


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
    }
    return messages.get(event, event.name.lower())
