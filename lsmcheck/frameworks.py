"""Framework implementations as black boxes: PyTorch, SciPy and JAX.

Each adapter is an :class:`~lsmcheck.algorithms.Algorithm` in the same registry as the
built-ins (``-a torch.log_softmax``), found by :func:`lsmcheck.algorithms.get_algorithm`.  An
adapter hands the framework the audited dtype's values bit for bit (bfloat16 and float8 through
an integer view, since ``torch.from_numpy`` does not take ml_dtypes arrays), calls the library
function on the CPU, and returns what it returned.  When a library returns another dtype than it
was given (``scipy.special.logsumexp`` returns float64 for bfloat16 input), the adapter rounds
the result to the audited dtype, as storing it in a tensor of that dtype would.

Adapters are black boxes (``traced=False``): the metrics classify their outputs by value.  They
run their own kernels (PyTorch accumulates float16 and bfloat16 in float32 on the CPU), so
``--accumulate`` does not apply to them and their results carry the storage dtype's name.

Frameworks are imported only when one of their adapters is used (``import torch`` takes
seconds); ``lsmcheck algorithms`` says which are installed without importing them.  JAX runs
with ``jax_enable_x64`` switched on, or it would compute float64 in float32.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from lsmcheck.algorithms import Algorithm, Array, Kind, Setup, Trace, untraced
from lsmcheck.errors import UsageError

#: The pip extra that installs each framework.
EXTRAS = {"torch": "torch", "scipy": "scipy", "jax": "jax"}


@dataclass(frozen=True)
class Adapter:
    """One framework function: its registry name, what it computes, and how to call it.

    Attributes:
        name: the registry name, e.g. ``"torch.log_softmax"``.
        framework: the module to import, ``"torch"``, ``"scipy"`` or ``"jax"``.
        kind: the function it computes.
        description: one line for ``lsmcheck algorithms``.
        call: ``(batch in the audited dtype, setup) -> outputs``, importing what it needs.
    """

    name: str
    framework: str
    kind: Kind
    description: str
    call: Callable[[Array, Setup], Array]


# --- dtype conversions: bit for bit -----------------------------------------------------------

_BITS_VIEW = {
    np.dtype(ml_dtypes.bfloat16): (np.int16, "bfloat16"),
    np.dtype(ml_dtypes.float8_e4m3fn): (np.uint8, "float8_e4m3fn"),
    np.dtype(ml_dtypes.float8_e5m2): (np.uint8, "float8_e5m2"),
}


def to_torch(x: Array) -> Any:
    """A CPU tensor holding exactly the values of ``x`` in the same dtype."""
    import torch

    x = np.ascontiguousarray(x)
    if x.dtype in _BITS_VIEW:
        int_type, torch_name = _BITS_VIEW[x.dtype]
        return torch.from_numpy(x.view(int_type)).view(getattr(torch, torch_name))
    return torch.from_numpy(x)


def from_torch(t: Any, dtype: np.dtype[Any]) -> Array:
    """A tensor's values as a numpy array of ``dtype`` (bit for bit when the dtypes match)."""
    import torch

    t = t.detach().cpu().contiguous()
    if dtype in _BITS_VIEW:
        int_type, torch_name = _BITS_VIEW[dtype]
        if t.dtype == getattr(torch, torch_name):
            torch_int = torch.int16 if int_type is np.int16 else torch.uint8
            return np.asarray(t.view(torch_int).numpy().view(dtype))
        return _as_dtype(t.to(torch.float64).numpy(), dtype)
    return _as_dtype(t.numpy(), dtype)


def _as_dtype(out: Any, dtype: np.dtype[Any]) -> Array:
    """``out`` in ``dtype`` (rounded once, as storing it in a tensor of that dtype would)."""
    arr = np.asarray(out)
    if arr.dtype == dtype:
        return arr
    from lsmcheck.dtypes import FORMATS

    fmt = next((f for f in FORMATS.values() if f.dtype == dtype), None)
    wide = arr.astype(np.float64)
    return fmt.cast(wide) if fmt is not None else wide.astype(dtype)


