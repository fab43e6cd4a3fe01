"""An exact running sum of floats, for the mean ULP error of a group of results."""

from __future__ import annotations

import math
from collections.abc import Iterable

#: Every finite float64 is an integer number of these: its smallest subnormal, 2**-1074.
_UNIT_BITS = 1074


class ExactSum:
    """The correctly rounded sum of many floats and their mean, kept exactly: the finite
    values as one integer number of ``2**-1074`` (every float64 is a whole number of them), so
    the result does not depend on their order, a sum beyond float64's range is ``inf`` while a
    mean within it is still right (a ULP error against an exact 0 is counted in subnormal ulps:
    1e307 for an output of 1e-16), and adding costs the same whatever came before.  ``inf`` and
    NaN values make the sum ``inf``/``-inf``/NaN as ``math.fsum`` would.
    """

    def __init__(self) -> None:
        self.units = 0  # the finite values' sum, in units of 2**-1074
        self.count = 0
        self.special: set[float] = set()  # inf, -inf, nan: which of them were added
        self.nan = False

    def add(self, x: float) -> None:
        self.add_many((x,))

    def add_many(self, values: Iterable[float]) -> None:
        units, count, top = self.units, 0, _UNIT_BITS
        for x in values:
            count += 1
            try:
                n, d = x.as_integer_ratio()  # d a power of two, at most 2**1074
            except (OverflowError, ValueError):  # inf, nan
                if x != x:
                    self.nan = True
                else:
                    self.special.add(x)
                continue
            units += n << (top - d.bit_length() + 1)
        self.units, self.count = units, self.count + count

    def merge(self, other: ExactSum) -> None:
        """Add every value ``other`` holds (as if added here one by one)."""
        self.units += other.units
        self.count += other.count
        self.special |= other.special
        self.nan = self.nan or other.nan

    def total(self) -> float:
        return self._divided(1)

    def mean(self) -> float | None:
        """The mean of the values added (``None`` for none)."""
        if not self.count:
            return None
        total = self._divided(1)
        if math.isfinite(total) or self.nan or self.special:
            return total / self.count  # as math.fsum(values) / count
        return self._divided(self.count)  # the sum is beyond float64, the mean is not

    def _divided(self, by: int) -> float:
        """The finite sum over ``by``, correctly rounded (``±inf`` beyond float64)."""
        if self.nan or len(self.special) > 1:
            return math.nan
        if self.special:
            return next(iter(self.special))
        try:
            return self.units / (by << _UNIT_BITS)  # int / int: correctly rounded
        except OverflowError:
            return math.inf if self.units > 0 else -math.inf


__all__ = ["ExactSum"]
