"""The floating-point formats lsmcheck audits in.

Each :class:`Format` carries what the metrics need to know about a binary format: its precision
``p`` (significand bits including the implicit one), its minimum normal exponent ``emin``, its
maximum exponent ``emax``, and whether it has infinities.  From these follow the largest finite
value ``(2 - 2**(1-p)) * 2**emax``, the smallest normal ``2**emin`` and the smallest subnormal
``2**(emin - p + 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.errors import UsageError


@dataclass(frozen=True)
class Format:
    """A binary floating-point format.

    Attributes:
        name: the name used on the command line and in reports (``"float16"``).
        dtype: the numpy dtype the computation runs in.
        p: precision in bits, counting the implicit leading bit (11 for float16).
        emin: exponent of the smallest normal number (-14 for float16).
        emax: exponent of the largest finite number (15 for float16).
        has_inf: whether the format has infinities (IEEE formats do).
    """

    name: str
    dtype: np.dtype[Any]
    p: int
    emin: int
    emax: int
    has_inf: bool = True

    @property
    def max(self) -> float:
        """The largest finite value, as a float64 (exact)."""
        return float((2 - 2.0 ** (1 - self.p)) * 2.0**self.emax)

    @property
    def smallest_normal(self) -> float:
        """``2**emin``."""
        return float(2.0**self.emin)

    @property
    def smallest_subnormal(self) -> float:
        """``2**(emin - p + 1)``: the ulp of zero and of every subnormal."""
        return float(2.0 ** (self.emin - self.p + 1))

    @property
    def overflow_threshold(self) -> float:
        """Values at or beyond this magnitude round to infinity (``max + ulp(max)/2``)."""
        return float((2 - 2.0**-self.p) * 2.0**self.emax)

    def cast(self, values: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        """Round float64 values to this format (round to nearest, ties to even)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return values.astype(self.dtype)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("float16", np.dtype(np.float16), p=11, emin=-14, emax=15),
        Format("float32", np.dtype(np.float32), p=24, emin=-126, emax=127),
        Format("float64", np.dtype(np.float64), p=53, emin=-1022, emax=1023),
    )
}

DEFAULT_FORMATS: tuple[str, ...] = ("float16", "float32", "float64")


def get_format(name: str) -> Format:
    """The format called ``name``; :class:`UsageError` for an unknown one."""
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(FORMATS)
        raise UsageError(f"--dtype: unknown dtype {name!r} (choose from {known})") from None
