"""``lsmcheck limits``: measured breaking points against the analytical thresholds.

The analytical values are computed here with mpmath at 200 bits from the formats' definitions
(max = (2 - 2**(1-p)) * 2**emax, smallest subnormal = 2**(emin - p + 1)), never taken from the
code under test; "to the dtype's resolution" means the measured boundary (two adjacent values
of the dtype) brackets the analytical value, give or take one ulp of the dtype.
"""

from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck import Options, Vector, audit
from lsmcheck.algorithms import BUILTINS, Algorithm, Kind, Setup, softmax_naive
from lsmcheck.cli import main
from lsmcheck.dtypes import FORMATS, get_format
from lsmcheck.explore.limits import Explorer, measure_limits
from lsmcheck.explore.probe import Prober, equal_logits_exact
from lsmcheck.reference import exact, round_to_format

# (p, emin, emax) written out again, independently of lsmcheck.dtypes
SPEC = {"float16": (11, -14, 15), "float32": (24, -126, 127), "float64": (53, -1022, 1023)}
NAIVE = ("softmax_naive", "log_softmax_naive", "logsumexp_naive")
STABLE = ("softmax_stable", "log_softmax_stable", "logsumexp_stable")


def ln_max(dtype: str) -> mpmath.mpf:
    p, _, emax = SPEC[dtype]
    with mpmath.workprec(200):
        return mpmath.log((2 - mpmath.mpf(2) ** (1 - p)) * mpmath.mpf(2) ** emax)


def ln_half_tiny(dtype: str) -> mpmath.mpf:
    p, emin, _ = SPEC[dtype]
    with mpmath.workprec(200):
        return mpmath.log(mpmath.mpf(2) ** (emin - p + 1) / 2)


def dtype_ulp(x: float, dtype: str) -> float:
    t = np.dtype(dtype).type
    return float(np.nextafter(t(x), t(np.inf)) - t(x))


def brackets(last_ok: float, first_bad: float, analytical: mpmath.mpf, dtype: str) -> None:
    """Adjacent dtype values; the analytical value between them, within one ulp."""
    t = np.dtype(dtype).type
    assert float(np.nextafter(t(last_ok), t(np.inf))) == first_bad
    tol = dtype_ulp(last_ok, dtype)
    assert last_ok - tol <= analytical <= first_bad + tol, (last_ok, first_bad, analytical)


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    algs = (*NAIVE, *STABLE, "log_of_softmax")
    names = ("overflow", "underflow", "flush", "length")  # spread: below, for two algorithms
    return measure_limits(algs, ("float16", "float32", "float64"), names)


# (dtype, ln(max), as the issue states them)
STATED = [("float16", 11.09), ("float32", 88.72), ("float64", 709.78)]


@pytest.mark.parametrize(("dtype", "stated"), STATED)
@pytest.mark.parametrize("algorithm", NAIVE)
def test_overflow_limit_is_ln_max(report, algorithm: str, dtype: str, stated: float) -> None:  # type: ignore[no-untyped-def]
    lim = report.get(algorithm, dtype, "overflow")
    assert lim.found and lim.event_kind == "overflow:exp_overflow"
    brackets(lim.last_ok, lim.first_bad, ln_max(dtype), dtype)
    assert round(lim.last_ok, 2) == pytest.approx(stated, abs=0.01)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("algorithm", NAIVE)
