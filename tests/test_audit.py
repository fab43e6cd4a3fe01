"""The engine end to end: every algorithm x dtype against the independent oracle, and the
overflow / underflow / NaN classification on vectors whose fate is known by hand."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck import Options, Status, Thresholds, Vector, audit
from lsmcheck.algorithms import BUILTINS
from lsmcheck.dtypes import FORMATS
from lsmcheck.results import Result
from tests import oracle

SEEDS = [
    [2.0, 1.0, 0.1],
    [0.3452, -0.0267, 0.4066],
    [0.4798, -0.6728, 1.1408],
    [19.0, 20.0],
    [1e-15, 2e-15, 3e-15],
    [1000.0, 1001.0, 1002.0],
    [0.0, -50.0],
    [1.0, -math.inf, 3.0],
    [-17.5, -17.5],
    [-800.0, -800.0],
]


def one(values: list[float], algorithm: str, dtype: str) -> Result:
    opts = Options(dtypes=(dtype,), algorithms=(algorithm,), per_element=True)
    (r,) = audit([Vector("t", 0, 1, np.array(values))], opts).results
    return r


def check_ulps(r: Result, values: list[float]) -> None:
    """Every reported exact and ulp against the oracle (0.01 ulp; 1e-20 relative)."""
    rounded = FORMATS[r.dtype].cast(np.array(values)).astype(np.float64).tolist()
    sm, ls, lse = oracle.truth(rounded)
    truth = {"softmax": sm, "log_softmax": ls, "logsumexp": [lse]}[r.kind]
    assert r.elements is not None
    for e, true in zip(r.elements, truth, strict=True):
        expected = oracle.ulp_error(e.computed, true, r.dtype)
        if math.isinf(expected):
            assert math.isinf(e.ulp), (r.algorithm, r.dtype, e)
        else:
            assert abs(e.ulp - expected) <= 0.01, (r.algorithm, r.dtype, e, expected)
        if e.exact not in ("inf", "-inf"):
            assert oracle.close(__import__("mpmath").mpf(e.exact), true, r.dtype) or _digits_ok(
                e.exact, true
            )
    assert r.max_ulp == max(e.ulp for e in r.elements)


def _digits_ok(text: str, true: object) -> bool:
    import mpmath

    with mpmath.workprec(300):
        v = mpmath.mpf(text)
        return bool(abs(v - true) <= abs(true) * mpmath.mpf("1e-20"))  # type: ignore[operator]


@pytest.mark.parametrize("values", SEEDS)
@pytest.mark.parametrize("dtype", sorted(FORMATS))
@pytest.mark.parametrize("algorithm", sorted(BUILTINS))
def test_every_algorithm_and_dtype_matches_oracle(
    values: list[float], dtype: str, algorithm: str
) -> None:
    r = one(values, algorithm, dtype)
    if not r.audited:
        assert r.status in (Status.UNREPRESENTABLE, Status.UNDEFINED)
        return
    check_ulps(r, values)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-120, 120, allow_nan=False), min_size=1, max_size=6),
    st.sampled_from(sorted(FORMATS)),
    st.sampled_from(sorted(BUILTINS)),
)
def test_random_vectors_match_oracle(values: list[float], dtype: str, algorithm: str) -> None:
    r = one(values, algorithm, dtype)
    if r.audited:
        check_ulps(r, values)


def test_exact_has_30_digits() -> None:
    r = one([2.0, 1.0, 0.1], "softmax_stable", "float64")
    assert r.elements is not None
    # mpmath at 300 bits, from float64(0.1) = 0.1000000000000000055511151231257827...:
    # e^2 / (e^2 + e + e^0.1000000000000000055511151231257827) = 0.65900113888596790655344...
    assert r.elements[0].exact.startswith("0.6590011388859679065534")
    digits = r.elements[0].exact.replace("0.", "", 1).lstrip("0")
    assert len(digits) >= 30


def test_each_exact_value_shows_the_digits_of_its_own_bound() -> None:
    # [-ln 2, -ln 2] in float32: logsumexp = -ln 2 + ln 2 cancels (about -1.9e-9), certified
    # to 23 digits at 113 bits; the probabilities are exactly 1/2 and were printed to 23
    # digits beside it, the vector's loosest bound
    x = [-math.log(2), -math.log(2)]
    soft = one(x, "softmax_stable", "float32")
    lse = one(x, "logsumexp_stable", "float32")
    assert soft.elements is not None and lse.elements is not None
    assert soft.elements[0].exact == "0." + "5" + "0" * 29
    assert len(lse.elements[0].exact.split("e")[0].replace("-", "").replace(".", "")) == 23


# --- classification, on vectors whose fate follows from the formats' limits --------------


def test_naive_softmax_overflows_float16_at_19_20() -> None:
    # exp(19) and exp(20) exceed 65504 (ln 65504 = 11.09): inf/inf = NaN for both.
    r = one([19.0, 20.0], "softmax_naive", "float16")
    assert (r.overflow, r.nan, r.underflow) == (2, 2, 0)
    assert math.isinf(r.max_ulp or 0)
    messages = [f.message for f in r.findings]
    assert any("exp(19..20) overflowed" in m and "11.09" in m for m in messages)
    assert any("inf/inf" in m for m in messages)
    stable = one([19.0, 20.0], "softmax_stable", "float16")
    assert (stable.overflow, stable.nan) == (0, 0) and (stable.max_ulp or 9) <= 1


def test_float32_naive_survives_19_20() -> None:
    r = one([19.0, 20.0], "softmax_naive", "float32")
    assert (r.overflow, r.nan) == (0, 0) and (r.max_ulp or 9) < 2


def test_all_exps_flushed_is_an_underflow_and_nan() -> None:
    # float16: exp(-17.5) = 2.5e-8 < half the smallest subnormal (2.98e-8): 0/0.
    r = one([-17.5, -17.5], "softmax_naive", "float16")
    assert (r.underflow, r.nan, r.overflow) == (2, 2, 0)
    assert any("0/0" in f.message for f in r.findings)


def test_log_softmax_naive_sum_flush_gives_plus_inf() -> None:
    # float64: exp(-800) = 0, log(0) = -inf, x - (-inf) = +inf; exact -ln 2: an underflow.
    r = one([-800.0, -800.0], "log_softmax_naive", "float64")
    assert (r.underflow, r.overflow) == (2, 0)
    assert r.elements is not None and r.elements[0].computed == math.inf


def test_log_of_softmax_is_minus_inf_where_log_softmax_is_finite() -> None:
    r = one([0.0, -50.0], "log_of_softmax", "float16")
    assert r.underflow == 1 and r.elements is not None
    assert r.elements[1].computed == -math.inf
    assert any(
        f.message.startswith("log(0) = -inf: the probability exp(-50) underflowed")
        for f in r.findings
    )
    ok = one([0.0, -50.0], "log_softmax_stable", "float16")
    assert ok.underflow == 0 and ok.elements is not None and ok.elements[1].computed == -50


def test_correct_flush_is_benign() -> None:
    # float64: softmax_1 = e^-800 / (1 + e^-800) is below half the smallest subnormal.
    r = one([0.0, -800.0], "softmax_stable", "float64")
    assert (r.underflow, r.underflow_benign) == (0, 1)
    assert r.max_ulp is not None and r.max_ulp < 1


def test_correctly_rounded_infinity_is_not_an_overflow() -> None:
    # float16: x - max = -120000 rounds to -inf, and so does the exact -120000.
    r = one([-60000.0, 60000.0], "log_softmax_stable", "float16")
    assert r.overflow == 0 and r.max_ulp == 0.0
    assert (r.underflow, r.underflow_benign) == (0, 0)  # a correct -inf is not a flush


def test_masked_class_has_zero_error() -> None:
    for alg in ("softmax_stable", "log_softmax_stable", "log_of_softmax"):
        r = one([1.0, -math.inf, 3.0], alg, "float32")
        assert r.elements is not None and r.elements[1].ulp == 0.0, alg
        assert (r.overflow, r.underflow, r.nan) == (0, 0, 0)


def test_unrepresentable_input() -> None:
    r = one([70000.0, 1.0], "softmax_stable", "float16")
    assert r.status is Status.UNREPRESENTABLE and r.max_ulp is None
    assert r.reason == "x[0]=70000 overflows float16 (max 65504)"


@pytest.mark.parametrize("values", [[1.0, math.nan], [math.inf, 0.0], [-math.inf, -math.inf]])
def test_undefined_vectors_get_no_figures(values: list[float]) -> None:
    r = one(values, "softmax_stable", "float64")
    assert r.status is Status.UNDEFINED and r.max_ulp is None and r.reason


def test_a_chunk_mixing_plain_and_skipped_vectors_skips_each_alone() -> None:
    # the chunk is checked at once when every logit is finite; one that is not makes each
    # vector be checked alone, and the plain ones come out as when audited by themselves
    rows = [[2.0, 1.0, 0.1], [70000.0, 1.0], [1.0, math.nan], [], [-math.inf, -math.inf]]
    vectors = [Vector("t", i, None, np.array(r, np.float64)) for i, r in enumerate(rows)]
    opts = Options(algorithms=("softmax_stable",), dtypes=("float16", "float64"))
    report = audit(vectors, opts)
    status = {(r.vector, r.dtype): r.status for r in report.results}
    assert status == {
        (0, "float16"): Status.PASS, (0, "float64"): Status.PASS,
        (1, "float16"): Status.UNREPRESENTABLE, (1, "float64"): Status.PASS,
        (2, "float16"): Status.UNDEFINED, (2, "float64"): Status.UNDEFINED,
        (3, "float16"): Status.UNDEFINED, (3, "float64"): Status.UNDEFINED,
        (4, "float16"): Status.UNDEFINED, (4, "float64"): Status.UNDEFINED,
    }  # fmt: skip
    alone = audit(vectors[:1], opts)
    assert [r.max_ulp for r in report.results if r.vector == 0] == [
        r.max_ulp for r in alone.results
    ]


def test_an_empty_chunk_has_an_empty_outcome() -> None:
    from lsmcheck.audit import audit_chunk

    outcome = audit_chunk([], Options())
    assert outcome.results == () and outcome.elements == 0


def test_sum_error_and_argmax() -> None:
    r = one([19.0, 20.0], "softmax_naive", "float16")
    assert r.argmax_preserved is False and r.sum_error is not None and math.isnan(r.sum_error)
    s = one([2.0, 1.0, 0.1], "softmax_stable", "float64")
    assert s.argmax_preserved is True and s.sum_error is not None and s.sum_error < 1e-15
    lse = one([2.0, 1.0, 0.1], "logsumexp_stable", "float64")
    assert lse.argmax_preserved is None and lse.sum_error is None


def test_gate_decides_status_and_exit_code() -> None:
    v = [Vector("t", 0, 1, np.array([19.0, 20.0]))]
    passing = audit(v, Options(dtypes=("float16",)))
    assert passing.passed and passing.exit_code == 0
    gated = audit(
        v, Options(dtypes=("float16",), thresholds=Thresholds(fail_on=frozenset({"overflow"})))
    )
    assert not gated.passed and gated.exit_code == 1
    failed = [r for r in gated.results if r.status is Status.FAIL]
    assert {r.algorithm for r in failed} == {
        "softmax_naive",
        "log_softmax_naive",
        "logsumexp_naive",
    }
    assert failed[0].failures == ("overflow 2 > 0",)
    ulp_gate = audit(v, Options(dtypes=("float64",), thresholds=Thresholds(max_ulp=1.0)))
    assert any(r.failures and r.failures[0].startswith("max_ulp") for r in ulp_gate.results)


def test_results_are_in_input_order() -> None:
    vs = [Vector("t", i, i + 1, np.array(v)) for i, v in enumerate([[1.0, 2.0], [3.0], [4.0, 5.0]])]
    rep = audit(vs, Options(dtypes=("float32", "float64"), algorithms=("softmax_stable",)))
    assert [(r.vector, r.dtype) for r in rep.results] == [
        (0, "float32"),
        (0, "float64"),
        (1, "float32"),
        (1, "float64"),
        (2, "float32"),
        (2, "float64"),
    ]


def test_correctly_rounded_ties_keep_the_argmax() -> None:
    # float32 rounds all three probabilities of 1e-15,2e-15,3e-15 to 0.33333334: the top class
    # still has the top output.
    r = one([1e-15, 2e-15, 3e-15], "softmax_stable", "float32")
    assert r.elements is not None and len({e.computed for e in r.elements}) == 1
    assert r.argmax_preserved is True


def test_fail_on_unaudited() -> None:
    v = [Vector("t", 0, 1, np.array([70000.0, 1.0])), Vector("t", 1, 2, np.array([np.nan, 1.0]))]
    plain = audit(v, Options(dtypes=("float16",), algorithms=("softmax_stable",)))
    assert plain.passed and not plain.gated and plain.audited == 0
    strict = Options(
        dtypes=("float16",),
        algorithms=("softmax_stable",),
        thresholds=Thresholds(fail_on=frozenset({"unaudited"})),
    )
    gated = audit(v, strict)
    assert gated.gated and not gated.passed
    assert [r.failures[0].split(":")[0] for r in gated.results] == ["not audited"] * 2


def test_an_overflowed_tie_does_not_keep_the_argmax() -> None:
    # float32: exp(1001) overflows, every output is -inf; the tie is not the rounded answer.
    r = one([1000.0, 1001.0], "log_softmax_naive", "float32")
    assert r.elements is not None and {e.computed for e in r.elements} == {-math.inf}
    assert r.argmax_preserved is False


@pytest.mark.parametrize("reference", ["auto", "mpmath"])
@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([0.0, -104.0], "float32"),  # 6.8e-46 flushed to 0, correctly: it read 1
        ([0.0, -200.0, -3.0], "float32"),
        ([0.0, -12.0, -13.5, -9.0], "float16"),  # subnormal outputs, correctly rounded
        ([0.0, -800.0], "float64"),  # 3.7e-348 flushed to 0: abs 0 beside rel 1
    ],
)
def test_the_relative_error_is_floored_at_the_smallest_normal(
    values: list[float], dtype: str, reference: str
) -> None:
    # |computed - exact| / max(|exact|, 2**emin): below the smallest normal the format's spacing
    # is absolute, so a correctly rounded output is within 2**-p there as above it, and a
    # --max-rel-error gate no longer fails correct flushes and subnormals (review 10)
    fmt = FORMATS[dtype]
    opts = Options(
        algorithms=("softmax_stable",),
        dtypes=(dtype,),
        per_element=True,
        reference=reference,
        thresholds=Thresholds(max_rel_error=2.0**-fmt.p),
    )
    (r,) = audit([Vector("v", 0, None, np.array(values))], opts).results
    assert r.elements is not None and r.max_rel_error is not None
    with mpmath.workprec(400):  # the exact softmax, independently
        xs = [mpmath.mpf(v) for v in values]
        total = mpmath.fsum(mpmath.exp(x) for x in xs)
        floor = mpmath.mpf(2) ** fmt.emin
        want = max(
            abs(mpmath.mpf(e.computed) - mpmath.exp(x) / total) / max(mpmath.exp(x) / total, floor)
            for e, x in zip(r.elements, xs, strict=True)
        )
    assert r.max_rel_error == pytest.approx(float(want), rel=2.0**-9)
    assert r.status is Status.PASS  # every output is the correctly rounded value


def test_row_stats_argmax_agrees_with_metrics_row_by_row() -> None:
    """The batched argmax check (a gather where each row has one maximal input, a mask where
    not) against metrics.argmax_preserved, one row at a time: ties, NaN and inf included."""
    from lsmcheck.algorithms import Kind
    from lsmcheck.measure import _row_stats
    from lsmcheck.metrics import argmax_preserved

    rng = np.random.default_rng(11)
    for trial in range(60):
        b, n = int(rng.integers(1, 12)), int(rng.integers(1, 6))
        x = rng.integers(-2, 3, (b, n)).astype(np.float64)  # small integers: many ties
        c = rng.integers(-2, 3, (b, n)).astype(np.float64)
        if trial % 3 == 0:
            x[rng.random((b, n)) < 0.1] = rng.choice([np.nan, np.inf, -np.inf])
            c[rng.random((b, n)) < 0.1] = rng.choice([np.nan, np.inf, -np.inf])
        if trial % 4 == 0:  # one maximal input per row: the gather
            x[np.arange(b), rng.integers(0, n, b)] = 9.0
        c[np.isnan(x).any(axis=1), 0] = np.nan  # a NaN input gives a NaN output
        nan = np.isnan(c)
        events = rng.random((b, n)) < 0.2
        none = np.zeros((b, n), bool)
        rows = _row_stats(Kind.SOFTMAX, x, c, np.abs(c), np.abs(c), np.abs(c),
                          events, none, none, nan)  # fmt: skip
        want = [
            False if nan[r].any() else argmax_preserved(x[r], c[r], bool(events[r].any()))
            for r in range(b)
        ]
        assert rows.argmax == want, (x, c)
    # a row without a maximal input (NaN) beside one with two: one per row on average only
    x = np.array([[np.nan, 1.0], [2.0, 2.0]])
    c = np.array([[np.nan, 0.5], [0.1, 0.9]])
    none = np.zeros(x.shape, bool)
    rows = _row_stats(Kind.SOFTMAX, x, c, c, c, c, none, none, none, np.isnan(c))
    assert rows.argmax == [False, True]
