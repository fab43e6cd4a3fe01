"""bfloat16 and float8: rounding, ulp, range and overflow against an independent computation.

``independent_round`` below rounds with exact rational arithmetic (``fractions.Fraction``),
written from the formats' definitions (OCP 8-bit floating point spec; bfloat16 = float32's
exponent range with an 8-bit significand), not from lsmcheck's code.
"""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck import Options, Status, Vector, audit
from lsmcheck.dtypes import FORMATS, accumulate_all, get_format
from lsmcheck.errors import UsageError
from lsmcheck.metrics import element_error
from lsmcheck.reference import round_to_format, ulp_exponent
from tests import oracle

NEW = ("bfloat16", "float8_e4m3fn", "float8_e5m2")

# name: (p, emin, emax, largest finite value, overflow gives NaN)
SPEC = {
    "bfloat16": (8, -126, 127, Fraction(2**8 - 1, 2**7) * 2**127, False),
    "float8_e4m3fn": (4, -6, 8, Fraction(448), True),  # S.1111.111 is NaN: 480 is not a number
    "float8_e5m2": (3, -14, 15, Fraction(57344), False),
}


def independent_round(x: float, name: str) -> float:
    """``x`` rounded to nearest, ties to even, on the p-bit grid; beyond max: inf or NaN."""
    p, emin, _, largest, nan_on_overflow = SPEC[name]
    if math.isnan(x):
        return math.nan
    if math.isinf(x):
        return math.nan if nan_on_overflow else x
    v = Fraction(x)
    if v == 0:
        return x
    a = abs(v)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2**e <= a < 2**(e+2)
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    quantum = Fraction(2) ** (max(e, emin) - p + 1)
    n = a / quantum
    k = math.floor(n)
    rest = n - k
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and k % 2 == 1):
        k += 1
    r = k * quantum
    if r > largest:
        return math.nan if nan_on_overflow else math.copysign(math.inf, x)
    return math.copysign(float(r), x)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (
        a == b and math.copysign(1, a) == math.copysign(1, b)
    )


def test_format_parameters_match_ml_dtypes_and_the_spec() -> None:
    for name in NEW:
        fmt = FORMATS[name]
        p, emin, emax, largest, nan_on_overflow = SPEC[name]
        info = ml_dtypes.finfo(fmt.dtype)
        assert (fmt.p, fmt.emin, fmt.emax) == (p, emin, emax)
        assert fmt.max == float(largest) == float(info.max)
        assert fmt.smallest_normal == float(info.tiny) == 2.0**emin
        assert fmt.smallest_subnormal == float(info.smallest_subnormal) == 2.0 ** (emin - p + 1)
        assert fmt.has_inf is not nan_on_overflow


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (448.0, 448.0),
        (449.0, 448.0),
        (463.99, 448.0),
        (464.0, 448.0),  # the tie between 448 (significand 1.110, even) and 480: to even
        (464.0001, math.nan),
        (465.0, math.nan),
        (480.0, math.nan),
        (-465.0, math.nan),
        (1e30, math.nan),
        (math.inf, math.nan),
        (-math.inf, math.nan),
        (2.0**-9, 2.0**-9),  # the smallest subnormal
        (2.0**-10, 0.0),  # half of it: a tie, to even (0)
        (2.0**-10 * 1.0000001, 2.0**-9),
        (3 * 2.0**-10, 2.0**-8),  # 1.5 quanta: a tie, to even (2 quanta)
    ],
)
def test_e4m3fn_nan_on_overflow_rule(x: float, expected: float) -> None:
    fmt = FORMATS["float8_e4m3fn"]
    assert same(independent_round(x, "float8_e4m3fn"), expected)
    assert same(round_to_format(mpmath.mpf(x), fmt), expected)
    assert same(float(fmt.cast(np.array([x]))[0]), expected)
    # ml_dtypes itself (from float32, where x is exactly representable or not a tie):
    if math.isinf(x) or abs(x) < 1e9:
        assert same(float(np.array([x], np.float32).astype(fmt.dtype)[0]), expected)


