"""What every audited implementation is, takes and returns.

An :class:`Algorithm` is a name, the function it computes (a :class:`Kind`), a description
and ``run`` (with ``run_with`` when it takes a :class:`Setup`); it returns a :class:`Trace`:
its outputs and the :class:`Event` codes a traced implementation records per element.  A
black box (a framework adapter, a user's function, sandboxed code) returns :func:`untraced`
outputs.
"""

from __future__ import annotations

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
    NAN_FROM_FLUSH = 16


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
