"""Calling the user's code: import it, call it, check what it returns; and the sandbox child.

This module imports nothing from lsmcheck (only the standard library and numpy), so that it
can run as a script: ``python -P .../lsmcheck/_usercode.py`` (``-P``: without lsmcheck's own
directory on ``sys.path``, whose modules would shadow the user's) is the process a sandboxed
implementation runs in (see :mod:`lsmcheck.sandbox`, which starts it and speaks to it).  The
functions above :func:`main` are shared by both sides: :mod:`lsmcheck.userimpl` calls a
Python object in-process with the same :func:`call` and :func:`check` that the child uses,
so the messages of a failing implementation do not depend on where it ran.

The protocol, on the child's standard input and output (the user's own ``print`` goes to
standard error instead): every message is a 4-byte big-endian length, a JSON header of that
length, and, when the header has a ``"shape"``, the raw bytes of an array of the header's
``"dtype"`` and shape, C order.

* parent -> child, once: ``{"module", "function", "per_vector", "path", "memory", "parent",
  "die_with_parent"}``;
  child -> parent: ``{"started": true}`` when it is set up (Python and numpy imported), then
  ``{"description": ...}`` once the callable is imported, or ``{"spec": message}`` when it
  cannot be (or ``{"oom": message}`` when the import ran out of memory);
* then per call, parent -> child: ``{"dtype", "shape"}`` + the batch; child -> parent:
  ``{"dtype", "shape"}`` + the output, or ``{"error": message}`` (it raised or returned the
  wrong thing), or ``{"oom": message}`` (it ran out of memory).

The child exits when its standard input closes (lsmcheck ended), and on Linux the kernel kills
it when the lsmcheck process that started it dies (``PR_SET_PDEATHSIG``; only when it was
started from the main thread, since the signal comes when the starting thread ends).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import struct
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

#: The longest exception message kept in a report.
MAX_MESSAGE = 500

_LENGTH = struct.Struct(">I")


class ImplementationError(Exception):
    """A user implementation failed on a batch: it raised, or returned the wrong thing.

    Not an :class:`~lsmcheck.errors.LsmcheckError`: it never reaches the command line, the
    engine reports it as results with status ``error``.
    """


class SpecError(Exception):
    """The callable a spec names cannot be imported (the caller adds where it was named)."""


def one_line(error: BaseException | str) -> str:
    """The exception's message on one line, shortened to :data:`MAX_MESSAGE` characters, with
    what a terminal or an encoder must not see escaped (``\\x1b``, a lone ``\\ud800``): the
    user's text reaches terminals, UTF-8 files and CI logs.  An exception whose ``__str__``
    itself raises is ``<unprintable NAME>``."""
    try:
        text = " ".join(str(error).split())
    except _caught(_SANDBOXED):  # the user's __str__ failed: not lsmcheck's error
        text = f"<unprintable {type(error).__name__}>"
    if not text.isprintable():
        text = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
        )
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


#: Whether this process is a sandbox (:func:`main`), where all that runs is the user's code.
_SANDBOXED = False


def _caught(sandboxed: bool) -> tuple[type[BaseException], ...]:
    """What the user's code may raise that is its own error, not lsmcheck's to act on: in its
    sandbox process, anything (a class of its own derived from BaseException too); in this
    process, not Ctrl-C's KeyboardInterrupt nor lsmcheck's own signals' exceptions."""
    if sandboxed:
        return (BaseException,)
    return (Exception, SystemExit, GeneratorExit)


def raised(error: BaseException) -> str:
    """``raised NAME: MESSAGE``, or ``raised NAME`` when the exception has no message."""
    message = one_line(error)
    return f"raised {type(error).__name__}" + (f": {message}" if message else "")