def test_e4m3fn_arithmetic_overflows_to_nan() -> None:
    a = np.array([448.0], ml_dtypes.float8_e4m3fn)
    assert np.isnan((a + a)[0])
    assert np.isnan(np.exp(np.array([7.0], ml_dtypes.float8_e4m3fn))[0])  # e^7 = 1096
    assert float(np.exp(np.array([6.0], ml_dtypes.float8_e4m3fn))[0]) == 416.0  # e^6 = 403.4


def test_cast_rounds_once_where_ml_dtypes_rounds_twice() -> None:
    # 1 + 2**-8 is the bfloat16 midpoint between 1 and 1 + 2**-7; the 2**-30 puts x above it.
    x = 1 + 2.0**-8 + 2.0**-30
    assert independent_round(x, "bfloat16") == 1 + 2.0**-7
    assert float(FORMATS["bfloat16"].cast(np.array([x]))[0]) == 1 + 2.0**-7
    # ml_dtypes goes through float32, which lands on the midpoint, then ties to even:
    assert float(np.array([x]).astype(ml_dtypes.bfloat16)[0]) == 1.0


def values_near(name: str) -> st.SearchStrategy[float]:
    fmt = FORMATS[name]
    scale = st.sampled_from(
        [fmt.smallest_subnormal, fmt.smallest_normal, 1.0, fmt.max / 2, fmt.max]
    )
    return st.one_of(
        st.floats(allow_nan=False, width=64),
        st.builds(lambda s, f: s * f, scale, st.floats(-2.5, 2.5)),
        # exact ties and near-ties on the grid: k/2 quanta, nudged by one float64 ulp
        st.builds(
            lambda k, e, nudge: math.ldexp(k + 0.5, e) * (1 + nudge * 2.0**-52),
            st.integers(-(2**fmt.p), 2**fmt.p),
            st.integers(fmt.emin - fmt.p - 1, fmt.emax - fmt.p + 2),
            st.sampled_from([-1, 0, 1]),
        ),
    )


@pytest.mark.parametrize("name", NEW)
def test_cast_and_reference_round_like_the_independent_rounding(name: str) -> None:
    fmt = FORMATS[name]

    @settings(max_examples=250, deadline=None)
    @given(values_near(name))
    def check(x: float) -> None:
        expected = independent_round(x, name)
        assert same(float(fmt.cast(np.array([x]))[0]), expected), x
        got = round_to_format(mpmath.mpf(x), fmt)  # mpmath has no -0: compare values
        assert got == expected or (math.isnan(got) and math.isnan(expected)), x

    check()


@pytest.mark.parametrize(
    ("name", "value", "ulp"),
    [
        ("bfloat16", 1.0, 2.0**-7),
        ("bfloat16", 0.999, 2.0**-8),
        ("bfloat16", 0.0, 2.0**-133),
        ("bfloat16", 2.0**-130, 2.0**-133),  # subnormal: the fixed quantum
        ("bfloat16", 3.3e38, 2.0**120),
        ("float8_e4m3fn", 1.0, 2.0**-3),
        ("float8_e4m3fn", 448.0, 32.0),
        ("float8_e4m3fn", 0.01, 2.0**-9),  # below 2**-6: subnormal
        ("float8_e4m3fn", 0.0, 2.0**-9),
        ("float8_e5m2", 1.0, 2.0**-2),
        ("float8_e5m2", 57344.0, 2.0**13),
        ("float8_e5m2", 2.0**-15, 2.0**-16),
    ],
)
def test_ulp_of_new_formats(name: str, value: float, ulp: float) -> None:
    assert 2.0 ** ulp_exponent(mpmath.mpf(value), FORMATS[name]) == ulp
    assert oracle.ulp(mpmath.mpf(value), name) == ulp


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(NEW), st.floats(1e-45, 1e38))
def test_ulp_exponent_matches_oracle(name: str, value: float) -> None:
    assert 2.0 ** ulp_exponent(mpmath.mpf(value), FORMATS[name]) == oracle.ulp(
        mpmath.mpf(value), name
    )


