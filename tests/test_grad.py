"""Backward passes (--grad) and their exact reference, against an independent computation.

The test's own truth: ``softmax(x) - onehot(t)`` with ``p_t - 1`` subtracted directly at 4000
bits (enough for every spread these tests use: the smallest ``1 - p_t`` here is ~e^-1000,
2**-1443), not the cancellation-free sum the reference uses.
"""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck import Options, Vector, audit
from lsmcheck.dtypes import FORMATS, get_format
from lsmcheck.errors import UsageError
from lsmcheck.grad import GRADS
from lsmcheck.reference import exact_nll_grad
from lsmcheck.results import Result
from tests import oracle


def truth(values: list[float], target: int) -> list[Any]:
    with mpmath.workprec(4000):
        xs = [mpmath.mpf(v) for v in values]
        m = max(x for x in xs if mpmath.isfinite(x))
        e = [mpmath.exp(x - m) for x in xs]
        total = mpmath.fsum(e)
        g = [ej / total for ej in e]
        g[target] = g[target] - 1
        return g


@pytest.mark.parametrize(
    ("values", "target"),
    [
        ([0.0, -50.0], 0),
        ([0.0, -50.0], 1),
        ([0.0, -1000.0], 0),
        ([2.0, 1.0, 0.1], 2),
        ([1.0, 1.0], 0),
        ([3.0, 3.0, 3.0], 1),
        ([1.0, -math.inf, 3.0], 1),  # a masked target: exactly -1
        ([7.0], 0),
        ([1e-15, 2e-15, 3e-15], 0),
    ],
)
def test_exact_gradient_matches_the_direct_subtraction(values: list[float], target: int) -> None:
    got, _ = exact_nll_grad(np.array(values), FORMATS["float64"], target)
    for a, b in zip(got, truth(values, target), strict=True):
        with mpmath.workprec(4000):
            assert a == b or abs(a - b) <= abs(b) * mpmath.mpf("1e-20"), (values, a, b)


def one(values: list[float], algorithm: str, dtype: str, target: int) -> Result:
    opts = Options(dtypes=(dtype,), algorithms=(algorithm,), per_element=True, target=str(target))
    (r,) = audit([Vector("t", 0, 1, np.array(values))], opts).results
    return r


def check(r: Result, values: list[float], target: int) -> None:
    storage = get_format(r.dtype).storage
    rounded = storage.cast(np.array(values)).astype(np.float64).tolist()
    exact = truth(rounded, target)
    assert r.elements is not None
    for e, true in zip(r.elements, exact, strict=True):
        expected = oracle.ulp_error(e.computed, true, storage.name)
        if math.isinf(expected):
            assert math.isinf(e.ulp), (r.algorithm, r.dtype, e)
        else:
            assert abs(e.ulp - expected) <= 0.01, (r.algorithm, r.dtype, e, expected)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-80, 80, allow_nan=False), min_size=1, max_size=6),
    st.sampled_from(["float16", "float32", "float64", "bfloat16", "float16/acc=float32"]),
    st.sampled_from(sorted(GRADS)),
    st.integers(0, 5),
)
def test_builtin_backward_passes_match_the_truth(
    values: list[float], dtype: str, algorithm: str, target: int
) -> None:
    target %= len(values)
    r = one(values, algorithm, dtype, target)
    if r.audited:
        assert r.kind in ("log_softmax_grad", "cross_entropy_grad")
        check(r, values, target)


def test_confident_prediction_loses_its_gradient_in_the_framework_formula() -> None:
    # d/dx_0 of -log_softmax(0,-50)[0] = p_0 - 1 = -1.93e-22.  exp(y_0) - 1 cancels to 0.
    r = one([0.0, -50.0], "log_softmax_stable.grad", "float64", 0)
    assert r.elements is not None and r.elements[0].computed == 0.0
    assert r.underflow == 1
    assert any(f.event == "cancelled" and "p - 1 cancelled to 0" in f.message for f in r.findings)
    # expm1 of an accurate log-probability keeps it
    good = one([0.0, -50.0], "log_softmax_log1p.grad", "float64", 0)
    assert good.max_ulp is not None and good.max_ulp <= 2
    check(good, [0.0, -50.0], 0)


def test_log_of_softmax_backward_is_nan_when_another_class_underflows() -> None:
    # float32: e^-200 = 0, so log's backward computes 0/0 for class 1, and the softmax
    # backward's sum spreads the NaN over the row, although class 0 (the target) is fine.
    r = one([0.0, -200.0], "log_of_softmax.grad", "float32", 0)
    assert r.nan == 2
    assert any("backward of log divides by a probability" in f.message for f in r.findings)
    ok = one([0.0, -200.0], "cross_entropy_log_softmax.grad", "float32", 0)
    assert ok.nan == 0


