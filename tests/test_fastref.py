"""The fast certified tier against the mpmath-everywhere path (``reference="mpmath"``).

For every vector, algorithm and dtype the two paths must agree on the overflow / underflow /
benign / NaN counts, the findings and the argmax check, and every element's ULP error must agree
to within 0.01 ulp (or 2**-50 relative for errors too large for float64 to hold to 0.01).  The
building blocks are checked against mpmath at 300 bits.
"""

from __future__ import annotations

import dataclasses
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck import Options, Vector, audit
from lsmcheck.ddkernels import REL_EXP_DD, exp_dd, log1p_dd
from lsmcheck.dtypes import FORMATS
from lsmcheck.fastref import FAST_FORMATS, REL_LIBM, fast_reference
from lsmcheck.reference import exact
from lsmcheck.report import Report
from lsmcheck.results import Result

INF = math.inf

#: Vectors chosen to sit on every edge the fast tier's bound has to settle.
ADVERSARIAL: list[list[float]] = [
    # huge spreads: e**-1e4 is far below float64's range; x - m beyond float64
    [0.0, -1e4],
    [0.0, -800.0],
    [0.0, -745.2],
    [0.0, -744.5],
    [0.0, -708.5],
    [0.0, -760.0],
    [0.0, -763.0],
    [0.0, -770.0, -1e4],
    [0.0, -756.0, -800.0],
    [1e308, -1e308],
    [1.7e308, 1.7e308, -1.7e308],
    [3e38, -3e38, 0.0],
    [60000.0, -60000.0],
    [710.0, 0.0],
    [1e-300, 0.0],
    [5e-324, 0.0, -5e-324],
    # ties: exact powers of two and exact thirds; just below 1/2
    [5.0, 5.0, 5.0],
    [0.0, 0.0],
    [1.0, 1.0, 1.0, 1.0],
    [0.0, 0.0, -1000.0],
    [0.0, 0.0, -30.0],
    [-17.5, -17.5],
    [3.0],
    [3.0, -INF, -INF],
    [0.0, -INF],
    # masks with huge finite values (Hugging Face fills with float32's lowest); confident rows
    [0.5, -3.4028234663852886e38, -3.4028234663852886e38, 1.5],
    [2.0, -1e30, -1e300, -1e30],
    [40.0, 0.1, -0.2, 0.3],
    [80.0, 0.1, -0.2],
    [0.0] * 16,  # exactly 1/16: the fast tier's bound is 0 there
    [2.5, -INF, 2.5, 2.5, -INF, 2.5],
    # exp overflow / underflow thresholds of float16, float32, float64
    [11.09, 0.0],
    [11.1, 0.0],
    [-17.33, 0.0, -16.64],
    [88.72, 0.0],
    [88.73, 1.0],
    [-103.97, 0.0],
    [-87.3, -88.0, 0.0],
    [709.78, 0.0],
    [709.79, 1.0],
    [-745.13, -708.4, 0.0],
    # subnormal results
    [0.0, -100.0],
    [0.0, -16.0],
    [0.0, -740.0],
    [0.0, -9.7, -10.4],
    # masked classes
    [1.0, -INF, 3.0],
    [-INF, 0.0],
    [-INF, -INF, 5.0],
    [-INF, -1e4, 0.0],
    # logsumexp cancellation: m < 0 and L close to -m
    [-0.6931471805599453, -0.6931471805599453],
    [-0.5, -0.5],
    [-1.0986122886681098, -1.0986122886681098, -1.0986122886681098],
    [-2.0, -2.0, -1e9],
    [-1e-10, -1e-10],
    # wide ordinary vectors
    [0.3452, -0.0267, 0.4066, 19.0, 20.0, -3.5],
]


def both(vectors: list[Vector], **kw: object) -> tuple[Report, Report]:
    auto = audit(vectors, Options(per_element=True, **kw))  # type: ignore[arg-type]
    slow = audit(vectors, Options(per_element=True, reference="mpmath", **kw))  # type: ignore[arg-type]
    return auto, slow