def test_nan_is_the_correct_rounding_beyond_e4m3fn_range() -> None:
    fmt = FORMATS["float8_e4m3fn"]
    # exact -500 rounds to NaN in float8_e4m3fn: a NaN output is correctly rounded
    assert element_error(math.nan, mpmath.mpf(-500), fmt, 113) == (0.0, 0.0, 0.0)
    # ... but not where the exact value is a number of the format
    assert math.isinf(element_error(math.nan, mpmath.mpf(-400), fmt, 113)[0])
    # IEEE formats never round a finite value to NaN
    assert math.isinf(element_error(math.nan, mpmath.mpf(1e6), FORMATS["float16"], 113)[0])


def one(values: list[float], algorithm: str, dtype: str):  # type: ignore[no-untyped-def]
    opts = Options(dtypes=(dtype,), algorithms=(algorithm,), per_element=True)
    (r,) = audit([Vector("t", 0, 1, np.array(values))], opts).results
    return r


def test_e4m3fn_overflow_is_classified_as_overflow_with_its_cause() -> None:
    # e^7 = 1096 > 448: NaN, not inf.  Both outputs are NaN; both are overflows, caused by exp.
    r = one([7.0, 0.0], "softmax_naive", "float8_e4m3fn")
    assert (r.overflow, r.nan, r.underflow) == (2, 2, 0)
    kinds = {f.kind: f.message for f in r.findings}
    assert "exp(7) overflowed" in kinds["overflow"] and "6.10" in kinds["overflow"]  # ln 448
    assert kinds["nan"] == "an overflow gave NaN (float8_e4m3fn has no infinities)"
    stable = one([7.0, 0.0], "softmax_stable", "float8_e4m3fn")
    assert (stable.overflow, stable.nan) == (0, 0)


def test_masked_classes_cannot_be_stored_in_e4m3fn() -> None:
    r = one([1.0, -math.inf], "softmax_stable", "float8_e4m3fn")
    assert r.status is Status.UNREPRESENTABLE
    assert r.reason == "x[1]=-inf: float8_e4m3fn has no infinities"
    e5 = one([1.0, -math.inf], "softmax_stable", "float8_e5m2")  # e5m2 has infinities
    assert e5.audited and e5.max_ulp == 0.0


def test_logit_beyond_range_is_unrepresentable() -> None:
    r = one([465.0, 0.0], "softmax_stable", "float8_e4m3fn")
    assert r.status is Status.UNREPRESENTABLE and "overflows float8_e4m3fn (max 448)" in (
        r.reason or ""
    )
    assert one([464.0, 0.0], "softmax_stable", "float8_e4m3fn").audited  # 464 -> 448
    # the reason shows the input as given: 464 itself would round to 448 (found by a review)
    r = one([464.000000001, 0.0], "softmax_stable", "float8_e4m3fn")
    assert r.reason == "x[0]=464.000000001 overflows float8_e4m3fn (max 448)"


def test_log_of_zero_is_nan_in_e4m3fn_and_says_why() -> None:
    """e4m3fn holds log(0) = -inf as NaN.  For [7, 0], exp(-7) = 9.1e-4 is below half of the
    smallest subnormal 2**-9, so the probability flushes and its log is NaN: the finding names
    that cause (it once said "an overflow anywhere gives NaN", with nothing overflowed)."""
    assert math.exp(-7) < 2.0**-9 / 2
    r = one([7.0, 0.0], "log_of_softmax", "float8_e4m3fn")
    assert r.nan == 1 and r.overflow == 0 and r.underflow == 1
    (nan,) = [f for f in r.findings if f.kind == "nan"]
    assert nan.event == "nan_from_flush"
    assert nan.message == (
        "the -inf of log(0) after an underflow is NaN in float8_e4m3fn (it has no infinities)"
    )


