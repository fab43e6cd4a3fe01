"""The sandbox: each ``--impl`` implementation runs in a process of its own.

A user implementation named by a spec (``--impl KIND=module:function``, the config's
``implementations``, or such a string given to :func:`lsmcheck.audit`) is imported and called
in a child process, one per implementation and per lsmcheck process (each ``--jobs`` worker
starts its own), so that whatever it does it cannot hang, crash or starve the gate:

* every call is bounded by ``--impl-timeout`` (default
  :data:`~lsmcheck.impllimits.DEFAULT_TIMEOUT` seconds): when it is over, the child (and
  anything it started) is killed, the batch's vectors get status ``error`` ("timed out after
  60 s (--impl-timeout)"), and the implementation's later calls in that process fail at once
  ("not run: it timed out after 60 s on an earlier call"), so a run pays for one timeout per
  implementation and process, not one per batch;
* its memory is capped by ``--impl-memory`` (default
  :data:`~lsmcheck.impllimits.DEFAULT_MEMORY_FRACTION` of the physical memory, or of the
  cgroup's limit when lower): an allocation beyond the cap raises ``MemoryError`` in the child
  ("ran out of memory (--impl-memory 2G): ..."), and the kernel's out-of-memory killer picks
  the child first, never lsmcheck;
* a child that dies (``os._exit``, a signal, a segfault) fails the batch ("the process
  running it was killed by SIGSEGV") and is started again for the next call; after
  :data:`MAX_DEATHS` deaths in one lsmcheck process the later calls fail at once.

A batch that timed out, ran out of memory or killed its process is not re-run row by row (as
a batch that raised is, to name the vectors it fails on): that would multiply the timeout.

The children never outlive lsmcheck: they are killed when it exits (normally, by an error, by
Ctrl-C or SIGTERM), a child exits when its pipe to lsmcheck closes, and on Linux the kernel
kills it when the process that started it dies, even by SIGKILL.  The child is started with
``subprocess`` (a fresh interpreter: fork is unsafe once torch or JAX are imported, and
multiprocessing's spawn would re-run the user's ``__main__``) and speaks to lsmcheck over two
pipes (see :mod:`lsmcheck._usercode`).  A callable given as a Python object
(:func:`lsmcheck.userimpl.wrap`, ``lsmcheck.audit(implementations=[fn])``) runs in-process:
an object cannot be handed to another interpreter without pickling it, which closures, lambdas
and objects holding a GPU context do not survive.  Windows has no sandbox (specs run
in-process there).
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsmcheck import _usercode
from lsmcheck._usercode import ImplementationError, SpecError
from lsmcheck.algorithms import Array, Kind, Trace, untraced
from lsmcheck.impllimits import Limits

__all__ = [
    "AVAILABLE",
    "MAX_DEATHS",
    "SandboxFailure",
    "SandboxedRun",
    "Target",
]

#: Seconds a sandbox process may take to start Python and numpy (before the user's import).
STARTUP_TIMEOUT = 60.0
#: A child that died this many times in one lsmcheck process is not started again.
MAX_DEATHS = 3
#: Whether specs run in a sandbox here (POSIX; Windows runs them in-process).
AVAILABLE = os.name == "posix"

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_usercode.py")


class SandboxFailure(ImplementationError):
    """The implementation timed out, ran out of memory, or its process died on a batch.

    The engine fails the whole batch with this message and does not re-run it row by row.
    """


# --- what a sandbox runs ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The callable a spec names, and where to import it from.

    Attributes:
        module, function: ``module.path`` and the (dotted) attribute in it.
        kind: what it computes.
        path: ``sys.path`` as :func:`lsmcheck.userimpl.load` set it up (the current
            directory and the config file's first), put first in the child's path.
    """

    module: str
    function: str
    kind: Kind
    path: tuple[str, ...]


# --- one child process ----------------------------------------------------------------------


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


class _Orphaned(Exception):
    """The process that started this one (a ``--jobs`` worker's lsmcheck) has died."""


