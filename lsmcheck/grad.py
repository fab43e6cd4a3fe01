"""Backward passes: the gradient of the cross-entropy loss with respect to the logits.

``--grad`` adds, for every selected algorithm that has one, its backward pass (``<name>.grad``).
The loss is the negative log-likelihood of the target class, ``-log_softmax(x)[t]`` (reduction
``sum``), so the upstream gradient that reaches log-softmax is ``g = -onehot(t)`` and the exact
gradient is, for both kinds,

    d loss / d x = g - softmax(x) * sum(g) = softmax(x) - onehot(t)

(:func:`lsmcheck.reference.exact_nll_grad` computes it certified, without the cancellation of
``p_t - 1``).  Kind ``log_softmax_grad`` is the backward of a log-softmax implementation driven by
that upstream gradient; kind ``cross_entropy_grad`` is the backward of a whole loss.

The built-in backward passes follow the formulas frameworks implement:

* ``log_softmax_stable.grad``: PyTorch's ``LogSoftmaxBackward``, ``g - exp(y) * sum(g)`` on the
  forward output ``y``.  At the target it computes ``exp(y_t) - 1``, which cancels to 0 when the
  prediction is confident (``x = [0, -50]``: the exact ``-1.9e-22`` becomes 0).
* ``log_softmax_log1p.grad``: the same with ``expm1(y_t)`` at the target, on the log1p forward,
  whose ``y_t`` is accurate: ``expm1`` then keeps ``p_t - 1``.
* ``log_of_softmax.grad``: automatic differentiation of ``-log(softmax(x))[t]``: the backward of
  ``log`` divides the upstream gradient by ``p``, and ``softmax``'s backward is
  ``p * (g' - sum(g' * p))``.  A probability that underflowed to 0 (or a masked class) gives
  ``0/0 = NaN``, which the sum spreads over the whole row, as ``torch.log(torch.softmax(x))``
  does.
* ``cross_entropy_double_softmax.grad``: the backward through the double-softmax mistake.

Each computes its elementwise steps in the audited dtype and its sums in ``Setup.acc``, like
the forward passes.  The framework backward passes (``torch.log_softmax.grad``,
``torch.nn.functional.cross_entropy.grad``) are in :mod:`lsmcheck.frameworks`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import (
    NO_SETUP,
    Algorithm,
    Array,
    Event,
    Kind,
    Setup,
    Trace,
    builtin,
    log_softmax_log1p,
    log_softmax_stable,
    softmax_stable,
)


def _onehot(shape: tuple[int, ...], targets: npt.NDArray[np.intp], dtype: np.dtype[Any]) -> Array:
    g = np.zeros(shape, dtype)
    g[np.arange(shape[0]), targets] = 1
    return g


def _acc(x: Array, s: Setup) -> np.dtype[Any]:
    return x.dtype if s.acc is None else s.acc


def _mark_flushes(fwd: Trace, p: Array, y: Array) -> None:
    """Mark ``p = exp(y)`` that flushed to 0 from a finite ``y`` (an underflow of the grad)."""
    y64 = np.asarray(y, np.float64)
    flushed = np.isfinite(y64) & (np.asarray(p, np.float64) == 0) & (fwd.flush == 0)
    fwd.flush[flushed] = Event.EXP_FLUSH
    fwd.arg[flushed] = y64[flushed]


def _vjp_log_softmax(y: Array, g: Array, s: Setup) -> Array:
    """``g - exp(y) * sum(g)``: elementwise in ``y``'s dtype, the sum in the accumulator."""
    dtype, acc = y.dtype, _acc(y, s)
    total = np.sum(g, axis=-1, keepdims=True, dtype=acc)
    p = np.exp(y)
    return np.asarray((g.astype(acc) - p.astype(acc) * total).astype(dtype))


def log_softmax_stable_grad(x: Array, s: Setup = NO_SETUP) -> Trace:
    """PyTorch's LogSoftmaxBackward on the stable forward, with ``g = -onehot(t)``."""
    targets = s.target_array(x.shape[0])
    fwd = log_softmax_stable(x, s)
    g = -_onehot(x.shape, targets, x.dtype)
    out = _vjp_log_softmax(fwd.out, g, s)
    _mark_flushes(fwd, np.exp(fwd.out), fwd.out)
    _mark_cancelled(fwd, out, targets, fwd.out)
    return Trace(out, fwd.overflow, fwd.flush, fwd.nan, fwd.arg)


def _mark_cancelled(fwd: Trace, out: Array, targets: npt.NDArray[np.intp], y: Array) -> None:
    """Mark a target entry ``p_t - 1`` that cancelled to 0 while other classes exist.

    ``y`` is the forward's log-probabilities (the message shows ``log p_t``).
    """
    rows = np.arange(len(targets))
    y_t = np.asarray(y[rows, targets], np.float64)
    others = np.sum(np.asarray(out, np.float64) != 0, axis=-1) > 0
    hit = (
        (np.asarray(out[rows, targets], np.float64) == 0) & others & (fwd.flush[rows, targets] == 0)
    )
    fwd.flush[rows[hit], targets[hit]] = Event.CANCELLED
    fwd.arg[rows[hit], targets[hit]] = y_t[hit]