def ulp_close(a: float, b: float) -> bool:
    if math.isinf(b) or math.isnan(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    return abs(a - b) <= 0.01 + 2.0**-50 * abs(b)


def same_exact(a: str, b: str) -> bool:
    """Two prints of one exact value, each with the digits its own reference certifies: the
    shorter is the longer rounded, give or take a unit in its last digit (0.6, see
    lsmcheck.metrics.certified_digits)."""
    if "inf" in a or "inf" in b or a == "0" or b == "0":
        return a == b
    digits = min(len(a.lstrip("-0.").split("e")[0].replace(".", "")), 31)
    va, vb = mpmath.mpf(a), mpmath.mpf(b)
    return bool(abs(va - vb) <= abs(vb) * mpmath.mpf(10) ** (1 - digits) * 1.2)


def agree(ra: Result, rb: Result) -> None:
    where = (ra.label, ra.algorithm, ra.dtype)
    assert (ra.status, ra.reason) == (rb.status, rb.reason), where
    if not rb.audited:
        return
    counts = lambda r: (r.overflow, r.underflow, r.underflow_benign, r.nan)  # noqa: E731
    assert counts(ra) == counts(rb), where
    assert ra.findings == rb.findings, where
    assert ra.argmax_preserved == rb.argmax_preserved, where
    assert ra.sum_error == rb.sum_error or (
        ra.sum_error is not None and rb.sum_error is not None and math.isnan(rb.sum_error)
    ), where
    assert ra.elements is not None and rb.elements is not None
    for ea, eb in zip(ra.elements, rb.elements, strict=True):
        assert ea.flags == eb.flags, (where, ea, eb)
        assert ea.computed == eb.computed or math.isnan(eb.computed)
        assert same_exact(ea.exact, eb.exact) and same_exact(eb.exact, ea.exact), (ea, eb)
        assert ulp_close(ea.ulp, eb.ulp), (where, ea, eb)
    assert ra.max_ulp is not None and rb.max_ulp is not None
    assert ulp_close(ra.max_ulp, rb.max_ulp), where
    assert rb.max_abs_error is not None and ra.max_abs_error is not None
    if math.isfinite(rb.max_abs_error):
        # the contract: absolute errors within 0.01 ulp of the exact value (mpmath's 113-bit
        # logsumexp of [710, 0] is 710 exactly; double-double keeps the 4.5e-309)
        dtype = FORMATS[rb.dtype].dtype
        with np.errstate(invalid="ignore", over="ignore"):  # exact values beyond the dtype
            spacing = [
                float(np.spacing(np.abs(np.asarray(float(e.exact), dtype))))
                for e in rb.elements
                if "inf" not in e.exact
            ]
        tol = 0.01 * max([s for s in spacing if math.isfinite(s)], default=0.0) + 1e-320
        # or to 2**-10 of itself, as certified (an exact value beyond the format has no ulp:
        # logsumexp of [65504, 65504] in float16)
        tol = max(tol, rb.max_abs_error * 2.0**-10)
        assert abs(ra.max_abs_error - rb.max_abs_error) <= tol, where
    else:
        assert ra.max_abs_error == rb.max_abs_error
    # relative errors are certified to 0.1% of themselves (an exact 0 output of an exact 0
    # said 1.0 in the fast tier: a lone finite logit's log-probability)
    a_rel, b_rel = ra.max_rel_error, rb.max_rel_error
    assert a_rel is not None and b_rel is not None
    if math.isfinite(b_rel):
        assert abs(a_rel - b_rel) <= b_rel * 2.0**-9 + 2.0**-1070, (where, a_rel, b_rel)
    else:
        assert a_rel == b_rel, where


def agree_reports(auto: Report, slow: Report) -> None:
    assert len(auto.results) == len(slow.results)
    for ra, rb in zip(auto.results, slow.results, strict=True):
        agree(ra, rb)
    assert sum(slow.reference.settled.values()) == sum(auto.reference.settled.values())
    assert set(slow.reference.settled) <= {"mpmath"}


@pytest.mark.parametrize("values", ADVERSARIAL, ids=lambda v: ",".join(f"{x:g}" for x in v))
def test_adversarial_vectors_agree(values: list[float]) -> None:
    agree_reports(*both([Vector("adv", 0, 1, np.array(values))]))


def test_the_fast_tier_settles_ordinary_vectors() -> None:
    rng = np.random.default_rng(7)
    vectors = [Vector("r", i, None, rng.standard_normal(64) * 4) for i in range(8)]
    auto, slow = both(vectors)
    agree_reports(auto, slow)
    settled = auto.reference.settled
    assert settled.get("mpmath", 0) == 0
    assert settled["float64"] == 8 * 64 * 2 * (2 + 3) + 8 * 2 * 2  # f16 + f32
    assert settled["double-double"] == 8 * 64 * (2 + 3) + 8 * 2


def _families() -> dict[str, tuple[list[np.ndarray], int]]:
    """Rows that once sent thousands of elements to mpmath (8 x 4096 of each took 19-73 s),
    with the most mpmath elements each may still take (2 rows x 64, all implementations x
    dtypes): spreads of hundreds and tens of thousands (log-probabilities computed as -inf
    next to a rounding boundary), a top logit far above the rest (1 - e**-80, m + e**-80), and
    one-hot rows (the rest at -1e9 or -1e30: errors of e**-1e9)."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((2, 64))
    top = np.arange(64) == 3
    return {
        "spread 200": (list(base * 200), 0),
        "spread 2e4": (list(base * 2e4), 0),
        "top +80": ([np.where(top, 80.0, 0.0) + b for b in base], 0),
        "one-hot -1e9": ([np.where(np.arange(64) == i, 0.0, -1e9) for i in range(2)], 0),
        "one-hot -1e30": ([np.where(top, 3.0, -1e30) for _ in range(2)], 0),
    }


@pytest.mark.parametrize("family", list(_families()))
def test_confident_and_far_spread_rows_settle_in_the_fast_tiers(family: str) -> None:
    rows, most = _families()[family]
    auto, slow = both([Vector(family, i, None, r) for i, r in enumerate(rows)])
    agree_reports(auto, slow)
    assert auto.reference.settled.get("mpmath", 0) <= most


def test_a_tiny_logsumexp_term_needs_no_extra_precision() -> None:
    # logsumexp = 7e4 + e**-3000: |computed - exact| is the e**-3000, known to its own accuracy
    # once m + L is formed unrounded (it took 1808 bits: m + L rounded to m, then nudged)
    auto, slow = both([Vector("v", 0, None, np.array([7e4, 7e4 - 3000.0]))])
    agree_reports(auto, slow)
    assert auto.reference.max_precision_bits == 113
    lse = [r for r in slow.results if r.algorithm == "logsumexp_stable" and r.dtype == "float64"]
    with mpmath.workprec(200):
        tail = mpmath.log1p(mpmath.exp(-3000))
    assert lse[0].max_abs_error == pytest.approx(float(tail), rel=1e-12)


def test_rows_of_nan_outputs_and_inf_beside_a_power_of_two_settle_in_the_fast_tiers() -> None:
    # float16, logits of sd 200: softmax_naive gives NaN (inf/inf) beside zeros whose exact
    # values are near 2**-1074, and a log-probability computed as -inf has its exact value
    # within its bound of -1024 or -512; the row's largest error is inf (the NaN) and -inf is
    # off by inf on either side of the power of two, but both went to mpmath (25 elements)
    x = np.random.default_rng(1).standard_normal((2, 1024)) * 200
    vectors = [Vector("sd200", i, None, row) for i, row in enumerate(x)]
    algorithms = ("softmax_naive", "log_softmax_naive", "log_softmax_stable")
    auto, slow = both(vectors, dtypes=("float16",), algorithms=algorithms)
    agree_reports(auto, slow)
    assert "mpmath" not in auto.reference.settled


def test_a_logsumexp_beside_only_far_smaller_logits_settles_in_the_fast_tier() -> None:
    # m + L with L below 2**-1075 (the other logits thousands below m): an output m is off by
    # L, 0 as a float64; L's bound was 2**-1070 at scale 0 (and the relative error's below
    # 2**-1074), which sent every such logsumexp to mpmath
    rows = [[7e4, 7e4 - 2000.0, 7e4 - 9000.0], [-3.0, -3000.0, -2e4], [1e5, -1e5, 99000.0]]
    vectors = [Vector("far", i, None, np.array(r)) for i, r in enumerate(rows)]
    auto, slow = both(vectors, algorithms=("logsumexp_stable",), dtypes=("float32", "float64"))
    agree_reports(auto, slow)
    assert "mpmath" not in auto.reference.settled
    assert [r.max_abs_error for r in auto.results] == [0.0] * 6


def test_the_absolute_error_of_a_zero_output_is_certified() -> None:
    # an output of 0 against an exact 2.7e-323: the relative error is exactly 1, the absolute
    # error is the exact value, which the float64 tier knows only to 2**-1020 (it said 0)
    for values in ([0.0] + [-745.5] * 16, [0.0] + [-745.1332191019412] * 8):
        opts = {"algorithms": ("logsumexp_naive", "logsumexp_stable"), "dtypes": ("float32",)}
        auto = audit([Vector("v", 0, None, np.array(values))], Options(**opts))  # type: ignore[arg-type]
        slow = audit([Vector("v", 0, None, np.array(values))], Options(reference="mpmath", **opts))  # type: ignore[arg-type]
        assert [r.max_abs_error for r in auto.results] == [r.max_abs_error for r in slow.results]
        assert all(r.max_abs_error and r.max_abs_error > 1e-323 for r in auto.results)


def test_the_reference_of_equal_bytes_of_another_dtype_is_its_own() -> None:
    fmt = FORMATS["float64"]
    assert exact(np.array([1, 0]), fmt).softmax[0] > 0.73  # int64 1 and 0
    # the same bytes as float64: 1 / (1 + e**-5e-324), a hair above 1/2 (0.731 from the cache)
    assert abs(exact(np.array([5e-324, 0.0]), fmt).softmax[0] - 0.5) < 1e-300


def test_exact_computes_only_the_values_asked_for() -> None:
    x = np.array([3.0, -1.5, 0.25, -40.0, 3.0 - 2.0**-30])
    fmt = FORMATS["float32"]
    whole = exact(x, fmt)
    part = exact(x, fmt, only=[1, 5 + 3, 10])  # softmax[1], log_softmax[3], logsumexp
    assert part.softmax[1] == whole.softmax[1] and part.log_softmax[3] == whole.log_softmax[3]
    assert part.logsumexp == whole.logsumexp
    assert part.softmax[0] is None and part.log_softmax[1] is None


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(-800, 800, allow_nan=False),
            st.floats(-1e5, 1e5, allow_nan=False),
            st.just(-INF),
            st.sampled_from([0.0, -745.13, 88.72, 11.09, -17.33, -103.97, 709.78]),
        ),
        min_size=1,
        max_size=7,
    )
)
def test_random_vectors_agree(values: list[float]) -> None:
    agree_reports(*both([Vector("h", 0, 1, np.array(values))]))


def test_batches_of_random_rows_agree() -> None:
    rng = np.random.default_rng(11)
    scales = [1.0, 10.0, 100.0, 400.0]
    vectors = [
        Vector("b", i, None, rng.standard_normal(12) * scales[i % 4] - 30 * (i % 3))
        for i in range(12)
    ]
    agree_reports(*both(vectors))


# --- the building blocks against mpmath at 300 bits ---------------------------------------------


def test_exp_dd_meets_its_bound() -> None:
    rng = np.random.default_rng(3)
    # down to 2200 ln 2 (fastref.DEEP): values far below float64's range, exponent apart
    d = np.concatenate([-rng.random(300) * 1525, -rng.random(50) * 1e-3, [0.0, -1524.9]])
    dl = rng.standard_normal(d.size) * np.abs(d) * 2.0**-54
    eh, el, k = exp_dd(d, dl)
    with mpmath.workprec(300):
        for i in range(d.size):
            true = mpmath.exp(mpmath.mpf(d[i]) + mpmath.mpf(dl[i]))
            got = mpmath.ldexp(mpmath.mpf(eh[i]) + mpmath.mpf(el[i]), int(k[i]))
            assert abs(got / true - 1) <= REL_EXP_DD / 4, d[i]


def test_log1p_dd_is_accurate() -> None:
    rng = np.random.default_rng(4)
    s = np.concatenate([rng.random(40) * 2.0**-8, rng.random(40) * 1e3, [1e-300, 2.0**-8, 1.0]])
    sl = s * 2.0**-60
    lh, ll = log1p_dd(s, sl)
    with mpmath.workprec(300):
        for i in range(s.size):
            true = mpmath.log1p(mpmath.mpf(s[i]) + mpmath.mpf(sl[i]))
            assert abs((mpmath.mpf(lh[i]) + mpmath.mpf(ll[i])) / true - 1) <= 2.0**-86


def test_numpy_libm_is_within_the_assumed_bound() -> None:
    # REL_LIBM assumes 64 ulp; the documented bounds are 1-4 ulp.  Check with a 16x margin.
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.random(2000) * 745, rng.random(500) * 1e6])
    e, lp = np.exp(-x[:2000]), np.log1p(x)
    with mpmath.workprec(200):
        for xi, ei in zip(x[:2000], e, strict=True):
            if ei > 2.0**-1022:
                assert abs(mpmath.mpf(ei) / mpmath.exp(-mpmath.mpf(xi)) - 1) <= REL_LIBM / 16
        for xi, li in zip(x, lp, strict=True):
            assert abs(mpmath.mpf(li) / mpmath.log1p(mpmath.mpf(xi)) - 1) <= REL_LIBM / 16


def test_bounds_contain_the_truth() -> None:
    # every fast value's interval holds the 300-bit truth (tests/oracle.py's definition)
    from tests import oracle

    rng = np.random.default_rng(6)
    rows = [rng.standard_normal(3) * s for s in (1, 30, 300)] + [np.array([0.0, -750.0, -2.0])]
    for fmt in ("float16", "float32", "float64"):
        f = FORMATS[fmt]
        x = np.stack([f.cast(r).astype(np.float64) for r in rows])
        fast = fast_reference(x, f)
        for r in range(x.shape[0]):
            sm, ls, lse = oracle.truth(x[r].tolist())
            for vals, truth in (
                (fast.softmax, sm),
                (fast.log_softmax, ls),
                (fast.logsumexp, [lse]),
            ):
                for i, t in enumerate(truth):
                    if vals.minf[r, i]:
                        assert t == -mpmath.inf
                        continue
                    with mpmath.workprec(2400):
                        scale = mpmath.mpf(2) ** int(vals.scale[r, i])
                        got = (mpmath.mpf(vals.hi[r, i]) + mpmath.mpf(vals.lo[r, i])) * scale
                        own = abs(t) * mpmath.mpf(2) ** (1 - oracle.BITS)  # t's rounding
                        assert abs(got - t) <= mpmath.mpf(vals.err[r, i]) * scale + own, (fmt, r, i)


def test_a_confident_rows_top_probability_is_bounded_as_one_minus_t() -> None:
    # 1 / (1 + s) = 1 - t, t = s / (1 + s): held as 1 - t, its bound is t's (a small part of
    # t), not a rounding of 1 (2**-53 in float64, 2**-90 in double-double), which could not
    # tell the error t of an output of 1 to 0.1% of itself; checked against t computed here
    rng = np.random.default_rng(12)
    for fmt in ("float16", "float32", "float64"):
        f = FORMATS[fmt]
        rows = rng.standard_normal((6, 40))
        rows[:, 5] += [24.0, 40.0, 60.0, 80.0, 300.0, 700.0]
        x = np.stack([f.cast(r).astype(np.float64) for r in rows])
        sm = fast_reference(x, f).softmax
        for r in range(x.shape[0]):
            with mpmath.workprec(4000):
                s = mpmath.fsum(mpmath.exp(mpmath.mpf(v) - mpmath.mpf(x[r, 5])) for v in x[r])
                t = (s - 1) / s  # s here includes the top's exp(0) = 1
                scale = mpmath.mpf(2) ** int(sm.scale[r, 5])
                got = (mpmath.mpf(sm.hi[r, 5]) + mpmath.mpf(sm.lo[r, 5])) * scale
                bound = mpmath.mpf(sm.err[r, 5]) * scale
                assert abs(got - (1 - t)) <= bound, (fmt, r)
                # (float16's margin of 24: s = 4e-11 > 2**-30, so p itself; the float64 tier's
                # bound has a floor of 2**-1020, near t = e**-700)
                if fmt == "float64" or 0 < r < 5:
                    assert bound <= t * 2.0**-30, (fmt, r, bound, t)


def test_findings_batch_is_metrics_findings_row_by_row() -> None:
    from lsmcheck import metrics
    from lsmcheck.fastfindings import findings_batch

    rng = np.random.default_rng(8)
    b, m = 40, 9
    masks = tuple(rng.random((b, m)) < p for p in (0.2, 0.15, 0.1, 0.2))
    codes = [rng.integers(0, 12, (b, m)).astype(np.uint8) * (rng.random((b, m)) < 0.6)
             for _ in range(3)]  # fmt: skip
    args = np.where(rng.random((b, m)) < 0.7, rng.standard_normal((b, m)) * 100, np.nan)
    for fmt in (FORMATS[name] for name in sorted(FAST_FORMATS)):  # the fast tier's formats
        batch = findings_batch(masks, codes[0], codes[1], codes[2], args, fmt)  # type: ignore[arg-type]
        for r in range(b):
            row = metrics.Measured(
                np.zeros(m), (), np.zeros(m), np.zeros(m), np.zeros(m),
                masks[0][r], masks[1][r], masks[2][r], masks[3][r],
            )  # fmt: skip
            expected = metrics.findings(row, codes[0][r], codes[1][r], codes[2][r], args[r], fmt)
            assert batch[r] == expected, (fmt.name, r)


def test_headroom_rows_are_assess_row_by_row() -> None:
    from lsmcheck.algorithms import BUILTINS
    from lsmcheck.explore.headroom import assess, assess_rows

    rng = np.random.default_rng(12)
    x = rng.standard_normal((6, 5)) * np.array([[1.0], [5.0], [12.0], [-30.0], [200.0], [0.1]])
    x[2, 1] = -math.inf
    x[5] = [-3.0, -3.0, -3.0, -3.0, -3.0]
    for fmt in FORMATS.values():
        xs = fmt.cast(x).astype(np.float64)
        for alg in BUILTINS.values():
            rows = assess_rows(alg, fmt, xs, 0.1)
            assert rows == [assess(alg, fmt, xs[r], 0.1) for r in range(len(xs))]


def test_the_constants_are_those_of_300_bit_arithmetic() -> None:
    """The tables computed at import (decimal arithmetic) equal what 300-bit mpmath gives:
    each double correctly rounded, each double-double's low part the rounded remainder."""

    from lsmcheck import ddkernels

    def dd(v: object) -> tuple[float, float]:
        hi = float(v)  # type: ignore[arg-type]
        return hi, float(v - hi)  # type: ignore[operator]

    def chunk(v: object, bits: int) -> float:
        _, e = mpmath.frexp(v)
        return float(mpmath.floor(mpmath.ldexp(v, bits - e)) * mpmath.mpf(2) ** (e - bits))

    with mpmath.workprec(300):
        c = mpmath.ln2 / 256
        c1 = chunk(c, 33)
        c2 = chunk(c - c1, 33)
        assert (c1, c2) == (ddkernels._C1, ddkernels._C2)
        assert float(c - c1 - c2) == ddkernels._C3
        assert float(256 / mpmath.ln2) == ddkernels._INV_LN2_256
        assert [dd(mpmath.mpf(2) ** (mpmath.mpf(j) / 256)) for j in range(256)] == ddkernels._TABLE
        assert dd(mpmath.mpf(1) / 6) == ddkernels._SIXTH
        assert [float(1 / mpmath.factorial(k)) for k in range(4, 9)] == ddkernels._TAIL
        assert [dd(1 / mpmath.mpf(i)) for i in range(1, 15)] == ddkernels._INVERSES


#: Where the computed value is (nearly) the exact one: a reference good for 0.01 ulp cannot
#: give the absolute error (it said 0.0 for [1e16, 1e16], whose logsumexp is off by ln 2).
NEAR_EXACT: list[list[float]] = [
    [1e16, 1e16],
    [1e30, 1e30],
    [1e16, 1e16 + 2, 1e16 - 2],
    [5.0, 5.0001],
    [1e8, 1e8, 1e8 - 1],
]


def _true_errors(r: Result, values: list[float]) -> tuple[float, float] | None:
    """The largest absolute and relative error of ``r``'s computed elements, from softmax,
    log-softmax and logsumexp at 6000 bits (the oracle's 300 cannot see 1 - 2e-308), or
    ``None`` when an element is not finite."""
    assert r.elements is not None
    worst_abs = worst_rel = mpmath.mpf(0)
    with mpmath.workprec(6000):
        xs = [mpmath.mpf(x) for x in values]
        m = max(x for x in xs if mpmath.isfinite(x))
        terms = [mpmath.exp(x - m) if mpmath.isfinite(x) else mpmath.mpf(0) for x in xs]
        total = mpmath.fsum(terms)
        ls = [x - m - mpmath.log(total) if mpmath.isfinite(x) else -mpmath.inf for x in xs]
        by_kind = {"softmax": [t / total for t in terms], "log_softmax": ls}
        exact = by_kind.get(r.kind, [m + mpmath.log(total)])
        for e, v in zip(r.elements, exact, strict=True):
            if not (math.isfinite(e.computed) and mpmath.isfinite(v)) or v == 0:
                return None
            d = abs(mpmath.mpf(e.computed) - v)
            smallest_normal = mpmath.mpf(2) ** FORMATS[r.dtype].emin  # the floor of |v|
            worst_abs, worst_rel = (
                max(worst_abs, d),
                max(worst_rel, d / max(abs(v), smallest_normal)),
            )
    return float(worst_abs), float(worst_rel)


@pytest.mark.parametrize("reference", ["auto", "mpmath"])
@pytest.mark.parametrize("values", [*NEAR_EXACT, *ADVERSARIAL[:20]], ids=str)
def test_absolute_and_relative_errors_are_certified_to_a_thousandth(
    values: list[float], reference: str
) -> None:
    """max_abs_error and max_rel_error within 2**-10 of themselves (metrics.ERROR_REL_TOL),
    against the oracle at 300 bits, in every dtype with a fast tier and in bfloat16."""
    vectors = [Vector("v", 0, 1, np.array(values))]
    opts = Options(
        per_element=True, reference=reference, dtypes=("float16", "float32", "float64", "bfloat16")
    )
    checked = 0
    for r in audit(vectors, opts).results:
        if not r.audited or r.elements is None:
            continue
        rounded = [float(e.input) for e in r.elements] if r.kind != "logsumexp" else None
        xs = rounded or [float(x) for x in np.asarray(values, FORMATS[r.dtype].dtype)]
        truth = _true_errors(r, xs)
        if truth is None:
            continue
        checked += 1
        for got, want in ((r.max_abs_error, truth[0]), (r.max_rel_error, truth[1])):
            assert got is not None
            # errors are float64 numbers: nothing finer than the smallest subnormal
            assert abs(got - want) <= 2.0**-10 * want + 5e-324, (r.algorithm, r.dtype, got, want)
    assert checked


def test_a_tie_of_a_power_of_two_logits_settles_in_the_fast_tier() -> None:
    # softmax of 2**k equal logits is exactly 2**-k: a computed value equal to it has an error
    # of exactly 0, which the tier settles only with a bound of exactly 0 (a padding row of
    # 32,768 zeros went to mpmath element by element: 3 minutes for 4 rows)
    vectors = [
        Vector("t", 0, None, np.zeros(1024)),
        Vector("t", 1, None, np.array([-3.0, -INF, -3.0, -3.0, -3.0, -INF])),
    ]
    options = Options(algorithms=("softmax_stable", "softmax_naive"), per_element=True)
    report = audit(vectors, options)
    assert "mpmath" not in report.reference.settled
    for r in report.results:
        assert r.elements is not None and r.max_abs_error == 0 and r.max_ulp == 0
        n = 1024 if r.vector == 0 else 4
        assert {mpmath.mpf(e.exact) for e in r.elements} <= {0, mpmath.mpf(1) / n}
    agree_reports(report, audit(vectors, dataclasses.replace(options, reference="mpmath")))


def test_exact_values_are_printed_with_the_digits_their_bound_certifies() -> None:
    # float32 logsumexp of [-ln 2, -ln 2] is fl32(-ln 2) + ln 2 = -1.90465429995776787854182343
    # 19245e-9: cancellation leaves the 113-bit reference 2**-82 of itself, 23 digits; the
    # 30 printed before had five wrong ones ("...342492e-9")
    x = -0.6931471805599453
    report = audit([[x, x]], algorithms=["logsumexp_stable"], dtypes=["float32"], per_element=True)
    (r,) = report.results
    assert r.elements is not None
    printed = r.elements[0].exact
    with mpmath.workprec(400):
        truth = float(np.float32(x)) + mpmath.log(2)
        digits = len(printed.lstrip("-0.").split("e")[0].replace(".", ""))
        assert 20 <= digits < 30
        assert abs(mpmath.mpf(printed) - truth) <= abs(truth) * mpmath.mpf(10) ** (1 - digits) * 0.6


def test_masks_of_huge_finite_values_and_confident_rows_settle_in_the_fast_tier() -> None:
    # the masked log-probabilities of -3.4e38 went to mpmath (a slack of 2**-50 ulp, where the
    # ulp is 2**104, and dd_add's 4u**2 of the result: 2**24); so did a confident row's top
    # probability: 4 rows of 4096 with float32's lowest took 15 s
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 256)) * 3
    x[:2, 100:] = np.finfo(np.float32).min
    x[2:, 0] += 40
    vectors = [Vector("m", i, None, row) for i, row in enumerate(x)]
    auto, slow = both(vectors, dtypes=("float32", "float64"))
    agree_reports(auto, slow)
    assert "mpmath" not in auto.reference.settled