def test_mixed_precision_labels() -> None:
    fmt = get_format("float16/acc=float32")
    assert fmt.name == "float16/acc=float32" and fmt.p == 11 and fmt.accumulate is not None
    assert fmt.storage.name == "float16" and fmt.acc_dtype == np.float32
    with pytest.raises(UsageError, match="must be wider"):
        get_format("float32/acc=float16")
    with pytest.raises(UsageError, match="must be wider"):
        get_format("bfloat16/acc=float16")  # more bits, but float16's range is too small
    with pytest.raises(UsageError, match="unknown dtype 'float12'"):
        get_format("float16/acc=float12")
    assert accumulate_all(("float16", "bfloat16", "float32", "float64"), "float32") == (
        "float16/acc=float32",
        "bfloat16/acc=float32",
        "float32",
        "float64",
    )
    assert accumulate_all(("float8_e4m3fn",), "float16") == ("float8_e4m3fn/acc=float16",)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("bfloat16", [0.0, -90.0]),  # e^-90 = 8.2e-40: a bfloat16 subnormal probability
        ("bfloat16", [2.0, 1.0, 0.1]),
        ("bfloat16", [0.0, -50.0]),
        ("float8_e4m3fn", [0.0, -6.0]),  # e^-6 = 0.0025 < 2**-6: subnormal
        ("float8_e4m3fn", [448.0, -448.0]),  # log_softmax[1] = -896: beyond the range (NaN)
        ("float8_e4m3fn", [3.0, 3.0, 3.0]),
        ("float8_e5m2", [0.0, -10.0]),  # e^-10 = 4.5e-5 < 2**-14: subnormal
        ("float8_e5m2", [1.0, -math.inf, 3.0]),
    ],
)
def test_reference_of_new_formats_matches_oracle(name: str, values: list[float]) -> None:
    from lsmcheck.reference import exact

    fmt = FORMATS[name]
    x = fmt.cast(np.array(values)).astype(np.float64)
    ref = exact(x, fmt)
    sm, ls, lse = oracle.truth(x.tolist())
    for got, true in [*zip(ref.softmax, sm, strict=True), *zip(ref.log_softmax, ls, strict=True)]:
        assert oracle.close(got, true, name), (values, got, true)
    assert oracle.close(ref.logsumexp, lse, name)
    # what the reference rounds to, against the independent rounding
    for v in [*ref.softmax, *ref.log_softmax]:
        if mpmath.isfinite(v):
            with mpmath.workprec(200):
                as_float = float(v)  # within 2**-200 relative: rounds like v unless on a tie
            assert same(round_to_format(v, fmt), independent_round(as_float, name)) or (
                round_to_format(v, fmt) == independent_round(as_float, name)
            )


def test_e4m3fn_shift_overflow_spoils_the_row() -> None:
    # x - max = -896 overflows float8_e4m3fn to NaN (an IEEE format would give -inf, whose exp
    # is 0).  Element 1's exact log-probability, -896, is itself beyond the range: NaN is its
    # correct rounding.  Element 0 (exact -7.4e-390, rounds to -0) gets NaN through the sum.
    r = one([448.0, -448.0], "log_softmax_stable", "float8_e4m3fn")
    assert r.elements is not None
    assert math.isnan(r.elements[1].computed) and r.elements[1].ulp == 0.0
    assert r.elements[1].flags == ()
    assert r.elements[0].flags == ("overflow", "nan")
    assert (r.overflow, r.nan) == (1, 1)
    (over,) = [f for f in r.findings if f.kind == "overflow"]
    assert over.message == "x - max overflowed at x=-448 (float8_e4m3fn max 448)"


@pytest.mark.parametrize(
    "algorithm", ["logsumexp_stable", "logsumexp_log1p", "softmax_online", "softmax_online_blocked"]
)
def test_e4m3fn_shift_overflow_is_named_by_every_shifted_form(algorithm: str) -> None:
    # logsumexp (one output per row) skipped tracing x - max, and the online forms compute it
    # in their first pass: both blamed exp(448) or the sum; -96 - 384 = -480 is beyond 448
    for values, lowest in (([448.0, -448.0], -448), ([400.0, -100.0, 1.0], -96)):
        r = one(values, algorithm, "float8_e4m3fn")
        messages = [f.message for f in r.findings if f.kind == "overflow"]
        assert messages == [f"x - max overflowed at x={lowest} (float8_e4m3fn max 448)"], messages
