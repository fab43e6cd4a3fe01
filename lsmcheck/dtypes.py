"""The floating-point formats lsmcheck audits in.

Each :class:`Format` carries what the metrics need to know about a binary format: its precision
``p`` (significand bits including the implicit one), its minimum normal exponent ``emin``, its
maximum exponent ``emax``, and whether it has infinities.  From these follow the largest finite
value (``(2 - 2**(1-p)) * 2**emax`` for IEEE formats), the smallest normal ``2**emin`` and the
smallest subnormal ``2**(emin - p + 1)``.

The IEEE formats are numpy's own.  ``bfloat16``, ``float8_e4m3fn`` and ``float8_e5m2`` come
from ml_dtypes.  ``float8_e4m3fn`` ("fn": finite, NaN) has no infinities and gives up the top
significand of its top binade to NaN, so its largest value is 448, not 480; a value that
overflows it becomes NaN, never ``±inf``.

Rounding rule, for every format: round to nearest, ties to even, on the grid of ``p``-bit
significands with an unbounded exponent (subnormals: the fixed quantum below ``2**emin``); a
result whose magnitude then exceeds the largest finite value overflows, to ``±inf`` where the
format has infinities and to NaN where it has none.  For IEEE formats this is the standard rule
(``max + ulp/2`` rounds to even, which is ``2**(emax+1)``: overflow).  For ``float8_e4m3fn`` it
puts the tie 464 on 448 (whose significand 1.110 is even) and everything above 464 on NaN,
which is what ml_dtypes does.

A :class:`Format` may also name an *accumulation* format: ``float16/acc=float32`` stores and
computes elementwise in float16 but takes the max-shift, the sum and the log in float32, as GPU
kernels with a float32 accumulator do.  Its rounding, range and ulp are those of its storage
format; only the algorithms that accumulate read :attr:`Format.accumulate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import ml_dtypes
import numpy as np
import numpy.typing as npt

from lsmcheck.errors import UsageError

_Name = TypeVar("_Name")

#: numpy's own float types: ``astype`` rounds float64 to them correctly.
_NATIVE = frozenset({np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)})

#: The separator of a mixed-precision label, ``float16/acc=float32``.
ACC = "/acc="


@dataclass(frozen=True)
class Format:
    """A binary floating-point format (optionally with a wider accumulation format).

    Attributes:
        name: the name used on the command line and in reports (``"float16"``, or
            ``"float16/acc=float32"`` for a mixed-precision configuration).
        dtype: the numpy dtype values are stored in (an ml_dtypes dtype for bfloat16/float8).
        p: precision in bits, counting the implicit leading bit (11 for float16).
        emin: exponent of the smallest normal number (-14 for float16).
        emax: exponent of the largest finite number (15 for float16).
        has_inf: whether the format has infinities (IEEE formats do; float8_e4m3fn does not,
            and overflows to NaN).
        max_value: the largest finite value when it is not the IEEE ``(2 - 2**(1-p)) *
            2**emax`` (448 for float8_e4m3fn), else ``None``.
        accumulate: the wider format sums, max-shifts and logs are computed in, or ``None``.
    """

    name: str
    dtype: np.dtype[Any]
    p: int
    emin: int
    emax: int
    has_inf: bool = True
    max_value: float | None = None
    accumulate: Format | None = None

    @property
    def max(self) -> float:
        """The largest finite value, as a float64 (exact)."""
        if self.max_value is not None:
            return self.max_value
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
    def unit_roundoff(self) -> float:
        """``u = 2**-p``: the largest relative error of one correctly rounded operation."""
        return float(2.0**-self.p)

    @property
    def overflow_threshold(self) -> float:
        """Values beyond this magnitude overflow (``max + ulp(max)/2``).

        The value itself overflows when ``max``'s significand is odd (IEEE: it rounds to even,
        ``2**(emax+1)``) and rounds to ``max`` when it is even (float8_e4m3fn: 464 -> 448).
        """
        return float(self.max + 2.0 ** (self.emax - self.p))

    @property
    def overflow_threshold_exact(self) -> int:
        """:attr:`overflow_threshold` exactly, an integer in every format.  Float64's,
        ``2**1024 - 2**970``, is not a float64 itself (it rounds to inf)."""
        return int(self.max) + (1 << (self.emax - self.p))

    @property
    def overflow_value(self) -> float:
        """What an overflow gives (with the sign of the value): ``inf``, or NaN."""
        return float("inf") if self.has_inf else float("nan")

    @property
    def storage(self) -> Format:
        """The format without its accumulation format."""
        if self.accumulate is None:
            return self
        return dataclasses.replace(self, name=self.name.split(ACC)[0], accumulate=None)

    @property
    def acc_dtype(self) -> np.dtype[Any]:
        """The dtype sums and logs are computed in (the storage dtype without accumulation)."""
        return self.dtype if self.accumulate is None else self.accumulate.dtype

    def cast(self, values: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        """Round float64 values to this format (round to nearest, ties to even), correctly.

        numpy rounds float64 to its own types correctly.  ml_dtypes (and PyTorch) convert
        float64 to bfloat16 and float8 *through float32*, which rounds twice: float64
        ``1 + 2**-8 + 2**-30`` becomes bfloat16 1.0 instead of 1.0078125.  Here the first step
        rounds to odd instead (truncate, and set the last bit when inexact), which float32's 24
        bits make exact for any target of at most 22 bits: the second rounding is then correct.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            if self.dtype in _NATIVE:
                return values.astype(self.dtype)
            return _round_to_odd_float32(np.asarray(values, np.float64)).astype(self.dtype)