def _targets(x: Array, s: Setup) -> Any:
    import torch

    return torch.from_numpy(np.asarray(s.target_array(x.shape[0]), np.int64))


# --- PyTorch ---------------------------------------------------------------------------------


def _torch_softmax(x: Array, s: Setup) -> Array:
    import torch

    return from_torch(torch.softmax(to_torch(x), dim=-1), x.dtype)


def _torch_log_softmax(x: Array, s: Setup) -> Array:
    import torch

    return from_torch(torch.log_softmax(to_torch(x), dim=-1), x.dtype)


def _torch_logsumexp(x: Array, s: Setup) -> Array:
    import torch

    return from_torch(torch.logsumexp(to_torch(x), dim=-1, keepdim=True), x.dtype)


def _torch_cross_entropy(x: Array, s: Setup) -> Array:
    import torch.nn.functional as F

    loss = F.cross_entropy(to_torch(x), _targets(x, s), reduction="none")
    return from_torch(loss[:, None], x.dtype)


def _torch_log_softmax_grad(x: Array, s: Setup) -> Array:
    """Autograd: ``log_softmax(x).backward(-onehot(t))``."""
    import torch

    t = to_torch(x).clone().requires_grad_(True)
    y = torch.log_softmax(t, dim=-1)
    upstream = torch.zeros_like(y)
    rows = torch.arange(x.shape[0])
    upstream[rows, _targets(x, s)] = -1
    y.backward(upstream)
    return from_torch(t.grad, x.dtype)


def _torch_cross_entropy_grad(x: Array, s: Setup) -> Array:
    """Autograd: ``cross_entropy(x, t, reduction="sum").backward()``."""
    import torch.nn.functional as F

    t = to_torch(x).clone().requires_grad_(True)
    F.cross_entropy(t, _targets(x, s), reduction="sum").backward()
    return from_torch(t.grad, x.dtype)


# --- SciPy -----------------------------------------------------------------------------------


def _scipy(fn: str, keepdims: bool = False) -> Callable[[Array, Setup], Array]:
    def call(x: Array, s: Setup) -> Array:
        import scipy.special

        f = getattr(scipy.special, fn)
        out = f(x, axis=-1, keepdims=True) if keepdims else f(x, axis=-1)
        return _as_dtype(out, x.dtype)

    return call


# --- JAX -------------------------------------------------------------------------------------