def test_a_confident_rows_logsumexp_settles_in_the_fast_tier() -> None:
    # m + L with L = 1e-32 beside m = 80: the output m is off by L itself, which the bound
    # 2u**2 |m| (4e-30) could not tell to 0.1%; the sum's one rounding is bounded instead
    rng = np.random.default_rng(9)
    rows = rng.standard_normal((6, 64))
    rows[:, 0] += np.array([40.0, 60.0, 80.0, 120.0, 300.0, 700.0])
    vectors = [Vector("c", i, None, row) for i, row in enumerate(rows)]
    auto, slow = both(vectors, algorithms=("logsumexp_stable", "logsumexp_naive"))
    agree_reports(auto, slow)
    assert "mpmath" not in auto.reference.settled


def test_a_nan_output_beside_an_open_reference_is_a_nan() -> None:
    # [1e308, -1e308]: x - max is beyond float64, so the fast tier leaves that log-probability
    # to mpmath (err = inf); a NaN output there never goes to mpmath (its error is inf anyway),
    # and the fast tier's own NaN for the rounded value read as "NaN rounds to NaN": not counted
    from lsmcheck.userimpl import wrap

    def nan_where_shift_overflows(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            d = x - x.max(axis=-1, keepdims=True)
            return np.where(np.isinf(d), np.nan, d)

    impl = wrap(nan_where_shift_overflows, "log_softmax", name="nan_shift")
    vectors = [Vector("v", 0, None, np.array([1e308, -1e308]))]
    auto, slow = both(vectors, dtypes=("float64",), algorithms=(impl,), danger_zone=None)
    agree_reports(auto, slow)
    assert [r.nan for r in auto.results] == [1]
