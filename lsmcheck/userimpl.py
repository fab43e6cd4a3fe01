"""The user's own implementations, audited like the built-ins.

``--impl KIND=module.path:function`` names a callable; :func:`load` imports it (with the current
directory first on the import path, as ``python -m`` and pytest do) and :func:`wrap` turns it
into an :class:`~lsmcheck.algorithms.Algorithm` whose name is ``module.path:function``, so that
the engine, the gate and every output format treat it like a built-in.

The callable receives a 2-D numpy array in the audited dtype: vectors of one length batched
along axis 0, classes on the last axis.  What it returns is converted with ``numpy.asarray``
(so a CPU torch or jax array works) and must have the input's dtype and shape, ``(batch, n)``
for softmax and log-softmax and ``(batch,)`` or ``(batch, 1)`` for logsumexp.  A callable that
raises or returns anything else raises :class:`ImplementationError`, which the engine turns
into results with status ``error``.  The output is a black box: overflow and underflow are
classified from the values it returns (see :mod:`lsmcheck.metrics`).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from lsmcheck.algorithms import Algorithm, Array, Kind, Trace
from lsmcheck.errors import UsageError

__all__ = ["ImplementationError", "load", "parse_spec", "wrap"]

#: The longest exception message kept in a report.
MAX_MESSAGE = 500

_SPEC = re.compile(r"(?P<kind>[a-z_]+)=(?P<module>[\w.]+):(?P<function>[\w.]+)")


class ImplementationError(Exception):
    """A user implementation failed on a batch: it raised, or returned the wrong thing.

    Not an :class:`~lsmcheck.errors.LsmcheckError`: it never reaches the command line, the
    engine reports it as results with status ``error``.
    """


def parse_spec(spec: str, where: str = "--impl") -> tuple[Kind, str, str]:
    """``"log_softmax=pkg.mod:fn"`` -> ``(Kind.LOG_SOFTMAX, "pkg.mod", "fn")``."""
    match = _SPEC.fullmatch(spec.strip())
    kinds = ", ".join(k.value for k in Kind)
    if match is None:
        raise UsageError(
            f"{where}: expected KIND=module.path:function (KIND one of {kinds}), got {spec!r}"
        )
    try:
        kind = Kind(match["kind"])
    except ValueError:
        raise UsageError(
            f"{where}: unknown kind {match['kind']!r} in {spec!r} (choose from {kinds})"
        ) from None
    return kind, match["module"], match["function"]


def load(spec: str, where: str = "--impl", search: tuple[str, ...] = ()) -> Algorithm:
    """Import the callable ``spec`` names and wrap it as an :class:`Algorithm`.

    The current directory, then each directory of ``search`` (e.g. the config file's), is put
    on ``sys.path`` first if it is not there, as ``python -m`` does.  A module that cannot be
    imported, a missing attribute or a non-callable is a :class:`UsageError` (exit 2).
    """
    kind, module_name, function = parse_spec(spec, where)
    for directory in reversed((os.getcwd(), *search)):
        if directory not in sys.path and os.path.abspath(directory) not in sys.path:
            sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UsageError(f"{where}: cannot import {module_name!r}: {e}") from None
    except Exception as e:  # the user's module failed while it was imported
        raise UsageError(
            f"{where}: importing {module_name!r} raised {type(e).__name__}: {_one_line(e)}"
        ) from None
    target: Any = module
    for part in function.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(
                f"{where}: module {module_name!r} has no attribute {function!r}"
            ) from None
    if not callable(target):
        raise UsageError(f"{where}: {module_name}:{function} is not callable")
    return wrap(target, kind, f"{module_name}:{function}")


def wrap(fn: Callable[[Any], Any], kind: Kind | str, name: str | None = None) -> Algorithm:
    """An :class:`Algorithm` that calls ``fn`` on each batch and checks what it returns.

    ``name`` defaults to ``module:qualname`` of ``fn``.
    """
    kind = Kind(kind)
    if name is None:
        module = getattr(fn, "__module__", None) or "?"
        qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
        name = f"{module}:{qualname}"

    def run(x: Array) -> Trace:
        out = _call(fn, x)
        _check(out, x, kind)
        out = out.reshape(x.shape[0], 1) if kind.per_vector else out
        zeros = np.zeros(out.shape, np.uint8)
        return Trace(out, zeros, zeros.copy(), zeros.copy(), np.full(out.shape, np.nan))

    description = (getattr(fn, "__doc__", None) or "").strip().split("\n")[0]
    return Algorithm(name, kind, description or "user implementation", run, traced=False)


def _one_line(error: BaseException) -> str:
    """The exception's message on one line, shortened to :data:`MAX_MESSAGE` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _call(fn: Callable[[Any], Any], x: Array) -> Array:
    """``numpy.asarray(fn(copy of x))``; whatever goes wrong becomes an ImplementationError."""
    try:
        with np.errstate(all="ignore"):
            returned = fn(x.copy())
    except (Exception, SystemExit) as e:
        raise ImplementationError(f"raised {type(e).__name__}: {_one_line(e)}") from e
    try:
        return np.asarray(returned)
    except Exception as e:
        raise ImplementationError(
            f"returned a {type(returned).__name__} that numpy.asarray cannot convert: "
            f"{_one_line(e)}"
        ) from e


def _check(out: Array, x: Array, kind: Kind) -> None:
    """Raise ImplementationError unless ``out`` has ``x``'s dtype and the shape ``kind`` needs."""
    batch = x.shape[0]
    shapes = [(batch,), (batch, 1)] if kind.per_vector else [x.shape]
    if out.shape not in shapes:
        expected = " or ".join(str(s) for s in shapes)
        raise ImplementationError(
            f"returned shape {out.shape} for input shape {x.shape}; expected {expected}"
        )
    if out.dtype != x.dtype:
        raise ImplementationError(
            f"returned dtype {out.dtype} for {x.dtype} input; expected {x.dtype}"
        )
