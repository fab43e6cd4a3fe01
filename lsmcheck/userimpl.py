"""The user's own implementations, audited like the built-ins.

``--impl KIND=module.path:function`` (or ``KIND=path/to/file.py:function``) names a callable;
:func:`load` starts a sandbox process that imports it (with the current directory first on the
import path, as ``python -m`` and pytest do) and returns an
:class:`~lsmcheck.algorithms.Algorithm` whose name is ``module.path:function`` (or the spec's
``file.py:function``) and whose calls go to that process, so that the engine, the gate and
every output format treat it like a built-in.  :func:`wrap` turns a Python callable into an
Algorithm called in this process (the Python API's ``implementations=[fn]``).

The callable receives a 2-D numpy array in the audited dtype: vectors of one length batched
along axis 0, classes on the last axis.  What it returns is converted with ``numpy.asarray``
(so a CPU torch or jax array works) and must have the input's dtype and shape, ``(batch, n)``
for softmax and log-softmax and ``(batch,)`` or ``(batch, 1)`` for logsumexp.  A callable that
raises or returns anything else raises :class:`ImplementationError`, which the engine turns
into results with status ``error`` (re-running the batch row by row to name the vectors it
fails on).  One that runs past ``--impl-timeout``, runs out of ``--impl-memory`` or kills its
process raises :class:`SandboxFailure`: the whole batch gets status ``error`` with one line
saying so, and lsmcheck carries on (see :mod:`lsmcheck.sandbox`).  Whatever it prints goes to
standard error.  The output is a black box: overflow and underflow are classified from the
values it returns (see :mod:`lsmcheck.metrics`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

from lsmcheck import sandbox
from lsmcheck._usercode import MAX_MESSAGE, ImplementationError, SpecError, call, check, resolve
from lsmcheck._usercode import describe as _describe
from lsmcheck.algorithms import Algorithm, Array, Kind, Trace, untraced
from lsmcheck.errors import UsageError
from lsmcheck.impllimits import Limits
from lsmcheck.sandbox import SandboxFailure

__all__ = [
    "MAX_MESSAGE",
    "USER_KINDS",
    "ImplementationError",
    "SandboxFailure",
    "load",
    "parse_spec",
    "spec_file",
    "user_kind",
    "wrap",
]

_SPEC = re.compile(r"(?P<kind>[a-z_]+)=(?P<module>[\w.]+|.+\.py):(?P<function>[\w.]+)")


#: The kinds a user implementation may compute: it is given the logits only, so not the
#: kinds that depend on a target class (cross-entropy and the backward passes).
USER_KINDS = tuple(k for k in Kind if not k.needs_target)


def user_kind(name: Kind | str, where: str) -> Kind:
    """The :class:`Kind` named ``name``, if a user implementation may compute it."""
    kinds = ", ".join(USER_KINDS)
    try:
        kind = Kind(name)
    except ValueError:
        raise UsageError(f"{where}: unknown kind {name!r} (choose from {kinds})") from None
    if kind.needs_target:
        raise UsageError(
            f"{where}: your implementation cannot be audited as {kind.value}: lsmcheck passes "
            f"it only the logits, and {kind.value} depends on the target class (choose from "
            f"{kinds}; the cross-entropy is -log_softmax(x)[target])"
        )
    return kind


def parse_spec(spec: str, where: str = "--impl") -> tuple[Kind, str, str]:
    """``"log_softmax=pkg.mod:fn"`` -> ``(Kind.LOG_SOFTMAX, "pkg.mod", "fn")``; the module
    may also be the path of a ``.py`` file: ``"softmax=ops/fused.py:fn"``."""
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise UsageError(
            f"{where}: expected KIND=module.path:function or KIND=file.py:function (KIND one "
            f"of {', '.join(USER_KINDS)}), got {spec!r}"
        )
    return user_kind(match["kind"], f"{where} {spec.strip()}"), match["module"], match["function"]


def spec_file(spec: str, search: tuple[str, ...] = ()) -> str | None:
    """The source file of the module ``spec`` names, found on the import path as ``load``
    sets it up, without importing anything (a report must never overwrite it); ``None`` when
    it is not a file found there (not yet importable, built in, a namespace package)."""
    _, module_name, _ = parse_spec(spec)
    if module_name.endswith(".py"):
        return _file_path(module_name, search)
    from importlib.machinery import PathFinder

    places: list[str] | None = [os.getcwd(), *search, *sys.path]
    found = None
    for part in module_name.split("."):
        found = PathFinder.find_spec(part, places)
        if found is None:
            return None
        places = list(found.submodule_search_locations or [])
    return None if found is None or not found.has_location else found.origin


def same_code(spec: str, search: tuple[str, ...] = ()) -> tuple[str, str, str]:
    """What ``spec`` loads, however it is spelt (``ops.py:f``, ``./ops.py:f``, an absolute
    path): its kind, its module's file (or, not found, its name) and its function."""
    kind, module_name, function = parse_spec(spec)
    try:
        file = spec_file(spec, search)
    except (ImportError, ValueError):  # a parent package that fails: judged when loaded
        file = None
    return kind.value, os.path.realpath(file) if file else module_name, function


