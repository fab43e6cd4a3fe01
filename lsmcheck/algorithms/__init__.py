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

The code is split by what it is: :mod:`~lsmcheck.algorithms.interface` (the types every
implementation shares), :mod:`~lsmcheck.algorithms.trace` (the tracer and the traced steps),
:mod:`~lsmcheck.algorithms.builtins` (the built-in algorithms) and
:mod:`~lsmcheck.algorithms.lazy` (tracing only the rows that need it, and :func:`builtin`).
This module holds the registry and re-exports the names other modules import from it.
"""

from __future__ import annotations

import math

from lsmcheck.algorithms.builtins import (
    cross_entropy_double_softmax,
    cross_entropy_log1p,
    cross_entropy_log_of_softmax,
    cross_entropy_log_softmax,
    log_of_softmax,
    log_softmax_log1p,
    log_softmax_naive,
    log_softmax_stable,
    logsumexp_log1p,
    logsumexp_naive,
    logsumexp_stable,
    softmax_naive,
    softmax_online,
    softmax_online_blocked,
    softmax_stable,
)
from lsmcheck.algorithms.interface import (
    DEFAULT_BLOCK,
    NO_SETUP,
    Algorithm,
    Array,
    Event,
    Kind,
    Setup,
    Trace,
    untraced,
)
from lsmcheck.algorithms.lazy import _errstate as _errstate
from lsmcheck.algorithms.lazy import builtin, eventful_rows
from lsmcheck.algorithms.trace import _to_half as _to_half
from lsmcheck.errors import UsageError

__all__ = [
    "ALL_BUILTINS",
    "BUILTINS",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_BLOCK",
    "LOSSES",
    "NO_SETUP",
    "Algorithm",
    "Array",
    "Event",
    "Kind",
    "Setup",
    "Trace",
    "builtin",
    "cross_entropy_double_softmax",
    "cross_entropy_log1p",
    "cross_entropy_log_of_softmax",
    "cross_entropy_log_softmax",
    "describe_event",
    "eventful_rows",
    "get_algorithm",
    "log_of_softmax",
    "log_softmax_log1p",
    "log_softmax_naive",
    "log_softmax_stable",
    "logsumexp_log1p",
    "logsumexp_naive",
    "logsumexp_stable",
    "registered",
    "softmax_naive",
    "softmax_online",
    "softmax_online_blocked",
    "softmax_stable",
    "untraced",
]


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
#: What ``all`` stands for in a list of algorithms: every built-in (the traced softmax,
#: log-softmax and logsumexp forms; the losses and backward passes need a target).
ALL_BUILTINS: tuple[str, ...] = tuple(BUILTINS)


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
    # only the message asked for is formatted: a batch's findings ask for thousands
    a = f"{lo:.6g}" if lo == hi else f"{lo:.6g}..{hi:.6g}"
    match event:
        case Event.EXP_OVERFLOW:
            return f"exp({a}) overflowed ({fmt_name} max exp argument ~{math.log(fmt_max):.2f})"
        case Event.SUM_OVERFLOW:
            return f"the sum of exp terms overflowed ({fmt_name} max {fmt_max:.6g})"
        case Event.SUB_OVERFLOW:
            return f"x - max overflowed at x={a} ({fmt_name} max {fmt_max:.6g})"
        case Event.ADD_OVERFLOW:
            return f"max + log(sum) overflowed at max={a} ({fmt_name} max {fmt_max:.6g})"
        case Event.EXP_FLUSH:
            return f"exp({a}) underflowed to 0 ({_min_exp(fmt_name, tiny)})"
        case Event.SUM_FLUSH:
            return "every exp term underflowed, so the sum is 0 and its log -inf"
        case Event.LOG_OF_ZERO:
            return (
                f"log(0) = -inf: the probability exp({a}) underflowed ({_min_exp(fmt_name, tiny)})"
            )
        case Event.INF_OVER_INF:
            return "inf/inf after an overflow"
        case Event.ZERO_OVER_ZERO:
            return "0/0 after every exp term underflowed"
        case Event.INF_MINUS_INF:
            return "inf - inf"
        case Event.NAN_INPUT:
            return "a NaN input"
        case Event.NAN_FROM_OVERFLOW:
            return f"an overflow gave NaN ({fmt_name} has no infinities)"
        case Event.NAN_FROM_FLUSH:
            return (
                f"the -inf of log(0) after an underflow is NaN in {fmt_name} (it has no infinities)"
            )
        case Event.STORE_FLUSH:
            return f"the result {a} underflowed to 0 when stored in {fmt_name}"
        case Event.CANCELLED:
            return (
                f"p - 1 cancelled to 0 at the target (log p = {a}): p rounds to 1 in "
                f"{fmt_name}, so the gradient 1 - p of a confident prediction is lost"
            )
        case Event.LOG_BACKWARD:
            return (
                "the backward of log divides by a probability of 0 (one that underflowed, or "
                "a masked class): 0/0 = NaN, and the softmax backward spreads the NaN over the row"
            )
    return event.name.lower()


def _min_exp(fmt_name: str, tiny: float) -> str:
    """The smallest argument whose exp does not flush to 0, roughly (half the smallest
    subnormal rounds up)."""
    return f"{fmt_name} min exp argument ~{math.log(tiny) - math.log(2):.2f}"