def test_log_of_softmax_backward_names_a_masked_class_as_zero_not_underflowed() -> None:
    # a masked class (-inf) has p = 0 exactly: the message must not call it an underflow only
    r = one([1.0, -math.inf, 3.0], "log_of_softmax.grad", "float32", 0)
    assert r.nan == 3
    (found,) = [f for f in r.findings if f.event == "log_backward"]
    assert "a probability of 0 (one that underflowed, or a masked class)" in found.message


def test_grad_flag_adds_the_backward_passes() -> None:
    opts = Options(
        dtypes=("float64",),
        algorithms=("log_softmax_stable", "softmax_stable", "cross_entropy_log1p"),
        target="0",
        grad=True,
    )
    report = audit([Vector("t", 0, 1, np.array([1.0, 2.0]))], opts)
    assert [r.algorithm for r in report.results] == [
        "log_softmax_stable",
        "softmax_stable",
        "cross_entropy_log1p",
        "log_softmax_stable.grad",
        "cross_entropy_log1p.grad",
    ]
    with pytest.raises(UsageError, match=r"--target: log_softmax_stable\.grad needs"):
        Options(algorithms=("log_softmax_stable",), grad=True).validate()
    with pytest.raises(UsageError, match="--grad: none of the selected algorithms"):
        Options(algorithms=("softmax_stable",), grad=True, target="0").validate()


def test_torch_autograd_matches_the_builtin_formula_bit_for_bit() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    x = np.array([[0.0, -50.0, 3.0], [0.0, -200.0, -1.0]], np.float32)
    t = np.array([0, 2])
    opts = Options(
        dtypes=("float32",),
        algorithms=("torch.log_softmax.grad", "log_softmax_stable.grad", "log_of_softmax.grad"),
        per_element=True,
        target="0,2",
    )
    vectors = [Vector("t", i, i + 1, row.astype(np.float64)) for i, row in enumerate(x)]
    report = audit(vectors, opts)
    for i in range(2):
        tx = torch.tensor(x[i : i + 1], requires_grad=True)
        torch.nn.functional.cross_entropy(tx, torch.tensor([t[i]]), reduction="sum").backward()
        direct = tx.grad.numpy()[0]
        by_name = {r.algorithm: r for r in report.results if r.vector == i}
        got = [e.computed for e in by_name["torch.log_softmax.grad"].elements or ()]
        assert np.array_equal(np.array(got, np.float32), direct)
        # -log(softmax) through torch's autograd: NaN exactly where ours is NaN (the values
        # may differ in the last bit: torch's exp is not numpy's)
        ty = torch.tensor(x[i : i + 1], requires_grad=True)
        (-torch.log(torch.softmax(ty, -1))[0, t[i]]).backward()
        ours = np.array([e.computed for e in by_name["log_of_softmax.grad"].elements or ()])
        theirs = ty.grad.numpy()[0].astype(np.float64)
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        np.testing.assert_allclose(ours, theirs, rtol=2**-22)
    assert np.isnan(ours).all()  # the second row: e^-200 underflowed in float32


@pytest.mark.parametrize(
    ("values", "index", "below", "fmt"),
    [
        ([-48.0, 31.0], 1, 1.0, "float16"),  # p = 1 - 4.9e-35: ulp 2**-11, not 2**-10
        ([0.0, 40099.0], 1, 1.0, "float64"),  # p = 1 - e^-40099: no finite precision sees it
        ([0.0, 0.0, -40098.0], 0, 0.5, "float64"),  # two maxima: p just below 1/2
    ],
)
def test_probabilities_next_to_a_power_of_two_get_its_lower_ulp(
    values: list[float], index: int, below: float, fmt: str
) -> None:
    from lsmcheck.reference import exact, ulp_exponent

    f = FORMATS[fmt]
    ref = exact(np.array(values), f)
    p = ref.softmax[index]
    assert p < below  # strictly: another class has a positive probability
    # the true p is below the power of two, so its ulp is the finer one of the binade below
    assert ulp_exponent(p, f) == ulp_exponent(mpmath.mpf(below), f) - 1
    assert ref.bits <= 256  # settled by the strict bound p < 1/c, not by brute precision
    grad, _ = exact_nll_grad(np.array(values), f, index)
    assert -1 < grad[index] < 0