def _import(module_name: str) -> Any:
    """The module ``module_name``: a dotted module name, or the absolute path of a ``.py``
    file, imported under its file name (with its directory first on ``sys.path``, so that it
    imports the modules beside it, and a worker process can import it by name)."""
    if not module_name.endswith(".py"):
        return importlib.import_module(module_name)
    directory, file = os.path.split(module_name)
    name = file.removesuffix(".py")
    known = sys.modules.get(name)
    if known is not None:
        if os.path.abspath(getattr(known, "__file__", None) or "") == module_name:
            return known
        raise SpecError(
            f"{module_name}: the name {name!r} is taken by the module {name} already imported "
            "(from elsewhere); rename the file"
        )
    spec = importlib.util.spec_from_file_location(name, module_name)
    if spec is None or spec.loader is None:
        raise SpecError(f"{module_name}: not a Python file")
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def resolve(module_name: str, function: str, sandboxed: bool = False) -> Callable[[Any], Any]:
    """Import ``module_name`` and return its attribute ``function`` (dotted), a callable
    (``sandboxed``: as in :func:`call`)."""
    caught = _caught(sandboxed)
    try:
        module = _import(module_name)
    except ModuleNotFoundError as e:
        raise SpecError(f"cannot import {module_name!r}: {e}") from None
    except MemoryError:
        raise
    except caught as e:  # the user's module failed while it was imported
        raise SpecError(f"importing {module_name!r} {raised(e)}") from None
    target: Any = module
    for part in function.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SpecError(f"module {module_name!r} has no attribute {function!r}") from None
    if not callable(target):
        raise SpecError(f"{module_name}:{function} is not callable")
    fn: Callable[[Any], Any] = target
    return fn


def describe(fn: Callable[[Any], Any]) -> str:
    """The first line of ``fn``'s docstring, or ``"user implementation"``."""
    return (getattr(fn, "__doc__", None) or "").strip().split("\n")[0] or "user implementation"


def call(
    fn: Callable[[Any], Any], x: np.ndarray[Any, Any], copy: bool = True, sandboxed: bool = False
) -> Any:
    """``numpy.asarray(fn(x))`` (on a copy of ``x`` unless ``copy`` is false); whatever goes
    wrong becomes an ImplementationError (its ``__cause__`` is what was raised).

    ``sandboxed``: ``fn`` runs in the sandbox's own process group, where the terminal's Ctrl-C
    never arrives, so a KeyboardInterrupt there is the code's own error too (in lsmcheck's own
    process it is the user's Ctrl-C, and ends the run).
    """
    caught = _caught(sandboxed)
    try:
        with np.errstate(all="ignore"):
            returned = fn(x.copy() if copy else x)
    except caught as e:
        raise ImplementationError(raised(e)) from e
    if returned is None:  # a forgotten return: say so, not "returned shape ()"
        raise ImplementationError("returned None; expected an array")
    try:
        return np.asarray(returned)
    except Exception as e:
        raise ImplementationError(
            f"returned a {type(returned).__name__} that numpy.asarray cannot convert: {one_line(e)}"
        ) from e


def check(out: np.ndarray[Any, Any], x: np.ndarray[Any, Any], per_vector: bool) -> None:
    """Raise ImplementationError unless ``out`` has ``x``'s dtype and the shape needed:
    ``x.shape``, or ``(batch,)``/``(batch, 1)`` for a kind with one value per vector."""
    batch = x.shape[0]
    shapes = [(batch,), (batch, 1)] if per_vector else [x.shape]
    if out.shape not in shapes:
        expected = " or ".join(str(s) for s in shapes)
        raise ImplementationError(
            f"returned shape {out.shape} for input shape {x.shape}; expected {expected}"
        )
    if out.dtype != x.dtype:
        raise ImplementationError(
            f"returned dtype {out.dtype} for {x.dtype} input; expected {x.dtype}"
        )


def dtype_named(name: str) -> np.dtype[Any]:
    """numpy's dtype ``name``, or ml_dtypes' (``bfloat16``, ``float8_e4m3fn``, ...)."""
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes

        dtype: np.dtype[Any] = np.dtype(getattr(ml_dtypes, name))
        return dtype


def raw(array: np.ndarray[Any, Any]) -> memoryview:
    """The bytes of a C-contiguous array, as a memoryview (any dtype: ml_dtypes' have no
    buffer format of their own)."""
    return array.reshape(-1).view(np.uint8).data


# --- the wire: used by the child below and by lsmcheck.sandbox (with deadlines) -------------


def header(fields: dict[str, Any]) -> bytes:
    """A message's length prefix and JSON header."""
    data = json.dumps(fields).encode()
    return _LENGTH.pack(len(data)) + data