def _file_path(file: str, search: tuple[str, ...]) -> str:
    """The absolute path of a spec's ``.py`` file: relative to the config file's directory
    (``search[0]``) when the spec comes from one, else to the current directory."""
    return os.path.abspath(os.path.join(*search[:1], file))


def load(
    spec: str,
    where: str = "--impl",
    search: tuple[str, ...] = (),
    limits: Limits | None = None,
    in_process: bool = False,
) -> Algorithm:
    """The implementation ``spec`` names, as an :class:`Algorithm` (run in a sandbox).

    The current directory, then each directory of ``search`` (e.g. the config file's), is put
    on ``sys.path`` first if it is not there, as ``python -m`` does; the sandbox child imports
    the module with that ``sys.path``.  The child is started here (and its import checked),
    with ``limits`` (default: :meth:`lsmcheck.impllimits.Limits.make` with no settings);
    ``in_process`` (or a platform without the sandbox) imports and calls it in this process
    instead.  A module that cannot be imported, a missing attribute, a non-callable, or an
    import that hangs, crashes or runs out of memory is a :class:`UsageError` (exit 2).
    """
    kind, module_name, function = parse_spec(spec, where)
    for directory in reversed((os.getcwd(), *search)):
        if directory not in sys.path and os.path.abspath(directory) not in sys.path:
            sys.path.insert(0, directory)
    name = f"{module_name}:{function}"
    if module_name.endswith(".py"):
        module_name = _file_path(module_name, search)
        if not os.path.isfile(module_name):
            raise UsageError(f"{where}: no such file: {module_name}")
    if in_process or not sandbox.AVAILABLE:
        try:
            fn = resolve(module_name, function)
        except SpecError as e:
            raise UsageError(f"{where}: {e}") from None
        return wrap(fn, kind, name)
    target = sandbox.Target(module_name, function, kind, tuple(sys.path))
    limits = limits or Limits.make()
    box = sandbox.sandbox(target, limits)
    try:
        description = box.start()
    except (SpecError, SandboxFailure) as e:
        raise UsageError(f"{where}: {e}") from None
    run = sandbox.SandboxedRun(target, limits, box)
    return Algorithm(name, kind, description, run, traced=False)


def wrap(fn: Callable[[Any], Any], kind: Kind | str, name: str | None = None) -> Algorithm:
    """An :class:`Algorithm` that calls ``fn`` on each batch, in this process, and checks
    what it returns.

    ``name`` defaults to ``module:qualname`` of ``fn``.
    """
    kind = user_kind(kind, "kind")
    if name is None:
        module = getattr(fn, "__module__", None) or "?"
        qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
        name = f"{module}:{qualname}"

    def run(x: Array) -> Trace:
        out: Array = call(fn, x)
        check(out, x, kind.per_vector)
        return untraced(out.reshape(x.shape[0], 1) if kind.per_vector else out)

    return Algorithm(name, kind, _describe(fn), run, traced=False)
