"""An exact running sum of floats, for the mean ULP error of a group of results."""

from __future__ import annotations

import math


class ExactSum:
    """The correctly rounded sum of many floats, added one at a time (Shewchuk's partials, as
    ``math.fsum``: the result does not depend on their order), and their mean.

    Values from 2**1000 up (a ULP error against an exact 0 is counted in subnormal ulps: 1e307
    for an output of 1e-16) are summed apart, scaled by 2**-200 (exactly), so that a sum beyond
    float64's range is ``inf`` and a mean within it is still right (two such values made the
    partials ``inf`` and ``nan``, and every later addition appended one: quadratic; ``math.fsum``
    raises OverflowError).
    """

    _BIG = 2.0**1000
    _SCALE = 2.0**-200

    def __init__(self) -> None:
        self.partials: list[float] = []
        self.big: list[float] = []  # scaled by _SCALE
        self.count = 0
        self.special: list[float] = []

    def add(self, x: float) -> None:
        self.count += 1
        if not math.isfinite(x):
            self.special.append(x)
        elif abs(x) >= self._BIG:
            _add(self.big, x * self._SCALE)
        else:
            _add(self.partials, x)

    def total(self) -> float:
        return self._scaled_sum() / self._SCALE if self.big else self._plain()

    def mean(self) -> float | None:
        """The mean of the values added (``None`` for none)."""
        if not self.count:
            return None
        if self.special or not self.big:
            return self._plain() / self.count
        return self._scaled_sum() / self.count / self._SCALE

    def _plain(self) -> float:
        if any(math.isnan(x) for x in self.special):
            return math.nan
        if self.special:
            return self.special[0] if len(set(self.special)) == 1 else math.nan
        return math.fsum(self.partials)

    def _scaled_sum(self) -> float:
        # the small values, scaled, may round (below 2**-874) beside a sum of at least 2**800
        return math.fsum([*self.big, *(p * self._SCALE for p in self.partials)])


def _add(partials: list[float], x: float) -> None:
    """Add ``x`` to Shewchuk's ``partials`` (non-overlapping, increasing in magnitude)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


__all__ = ["ExactSum"]
