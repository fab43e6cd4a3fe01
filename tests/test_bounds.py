"""Leading-order error bounds: every built-in and framework stays within its bound, a defect
does not, and the bounds' values follow the derivation in lsmcheck/bounds.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsmcheck import Options, Vector, audit
from lsmcheck import bounds as bounds_module
from lsmcheck.algorithms import BUILTINS, LOSSES, Algorithm, Array, Trace, softmax_stable
from lsmcheck.bounds import BOUNDS, bounds_of, has_bound
from lsmcheck.dtypes import FORMATS
from lsmcheck.reference import exact

U64 = 2.0**-53

BOUNDED = [n for n in (*BUILTINS, *LOSSES) if has_bound(n)]


def test_every_builtin_but_the_mistake_has_a_bound() -> None:
    assert set(BOUNDED) == {*BUILTINS, *LOSSES} - {"cross_entropy_double_softmax"}
    assert not has_bound("log_softmax_stable.grad")


def test_stable_softmax_bound_of_a_tie() -> None:
    # x = [0, 0] in float64: p = 1/2, d = 0, D = 0, n = 2.  exp's error f = 8u, the division
    # and final rounding u, the sum (n - 1)u: rel = 2f + (n - 1)u + u = 18u; abs = 9u.
    x = np.array([0.0, 0.0])
    b = bounds_of("softmax_stable", x, exact(x, FORMATS["float64"]), FORMATS["float64"], 32)
    assert b is not None and b.tolist() == [9 * U64, 9 * U64]


def test_shift_rounding_widens_the_stable_bound() -> None:
    # x = [0, -8]: the shifted form may lose (|d_j| + D) u to the rounding of x - max.
    x = np.array([0.0, -8.0])
    ref = exact(x, FORMATS["float64"])
    naive = bounds_of("softmax_naive", x, ref, FORMATS["float64"], 32)
    stable = bounds_of("softmax_stable", x, ref, FORMATS["float64"], 32)
    assert naive is not None and stable is not None
    p = np.array([float(v) for v in ref.softmax])
    assert np.allclose((stable - naive) / p, np.array([0 + 8, 8 + 8]) * U64, rtol=1e-12)


def test_the_0_minus_50_error_is_within_the_stable_bound_and_log1p_is_tight() -> None:
    opts = Options(
        bounds=True, dtypes=("float64",), algorithms=("log_softmax_stable", "log_softmax_log1p")
    )
    stable, log1p = audit([Vector("t", 0, 1, np.array([0.0, -50.0]))], opts).results
    # 8.2e15 ulp off, and still within what the shifted algorithm promises for this input:
    # its bound on the dominant class is absolute (~(n + D) u), far above |-1.9e-22|.
    assert stable.max_ulp is not None and stable.max_ulp > 1e15
    assert stable.bound_ratio is not None and stable.bound_ratio <= 1
    assert stable.bound_rel_error is not None and stable.bound_rel_error > 1e5
    assert log1p.bound_ratio is not None and log1p.bound_ratio <= 1
    assert log1p.bound_rel_error is not None and log1p.bound_rel_error < 100 * U64
    assert not any(f.kind == "beyond_bound" for f in stable.findings)


logits = st.lists(
    st.one_of(st.floats(-100, 100, allow_nan=False), st.just(-math.inf)), min_size=1, max_size=8
).filter(lambda v: any(math.isfinite(x) for x in v))
DTYPES = [*sorted(FORMATS), "float16/acc=float32", "bfloat16/acc=float32"]


@settings(max_examples=80, deadline=None)
@given(logits, st.sampled_from(DTYPES), st.sampled_from(BOUNDED), st.sampled_from([1, 3, 32]))
def test_builtins_stay_within_their_bounds(
    values: list[float], dtype: str, algorithm: str, block: int
) -> None:
    opts = Options(
        bounds=True, dtypes=(dtype,), algorithms=(algorithm,), target="argmax", block=block
    )
    (r,) = audit([Vector("t", 0, 1, np.array(values))], opts).results
    if r.bound_ratio is not None:
        assert r.bound_ratio <= 1, (values, dtype, algorithm, r.bound_ratio)
    assert not any(f.kind == "beyond_bound" for f in r.findings)


@pytest.mark.parametrize("name", ["torch.log_softmax", "scipy.special.logsumexp"])
def test_frameworks_stay_within_their_bounds(name: str) -> None:
    pytest.importorskip(name.split(".")[0], reason=f"{name.split('.')[0]} is not installed")
    rng = np.random.default_rng(3)
    vectors = [Vector("t", i, i + 1, rng.normal(0, 30, 40)) for i in range(20)]
    opts = Options(
        bounds=True,
        dtypes=("float16", "bfloat16", "float32", "float64"),
        algorithms=(name,),
        danger_zone=None,
    )
    for r in audit(vectors, opts).results:
        assert r.bound_ratio is None or r.bound_ratio <= 1, (r.dtype, r.bound_ratio)


def _off_by_64_ulp(x: Array) -> Trace:
    t = softmax_stable(x)
    out = t.out.copy()
    for _ in range(64):
        out = np.nextafter(out, np.inf).astype(out.dtype)
    return Trace(out, t.overflow, t.flush, t.nan, t.arg)


def test_an_error_beyond_the_bound_is_flagged_as_a_defect(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = dataclasses.replace(
        BUILTINS["softmax_stable"], name="softmax_bad", run=_off_by_64_ulp, run_with=None
    )
    monkeypatch.setitem(BUILTINS, "softmax_bad", bad)
    monkeypatch.setitem(bounds_module.SAME_AS, "softmax_bad", "softmax_stable")
    assert isinstance(bad, Algorithm) and "softmax_stable" in BOUNDS
    opts = Options(bounds=True, dtypes=("float64",), algorithms=("softmax_bad", "softmax_stable"))
    bad_r, good_r = audit([Vector("t", 0, 1, np.array([2.0, 1.0, 0.1]))], opts).results
    assert bad_r.bound_ratio is not None and bad_r.bound_ratio > 1
    (finding,) = [f for f in bad_r.findings if f.kind == "beyond_bound"]
    assert "times the proven leading-order bound of softmax_bad in float64" in finding.message
    assert finding.count == 3
    assert good_r.bound_ratio is not None and good_r.bound_ratio < 1


@pytest.mark.parametrize(
    ("dtype", "longest"),
    [("float16", 205), ("bfloat16", 26), ("float8_e4m3fn", 2), ("float8_e5m2", 1)],
)
def test_no_first_order_bound_once_n_u_is_not_small(dtype: str, longest: int) -> None:
    """A first-order bound drops (n u)**2 terms: past (n - 1) u = 0.1 it has no say (200
    float8_e5m2 logits stall their sum at 8, and softmax_naive was called "a defect")."""
    u = 2.0 ** -FORMATS[dtype].p
    assert (longest - 1) * u <= 0.1 < longest * u
    opts = Options(bounds=True, dtypes=(dtype,), algorithms=("softmax_naive",))
    rng = np.random.default_rng(3)
    for n, has in ((longest, True), (longest + 1, False)):
        if n < 2:
            continue
        (r,) = audit([Vector("t", 0, 1, rng.standard_normal(n) * 0.1)], opts).results
        assert (r.bound_ratio is not None) is has, (n, r.bound_ratio)
        assert not any(f.kind == "beyond_bound" for f in r.findings) or has
