"""The built-ins trace only the rows whose outputs show an event (``algorithms.lazy._lazily``).

The claim it rests on (``eventful_rows``): a row whose inputs and outputs are finite and whose
outputs are nonzero recorded no event.  These tests compare the lazy run with the fully traced
run (every row traced) field by field, on rows built to hit every event.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck.algorithms import BUILTINS, NO_SETUP, Setup, Trace, _errstate, eventful_rows
from lsmcheck.dtypes import FORMATS, get_format

LAZY = sorted(BUILTINS)
FIELDS = ("out", "overflow", "flush", "nan", "arg")


def traced_everywhere(name: str, x: np.ndarray[Any, Any], s: Setup) -> Trace:
    """The algorithm's own function, every row traced (no lazy wrapper)."""
    import lsmcheck.algorithms as algorithms

    fn = getattr(algorithms, name)
    return _errstate(fn)(x, s)


def same(a: Trace, b: Trace) -> None:
    for f in FIELDS:
        u, v = np.asarray(getattr(a, f), np.float64), np.asarray(getattr(b, f), np.float64)
        np.testing.assert_array_equal(u, v, err_msg=f)


ROWS = [
    [0.0, 1.0, 2.0, 3.0],  # nothing happens
    [1000.0, 0.0, -1.0, 2.0],  # exp overflow in float64
    [12.0, 11.0, 0.0, -1.0],  # exp(12) overflows float16
    [0.0, -200.0, -800.0, 1.0],  # flushes
    [-1000.0, -1001.0, -1002.0, -1003.0],  # naive sum flushes to 0
    [np.inf, 0.0, 1.0, 2.0],  # infinite input
    [-np.inf, 0.0, 1.0, 2.0],  # a masked class
    [np.nan, 0.0, 1.0, 2.0],  # NaN input
    [60000.0, -60000.0, 0.0, 1.0],  # x - max overflows float16
    [0.0, 0.0, 0.0, 0.0],  # log_softmax outputs nonzero, softmax 1/4
    [5.0, -3.0, 0.5, 0.25],
    [0.0, -50.0, -20.0, -30.0],  # log(softmax) -> -inf in float16/32, sum rounds to 1
]


@pytest.mark.parametrize("dtype", sorted(FORMATS))
@pytest.mark.parametrize("name", LAZY)
def test_lazy_trace_is_the_full_trace(name: str, dtype: str) -> None:
    fmt = get_format(dtype)
    x = fmt.cast(np.array(ROWS))
    s = Setup(acc=None)
    same(BUILTINS[name].execute(x, s), traced_everywhere(name, x, s))


@pytest.mark.parametrize("name", LAZY)
def test_lazy_trace_with_an_accumulation_dtype(name: str) -> None:
    x = get_format("float16").cast(np.array(ROWS))
    s = Setup(acc=np.dtype(np.float32))
    same(BUILTINS[name].execute(x, s), traced_everywhere(name, x, s))


row = st.lists(
    st.one_of(
        st.floats(-120, 120),
        st.sampled_from([0.0, -np.inf, 11.0, 12.0, 89.0, 709.0, 710.0, -745.0, 65504.0]),
    ),
    min_size=3,
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(row, min_size=2, max_size=6),
    st.sampled_from(sorted(FORMATS)),
    st.sampled_from(LAZY),
)
def test_lazy_trace_property(rows: list[list[float]], dtype: str, name: str) -> None:
    fmt = get_format(dtype)
    x = fmt.cast(np.array(rows))
    same(BUILTINS[name].execute(x, NO_SETUP), traced_everywhere(name, x, NO_SETUP))


def test_calm_rows_are_not_traced_again() -> None:
    x = np.array([[0.0, 1.0, 2.0], [1000.0, 0.0, 1.0], [0.0, -1.0, 0.5]])
    out = BUILTINS["softmax_naive"].execute(x, NO_SETUP).out
    assert eventful_rows(x, out).tolist() == [1]


