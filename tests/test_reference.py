"""The reference against the independent 300-bit oracle, and its edges."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck.dtypes import FORMATS
from lsmcheck.reference import exact, round_to_format, ulp_exponent, undefined_reason
from tests import oracle

F64 = FORMATS["float64"]


def check_against_oracle(values: list[float], fmt_name: str) -> None:
    fmt = FORMATS[fmt_name]
    x = np.array(values, np.float64)
    ref = exact(x, fmt)
    sm, ls, lse = oracle.truth(values)
    for got, true in zip(ref.softmax, sm, strict=True):
        assert oracle.close(got, true, fmt_name), (values, got, true)
    for got, true in zip(ref.log_softmax, ls, strict=True):
        assert oracle.close(got, true, fmt_name), (values, got, true)
    assert oracle.close(ref.logsumexp, lse, fmt_name), (values, ref.logsumexp, lse)


def test_log_softmax_710_0_is_not_zero() -> None:
    # The example: x - lse at 200 digits returns 0; the true value is -4.476e-309.
    ref = exact(np.array([710.0, 0.0]), F64)
    assert mpmath.nstr(ref.log_softmax[0], 4) == "-4.476e-309"
    with mpmath.workdps(200):
        naive = mpmath.mpf(710) - mpmath.log(mpmath.exp(710) + 1)
        assert abs(naive) < mpmath.mpf("1e-190")  # the fixed-precision form has lost it
    check_against_oracle([710.0, 0.0], "float64")


@pytest.mark.parametrize(
    "values",
    [
        [2.0, 1.0, 0.1],
        [0.3452, -0.0267, 0.4066],
        [19.0, 20.0],
        [1e-15, 2e-15, 3e-15],
        [1000.0, 1001.0, 1002.0],
        [0.0, -50.0],
        [0.0, -800.0],
        [0.0, -1e308],
        [1e308, -1e308, 0.0],
        [-math.log(2), -math.log(2)],  # logsumexp cancels to ~1e-17
        [5e-324, 0.0],
        [1.0, -math.inf, 3.0],
        [7.0],
        [3.0, 3.0, 3.0],
        [-745.2, -745.2],
        [1.0, 9007199254740994.0],  # log_softmax[0] = -(2**53 + 1) - tiny: a float64 rounding tie
        [0.0, 0.0, -1e300],  # 1/2 - tiny: a power of two approached from below
    ],
)
@pytest.mark.parametrize("fmt", ["float16", "float32", "float64"])
def test_reference_matches_oracle(values: list[float], fmt: str) -> None:
    rounded = FORMATS[fmt].cast(np.array(values))
    if not np.isfinite(rounded[np.isfinite(values)]).all():
        pytest.skip("not representable in this format")
    check_against_oracle(rounded.astype(np.float64).tolist(), fmt)


finite_or_masked = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(-1e4, 1e4, allow_nan=False),
    st.just(-math.inf),
    st.sampled_from([0.0, 1.0, -1.0, 709.78, 88.72, 11.09, -745.13, -103.97, -17.33]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(finite_or_masked, min_size=1, max_size=8))
def test_reference_random_float64(values: list[float]) -> None:
    if not any(math.isfinite(v) for v in values):
        return
    check_against_oracle(values, "float64")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-60000, 60000, width=16), min_size=1, max_size=6))
def test_reference_random_float16(values: list[float]) -> None:
    check_against_oracle(values, "float16")


def test_masked_classes_are_exact() -> None:
    ref = exact(np.array([1.0, -math.inf, 1.0]), F64)
    assert ref.softmax == (0.5, 0, 0.5)
    assert ref.log_softmax[1] == -mpmath.inf
    assert ref.bits == 113


def test_precision_is_raised_when_lse_cancels() -> None:
    # lse(-ln2, -ln2) = -fl(ln2) + ln 2: a value ~1e-17 whose digits need more bits to settle.
    x = np.array([-math.log(2), -math.log(2)])
    ref = exact(x, F64, start_bits=64)
    check_against_oracle(x.tolist(), "float64")
    assert ref.bits >= 64


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([1.0, math.nan], "NaN logit at index 1"),
        ([1.0, math.inf], "+inf logit at index 1"),
        ([-math.inf, -math.inf], "no finite logit"),
    ],
)
def test_undefined_policy(values: list[float], reason: str) -> None:
    got = undefined_reason(np.array(values))
    assert got is not None and got.startswith(reason)
    assert exact(np.array(values), F64).undefined == got


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, width=64), st.sampled_from(sorted(FORMATS)))
def test_round_to_format_matches_numpy_cast(x: float, name: str) -> None:
    fmt = FORMATS[name]
    with np.errstate(over="ignore"):
        expected = float(fmt.cast(np.array([x]))[0])
    got = round_to_format(mpmath.mpf(x), fmt)
    assert got == expected or (math.isnan(got) and math.isnan(expected))  # e4m3fn overflow


@pytest.mark.parametrize(
    ("value", "fmt", "ulp"),
    [
        (1.0, "float64", 2.0**-52),
        (0.999, "float64", 2.0**-53),
        (2.0, "float16", 2.0**-9),
        (0.0, "float16", 2.0**-24),
        (2.0**-20, "float16", 2.0**-24),  # subnormal: the fixed quantum
        (5e-324, "float64", 5e-324),
        (65504.0, "float16", 32.0),
        (-3.0, "float32", 2.0**-22),
    ],
)
def test_ulp_exponent(value: float, fmt: str, ulp: float) -> None:
    assert 2.0 ** ulp_exponent(mpmath.mpf(value), FORMATS[fmt]) == ulp
    assert oracle.ulp(mpmath.mpf(value), fmt) == ulp


def test_round_to_format_edges() -> None:
    f16 = FORMATS["float16"]
    assert round_to_format(mpmath.mpf(65519.99), f16) == 65504.0
    assert round_to_format(mpmath.mpf(65520), f16) == math.inf  # the tie rounds to even: inf
    assert round_to_format(mpmath.mpf(2) ** -25, f16) == 0.0  # half the smallest subnormal
    assert round_to_format(mpmath.mpf(2) ** -25 * 1.0001, f16) == 2.0**-24
    assert round_to_format(-mpmath.mpf("1e-400"), F64) == 0.0
    assert math.copysign(1, round_to_format(-mpmath.mpf("1e-400"), F64)) == -1


# --- properties of the exact values --------------------------------------------------------

small_ints = st.lists(st.integers(-300, 300), min_size=1, max_size=6)


@settings(max_examples=80, deadline=None)
@given(small_ints, st.integers(-1000, 1000))
def test_shift_invariance(values: list[int], shift: int) -> None:
    # Integer logits shift exactly in float64, so softmax and log_softmax must not change.
    a = exact(np.array(values, np.float64), F64)
    b = exact(np.array([v + shift for v in values], np.float64), F64)
    for x, y in zip(a.softmax + a.log_softmax, b.softmax + b.log_softmax, strict=True):
        assert oracle.close(x, y, "float64")
    with mpmath.workprec(300):
        assert abs(b.logsumexp - a.logsumexp - shift) <= mpmath.mpf(2) ** -70 * (
            abs(b.logsumexp) + 1
        )


@settings(max_examples=80, deadline=None)
@given(st.lists(finite_or_masked, min_size=1, max_size=8))
def test_softmax_sums_to_one_and_matches_exp_log_softmax(values: list[float]) -> None:
    if not any(math.isfinite(v) for v in values):
        return
    ref = exact(np.array(values), F64)
    with mpmath.workprec(300):
        assert abs(mpmath.fsum(ref.softmax) - 1) <= mpmath.mpf(2) ** -75
        for p, lp in zip(ref.softmax, ref.log_softmax, strict=True):
            if mpmath.isfinite(lp) and abs(lp) > 1e6:
                continue  # exp amplifies lp's certified 2**-80 by |lp|: nothing left to compare
            # lp is certified to 2**-80 relative; exp turns that into |lp| * 2**-80 relative.
            tol = mpmath.mpf(2) ** -75 + (abs(lp) if mpmath.isfinite(lp) else 0) * 2.0**-79
            assert abs(mpmath.exp(lp) - p) <= abs(p) * tol


def test_settling_checks_the_interval_at_full_precision() -> None:
    # A value 2**-100 above float32's rounding tie between 1 and 1 + 2**-23: with a bound of
    # 2**-90 the interval straddles the tie, so it is not settled; 2**-60 above, it is.
    from lsmcheck.reference import _settled

    f32 = FORMATS["float32"]
    with mpmath.workprec(200):
        tie = 1 + mpmath.mpf(2) ** -24
        assert not _settled(tie + mpmath.mpf(2) ** -100, mpmath.mpf(2) ** -90, f32)
        assert _settled(tie + mpmath.mpf(2) ** -60, mpmath.mpf(2) ** -90, f32)


def test_a_masked_vector_evaluates_each_distinct_logit_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a mask of 4,000 equal logits (HF fills with float32's lowest, -3.4e38) took 3.2 s a row
    # in float32 log_softmax; each distinct value is now computed and checked once
    low = float(np.finfo(np.float32).min)
    x = np.array([1.5, -0.25, 0.0] + [low] * 4000)
    calls = []
    real_exp = mpmath.exp
    monkeypatch.setattr(mpmath, "exp", lambda v: calls.append(v) or real_exp(v))
    ref = exact(x, FORMATS["float32"])
    assert len(calls) <= 4 * (ref.bits // 113)  # 4 distinct logits per precision tried
    with mpmath.workprec(300):  # the values, independently: the masked terms vanish
        lse = mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in (1.5, -0.25, 0.0)))
        assert abs(ref.logsumexp - lse) <= abs(lse) * mpmath.mpf(2) ** -80
        masked = mpmath.mpf(low) - lse
        assert {mpmath.almosteq(v, masked, 2.0**-80) for v in ref.log_softmax[3:]} == {True}
        assert {v for v in ref.softmax[3:]} == {ref.softmax[3]} and 0 < ref.softmax[3] < 1e-300