def _read_exactly(fd: int, view: memoryview) -> bool:
    """Fill ``view`` from ``fd`` (blocking); False at end of file before anything was read."""
    done = 0
    while done < len(view):
        n = os.readv(fd, [view[done:]])
        if n == 0:
            if done == 0:
                return False
            raise EOFError("the pipe closed in the middle of a message")
        done += n
    return True


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int) -> tuple[dict[str, Any], np.ndarray[Any, Any] | None] | None:
    """The next message (header, array or None), or None when the pipe closed."""
    prefix = bytearray(_LENGTH.size)
    if not _read_exactly(fd, memoryview(prefix)):
        return None
    (size,) = _LENGTH.unpack(prefix)
    data = bytearray(size)
    if not _read_exactly(fd, memoryview(data)):
        raise EOFError("the pipe closed in the middle of a message")
    fields: dict[str, Any] = json.loads(data)
    if "shape" not in fields:
        return fields, None
    array = np.empty(tuple(fields["shape"]), dtype_named(fields["dtype"]))
    if array.nbytes and not _read_exactly(fd, raw(array)):
        raise EOFError("the pipe closed in the middle of a message")
    return fields, array


def _send(fd: int, fields: dict[str, Any], array: np.ndarray[Any, Any] | None = None) -> None:
    if array is None:
        _write_all(fd, header(fields))
        return
    array = np.ascontiguousarray(array)
    _write_all(fd, header({**fields, "dtype": array.dtype.name, "shape": list(array.shape)}))
    if array.nbytes:
        _write_all(fd, raw(array))


# --- the child --------------------------------------------------------------------------------


def die_with_parent(parent: int) -> None:
    """Linux: ask the kernel to SIGKILL this process when the process that started it dies
    (even by SIGKILL), and exit now if it died before this was asked."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(0)


def _first_to_die() -> None:
    """Linux: make this process the one the out-of-memory killer picks first."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _cap_memory(limit: int | None) -> None:
    """Cap the memory this process may allocate: RLIMIT_DATA on Linux (private writable
    memory: what numpy and malloc allocate, not address space merely reserved), RLIMIT_AS
    elsewhere."""
    if limit is None:
        return
    import resource

    which = resource.RLIMIT_DATA if sys.platform == "linux" else resource.RLIMIT_AS
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(which, (limit, hard))


def _serve(fd_in: int, fd_out: int, fn: Callable[[Any], Any], per_vector: bool) -> None:
    """Answer calls until the parent closes the pipe."""
    while True:
        try:
            message = _receive(fd_in)
        except MemoryError as e:  # the batch itself does not fit: the stream is lost
            _send(fd_out, {"oom": one_line(e)})
            return
        if message is None:
            return
        x = message[1]
        assert x is not None
        try:
            out = call(fn, x, copy=False, sandboxed=True)  # x is this process's own copy
            check(out, x, per_vector)
            _send(fd_out, {}, out)
        except ImplementationError as e:
            if isinstance(e.__cause__, MemoryError):
                _send(fd_out, {"oom": one_line(e.__cause__)})
            else:
                _send(fd_out, {"error": str(e)})
        except MemoryError as e:
            _send(fd_out, {"oom": one_line(e)})
        del x, message


def main() -> None:
    """The sandbox child: set itself up, import the callable, serve calls."""
    global _SANDBOXED
    _SANDBOXED = True
    # The protocol keeps the original standard input and output; the user's code gets
    # /dev/null as standard input and standard error as standard output.
    fd_in, fd_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    message = _receive(fd_in)
    if message is None:
        return
    hello = message[0]
    if hello["die_with_parent"]:
        die_with_parent(hello["parent"])
    _first_to_die()
    sys.path[:] = list(dict.fromkeys([*hello["path"], *sys.path]))
    import faulthandler

    faulthandler.enable()  # a segfault prints where it happened on standard error
    _send(fd_out, {"started": True})  # from here on, the time is the user's
    try:
        _cap_memory(hello["memory"])
        fn = resolve(hello["module"], hello["function"], sandboxed=True)
    except SpecError as e:
        _send(fd_out, {"spec": str(e)})
        return
    except MemoryError as e:
        _send(fd_out, {"oom": one_line(e)})
        return
    _send(fd_out, {"description": describe(fn)})
    _serve(fd_in, fd_out, fn, bool(hello["per_vector"]))


if __name__ == "__main__":
    main()