def _parent_sentinel() -> int | None:
    """In a multiprocessing child (a ``--jobs`` worker), an fd that is readable once its
    parent has died: a wait on the sandbox watches it too, so that a worker whose lsmcheck
    was killed does not wait on a hung implementation for ever."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    sentinel = None if parent is None else getattr(parent, "sentinel", None)
    return sentinel if isinstance(sentinel, int) else None


class _Child:
    """A running child process and the two pipes to it (this process's ends non-blocking)."""

    def __init__(self) -> None:
        to_child, self.send_fd = os.pipe()
        self.receive_fd, from_child = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", _CHILD],
                stdin=to_child,
                stdout=from_child,
                close_fds=True,
                process_group=0,  # Ctrl-C is lsmcheck's to handle; killpg reaches grandchildren
            )
        except BaseException:
            for fd in (self.send_fd, self.receive_fd):
                os.close(fd)
            raise
        finally:
            os.close(to_child)
            os.close(from_child)
        self.owner = os.getpid()
        self.orphaned_when = _parent_sentinel()
        for fd in (self.send_fd, self.receive_fd):
            os.set_blocking(fd, False)
            _widen(fd)

    # I/O with a deadline (time.monotonic(); None: none)

    def _wait(self, fd: int, events: int, deadline: float | None) -> None:
        poller = select.poll()
        poller.register(fd, events)
        if self.orphaned_when is not None:
            poller.register(self.orphaned_when, select.POLLIN)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise _Timeout
            # in slices of a day at most: poll takes milliseconds as a C int (24.8 days)
            wait = None if left is None else max(1, math.ceil(min(left, 86400.0) * 1000))
            ready = poller.poll(wait)
            if any(ready_fd == self.orphaned_when for ready_fd, _ in ready):
                raise _Orphaned
            if ready:
                return

    def send(self, data: bytes | memoryview, deadline: float | None) -> None:
        view = memoryview(data).cast("B")
        while view:
            self._wait(self.send_fd, select.POLLOUT, deadline)
            try:
                view = view[os.write(self.send_fd, view) :]
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _Died from None

    def receive_into(self, view: memoryview, deadline: float | None) -> None:
        view = view.cast("B")
        while view:
            self._wait(self.receive_fd, select.POLLIN, deadline)
            try:
                n = os.readv(self.receive_fd, [view])
            except BlockingIOError:
                continue
            if n == 0:
                raise _Died
            view = view[n:]

    def receive(
        self, deadline: float | None, into: np.dtype[Any] | None = None
    ) -> tuple[dict[str, Any], Array | None]:
        import json

        prefix = bytearray(4)
        self.receive_into(memoryview(prefix), deadline)
        data = bytearray(int.from_bytes(prefix, "big"))
        self.receive_into(memoryview(data), deadline)
        fields: dict[str, Any] = json.loads(data)
        if "shape" not in fields:
            return fields, None
        dtype = _usercode.dtype_named(fields["dtype"])
        if into is not None and dtype != into:  # the child checked it: a bug if it differs
            raise _Died
        out = np.empty(tuple(fields["shape"]), dtype)
        if out.nbytes:
            self.receive_into(_usercode.raw(out), deadline)
        return fields, out

    # the end

    def how_it_ended(self) -> str:
        """Wait for a child whose pipe closed, and say how it ended."""
        if not self._exited(timeout=2):  # it closed the pipe but runs on
            self.kill()
            return "closed its pipe to lsmcheck"
        self.kill()  # reap it, and kill whatever it started
        code = self.process.returncode
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def _exited(self, timeout: float) -> bool:
        """Whether the child exits within ``timeout`` s (left unreaped: while it is a zombie
        its process group id cannot be reused, so killpg cannot reach a stranger)."""
        end = time.monotonic() + timeout
        while True:
            try:
                flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
                if os.waitid(os.P_PID, self.process.pid, flags) is not None:
                    return True
            except ChildProcessError:
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.002)

    def kill(self) -> None:
        """Kill the child and its process group, reap it and close the pipes (idempotent)."""
        if self.owner != os.getpid():  # inherited by a fork: not this process's to kill
            return
        if self.process.returncode is None:  # not reaped: its group id is still its own
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.wait()
        self.close()

    def close(self) -> None:
        for fd in (self.send_fd, self.receive_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.send_fd = self.receive_fd = -1


def _widen(fd: int) -> None:
    """Linux: a 1 MiB pipe buffer (the unprivileged maximum) instead of 64 KiB: fewer
    round trips per batch."""
    import fcntl

    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, setpipe, 1 << 20)


