"""Running chunks: in this process, in worker processes, or on a Dask cluster.

Every mode runs the same function (:func:`lsmcheck.audit.audit_chunk`) on the same chunks and
yields the outcomes in input order, with at most a few chunks in flight at once so that a stream
of vectors larger than memory is never held whole.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from lsmcheck.errors import UsageError

if TYPE_CHECKING:
    from lsmcheck.audit import ChunkOutcome, Options
    from lsmcheck.vectors import Vector


#: How long to wait for a Dask scheduler to answer.
CONNECT_TIMEOUT = "10s"


def tune_malloc() -> bool:
    """Ask glibc to keep freed memory for reuse rather than return each block to the system.

    The engine's temporaries are arrays of up to a few MB; by default glibc maps and unmaps
    each one, and the page faults cost as much CPU as the arithmetic (measured: 17 s of system
    time for 16 s of user time auditing a 512 MB file; 0.9 s after this).  Called by the
    command line for its own process (worker processes inherit it); a no-op where glibc's
    ``mallopt`` is not available.  Returns whether it applied.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 256 << 20) and libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        return False
    return bool(ok)


def default_jobs() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_chunks(
    chunks: Iterable[list[Vector]],
    options: Options,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
) -> Iterator[ChunkOutcome]:
    """Audit each chunk and yield the outcomes in input order."""
    from lsmcheck.audit import audit_chunk

    if jobs < 1:
        raise UsageError(f"--jobs: expected a number of workers >= 1, got {jobs}")
    if scheduler is not None:
        yield from _on_dask(chunks, options, scheduler)
        return
    it = iter(chunks)
    head = list(itertools.islice(it, 2))
    if jobs == 1 or len(head) < 2:  # one chunk: no workers to start
        for chunk in itertools.chain(head, it):
            yield audit_chunk(chunk, options)
        return
    method = "fork" if sys.platform == "linux" else "spawn"
    if method == "fork" and any(name in sys.modules for name in _THREADED):
        # JAX and PyTorch run thread pools of their own: a child forked from a process that
        # used them deadlocks (both reproduced: a --jobs 2 run hung after a JAX computation,
        # and after a torch matmul).  Workers then start from a clean server process and
        # import what they need.
        method = "forkserver"
    if method == "fork":
        global _SHARED_OPTIONS
        _SHARED_OPTIONS = options  # inherited by the forked workers: never pickled
    elif not _picklable(options):  # e.g. a user implementation defined in a closure
        for chunk in itertools.chain(head, it):
            yield audit_chunk(chunk, options)
        return
    context = multiprocessing.get_context(method)
    pool = ProcessPoolExecutor(jobs - 1, mp_context=context, initializer=_start_worker)
    try:
        yield from _windowed(pool, itertools.chain(head, it), options, jobs, method == "fork")
    except BaseException:  # Ctrl-C, SIGTERM, --timeout, an error: do not wait for the workers
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _start_worker() -> None:
    """Set up a worker process.

    It dies when the process that started it dies (Linux: lsmcheck, or the fork server, which
    ends with lsmcheck), even by SIGKILL, rather than wait for work for ever; its sandbox
    processes die with it (see :mod:`lsmcheck.sandbox`).  It leaves Ctrl-C to the main process
    (which ends the workers) and dies of SIGTERM, not of the command line's handler it
    inherited, which would unwind it with a traceback on stderr.
    """
    from lsmcheck._usercode import die_with_parent

    die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the workers of a run that is being abandoned (Ctrl-C, SIGTERM, ``--timeout``, an
    error) rather than wait for their chunks: a chunk may be waiting on a user implementation
    for up to ``--impl-timeout`` (for ever with 0), or on a deadlock.  SIGTERM first, SIGKILL a
    second later.  ``ProcessPoolExecutor`` has no public way to do this before Python 3.14
    (``terminate_workers``); its process table is used."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + 1
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join()
    pool.shutdown(wait=False, cancel_futures=True)