def test_float16_exp_and_rounding_match_numpy_exhaustively() -> None:
    """The traced float16 ``exp`` and ``_to_half`` give numpy's own float16 results (on a CPU
    with AVX-512 numpy's float16 ``exp`` is not float32's rounded: 4 inputs differ)."""
    from lsmcheck.algorithms import _to_half
    from lsmcheck.algorithms.trace import _exp, _Tracer

    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite = every[np.isfinite(every)]
    with np.errstate(all="ignore"):
        for active in (True, False):
            traced = _exp(_Tracer(finite.shape, active), finite, False, np.dtype(np.float16))
            np.testing.assert_array_equal(traced.view(np.uint16), np.exp(finite).view(np.uint16))
        rng = np.random.default_rng(7)
        wide = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
        tiny = rng.random(1 << 20) * 2.0**-13 * rng.choice([-1.0, 1.0], 1 << 20)
        ties = np.arange(2049) * 2.0**-25  # every half-way point of the subnormal range
        for v in (wide.view(np.float32), tiny, tiny.astype(np.float32), ties, -ties):
            np.testing.assert_array_equal(
                _to_half(v).view(np.uint16), v.astype(np.float16).view(np.uint16)
            )


# --- exact row sums of softmax outputs (fastmetrics.sum_errors) --------------------------


def fsum_error(row: np.ndarray[Any, Any]) -> float:
    import math

    return abs(math.fsum([*row.tolist(), -1.0]))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.floats(0, 1),
                st.floats(0, 1e-300),
                st.sampled_from([0.0, 5e-324, 2.0**-1022, 1.0, 0.5, 2.0**-53, 1 - 2.0**-53]),
            ),
            min_size=4,
            max_size=4,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_sum_errors_are_exact_where_settled(rows: list[list[float]]) -> None:
    from lsmcheck.fastmetrics import sum_errors

    c = np.array(rows)
    values, settled = sum_errors(c)
    for v, ok, row in zip(values.tolist(), settled.tolist(), c, strict=True):
        if ok:
            assert v == fsum_error(row)


def test_sum_errors_settle_real_softmax_rows() -> None:
    from lsmcheck.fastmetrics import sum_errors

    x = np.random.default_rng(3).standard_normal((50, 1000)) * 4
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    values, settled = sum_errors(p)
    assert settled.all()
    assert values.tolist() == [fsum_error(row) for row in p]
    bad = p.copy()
    bad[0, 0], bad[1, 1] = np.nan, -1e-3  # never settled: metrics.sum_error decides
    assert sum_errors(bad)[1].tolist()[:3] == [False, False, True]


def test_float16_predicates_and_row_max_match_numpy() -> None:
    """The float16 shortcuts (from the bits; the max in float32) give numpy's own results,
    signed zeros and NaN included."""
    from lsmcheck.algorithms.trace import _finite, _is_zero, _isinf, _isnan, _max

    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    assert _finite(every).tolist() == np.isfinite(every).tolist()
    assert _isnan(every).tolist() == np.isnan(every).tolist()
    assert _isinf(every).tolist() == np.isinf(every).tolist()
    assert _is_zero(every).tolist() == (every == 0).tolist()
    rng = np.random.default_rng(3)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 6e-8, -6e-8], np.float16)
    for rows in (
        rng.integers(0, 1 << 16, (20000, 7), dtype=np.uint16).view(np.float16),
        rng.choice(special, (100000, 5)),
        rng.choice(special[:2], (1000, 3)),  # all zeros: -0 or +0 as numpy picks
    ):
        with np.errstate(all="ignore"):
            got, want = _max(rows), np.max(rows, axis=-1, keepdims=True)
        assert got.dtype == want.dtype
        same = (got.view(np.uint16) == want.view(np.uint16)) | (np.isnan(got) & np.isnan(want))
        assert same.all()