def _round_to_odd_float32(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """float64 -> float32 rounded to odd (the neighbour with an odd last bit when inexact)."""
    y = values.astype(np.float32)
    back = y.astype(np.float64)
    inexact = np.isfinite(values) & np.isfinite(back) & (back != values)
    even = (y.view(np.uint32) & 1) == 0
    fix = inexact & even
    if fix.any():
        toward = np.where(values[fix] > back[fix], np.float32(np.inf), np.float32(-np.inf))
        y[fix] = np.nextafter(y[fix], toward)
    return y


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("float16", np.dtype(np.float16), p=11, emin=-14, emax=15),
        Format("float32", np.dtype(np.float32), p=24, emin=-126, emax=127),
        Format("float64", np.dtype(np.float64), p=53, emin=-1022, emax=1023),
        Format("bfloat16", np.dtype(ml_dtypes.bfloat16), p=8, emin=-126, emax=127),
        Format(
            "float8_e4m3fn",
            np.dtype(ml_dtypes.float8_e4m3fn),
            p=4,
            emin=-6,
            emax=8,
            has_inf=False,
            max_value=448.0,
        ),
        Format("float8_e5m2", np.dtype(ml_dtypes.float8_e5m2), p=3, emin=-14, emax=15),
    )
}

DEFAULT_FORMATS: tuple[str, ...] = ("float16", "float32", "float64")
#: What ``all`` stands for in a list of dtypes.
ALL_FORMATS: tuple[str, ...] = tuple(FORMATS)


def with_all(names: Iterable[_Name], every: tuple[str, ...]) -> tuple[_Name | str, ...]:
    """``names`` with ``all`` replaced by ``every`` one, each name once, in order."""
    out: dict[_Name | str, None] = {}
    for name in names:
        out.update(dict.fromkeys(every if name == "all" else (name,)))
    return tuple(out)


def is_wider(acc: Format, storage: Format) -> bool:
    """Whether ``acc`` holds every value of ``storage`` and has more precision."""
    return acc.p > storage.p and acc.emax >= storage.emax and acc.emin <= storage.emin


def with_accumulation(fmt: Format, acc: Format) -> Format:
    """``fmt`` computing its sums, shifts and logs in ``acc`` (``float16/acc=float32``)."""
    return dataclasses.replace(fmt, name=f"{fmt.name}{ACC}{acc.name}", accumulate=acc)


def _base(name: str, what: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(FORMATS)
        raise UsageError(f"{what}: unknown dtype {name!r} (choose from {known})") from None


def get_format(name: str) -> Format:
    """The format called ``name`` (``float16`` or ``float16/acc=float32``).

    :class:`UsageError` for an unknown name, or an accumulation format that is not wider.
    """
    storage, sep, acc_name = name.partition(ACC)
    fmt = _base(storage, "--dtype")
    if not sep:
        return fmt
    acc = _base(acc_name, "--dtype")
    if not is_wider(acc, fmt):
        raise UsageError(
            f"--dtype: {name!r}: the accumulation dtype must be wider than {storage} "
            "(more precision and at least its exponent range)"
        )
    return with_accumulation(fmt, acc)


def accumulate_all(names: tuple[str, ...], acc_name: str | None) -> tuple[str, ...]:
    """The dtype names with ``/acc=ACC`` added to every one that ``acc`` is wider than.

    Formats at least as wide as the accumulation format already accumulate in themselves and
    keep their plain name (``--accumulate float32`` leaves float32 and float64 as they are).
    """
    if acc_name is None:
        return names
    acc = _base(acc_name, "--accumulate")
    out = []
    for n in names:
        fmt = get_format(n)
        if fmt.accumulate is None and is_wider(acc, fmt):
            out.append(with_accumulation(fmt, acc).name)
        else:
            out.append(n)
    return tuple(dict.fromkeys(out))