def test_underflow_limit_is_ln_half_smallest_subnormal(report, algorithm: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    lim = report.get(algorithm, dtype, "underflow")
    assert lim.found
    brackets(lim.last_ok, lim.first_bad, -ln_half_tiny(dtype), dtype)
    assert lim.value == -lim.last_ok < 0


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_representable_probability_limit(report, dtype: str) -> None:  # type: ignore[no-untyped-def]
    facts = next(f for f in report.facts if f.dtype == dtype)
    assert facts.representable is not None
    last, first = facts.representable
    brackets(last, first, -ln_half_tiny(dtype), dtype)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_flush_early_only_for_log_of_softmax(report, dtype: str) -> None:  # type: ignore[no-untyped-def]
    lof = report.get("log_of_softmax", dtype, "flush")
    assert lof.found and lof.early and lof.breaks
    brackets(lof.last_ok, lof.first_bad, -ln_half_tiny(dtype), dtype)
    stable = report.get("softmax_stable", dtype, "flush")
    assert stable.found and stable.early is False and not stable.breaks  # a benign flush
    assert not report.get("log_softmax_stable", dtype, "flush").found
    assert not report.get("logsumexp_stable", dtype, "flush").applicable


def test_log_of_softmax_nan_in_a_format_without_infinity_is_a_flush_not_an_overflow() -> None:
    """float8_e4m3fn has no infinity, so log_of_softmax's log(0) is NaN there.  On ``[t, 0]``
    that NaN comes from exp(-t) flushing to 0, not from the largest logit: the overflow limit
    is not found (it once read 6.5, with the advice to shift by the maximum, which
    log_of_softmax already does), and the flush limit says NaN."""
    # e4m3fn's smallest subnormal, written out: 2**(emin - p + 1) with p = 4, emin = -6
    with mpmath.workprec(200):
        half_tiny = mpmath.mpf(2) ** (-6 - 4 + 1) / 2
    report = measure_limits(["log_of_softmax"], ["float8_e4m3fn"], ["overflow", "flush"])
    overflow = report.get("log_of_softmax", "float8_e4m3fn", "overflow")
    assert not overflow.found and overflow.last_ok == 448
    flush = report.get("log_of_softmax", "float8_e4m3fn", "flush")
    assert flush.found and flush.early
    # exp(-t) of the probe is still nonzero at last_ok and rounds to 0 at first_bad
    assert mpmath.exp(-mpmath.mpf(flush.last_ok)) > half_tiny
    assert mpmath.exp(-mpmath.mpf(flush.first_bad)) < half_tiny
    assert (flush.last_ok, flush.first_bad) == (6.5, 7.0)  # adjacent: e4m3 steps 2**-1 in [4, 8)
    (sentence,) = [v for v in report.verdicts() if "flushes" in v]
    assert "to NaN (-inf, which float8_e4m3fn cannot hold)" in sentence
    assert not any("shift by the maximum" in v for v in report.verdicts())


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("algorithm", STABLE)
def test_stable_algorithms_never_overflow(report, algorithm: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    lim = report.get(algorithm, dtype, "overflow")
    assert not lim.found and lim.last_ok == FORMATS[dtype].max
    assert not report.get(algorithm, dtype, "underflow").found


def test_length_limit_is_the_float16_overflow_threshold(report) -> None:  # type: ignore[no-untyped-def]
    # The sum of n ones overflows float16 once n rounds to inf: n >= (2 - 2**-11) * 2**15.
    threshold = (2 - 2.0**-11) * 2.0**15
    assert threshold == 65520
    for alg in (*NAIVE, *STABLE, "log_of_softmax"):
        lim = report.get(alg, "float16", "length")
        assert (lim.last_ok, lim.first_bad) == (threshold - 1, threshold), alg
        assert lim.analytical == threshold
    assert not report.get("softmax_stable", "float32", "length").found  # up to 2**17


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_spread_limit_checked_by_direct_audit(dtype: str) -> None:
    explorer = Explorer()
    lim = explorer.limit(BUILTINS["log_softmax_stable"], FORMATS[dtype], "spread")
    assert lim.found and lim.bound == 4.0
    # float64 is sampled (no last_ok); the lead just below its first break was tried, a window
    before = lim.last_ok if not lim.sampled else float(np.nextafter(lim.first_bad, 0.0))
    opts = Options(dtypes=(dtype,), algorithms=("log_softmax_stable",), danger_zone=None)
    ok, bad = audit(
        [Vector("t", 0, None, np.array([0.0, -before])),
         Vector("t", 1, None, np.array([0.0, -lim.first_bad]))],
        opts,
    ).results  # fmt: skip
    assert ok.max_ulp is not None and ok.max_ulp <= 4.0
    assert bad.max_ulp is not None and bad.max_ulp > 4.0
    assert not explorer.limit(BUILTINS["softmax_stable"], FORMATS[dtype], "spread").found


def test_float16_spread_limit_is_the_first_lead_that_breaks() -> None:
    """The error of [0, -t] jumps from one float16 t to the next: log_softmax_stable first
    passes 4 ulp at t = 1.263671875, then on and off until about 2.4, where a grid of 4 points
    per binade first saw it (the limit once read 2.38; found by a review).  Every float16 value
    is tried now.  Checked here against the 300-bit oracle: the break at first_bad, and every
    float16 lead from 1 to last_ok within the bound."""
    from tests import oracle

    lim = Explorer().limit(BUILTINS["log_softmax_stable"], FORMATS["float16"], "spread")
    assert (lim.last_ok, lim.first_bad) == (1.2626953125, 1.263671875)

    def worst(t: float) -> float:
        row = np.array([[0.0, -t]], np.float16)
        out = BUILTINS["log_softmax_stable"].execute(row, Setup()).out[0]
        _, ls, _ = oracle.truth([0.0, -t])
        return max(oracle.ulp_error(float(c), e, "float16") for c, e in zip(out, ls, strict=True))

    assert worst(1.263671875) > 4.0
    leads = np.arange(np.float16(1.0).view(np.uint16), np.float16(lim.last_ok).view(np.uint16) + 1)
    assert all(worst(float(t)) <= 4.0 for t in leads.astype(np.uint16).view(np.float16))


def _quarter_crossing() -> mpmath.mpf:
    """The lead where log1p(e^-t) = 1/4 (200 bits): log_softmax[0] = -log1p(e^-t) passes
    -1/4 there, its ulp halves, and the same rounding error counts twice as many ulp."""
    with mpmath.workprec(200):
        return -mpmath.log(mpmath.expm1(mpmath.mpf(1) / 4))


def _worst(alg: str, t: float, dtype: str) -> float:
    """The largest ULP error of ``alg`` on [0, -t] in ``dtype``, against the oracle."""
    from tests import oracle

    row = np.array([[0.0, -t]], dtype)
    out = BUILTINS[alg].execute(row, Setup()).out[0]
    _, ls, _ = oracle.truth([0.0, float(row[0, 1])])
    return max(oracle.ulp_error(float(c), e, dtype) for c, e in zip(out, ls, strict=True))


@pytest.mark.parametrize("alg", ["log_softmax_stable", "log_of_softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_sampled_spread_limit_is_the_first_break_found_and_says_so(alg: str, dtype: str) -> None:
    """float32 and float64 have too many values to try every lead: the limit is the first
    break found, not "the last lead that holds" (it once read 2.16 and 1.48 in float32, 2.02
    and 1.37 in float64, with every smaller lead implied to hold; found by a review).  An
    exhaustive float32 scan (numpy on an AVX2 machine) and a long-double scan of 2**22 float64
    leads, both confirmed with mpmath, put the first breaks at 0.43412349 (log_softmax_stable)
    and 0.43275788 (log_of_softmax) in float32, and 35 and 3 float64 values above the
    crossing of log1p(e^-t) = 1/4 (t = 1.2586915...).  numpy's float32 exp and log vary with
    the machine's SIMD, so the test asserts what holds on any: the break is real (by the
    oracle), the 64 leads below it were tried and hold, and it comes no later than just after
    that crossing, where the error passes the bound densely."""
    lim = Explorer().limit(BUILTINS[alg], FORMATS[dtype], "spread")
    assert lim.first_bad is not None
    assert _worst(alg, lim.first_bad, dtype) > 4.0
    t = np.dtype(dtype).type
    below = [t(lim.first_bad)]
    for _ in range(64):
        below.append(np.nextafter(below[-1], t(0)))
    assert all(_worst(alg, float(b), dtype) <= 4.0 for b in below[1:])
    crossing = _quarter_crossing()
    ulp = dtype_ulp(float(crossing), dtype)
    assert lim.first_bad < crossing + 4096 * ulp, (lim.first_bad, crossing)
    assert lim.sampled and lim.tried is not None and lim.tried > 0
    assert lim.last_ok is None and lim.value is None  # not every smaller lead was tried


def test_spread_crossings_are_where_the_exact_outputs_cross_powers_of_two() -> None:
    """Each crossing, against mpmath at 200 bits: the exact output is on either side of the
    power of two a float64 ulp or two before and after, falling or rising as stated."""
    from lsmcheck.explore.search import spread_crossings

    with mpmath.workprec(200):

        def outputs(t: mpmath.mpf) -> list[mpmath.mpf]:
            s = mpmath.exp(-t)
            return [mpmath.log1p(s), t + mpmath.log1p(s), 1 / (1 + mpmath.exp(t))]

        crossings = spread_crossings(None, 2.0**-6, 745.2)
        assert len(crossings) > 1000
        for t, falling in crossings:
            a = outputs(mpmath.mpf(t) * (1 - mpmath.mpf(2) ** -50))
            b = outputs(mpmath.mpf(t) * (1 + mpmath.mpf(2) ** -50))
            hits = [
                (x > y) == falling
                for x, y in zip(a, b, strict=True)
                if mpmath.floor(mpmath.log(x, 2)) != mpmath.floor(mpmath.log(y, 2))
            ]
            assert hits and all(hits), t
        # the first two where log_softmax[0] falls: -1/2 at 0.4328, -1/4 at 1.2587
        falls = [t for t, f in spread_crossings(Kind.LOG_SOFTMAX, 2.0**-6, 2.0) if f]
        assert falls[1] == pytest.approx(float(_quarter_crossing()), rel=1e-15)


def test_json_of_a_sampled_spread_limit() -> None:
    res = CliRunner().invoke(
        main,
        ["limits", "-d", "float16,float32", "-a", "log_softmax_stable,softmax_stable",
         "--limit", "spread", "-f", "json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    lims = {(x["dtype"], x["algorithm"]): x for x in json.loads(res.stdout)["limits"]}
    f16 = lims["float16", "log_softmax_stable"]
    assert not f16["sampled"] and f16["last_ok"] == 1.2626953125
    f32 = lims["float32", "log_softmax_stable"]
    assert f32["sampled"] and f32["last_ok"] is None and f32["value"] is None
    assert f32["first_bad"] < 1.26 and f32["tried"] > 1000
    none = lims["float32", "softmax_stable"]  # nothing broke among the leads tried
    assert none["sampled"] and none["first_bad"] is None and none["last_ok"] is None
    assert none["tried"] > 100_000
    args = ["limits", "-d", "float32", "-a", "log_softmax_stable", "--limit", "spread"]
    res = CliRunner().invoke(main, [*args, "-f", "csv"])
    head, row = res.stdout.splitlines()
    got = dict(zip(head.split(","), row.replace('"[0, -t]"', "probe").split(","), strict=True))
    assert got["last_ok"] == "" and got["sampled"] == "True"
    assert float(got["first_bad"]) == f32["first_bad"]


def test_a_shifted_exp_moves_the_measured_limit() -> None:
    """The limit comes from running the algorithm, not from a table: exp(x + 3) breaks at
    ln(max) - 3."""

    def shifted(x: np.ndarray) -> object:  # type: ignore[type-arg]
        with np.errstate(all="ignore"):
            return softmax_naive(x + x.dtype.type(3))

    alg = Algorithm("shifted", Kind.SOFTMAX, "exp(x + 3) / sum", shifted)  # type: ignore[arg-type]
    lim = Explorer().limit(alg, FORMATS["float32"], "overflow")
    assert lim.found
    brackets(lim.last_ok, lim.first_bad, ln_max("float32") - 3, "float32")


def test_closed_form_reference_of_equal_logits_matches_the_reference() -> None:
    fmt = FORMATS["float16"]
    x = np.full(300, 1.5)
    closed = equal_logits_exact(300, 1.5)
    ref = exact(x, fmt)
    for a, b in ((closed.softmax[0], ref.softmax[0]), (closed.log_softmax[7], ref.log_softmax[7])):
        assert round_to_format(a, fmt) == round_to_format(b, fmt)
        assert abs(a - b) <= abs(b) * mpmath.mpf(2) ** -100
    assert abs(closed.logsumexp - ref.logsumexp) <= mpmath.mpf(2) ** -100


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-2e4, 2e4, allow_nan=False), min_size=2, max_size=6),
    st.sampled_from(sorted(BUILTINS)),
    st.sampled_from(["float16", "float32"]),
)
def test_a_clean_row_is_never_broken(values: list[float], name: str, dtype: str) -> None:
    """The prober's shortcut agrees with the full metrics: clean implies nothing broke."""
    fmt = FORMATS[dtype]
    x = np.asarray(fmt.cast(np.array(values)), np.float64)
    if not np.isfinite(x).all():
        return
    prober = Prober(fmt)
    (s,) = prober.probe(BUILTINS[name], x[None, :])
    m, _ = prober.measure(s.alg, s.x, s.trace, s.row)
    full = bool(m.overflow.any() or m.underflow.any() or m.nan.any())
    assert s.broken == full
    if s.clean:
        assert not full and not m.benign.any()


def test_verdicts_in_plain_words(report) -> None:  # type: ignore[no-untyped-def]
    text = "\n".join(report.verdicts())
    assert (
        "softmax_naive, log_softmax_naive and logsumexp_naive in float16 overflow once any "
        "logit exceeds 11.09: shift by the maximum first." in text
    )
    assert "log_of_softmax in float16 flushes a logit more than 17.33 below the maximum" in text


def test_cli_json_and_table() -> None:
    runner = CliRunner()
    res = runner.invoke(
        main,
        ["limits", "-d", "float16", "-a", "softmax_naive", "--limit", "overflow", "-f", "json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema"] == "lsmcheck.limits/1"
    (lim,) = doc["limits"]
    assert lim["last_ok"] == 11.0859375 and lim["first_bad"] == 11.09375
    assert math.isclose(lim["analytical"], float(ln_max("float16")))
    res = runner.invoke(main, ["limits", "-d", "float16", "-a", "softmax_naive,softmax_stable"])
    assert res.exit_code == 0
    assert "11.086" in res.stdout and "analytical" in res.stdout and "Verdict" in res.stdout
    assert "softmax_naive in float16 overflows once any logit exceeds 11.09" in res.stdout
    res = runner.invoke(main, ["limits", "--limit", "nope"])
    assert res.exit_code == 2 and "unknown limit" in res.stderr
    # nothing breaks within 4 logits: the verdict says so (it was an empty heading)
    args = ["limits", "-d", "float16", "-a", "softmax_naive", "--limit", "length"]
    res = runner.invoke(main, [*args, "--max-length", "4"])
    assert res.exit_code == 0
    assert res.stdout.rstrip().endswith("Verdict\n  nothing broke within the ranges searched")


@pytest.mark.parametrize(
    ("dtype", "start"), [("float16", 65000), ("float8_e4m3fn", 400), ("float8_e5m2", 57000)]
)
def test_the_analytical_length_is_the_first_sum_that_overflows(dtype: str, start: int) -> None:
    """The first integer that does not round to a finite value of the dtype (e4m3fn rounds
    464 to 448: its max's significand is even, so the tie goes down; it said 464)."""
    from lsmcheck.explore.limits import analytical

    fmt = get_format(dtype)
    ns = np.arange(start, start + 8000, dtype=np.float64)
    with np.errstate(over="ignore"):
        first = int(ns[~np.isfinite(ns.astype(fmt.dtype).astype(np.float64))][0])
    assert analytical("length", fmt) == first


def test_the_json_overflow_threshold_is_exact_even_where_it_is_not_a_float() -> None:
    """The magnitude from which values overflow: halfway between max and the next power of 2.
    Float64's, 2**1024 - 2**970, is not a float64 (it rounds to inf: the JSON said "inf")."""
    args = ["limits", "-d", "float64,float16,float8_e4m3fn", "-a", "softmax_naive"]
    res = CliRunner().invoke(main, [*args, "--limit", "overflow", "-f", "json"])
    assert res.exit_code == 0, res.output
    got = {d["dtype"]: d["overflow_threshold"] for d in json.loads(res.stdout)["dtypes"]}
    max64 = (2**53 - 1) * 2**971  # float64's largest: 53 ones, then 971 zeros
    assert got == {
        "float64": (max64 + 2**1024) // 2,
        "float16": (65504 + 65536) // 2,
        "float8_e4m3fn": 448 + 16,  # no infinity: half of the 32 between 448 and the next step
    }
