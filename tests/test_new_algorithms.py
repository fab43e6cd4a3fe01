"""The log1p, online and cross-entropy algorithms, mixed precision and --target, against the
independent 300-bit oracle (``tests/oracle.py``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import mpmath
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck import Options, Vector, audit
from lsmcheck.algorithms import BUILTINS, LOSSES, Setup, softmax_online_blocked, softmax_stable
from lsmcheck.cli import main
from lsmcheck.dtypes import FORMATS, get_format
from lsmcheck.errors import InputError, UsageError
from lsmcheck.results import Result
from lsmcheck.sources import read_sources
from lsmcheck.targets import resolve
from tests import oracle

NEW_BUILTINS = [
    "softmax_online",
    "softmax_online_blocked",
    "log_softmax_log1p",
    "logsumexp_log1p",
]


def run(values: list[float], algorithm: str, dtype: str, **kw: Any) -> Result:
    opts = Options(dtypes=(dtype,), algorithms=(algorithm,), per_element=True, **kw)
    results = [r for r in audit([Vector("t", 0, 1, np.array(values))], opts).results]
    (r,) = [r for r in results if r.algorithm == algorithm]
    return r


def truth_of(kind: str, rounded: list[float], target: int | None) -> list[Any]:
    sm, ls, lse = oracle.truth(rounded)
    if kind == "cross_entropy":
        assert target is not None
        with mpmath.workprec(300):  # a bare -x would round to 53 bits
            return [-ls[target]]
    return {"softmax": sm, "log_softmax": ls, "logsumexp": [lse]}[kind]


def check_against_oracle(r: Result, values: list[float], target: int | None = None) -> None:
    """Every element's ulp error against the oracle's, within 0.01 ulp."""
    storage = get_format(r.dtype).storage
    rounded = storage.cast(np.array(values)).astype(np.float64).tolist()
    truth = truth_of(r.kind, rounded, target)
    assert r.elements is not None
    for e, true in zip(r.elements, truth, strict=True):
        expected = oracle.ulp_error(e.computed, true, storage.name)
        if math.isinf(expected):
            assert math.isinf(e.ulp), (r.algorithm, r.dtype, e)
        else:
            assert abs(e.ulp - expected) <= 0.01, (r.algorithm, r.dtype, e, expected)


# --- the 0,-50 case -------------------------------------------------------------------------


def test_log1p_keeps_the_dominant_log_probability_of_0_minus_50() -> None:
    (v, *_) = read_sources(["cases/log1p.csv"])
    assert v.values.tolist() == [0.0, -50.0]
    opts = Options(
        dtypes=("float64",),
        algorithms=("log_softmax_stable", "log_softmax_log1p"),
        per_element=True,
    )
    stable, log1p = audit([v], opts).results
    # oracle at 300 bits: -log1p(e^-50) = -1.9287498479639178...e-22
    _, ls, _ = oracle.truth([0.0, -50.0])
    assert mpmath.nstr(ls[0], 8) == "-1.9287498e-22"
    assert stable.elements is not None and log1p.elements is not None
    assert stable.elements[0].computed == 0.0
    assert oracle.ulp_error(0.0, ls[0], "float64") > 1e15
    assert stable.max_ulp is not None and stable.max_ulp > 1e15
    assert oracle.ulp_error(log1p.elements[0].computed, ls[0], "float64") <= 2
    assert log1p.max_ulp is not None and log1p.max_ulp <= 2
    check_against_oracle(stable, [0.0, -50.0])
    check_against_oracle(log1p, [0.0, -50.0])


def test_every_line_of_the_log1p_case() -> None:
    vectors = read_sources(["cases/log1p.csv"])
    for dtype in ("float32", "float64"):
        opts = Options(dtypes=(dtype,), algorithms=("log_softmax_log1p", "logsumexp_log1p"))
        for r in audit(vectors, opts).results:
            assert r.max_ulp is not None and r.max_ulp <= 1, (r.label, r.algorithm, dtype)


# --- random vectors, every dtype and mixed precision -----------------------------------------

MIXED = ["float16/acc=float32", "bfloat16/acc=float32", "float8_e4m3fn/acc=float16", "float64"]
logits = st.lists(
    st.one_of(st.floats(-60, 60, allow_nan=False), st.just(-math.inf)), min_size=1, max_size=7
).filter(lambda v: any(math.isfinite(x) for x in v))


@settings(max_examples=60, deadline=None)
@given(logits, st.sampled_from(sorted(FORMATS) + MIXED), st.sampled_from(NEW_BUILTINS))
def test_new_builtins_match_oracle(values: list[float], dtype: str, algorithm: str) -> None:
    r = run(values, algorithm, dtype)
    if r.audited:
        check_against_oracle(r, values)
        assert r.dtype == dtype
        # shifted forms of logits within +-60 overflow nowhere (and NaN is no answer)
        assert (r.nan, r.overflow) == (0, 0), (values, dtype, algorithm)


@pytest.mark.parametrize("dtype", sorted(FORMATS) + MIXED)
@pytest.mark.parametrize("algorithm", NEW_BUILTINS)
@pytest.mark.parametrize("values", [[1.0, 0.0, -3.5], [-2.0, -2.0], [6.0]])
def test_every_new_builtin_in_every_dtype(values: list[float], algorithm: str, dtype: str) -> None:
    r = run(values, algorithm, dtype)
    assert r.audited
    check_against_oracle(r, values)
    assert (r.nan, r.overflow) == (0, 0)


@settings(max_examples=40, deadline=None)
@given(
    logits,
    st.sampled_from(["float16", "bfloat16", "float32", "float16/acc=float32"]),
    st.sampled_from([1, 2, 3, 5, 64]),
)
def test_blocked_online_softmax_any_block(values: list[float], dtype: str, block: int) -> None:
    r = run(values, "softmax_online_blocked", dtype, block=block)
    if r.audited:
        check_against_oracle(r, values)
        assert (r.nan, r.overflow) == (0, 0)


def test_one_block_is_the_stable_softmax_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 5, (4, 16)).astype(np.float16)
    with np.errstate(all="ignore"):
        a = softmax_stable(x, Setup()).out
        b = softmax_online_blocked(x, Setup(block=16)).out
    assert a.tobytes() == b.tobytes()


def test_online_softmax_survives_leading_masked_classes() -> None:
    for alg in ("softmax_online", "softmax_online_blocked"):
        r = run([-math.inf, -math.inf, 1.0, 3.0], alg, "float32", block=2)
        assert r.nan == 0 and r.max_ulp is not None and r.max_ulp <= 1
        assert r.elements is not None and r.elements[0].computed == 0.0


def test_accumulating_in_float32_fixes_bfloat16_stagnation() -> None:
    # 1000 equal logits: p = 1/1000.  A sequential bfloat16 sum of 1000 ones stops at 256
    # (256 + 1 = 257 needs 9 bits; the tie rounds to even, 256), so p comes out 1/256.
    zeros = [0.0] * 1000
    plain = run(zeros, "softmax_stable", "bfloat16")
    assert plain.elements is not None and plain.elements[0].computed == 1 / 256
    assert plain.max_ulp is not None and plain.max_ulp > 300
    mixed = run(zeros, "softmax_stable", "bfloat16", accumulate="float32")
    assert mixed.dtype == "bfloat16/acc=float32"
    assert mixed.max_ulp is not None and mixed.max_ulp <= 0.5


def test_black_boxes_keep_the_storage_label_and_run_once() -> None:
    pytest.importorskip("scipy", reason="scipy is not installed")
    opts = Options(
        dtypes=("float16", "float16/acc=float32"),
        algorithms=("softmax_stable", "scipy.special.softmax"),
    )
    report = audit([Vector("t", 0, 1, np.array([1.0, 2.0]))], opts)
    labels = sorted((r.algorithm, r.dtype) for r in report.results)
    assert labels == [
        ("scipy.special.softmax", "float16"),
        ("softmax_stable", "float16"),
        ("softmax_stable", "float16/acc=float32"),
    ]


# --- cross-entropy --------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    logits,
    st.sampled_from(["float16", "float32", "float64", "bfloat16", "bfloat16/acc=float32"]),
    st.sampled_from(
        ["cross_entropy_log_softmax", "cross_entropy_log_of_softmax", "cross_entropy_log1p"]
    ),
    st.integers(0, 6),
)
def test_cross_entropy_matches_oracle(
    values: list[float], dtype: str, algorithm: str, target: int
) -> None:
    target %= len(values)
    r = run(values, algorithm, dtype, target=str(target))
    if r.audited:
        assert r.target == target and r.kind == "cross_entropy"
        check_against_oracle(r, values, target)


def test_cross_entropy_of_the_dominant_class() -> None:
    # -log_softmax(0,-50)[0] = log1p(e^-50) = 1.93e-22: only the log1p form keeps it
    stable = run([0.0, -50.0], "cross_entropy_log_softmax", "float64", target="argmax")
    log1p = run([0.0, -50.0], "cross_entropy_log1p", "float64", target="argmax")
    assert stable.max_ulp is not None and stable.max_ulp > 1e15
    assert log1p.max_ulp is not None and log1p.max_ulp <= 1


def test_float64_cross_entropy_is_measured_against_the_exact_loss() -> None:
    """The loss of [3, 3, 1] for class 2 is log(2e^2 + 1) = 2.7586236756795134713...; float64
    computes 2.7586236756795133 (0.44 ulp off).  Its exact value was once negated at mpmath's
    default 53 bits, i.e. rounded to float64, so every float64 loss read 0 ulp and passed any
    gate (found by a review)."""
    with mpmath.workprec(300):
        true = mpmath.log(2 * mpmath.e**2 + 1)
    for alg in ("cross_entropy_log_softmax", "cross_entropy_log1p"):
        r = run([3.0, 3.0, 1.0], alg, "float64", target="2")
        assert r.elements is not None
        (e,) = r.elements
        expected = oracle.ulp_error(e.computed, true, "float64")
        assert expected > 0.3, expected  # float64 cannot hold the loss: the error is not 0
        assert r.max_ulp == pytest.approx(expected, abs=0.01)
        with mpmath.workprec(300):
            assert abs(mpmath.mpf(e.exact) - true) < 1e-25 * true  # 30 digits of the truth


def test_log_of_softmax_cross_entropy_is_inf_where_the_probability_underflows() -> None:
    r = run([0.0, -200.0], "cross_entropy_log_of_softmax", "float32", target="1")
    assert r.elements is not None and r.elements[0].computed == math.inf
    assert r.underflow == 1 and r.overflow == 0
    ok = run([0.0, -200.0], "cross_entropy_log_softmax", "float32", target="1")
    assert ok.max_ulp is not None and ok.max_ulp <= 1  # 200 + log1p(e^-200) = 200


def test_double_softmax_computes_the_mistaken_function() -> None:
    x = [2.0, 1.0, 0.1]
    r = run(x, "cross_entropy_double_softmax", "float64", target="0")
    # the mistake, evaluated at 300 bits: -log_softmax(softmax(x))[0]
    with mpmath.workprec(300):
        p = [mpmath.exp(mpmath.mpf(v)) for v in x]
        p = [v / mpmath.fsum(p) for v in p]
        mistake = -(p[0] - mpmath.log(mpmath.fsum(mpmath.exp(v) for v in p)))
    assert r.elements is not None
    assert oracle.ulp_error(r.elements[0].computed, mistake, "float64") <= 8
    _, ls, _ = oracle.truth(x)
    assert oracle.ulp_error(r.elements[0].computed, -ls[0], "float64") > 1e14  # not the CE
    assert r.max_ulp is not None and r.max_ulp > 1e14


def test_cross_entropy_needs_a_target() -> None:
    with pytest.raises(UsageError, match="--target: cross_entropy_log1p needs the target"):
        audit(
            [Vector("t", 0, 1, np.array([1.0, 2.0]))], Options(algorithms=("cross_entropy_log1p",))
        )


# --- --target forms -------------------------------------------------------------------------


def vecs(*rows: list[float]) -> list[Vector]:
    return [Vector("f.csv", i, i + 1, np.array(r)) for i, r in enumerate(rows)]


def test_target_forms() -> None:
    v = vecs([1.0, 5.0, 3.0], [9.0, 0.0, -1.0])
    assert resolve(None, v)[1] is None
    assert resolve("2", v)[1] == [2, 2]
    assert resolve("-1", v)[1] == [2, 2]
    assert resolve("0,1", v)[1] == [0, 1]
    assert resolve("argmax", v)[1] == [1, 0]
    assert resolve("argmin", v)[1] == [0, 2]
    labelled, t = resolve("col:0", vecs([2.0, 0.5, 0.25, 0.125]))
    assert t == [2] and labelled[0].values.tolist() == [0.5, 0.25, 0.125]
    labelled, t = resolve("col:-1", vecs([0.5, 0.25, 1.0]))
    assert t == [1] and labelled[0].values.tolist() == [0.5, 0.25]


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("3", InputError, "f.csv:1: --target 3: class 3 is out of range (3 classes)"),
        ("0,1,2", UsageError, "3 class indices for 1 vectors"),
        ("first", UsageError, "expected N, N1,N2,..."),
        ("col:0", InputError, "f.csv:1: --target col:0: label 1.5 is not a class index (0 to 1)"),
        ("col:3", InputError, "f.csv:1: --target col:3: column 3 is out of range (3 columns)"),
    ],
)
def test_target_errors(spec: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(spec, vecs([1.5, 2.0, 3.0]))


@pytest.mark.parametrize("label", [-1.0, -100.0, 2.0, 1e300])
def test_a_label_outside_0_to_n_minus_1_is_an_error(label: float) -> None:
    """-1 once silently meant the last class (Python's negative index); in a dataset it
    marks an example to ignore (found by a review)."""
    with pytest.raises(InputError, match=r"is not a class index \(0 to 1\)"):
        resolve("col:0", vecs([label, 2.0, 3.0]))


# --- the command line ------------------------------------------------------------------------


def test_cli_mixed_precision_label_in_every_output() -> None:
    runner = CliRunner()
    args = [
        "run",
        "-l",
        "1,2,3",
        "-d",
        "float16",
        "--accumulate",
        "float32",
        "-a",
        "softmax_stable",
    ]
    table = runner.invoke(main, args)
    assert table.exit_code == 0 and "float16/acc=float32" in table.stdout
    report = json.loads(runner.invoke(main, [*args, "-f", "json"]).stdout)
    assert report["results"][0]["dtype"] == "float16/acc=float32"
    assert report["summary"]["groups"][0]["dtype"] == "float16/acc=float32"
    explained = runner.invoke(main, ["explain", "1,2,3", "-d", "bfloat16/acc=float32"])
    assert explained.exit_code == 0 and "bfloat16/acc=float32: 3 logits" in explained.stdout


def test_cli_target_and_block_flags() -> None:
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "run",
            "-l",
            "0,-50",
            "-d",
            "float64",
            "-a",
            "cross_entropy_log1p,softmax_online_blocked",
            "--target",
            "argmax",
            "--block",
            "1",
            "-f",
            "json",
        ],
    )
    assert res.exit_code == 0, res.stderr
    results = json.loads(res.stdout)["results"]
    assert results[0]["target"] == 0 and results[0]["max_ulp"] <= 1
    missing = runner.invoke(main, ["run", "-l", "1,2", "-a", "cross_entropy_log1p"])
    assert missing.exit_code == 2 and "needs the target class" in missing.stderr
    bad = runner.invoke(main, ["run", "-l", "1,2", "--block", "0"])
    assert bad.exit_code == 2 and "--block: expected a block size >= 1" in bad.stderr


def test_cli_as_a_subprocess() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsmcheck",
            "run",
            "cases/log1p.csv",
            "-d",
            "float64",
            "-a",
            "log_softmax_stable,log_softmax_log1p",
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    by_alg = {}
    for r in json.loads(out.stdout)["results"]:
        by_alg.setdefault(r["algorithm"], []).append(r["max_ulp"])
    assert by_alg["log_softmax_stable"][0] > 1e15 and by_alg["log_softmax_log1p"][0] <= 2


def test_registry_lists_everything() -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["algorithms"]).stdout
    for name in [
        *BUILTINS,
        *LOSSES,
        "log_softmax_stable.grad",
        "torch.log_softmax",
        "jax.nn.softmax",
    ]:
        assert name in out