# --- a sandbox: the child of one implementation in this process, restarted when it dies ----


class _State:
    """What a sandbox holds; stopped by a finalizer when the sandbox is garbage (or at exit)."""

    def __init__(self) -> None:
        self.child: _Child | None = None

    def stop(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child = None


class Sandbox:
    """The child process running one implementation with one set of limits, in this process.

    Shared by every :class:`SandboxedRun` of the same target and limits in this process
    (:func:`sandbox`); thread-safe (one call at a time).
    """

    def __init__(self, target: Target, limits: Limits) -> None:
        self.target, self.limits = target, limits
        self.description = "user implementation"
        self.poisoned: str | None = None  # why later calls fail at once
        self.deaths = 0
        self._new_state()

    def _new_state(self) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        weakref.finalize(self, _State.stop, self._state)

    def after_fork(self) -> None:
        """In a forked process: drop the parent's child (its to kill, not ours) and its lock."""
        inherited = self._state.child
        if inherited is not None:
            inherited.close()
            _INHERITED.append(inherited)  # never garbage collected here: no ResourceWarning
            self._state.child = None
        self._new_state()

    def start(self) -> str:
        """Start the child (now, if it is not running) and return the callable's description.

        Raises SpecError when it cannot be imported, SandboxFailure when importing it timed
        out, ran out of memory or killed the process.
        """
        with self._lock:
            self.poisoned, self.deaths = None, 0
            if self._state.child is None:
                self._start()
            return self.description

    def _start(self) -> None:
        limits, target = self.limits, self.target
        child = _Child()
        # Python and numpy starting on a loaded machine are not the user's time: they get
        # STARTUP_TIMEOUT at least; importing the user's module gets --impl-timeout.
        startup = None if limits.timeout is None else max(limits.timeout, STARTUP_TIMEOUT)
        deadline = None if startup is None else time.monotonic() + startup
        hello = {
            "module": target.module,
            "function": target.function,
            "per_vector": target.kind.per_vector,
            "path": list(target.path),
            "memory": limits.memory,
            "parent": os.getpid(),
            # PR_SET_PDEATHSIG fires when the starting *thread* ends: only the main thread's
            # end is the process's
            "die_with_parent": threading.current_thread() is threading.main_thread(),
        }
        importing = f"importing {target.module!r}"
        started = False
        try:
            child.send(_usercode.header(hello), deadline)
            child.receive(deadline)
            started = True
            deadline = None if limits.timeout is None else time.monotonic() + limits.timeout
            fields, _ = child.receive(deadline)
        except _Timeout:
            child.kill()
            if not started:
                raise SandboxFailure(
                    f"the process to run it did not start within {startup:g} s"
                ) from None
            raise SandboxFailure(
                f"{importing} did not finish within {limits.timeout_text} (--impl-timeout)"
            ) from None
        except _Died:
            how = child.how_it_ended()
            raise SandboxFailure(f"{importing}: the process running it {how}") from None
        except BaseException:
            child.kill()
            raise
        if "description" not in fields:
            child.kill()
            if "spec" in fields:
                raise SpecError(fields["spec"])
            raise SandboxFailure(f"{importing} {self._out_of_memory(fields.get('oom', ''))}")
        self.description = fields["description"]
        self._state.child = child

    def _out_of_memory(self, detail: str) -> str:
        return f"ran out of memory (--impl-memory {self.limits.memory_text})" + (
            f": {detail}" if detail else ""
        )

    def call(self, x: Array) -> Array:
        """The implementation's output for the batch ``x``, checked (dtype and shape)."""
        with self._lock:
            if self.poisoned is not None:
                raise SandboxFailure(self.poisoned)
            if self._state.child is None:
                try:
                    self._start()
                except SpecError as e:  # it imported in the parent: not here (a worker)
                    self.poisoned = f"not run: {e}"
                    raise SandboxFailure(str(e)) from None
                except SandboxFailure as e:
                    self.poisoned = f"not run: {e}"
                    raise
            child = self._state.child
            assert child is not None
            return self._call(child, np.ascontiguousarray(x))

    def _call(self, child: _Child, x: Array) -> Array:
        timeout = self.limits.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            child.send(_usercode.header({"dtype": x.dtype.name, "shape": list(x.shape)}), deadline)
            if x.nbytes:
                child.send(_usercode.raw(x), deadline)
            fields, out = child.receive(deadline, into=x.dtype)
        except _Timeout:
            self._state.stop()
            text = self.limits.timeout_text
            self.poisoned = (
                f"not run: it timed out after {text} on an earlier call (--impl-timeout)"
            )
            raise SandboxFailure(f"timed out after {text} (--impl-timeout)") from None
        except _Died:
            how = child.how_it_ended()
            self._state.child = None
            self.deaths += 1
            if self.deaths >= MAX_DEATHS:
                self.poisoned = (
                    f"not run: the process running it died {self.deaths} times (last: it {how})"
                )
            raise SandboxFailure(f"the process running it {how}") from None
        except BaseException as e:  # Ctrl-C, SIGTERM, --timeout, or a --jobs worker orphaned
            self._state.stop()  # the pipe is mid-message
            self.poisoned = f"not run: lsmcheck was interrupted ({type(e).__name__})"
            raise
        if "error" in fields:
            raise ImplementationError(fields["error"])
        if "oom" in fields:
            raise SandboxFailure(self._out_of_memory(fields["oom"]))
        assert out is not None
        return out


#: The sandboxes of this process, by target, limits and role.
_SANDBOXES: weakref.WeakValueDictionary[tuple[Target, Limits, str], Sandbox] = (
    weakref.WeakValueDictionary()
)
_REGISTRY_LOCK = threading.Lock()
#: Children inherited from the parent of a fork (kept referenced, never used).
_INHERITED: list[_Child] = []


def sandbox(target: Target, limits: Limits, role: str = "audit") -> Sandbox:
    """This process's sandbox for ``target`` with ``limits`` (created, not started).

    ``role`` keeps sandboxes apart: ``"probe"`` is the one that measures the implementation's
    limits for headroom (see :meth:`SandboxedRun.twin`).
    """
    with _REGISTRY_LOCK:
        box = _SANDBOXES.get((target, limits, role))
        if box is None:
            box = _SANDBOXES[target, limits, role] = Sandbox(target, limits)
        return box


def _after_fork() -> None:
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = threading.Lock()
    for box in list(_SANDBOXES.values()):
        box.after_fork()


if AVAILABLE:
    os.register_at_fork(after_in_child=_after_fork)


class SandboxedRun:
    """The ``run`` of a sandboxed :class:`~lsmcheck.algorithms.Algorithm`: batch -> Trace.

    Pickles as its target and limits: a process that unpickles it (a Dask worker) starts a
    sandbox of its own on first use.
    """

    def __init__(
        self, target: Target, limits: Limits, box: Sandbox | None = None, role: str = "audit"
    ) -> None:
        self.target, self.limits, self.role = target, limits, role
        self._box = box
        self._twin: SandboxedRun | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (SandboxedRun, (self.target, self.limits, None, self.role))

    @property
    def box(self) -> Sandbox:
        if self._box is None:
            self._box = sandbox(self.target, self.limits, self.role)
        return self._box

    def twin(self) -> SandboxedRun:
        """The same implementation in a sandbox process of its own (started on first call),
        for the probes that measure its limits: a probe that times out, runs out of memory
        or kills its process then costs that limit, never the audit of the real vectors
        (whose sandbox would refuse every later call after a timeout)."""
        if self._twin is None:  # kept: its process serves every probe of this run
            self._twin = SandboxedRun(self.target, self.limits, role="probe")
        return self._twin

    def __call__(self, x: Array) -> Trace:
        out = self.box.call(x)
        if self.target.kind.per_vector:
            out = out.reshape(x.shape[0], 1)
        return untraced(out)