#: Libraries whose thread pools make forking this process unsafe once they have run.
_THREADED = ("jax", "torch")

#: The options of the run in progress, for workers forked from this process.
_SHARED_OPTIONS: Options | None = None


def _audit_shared(chunk: list[Vector]) -> ChunkOutcome:
    from lsmcheck.audit import audit_chunk

    assert _SHARED_OPTIONS is not None
    return audit_chunk(chunk, _SHARED_OPTIONS)


def _picklable(options: Options) -> bool:
    import pickle

    try:
        pickle.dumps(options)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def _windowed(
    pool: Executor, chunks: Iterable[list[Vector]], options: Options, jobs: int, shared: bool
) -> Iterator[ChunkOutcome]:
    """Audit chunks with ``jobs - 1`` workers and this process, yielding in input order.

    The workers have chunks queued (two each, so that they never wait); this process, which
    also merges the outcomes, audits the next chunk itself whenever the outcome it needs next
    is not ready, instead of waiting.  Near the end of the input (seen by reading ``2 jobs``
    chunks ahead) a worker gets one chunk at a time, so that the last chunks are shared out
    rather than left queued behind a busy worker while this process has nothing to do.  At
    most ``6 jobs`` chunks are held at once (``2 jobs`` read ahead, ``4 jobs`` in flight).
    """
    from lsmcheck.audit import audit_chunk

    it = iter(chunks)
    ahead: deque[list[Vector]] = deque()  # read, not yet given out
    pending: deque[Future[ChunkOutcome] | ChunkOutcome] = deque()
    queued = 0  # futures not yet taken from ``pending``
    ended = False
    try:
        while True:
            while not ended and len(ahead) < 2 * jobs:
                chunk = next(it, None)
                if chunk is None:
                    ended = True
                else:
                    ahead.append(chunk)
            depth = 2 if len(ahead) >= jobs else 1
            while ahead and queued < depth * (jobs - 1):
                chunk = ahead.popleft()
                if shared:
                    pending.append(pool.submit(_audit_shared, chunk))
                else:
                    pending.append(pool.submit(audit_chunk, chunk, options))
                queued += 1
            if not pending:
                return
            head = pending[0]
            if isinstance(head, Future) and not head.done() and ahead and len(pending) < 4 * jobs:
                pending.append(audit_chunk(ahead.popleft(), options))
                continue
            item = pending.popleft()
            if isinstance(item, Future):
                queued -= 1
                yield item.result()
            else:
                yield item
    finally:
        for f in pending:
            if isinstance(f, Future):
                f.cancel()


def _on_dask(
    chunks: Iterable[list[Vector]], options: Options, scheduler: str
) -> Iterator[ChunkOutcome]:
    """Run the chunks on the Dask distributed cluster at ``scheduler``."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install 'lsmcheck[dask]'") from None
    from lsmcheck.audit import audit_chunk

    try:
        connect: Any = Client  # distributed's Client is untyped
        client: Any = connect(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except OSError as e:
        raise UsageError(f"--scheduler: cannot connect to {scheduler}: {e}") from None
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        pending: deque[Any] = deque()
        for chunk in chunks:
            pending.append(client.submit(audit_chunk, chunk, options, pure=False))
            if len(pending) >= 2 * workers:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    finally:
        client.close()


def _result(future: Any) -> ChunkOutcome:
    """A Dask future's outcome; a cluster that cannot import lsmcheck is a user error."""
    try:
        outcome: ChunkOutcome = future.result()
    except Exception as e:
        cause = e if isinstance(e, ImportError) else e.__cause__
        if isinstance(cause, ImportError):
            raise UsageError(
                f"--scheduler: the cluster cannot run lsmcheck ({cause}); install the same "
                "lsmcheck on the scheduler and on every worker"
            ) from None
        raise
    return outcome


__all__ = ["default_jobs", "run_chunks", "tune_malloc"]
