"""Error metrics of one output against its certified reference.

Definitions (the README repeats them):

* ``ulp(y) = 2**(max(floor(log2|y|), emin) - p + 1)`` in the audited format; ``ulp(0)`` is the
  smallest subnormal.  The ULP error of an element is ``|computed - exact| / ulp(exact)``,
  evaluated in mpmath (so it is exact to far better than 0.01 ulp).  A NaN, or an infinity where
  the exact value rounds to a finite number, has infinite ULP error; an infinity where the exact
  value lies beyond the format's range (it rounds to that same infinity) is the correctly rounded
  answer and has error 0, as has ``-inf`` for a masked class's exact ``-inf``.  In a format
  without infinities (float8_e4m3fn) an exact value beyond the range rounds to NaN, so there a
  NaN output is the correctly rounded answer and has error 0 (it is neither an overflow nor
  counted as a NaN); every other NaN has infinite error.
* An element *overflowed* when its computation overflowed (a step of a built-in algorithm
  turned finite operands into ``±inf``; for a black box, it returned ``±inf``) and its output is
  not the correctly rounded exact value.
* An element *underflowed* when a nonzero value on its way was flushed to 0 (or the output is
  0, or ``-inf`` in the log domain) and the exact result rounds to a nonzero (finite) value.
  Flushes whose exact result also rounds to 0 are *benign* and counted apart.

These functions take plain values and return plain values: no I/O, no terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import Event, Kind, describe_event
from lsmcheck.dtypes import Format
from lsmcheck.reference import MAX_BITS, Exact, Mpf, mpf, round_to_format, ulp_exponent
from lsmcheck.results import Element, Finding

Bools = npt.NDArray[np.bool_]
Codes = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Measured:
    """Per-element metrics of one output vector (see the module docstring).

    Attributes:
        computed: the output as float64 (exact for formats up to float64).
        exact: the reference values.
        ulp, abs_error, rel_error: per-element errors.
        overflow, underflow, benign, nan: per-element classifications.
    """

    computed: npt.NDArray[np.float64]
    exact: tuple[Mpf, ...]
    ulp: npt.NDArray[np.float64]
    abs_error: npt.NDArray[np.float64]
    rel_error: npt.NDArray[np.float64]
    overflow: npt.NDArray[np.bool_]
    underflow: npt.NDArray[np.bool_]
    benign: npt.NDArray[np.bool_]
    nan: npt.NDArray[np.bool_]


def exact_values(kind: Kind, ref: Exact) -> tuple[Mpf, ...]:
    """The reference values an implementation of ``kind`` is compared with.

    Kinds that depend on a target class (cross-entropy, gradients) get theirs from
    :func:`lsmcheck.grad` helpers and pass them to :func:`measure` as ``exact``.
    """
    if kind is Kind.SOFTMAX:
        return ref.softmax
    if kind is Kind.LOG_SOFTMAX:
        return ref.log_softmax
    return (ref.logsumexp,)


#: Absolute and relative errors are certified to this fraction of themselves (0.1%): the
#: reference must then be known to within that fraction of ``|computed - exact|``, which for
#: a computed value very close to the exact one takes more precision than the ULP error does.
ERROR_REL_TOL = 2.0**-10


def error_bits(c: float, v: Mpf, rel_bound: Mpf, bits: int) -> int | None:
    """``None`` when ``|c - v|`` is known to :data:`ERROR_REL_TOL` of itself, ``v`` being
    within ``rel_bound`` (relative) of the truth at working precision ``bits``; else the
    precision to compute the reference at next.

    Also ``None`` once what is unknown is below float64's smallest subnormal, in absolute and
    in relative terms: the errors are float64 numbers, and a computed value that equals the
    exact one (a tie's gradient of exactly 0.5) would otherwise raise the precision for ever.
    """
    import mpmath

    if rel_bound == 0 or not math.isfinite(c) or not mpmath.isfinite(v) or v == 0:
        return None
    with mpmath.workprec(bits + 16):
        diff = abs(mpf(c) - v)
        slack = rel_bound * abs(v)  # how far the truth may be from v
        if diff > 0 and slack <= ERROR_REL_TOL * diff:
            return None
        below = mpmath.ldexp(1, -1075)  # half float64's smallest subnormal: 0 as a float64
        if slack < below and rel_bound < below:
            return None
        # at least twice the bits: a value nudged off a tie (reference._nudge) differs from
        # c by 2**-(bits+16) of itself until the precision reaches the true difference
        more = (
            2 * bits if diff == 0 else max(2 * bits, bits + int(mpmath.log(slack / diff, 2)) + 16)
        )
    return min(more, MAX_BITS) if bits < MAX_BITS else None


def element_error(c: float, v: Mpf, fmt: Format, bits: int) -> tuple[float, float, float]:
    """``(ulp error, absolute error, relative error)`` of computed ``c`` against exact ``v``.

    The relative error is over ``max(|v|, 2**emin)``: below the format's smallest normal its
    spacing is absolute, so a correctly rounded value is within ``2**-p`` there as above it
    (an output of 0 for ``exp(-104)`` in float32 is not off by 100%)."""
    import mpmath

    if math.isnan(c):
        if not fmt.has_inf and mpmath.isfinite(v) and math.isnan(round_to_format(v, fmt)):
            return 0.0, 0.0, 0.0  # beyond the range of a format whose overflow is NaN
        return math.inf, math.inf, math.inf
    if not mpmath.isfinite(v):  # exact -inf: a masked class's log-probability
        return (0.0, 0.0, 0.0) if c == float(v) else (math.inf, math.inf, math.inf)
    if math.isinf(c):
        if round_to_format(v, fmt) == c:
            return 0.0, 0.0, 0.0
        return math.inf, math.inf, math.inf
    with mpmath.workprec(bits + 16):
        diff = abs(mpf(c) - v)
        ulp = float(mpmath.ldexp(diff, -ulp_exponent(v, fmt)))
        return ulp, float(diff), float(diff / max(abs(v), mpmath.ldexp(1, fmt.emin)))


def measure(
    kind: Kind,
    out: npt.NDArray[Any],
    overflow_codes: npt.NDArray[np.uint8],
    flush_codes: npt.NDArray[np.uint8],
    ref: Exact,
    fmt: Format,
    exact: tuple[Mpf, ...] | None = None,
) -> Measured:
    """Metrics of one output vector ``out`` (in the dtype) against the reference ``ref``.

    ``exact`` overrides the values taken from ``ref`` (for kinds that depend on a target).
    """
    import mpmath

    c = np.asarray(out, np.float64)
    exact = exact_values(kind, ref) if exact is None else exact
    errors = [element_error(float(ci), v, fmt, ref.bits) for ci, v in zip(c, exact, strict=True)]
    ulp, abs_err, rel_err = (np.array(col, np.float64) for col in zip(*errors, strict=True))
    rounded = np.array([round_to_format(v, fmt) for v in exact], np.float64)
    exact_zero = np.array([v == 0 or v == -mpmath.inf for v in exact], bool)
    overflow, underflow, benign, nan = classify(
        kind, c, rounded, exact_zero, overflow_codes, flush_codes
    )
    return Measured(c, exact, ulp, abs_err, rel_err, overflow, underflow, benign, nan)


def classify(
    kind: Kind,
    c: npt.NDArray[np.float64],
    rounded: npt.NDArray[np.float64],
    exact_zero: npt.NDArray[np.bool_],
    overflow_codes: npt.NDArray[np.uint8],
    flush_codes: npt.NDArray[np.uint8],
) -> tuple[Bools, Bools, Bools, Bools]:
    """``(overflow, underflow, benign, nan)`` masks of outputs ``c`` (any shape).

    ``rounded`` is each exact value correctly rounded to the format, ``exact_zero`` where the
    exact value is exactly 0 (or ``-inf``: a masked class); the codes come from the trace.  The
    rules are those of the module docstring; the fast tier uses this same function.
    """
    with np.errstate(invalid="ignore"):
        wrong = ~((c == rounded) | (np.isnan(c) & np.isnan(rounded)))
        if kind is Kind.SOFTMAX or kind.is_grad:
            flushed = c == 0
            looks_flushed = flushed & (rounded != 0)
        elif kind is Kind.CROSS_ENTROPY:  # -log of a probability that underflowed: +inf
            flushed = c == np.inf
            looks_flushed = flushed & np.isfinite(rounded)
        else:
            flushed = c == -np.inf
            looks_flushed = flushed & np.isfinite(rounded)
        traced_over = overflow_codes != 0
        traced_flush = flush_codes != 0
        overflow = wrong & (
            traced_over | (~traced_flush & ~looks_flushed & np.isinf(c) & np.isfinite(rounded))
        )
        underflow = wrong & ~overflow & (traced_flush | looks_flushed)
        # A correct flush exists only for probabilities: a log-domain -inf that is correctly
        # rounded comes from a value beyond the range (an overflow of the magnitude).
        probability = kind is Kind.SOFTMAX or kind.is_grad
        benign = ~wrong & flushed & ~exact_zero & ~traced_over & probability
    return overflow, underflow, benign, np.isnan(c) & wrong


def sum_error(computed: npt.NDArray[np.float64]) -> float:
    """``|sum(p) - 1|`` with the sum taken exactly (``math.fsum``) and rounded once."""
    if not np.isfinite(computed).all():
        return math.nan if np.isnan(computed).any() else math.inf
    return abs(math.fsum([*computed.tolist(), -1.0]))


def argmax_preserved(
    inputs: npt.NDArray[np.float64], computed: npt.NDArray[np.float64], eventful: bool = False
) -> bool:
    """Whether a maximal input logit still has the maximal output; False on NaN.

    A correctly rounded output may tie classes the input ranks apart (three probabilities of
    1/3 in float32): the top class still has the top output then, and the argmax is kept.  An
    output that overflowed or underflowed earns no such benefit of the doubt (every output
    ``-inf`` ties too): there the first maximal output must belong to a maximal input.
    """
    if np.isnan(computed).any():
        return False
    top = inputs == np.max(inputs)
    if eventful:
        return bool(top[int(np.argmax(computed))])
    return bool(np.max(computed[top]) == np.max(computed))


def findings(
    m: Measured,
    overflow_codes: npt.NDArray[np.uint8],
    flush_codes: npt.NDArray[np.uint8],
    nan_codes: npt.NDArray[np.uint8],
    args: npt.NDArray[np.float64],
    fmt: Format,
) -> tuple[Finding, ...]:
    """The events of one output, in words, with counts."""
    out: list[Finding] = []

    def add(
        kind: str, mask: npt.NDArray[np.bool_], codes: npt.NDArray[np.uint8], blind: str
    ) -> None:
        hit = np.flatnonzero(mask)
        if not hit.size:
            return
        hit_codes = codes[hit]
        if hit_codes.min() == hit_codes.max():  # the common case: one cause
            order = [int(hit_codes[0])]
        else:
            found, first = np.unique(hit_codes, return_index=True)  # by first occurrence
            order = found[np.argsort(first)].tolist()
        for code in order:
            where = hit if len(order) == 1 else hit[hit_codes == code]
            if code == Event.NONE:
                message = blind
            else:
                a = args[where][~np.isnan(args[where])]
                lo, hi = (float(a.min()), float(a.max())) if a.size else (math.nan, math.nan)
                message = describe_event(
                    Event(code), lo, hi, fmt.name, fmt.max, fmt.smallest_subnormal
                )
            event = "output" if code == Event.NONE else Event(code).name.lower()
            out.append(Finding(kind, event, message, len(where)))

    add(
        "overflow",
        m.overflow,
        overflow_codes,
        "the output is ±inf although the exact value is finite",
    )
    add(
        "underflow",
        m.underflow,
        flush_codes,
        "the output is 0 (or -inf) but the exact value rounds to a nonzero finite number",
    )
    add(
        "nan",
        m.nan,
        nan_codes,
        "NaN output"
        if fmt.has_inf
        else f"NaN output ({fmt.name} has no infinities: an overflow anywhere gives NaN)",
    )
    n_benign = int(m.benign.sum())
    if n_benign:
        out.append(
            Finding(
                "underflow_benign",
                "output",
                f"flushed to 0 correctly: the exact value is below half of {fmt.name}'s "
                f"smallest subnormal ({fmt.smallest_subnormal:.3g})",
                n_benign,
            )
        )
    return tuple(out)


def elements(
    m: Measured, inputs: npt.NDArray[np.float64] | None, rel_bound: Any, digits: int = 30
) -> tuple[Element, ...]:
    """Per-element detail for ``--per-element`` and ``explain``: each exact value with the
    digits its bound makes right, at most ``digits``.  ``rel_bound``: one relative bound for
    every value (see :class:`lsmcheck.reference.Exact`), or a list of each value's own."""
    n = len(m.exact)
    each = rel_bound if isinstance(rel_bound, list) else [rel_bound] * n
    shown = {b: certified_digits(b, digits) for b in dict.fromkeys(each)}
    rows = []
    for i, (c, v) in enumerate(zip(m.computed.tolist(), m.exact, strict=True)):
        flags = tuple(
            name
            for name, mask in (
                ("overflow", m.overflow),
                ("underflow", m.underflow),
                ("benign-underflow", m.benign),
                ("nan", m.nan),
            )
            if mask[i]
        )
        rows.append(
            Element(
                index=i,
                input=None if inputs is None else float(inputs[i]),
                computed=c,
                exact=format_exact(v, shown[each[i]]),
                ulp=float(m.ulp[i]),
                flags=flags,
            )
        )
    return tuple(rows)


def certified_digits(rel_bound: Any, most: int = 30) -> int:
    """How many significant digits of a value known to within ``rel_bound`` of itself a print
    may show (at most ``most``): rounded to them, it is within 0.6 of a unit in the last digit
    of the true value.  A 113-bit reference that cancellation left certified to 2**-80 holds
    23; printed to 30, its last five digits were noise."""
    import mpmath

    if rel_bound == 0:
        return most
    return max(1, min(most, int(mpmath.floor(-mpmath.log10(rel_bound))) - 1))


def format_exact(v: Mpf, digits: int = 30) -> str:
    """The reference value with ``digits`` significant digits (``inf``/``-inf``/``0``)."""
    import mpmath

    if mpmath.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    return str(mpmath.nstr(v, digits, min_fixed=-4, max_fixed=6, strip_zeros=False))