def _jax(fn: str, keepdims: bool = False) -> Callable[[Array, Setup], Array]:
    def call(x: Array, s: Setup) -> Array:
        import jax

        jax.config.update("jax_enable_x64", True)
        f = getattr(jax.nn, fn)
        a = jax.numpy.asarray(x)
        out = f(a, axis=-1, keepdims=True) if keepdims else f(a, axis=-1)
        return _as_dtype(np.asarray(out), x.dtype)

    return call


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter("torch.softmax", "torch", Kind.SOFTMAX, "torch.softmax(x, dim=-1)", _torch_softmax),
        Adapter(
            "torch.log_softmax",
            "torch",
            Kind.LOG_SOFTMAX,
            "torch.log_softmax(x, dim=-1)",
            _torch_log_softmax,
        ),
        Adapter(
            "torch.logsumexp",
            "torch",
            Kind.LOGSUMEXP,
            "torch.logsumexp(x, dim=-1)",
            _torch_logsumexp,
        ),
        Adapter(
            "torch.nn.functional.cross_entropy",
            "torch",
            Kind.CROSS_ENTROPY,
            "torch.nn.functional.cross_entropy(x, target, reduction='none')",
            _torch_cross_entropy,
        ),
        Adapter(
            "torch.log_softmax.grad",
            "torch",
            Kind.LOG_SOFTMAX_GRAD,
            "autograd: torch.log_softmax(x).backward(-onehot(target))",
            _torch_log_softmax_grad,
        ),
        Adapter(
            "torch.nn.functional.cross_entropy.grad",
            "torch",
            Kind.CROSS_ENTROPY_GRAD,
            "autograd: cross_entropy(x, target, reduction='sum').backward()",
            _torch_cross_entropy_grad,
        ),
        Adapter(
            "scipy.special.softmax",
            "scipy",
            Kind.SOFTMAX,
            "scipy.special.softmax(x, axis=-1)",
            _scipy("softmax"),
        ),
        Adapter(
            "scipy.special.log_softmax",
            "scipy",
            Kind.LOG_SOFTMAX,
            "scipy.special.log_softmax(x, axis=-1)",
            _scipy("log_softmax"),
        ),
        Adapter(
            "scipy.special.logsumexp",
            "scipy",
            Kind.LOGSUMEXP,
            "scipy.special.logsumexp(x, axis=-1) (float64 results rounded to the dtype)",
            _scipy("logsumexp", keepdims=True),
        ),
        Adapter(
            "jax.nn.softmax", "jax", Kind.SOFTMAX, "jax.nn.softmax(x, axis=-1)", _jax("softmax")
        ),
        Adapter(
            "jax.nn.log_softmax",
            "jax",
            Kind.LOG_SOFTMAX,
            "jax.nn.log_softmax(x, axis=-1)",
            _jax("log_softmax"),
        ),
        Adapter(
            "jax.nn.logsumexp",
            "jax",
            Kind.LOGSUMEXP,
            "jax.nn.logsumexp(x, axis=-1)",
            _jax("logsumexp", keepdims=True),
        ),
    )
}

#: Every adapter name, whether or not its framework is installed.
NAMES: tuple[str, ...] = tuple(ADAPTERS)

#: The backward pass of each forward adapter (``--grad``).
BACKWARD = {
    "torch.log_softmax": "torch.log_softmax.grad",
    "torch.nn.functional.cross_entropy": "torch.nn.functional.cross_entropy.grad",
}


def unavailable(framework: str) -> str | None:
    """Why ``framework`` cannot be used (not installed), or ``None`` when it is installed.

    Looks for the package without importing it; an installed package that fails to import is
    reported when an adapter is first used.
    """
    if importlib.util.find_spec(framework) is None:
        return f"{framework} is not installed (pip install 'lsmcheck[{EXTRAS[framework]}]')"
    return None


def version(framework: str) -> str | None:
    """The installed version of ``framework`` (from its metadata, without importing it)."""
    try:
        return importlib.metadata.version(framework)
    except importlib.metadata.PackageNotFoundError:
        return None


def _algorithm(a: Adapter) -> Algorithm:
    def run_with(x: Array, s: Setup) -> Trace:
        with np.errstate(all="ignore"):
            return untraced(a.call(x, s))

    def run(x: Array) -> Trace:
        return run_with(x, Setup())

    return Algorithm(
        a.name,
        a.kind,
        a.description,
        run,
        traced=False,
        run_with=run_with,
        accumulates=False,
        backward=BACKWARD.get(a.name),
    )


def get(name: str) -> Algorithm | None:
    """The adapter called ``name``; ``None`` if there is none by that name.

    :class:`UsageError` when its framework is not installed or does not import.
    """
    adapter = ADAPTERS.get(name)
    if adapter is None:
        return None
    reason = unavailable(adapter.framework)
    if reason is None:
        try:
            importlib.import_module(adapter.framework)
        except Exception as e:  # a broken install: say so, as a usage problem
            reason = f"{adapter.framework} fails to import: {type(e).__name__}: {e}"
    if reason is not None:
        raise UsageError(f"--algorithm: {name} is not available: {reason}")
    return _algorithm(adapter)


def listing() -> list[tuple[Adapter, str | None]]:
    """Every adapter with the reason it is unavailable (``None`` when it is installed)."""
    return [(a, unavailable(a.framework)) for a in ADAPTERS.values()]
