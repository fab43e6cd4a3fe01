"""The PyTorch, SciPy and JAX adapters return exactly what the libraries return.

Each test calls the library directly (building its own tensors, not through the adapter's
conversion) and compares the audited ``computed`` values bit for bit.  A framework that is not
installed skips its tests with the reason; CI installs all three (.ci/run).
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck import Options, Status, Vector, audit
from lsmcheck import frameworks as fw
from lsmcheck.algorithms import get_algorithm
from lsmcheck.cli import main
from lsmcheck.dtypes import FORMATS
from lsmcheck.errors import UsageError

ROWS = [
    [2.0, 1.0, 0.1],
    [0.0, -50.0, 3.0],
    [1.0, -math.inf, 3.0],
    [19.0, 20.0, 11.0],
    [0.3452, -0.0267, 0.4066],
]
DTYPES = ["float16", "bfloat16", "float32", "float64"]


def audited(names: list[str], dtype: str, target: str | None = None) -> dict[str, np.ndarray]:
    """``{algorithm: computed values (rows x outputs) as float64}``."""
    vectors = [Vector("t", i, i + 1, np.array(r)) for i, r in enumerate(ROWS)]
    opts = Options(
        dtypes=(dtype,),
        algorithms=tuple(names),
        per_element=True,
        target=target,
        danger_zone=None,  # no limit search: JAX compiles every probe shape
    )
    out: dict[str, list[list[float]]] = {}
    for r in audit(vectors, opts).results:
        assert r.status is not Status.ERROR, r.reason
        out.setdefault(r.algorithm, []).append([e.computed for e in r.elements or ()])
    return {k: np.array(v) for k, v in out.items()}


def inputs(dtype: str) -> np.ndarray:
    return FORMATS[dtype].cast(np.array(ROWS))


def same_bits(got: np.ndarray, expected: Any) -> None:
    expected = np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    both_nan = np.isnan(got) & np.isnan(expected)
    assert np.array_equal(got[~both_nan], expected[~both_nan])


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_adapters_return_what_torch_returns(dtype: str) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    names = [
        "torch.softmax",
        "torch.log_softmax",
        "torch.logsumexp",
        "torch.nn.functional.cross_entropy",
        "torch.log_softmax.grad",
        "torch.nn.functional.cross_entropy.grad",
    ]
    got = audited(names, dtype, target="argmax")
    t_dtype = getattr(torch, dtype)
    x = torch.tensor(inputs(dtype).astype(np.float64)).to(t_dtype)  # exact: already rounded
    target = torch.tensor([int(np.argmax(r)) for r in ROWS])

    def f64(t: Any) -> np.ndarray:
        return np.asarray(t.detach().to(torch.float64).numpy())

    same_bits(got["torch.softmax"], f64(torch.softmax(x, -1)))
    same_bits(got["torch.log_softmax"], f64(torch.log_softmax(x, -1)))
    same_bits(got["torch.logsumexp"], f64(torch.logsumexp(x, -1, keepdim=True)))
    ce = torch.nn.functional.cross_entropy(x, target, reduction="none")
    same_bits(got["torch.nn.functional.cross_entropy"], f64(ce)[:, None])
    xg = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(xg, target, reduction="sum").backward()
    same_bits(got["torch.nn.functional.cross_entropy.grad"], f64(xg.grad))
    xl = x.clone().requires_grad_(True)
    upstream = torch.zeros_like(xl)
    upstream[torch.arange(len(ROWS)), target] = -1
    torch.log_softmax(xl, -1).backward(upstream)
    same_bits(got["torch.log_softmax.grad"], f64(xl.grad))


def test_torch_float8_is_an_error_result_not_a_crash() -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    opts = Options(dtypes=("float8_e5m2",), algorithms=("torch.softmax", "softmax_stable"))
    report = audit([Vector("t", 0, 1, np.array([1.0, 2.0]))], opts)
    bad, good = report.results
    assert bad.status is Status.ERROR and good.status is Status.PASS
    assert (bad.reason or "").startswith("torch.softmax raised NotImplementedError")
    assert report.exit_code == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_scipy_adapters_return_what_scipy_returns(dtype: str) -> None:
    special = pytest.importorskip("scipy.special", reason="scipy is not installed")
    got = audited(
        ["scipy.special.softmax", "scipy.special.log_softmax", "scipy.special.logsumexp"], dtype
    )
    x = inputs(dtype)
    same_bits(got["scipy.special.softmax"], special.softmax(x, axis=-1).astype(np.float64))
    same_bits(got["scipy.special.log_softmax"], special.log_softmax(x, axis=-1).astype(np.float64))
    lse = np.asarray(special.logsumexp(x, axis=-1, keepdims=True))
    if lse.dtype != x.dtype:  # SciPy returns float64 for bfloat16: rounded once to the dtype
        assert dtype == "bfloat16"
        lse = FORMATS[dtype].cast(lse.astype(np.float64))
    same_bits(got["scipy.special.logsumexp"], lse.astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_jax_adapters_return_what_jax_returns(dtype: str) -> None:
    jax = pytest.importorskip("jax", reason="jax is not installed")
    got = audited(["jax.nn.softmax", "jax.nn.log_softmax", "jax.nn.logsumexp"], dtype)
    jax.config.update("jax_enable_x64", True)
    x = jax.numpy.asarray(inputs(dtype))
    assert str(x.dtype) == dtype

    def f64(a: Any) -> np.ndarray:
        return np.asarray(a).astype(np.float64)

    same_bits(got["jax.nn.softmax"], f64(jax.nn.softmax(x, axis=-1)))
    same_bits(got["jax.nn.log_softmax"], f64(jax.nn.log_softmax(x, axis=-1)))
    same_bits(got["jax.nn.logsumexp"], f64(jax.nn.logsumexp(x, axis=-1, keepdims=True)))


def test_adapters_are_black_boxes_in_the_registry() -> None:
    pytest.importorskip("scipy", reason="scipy is not installed")
    alg = get_algorithm("scipy.special.log_softmax")
    assert alg.traced is False and alg.accumulates is False and alg.kind == "log_softmax"


def test_unavailable_framework_is_listed_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "jax" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    out = CliRunner().invoke(main, ["algorithms"])
    assert out.exit_code == 0
    assert "[unavailable: jax is not installed (pip install 'lsmcheck[jax]')]" in out.stdout
    with pytest.raises(UsageError, match=r"jax\.nn\.softmax is not available: jax is not"):
        fw.get("jax.nn.softmax")
    res = CliRunner().invoke(main, ["run", "-l", "1,2", "-a", "jax.nn.softmax"])
    assert res.exit_code == 2 and "jax is not installed" in res.stderr


def test_unknown_name_lists_the_adapters() -> None:
    with pytest.raises(UsageError, match=r"torch\.log_softmax"):
        get_algorithm("torch.log_sofmax")