def log_softmax_log1p_grad(x: Array, s: Setup = NO_SETUP) -> Trace:
    """``exp(y)`` off the target and ``expm1(y_t)`` at it, on the log1p forward."""
    targets = s.target_array(x.shape[0])
    fwd = log_softmax_log1p(x, s)
    rows = np.arange(x.shape[0])
    out = np.exp(fwd.out)
    _mark_flushes(fwd, out, fwd.out)
    out[rows, targets] = np.expm1(fwd.out[rows, targets])
    return Trace(out, fwd.overflow, fwd.flush, fwd.nan, fwd.arg)


def _softmax_vjp(p: Array, g: Array, s: Setup) -> Array:
    """PyTorch's SoftmaxBackward: ``p * (g - sum(g * p))``."""
    dtype, acc = p.dtype, _acc(p, s)
    dot = np.sum((g * p).astype(acc), axis=-1, keepdims=True, dtype=acc)
    return np.asarray((p.astype(acc) * (g.astype(acc) - dot)).astype(dtype))


def log_of_softmax_grad(x: Array, s: Setup = NO_SETUP) -> Trace:
    """Autograd of ``-log(softmax(x))[t]``: log's backward ``g / p``, then softmax's."""
    targets = s.target_array(x.shape[0])
    fwd = softmax_stable(x, s)
    p = fwd.out
    g_p = -_onehot(x.shape, targets, x.dtype) / p
    out = _softmax_vjp(p, g_p, s)
    zero_p = np.any(np.asarray(p, np.float64) == 0, axis=-1, keepdims=True)
    nan_rows = np.broadcast_to(zero_p, out.shape) & np.isnan(np.asarray(out, np.float64))
    fwd.nan[nan_rows & (fwd.nan == 0)] = Event.LOG_BACKWARD
    _mark_cancelled(fwd, out, targets, np.log(p))
    return Trace(out, fwd.overflow, fwd.flush, fwd.nan, fwd.arg)


def double_softmax_grad(x: Array, s: Setup = NO_SETUP) -> Trace:
    """The backward of ``-log_softmax(softmax(x))[t]``, through both softmaxes."""
    targets = s.target_array(x.shape[0])
    fwd = softmax_stable(x, s)
    p = fwd.out
    inner = log_softmax_stable(p, s)
    g_p = _vjp_log_softmax(inner.out, -_onehot(x.shape, targets, x.dtype), s)
    out = _softmax_vjp(p, g_p, s)
    return Trace(out, fwd.overflow, fwd.flush, fwd.nan, fwd.arg)


def _grad(
    name: str, kind: Kind, description: str, fn: Callable[[Array, Setup], Trace]
) -> Algorithm:
    return builtin(name, kind, description, fn)


GRADS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        _grad(
            "log_softmax_stable.grad",
            Kind.LOG_SOFTMAX_GRAD,
            "backward of log_softmax_stable: g - exp(y) * sum(g), g = -onehot(target)",
            log_softmax_stable_grad,
        ),
        _grad(
            "log_softmax_log1p.grad",
            Kind.LOG_SOFTMAX_GRAD,
            "backward of log_softmax_log1p: exp(y), and expm1(y_t) at the target",
            log_softmax_log1p_grad,
        ),
        _grad(
            "log_of_softmax.grad",
            Kind.LOG_SOFTMAX_GRAD,
            "autograd of log(softmax(x)): g / p, then p * (g' - sum(g' * p))",
            log_of_softmax_grad,
        ),
        _grad(
            "cross_entropy_log_softmax.grad",
            Kind.CROSS_ENTROPY_GRAD,
            "backward of cross_entropy_log_softmax (as log_softmax_stable.grad)",
            log_softmax_stable_grad,
        ),
        _grad(
            "cross_entropy_log_of_softmax.grad",
            Kind.CROSS_ENTROPY_GRAD,
            "backward of cross_entropy_log_of_softmax (as log_of_softmax.grad)",
            log_of_softmax_grad,
        ),
        _grad(
            "cross_entropy_double_softmax.grad",
            Kind.CROSS_ENTROPY_GRAD,
            "backward through softmax, then log_softmax (the double-softmax mistake)",
            double_softmax_grad,
        ),
        _grad(
            "cross_entropy_log1p.grad",
            Kind.CROSS_ENTROPY_GRAD,
            "backward of cross_entropy_log1p (as log_softmax_log1p.grad)",
            log_softmax_log1p_grad,
        ),
    )
}
