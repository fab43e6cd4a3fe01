"""Headroom: how close one vector comes to each measured limit of an implementation.

For every audited result the engine asks :func:`assess` how far the vector is from the limits
that :mod:`lsmcheck.explore.limits` measures for that implementation in that dtype:

=========  ============================================  ==========================================
limit      the vector's quantity                         applies when
=========  ============================================  ==========================================
overflow   its largest logit                             the largest logit is positive
underflow  its largest logit                             the largest logit is negative
flush      its lowest logit minus its largest            the implementation flushes *early* there
length     its length                                    always
=========  ============================================  ==========================================

``headroom = (threshold - value) / threshold``, where ``threshold`` is the last value that holds
(``11.0859375`` for softmax_naive's overflow in float16) and both are measured away from zero in
the limit's direction: 1 far from the limit, 0 on it, negative past it.  A limit that the
implementation never reaches within the searched range gives no entry.  An entry is a *warning*
inside the danger zone (``headroom < zone``, 10% by default) or past the limit.

The limits are measured once per (implementation, dtype, limit) and process, on first use, so
the first audit in a dtype pays for the searches (a fraction of a second) and later ones do not.
The length limit is searched only up to twice the vector's length (at least 1024, rounded up to
a power of two): a limit beyond that leaves more than 50% headroom and gives no entry.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import Algorithm
from lsmcheck.dtypes import Format
from lsmcheck.explore.limits import Explorer, Limit, fmt_value
from lsmcheck.results import Headroom

#: The default danger zone: warn when a vector is within 10% of a limit.
DEFAULT_ZONE = 0.10

#: The length limit is searched up to twice the vector's length, at least this far.
MIN_LENGTH_SEARCHED = 1024

_EXPLORERS: dict[int, Explorer] = {}
_CACHE: dict[tuple[str, str, str, int], Limit] = {}


def measured_limit(alg: Algorithm, fmt: Format, name: str, max_length: int = 0) -> Limit:
    """Limit ``name`` of ``alg`` in ``fmt``, measured on first use and cached.

    ``max_length`` bounds the length search (a power of two; ignored by the other limits).
    """
    max_length = max_length if name == "length" else 0
    key = (alg.name, fmt.name, name, max_length)
    if key not in _CACHE:
        explorer = _EXPLORERS.setdefault(max_length, Explorer(max_length=max(max_length, 2)))
        _CACHE[key] = explorer.limit(alg, fmt, name)
    return _CACHE[key]


def _length_cap(n: int) -> int:
    """A power of two at least ``2n`` and :data:`MIN_LENGTH_SEARCHED` (few cache entries)."""
    return 1 << max(2 * n - 1, MIN_LENGTH_SEARCHED - 1).bit_length()


#: What happens at a limit, by the first finding there (``kind:event``).
_CAUSES = {
    "overflow:exp_overflow": "exp overflows",
    "overflow:sum_overflow": "the sum overflows",
    "overflow:sub_overflow": "x - max overflows",
    "overflow:add_overflow": "max + log(sum) overflows",
    "underflow:exp_flush": "every exp term underflows",
    "underflow:sum_flush": "the sum underflows to 0",
    "underflow:log_of_zero": "the log of a flushed probability gives -inf",
}

_QUANTITIES = {
    "overflow": "largest logit",
    "underflow": "largest logit",
    "flush": "lowest x - max",
    "length": "length",
}


def _cause(lim: Limit) -> str:
    if lim.event_kind in _CAUSES:
        return _CAUSES[lim.event_kind]
    kind = lim.event_kind.split(":")[0] or "breaks"
    return {"nan": "the result is NaN"}.get(kind, f"it {kind}s")


def _entry(lim: Limit, value: float, zone: float, fmt: Format) -> Headroom | None:
    """The headroom of ``value`` (signed, as the vector has it) against ``lim``."""
    if not lim.breaks or lim.last_ok is None:
        return None
    threshold = lim.spec.sign * lim.last_ok
    if threshold == 0:
        return None
    room = (threshold - value) / threshold
    warning = room < zone
    quantity = _QUANTITIES[lim.name]
    if room < 0:
        how = "past the limit"
    else:
        # rounded down, never up: a message never claims more room than there is
        pct = f"{math.floor(room * 1000) / 10:.1f}" if room < 0.1 else str(math.floor(room * 100))
        how = f"{pct}% headroom"
    message = (
        f"{quantity} {fmt_value(value)} of {fmt_value(threshold)} before {_cause(lim)} "
        f"in {fmt.name}: {how}"
    )
    return Headroom(lim.name, value, threshold, room, warning, message)


def assess(
    alg: Algorithm, fmt: Format, x: npt.NDArray[np.float64], zone: float = DEFAULT_ZONE
) -> tuple[Headroom, ...]:
    """The headroom of the dtype-rounded vector ``x`` against ``alg``'s limits in ``fmt``.

    ``x`` must have a finite logit (undefined vectors are not audited).
    """
    finite = x[np.isfinite(x)]
    if not finite.size:
        return ()
    top = float(finite.max())
    wanted: list[tuple[str, float]] = []
    if top > 0:
        wanted.append(("overflow", top))
    elif top < 0:
        wanted.append(("underflow", top))
    gap = float(finite.min()) - top
    if gap < 0 and not alg.kind.per_vector:
        wanted.append(("flush", gap))
    wanted.append(("length", float(x.size)))
    cap = _length_cap(x.size)
    out = []
    for name, value in wanted:
        entry = _entry(measured_limit(alg, fmt, name, cap), value, zone, fmt)
        if entry is not None:
            out.append(entry)
    return tuple(out)


__all__ = ["DEFAULT_ZONE", "assess", "measured_limit"]
