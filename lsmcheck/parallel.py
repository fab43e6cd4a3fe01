"""Running chunks: in this process, in worker processes, or on a Dask cluster.

Every mode runs the same function (:func:`lsmcheck.audit.audit_chunk`) on the same chunks and
yields the outcomes in input order, with at most a few chunks in flight at once so that a stream
of vectors larger than memory is never held whole.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from lsmcheck.errors import LimitError, UsageError, WorkerError

if TYPE_CHECKING:
    from lsmcheck.audit import ChunkOutcome
    from lsmcheck.options import Options
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

    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them (not
        # ctypes.util.find_library, which runs ldconfig: 3-8 ms of every start)
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
    summarise: Callable[[], int | None] | None = None,
) -> Iterator[ChunkOutcome]:
    """Audit each chunk and yield the outcomes in input order.

    ``summarise``, asked as each unit is handed to a worker process: ``None``, or the limit of
    an aggregating :class:`~lsmcheck.stream.Accumulator`, for the worker to count the unit's
    results in one of its own and send that (:attr:`ChunkOutcome.partial`) instead of every
    result (10-class logits: 1.4 million results to unpickle and count in this process).
    """
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
        yield from _Sharing(
            pool, itertools.chain(head, it), options, jobs, method == "fork", summarise
        )
    except BrokenProcessPool:  # a worker was killed: not a bug in lsmcheck, say what happened
        _stop_workers(pool)
        raise WorkerError(
            f"--jobs {jobs}: a worker process died (killed by a signal: by the system when "
            "memory ran out, or by a user); no report was written; try fewer --jobs"
        ) from None
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


def _audit_shared(chunk: list[Vector], keep: int | None = None) -> ChunkOutcome:
    assert _SHARED_OPTIONS is not None
    return _audit(chunk, _SHARED_OPTIONS, keep)


def _picklable(options: Options) -> bool:
    import pickle

    try:
        pickle.dumps(options)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


class _Sharing:
    """Chunks handed out, in input order, to ``jobs - 1`` workers and to this process.

    Each unit of work gets the next sequence number when it is taken, and the outcomes are
    yielded in that order.  This process reads the input (reading may raise an input error,
    which must surface here), merges the outcomes, and audits a unit itself whenever the
    outcome it needs next is not ready, instead of waiting.  The workers are fed as their
    results arrive (from the pool's result thread, see :meth:`_done`), so that a worker never
    waits for this process to finish a unit of its own; each has two units in flight (one
    running, one queued) until the input is nearly done, then one.

    Once the input is read to the end, the last chunks are cut into smaller units (guided
    self-scheduling: about a ``2 jobs``-th of what is left, at least a quarter of a chunk),
    so that the processes finish together instead of one auditing a whole chunk while the
    others wait.  Units are runs of whole vectors and the merge does not depend on where they
    are cut, so the report stays the same; but a black box (a framework's function, the
    user's own) computes a whole batch at once and may depend on it (one that shifts by the
    batch's maximum does), so with one of those the chunks are never cut.  At most
    ``4 jobs`` chunks are read ahead (far enough to see the end coming before the workers have
    taken its chunks whole), and about ``4 jobs`` units are in flight or waiting to be merged.

    An error auditing a unit, here or in a worker, is raised when the merge reaches that
    unit, as it would be with one process.
    """

    def __init__(
        self,
        pool: Executor,
        chunks: Iterable[list[Vector]],
        options: Options,
        jobs: int,
        shared: bool,
        summarise: Callable[[], int | None] | None = None,
    ) -> None:
        from lsmcheck import stream

        self.pool, self.options, self.jobs, self.shared = pool, options, jobs, shared
        self.summarise = summarise
        self.chunks = iter(chunks)
        self.smallest = max(1, stream.CHUNK_ELEMENTS // 4)
        self.cut = all(a.traced for a in options.implementations())  # built-ins: row by row
        self.lock = threading.RLock()
        self.ahead: deque[list[Vector]] = deque()  # read, not yet handed out
        self.ahead_elements = 0
        self.ended = False  # the whole input is read
        self.taken = 0  # units handed out: the next one's sequence number
        self.outcomes: dict[int, Future[ChunkOutcome] | ChunkOutcome] = {}
        self.running = 0  # units given to workers and not yet done
        self.feeding = False  # in _feed: a nested _done (same thread) leaves the work to it
        self.closed = False

    def __iter__(self) -> Iterator[ChunkOutcome]:
        from lsmcheck.audit import audit_chunk

        merged = 0  # sequence number of the next outcome to yield
        try:
            while True:
                self._read()
                self._feed()
                with self.lock:
                    head = self.outcomes.get(merged)
                    busy = head is None or (isinstance(head, Future) and not head.done())
                    unit = self._take() if busy and len(self.outcomes) < 4 * self.jobs else None
                if unit is not None:
                    seq, vectors = unit
                    done: Future[ChunkOutcome] | ChunkOutcome
                    try:
                        done = audit_chunk(vectors, self.options)
                    except LimitError:  # --timeout's alarm (a signal): the run stops now
                        raise
                    except Exception as e:  # the unit's own error: raised in input order
                        done = _failed(e)
                    with self.lock:
                        self.outcomes[seq] = done
                    continue
                if head is None:  # nothing in flight and nothing left to hand out
                    return
                with self.lock:
                    del self.outcomes[merged]
                merged += 1
                yield head.result() if isinstance(head, Future) else head
        finally:
            with self.lock:
                self.closed = True
                for f in self.outcomes.values():
                    if isinstance(f, Future):
                        f.cancel()

    def _read(self) -> None:
        """Read up to ``4 jobs`` chunks ahead (in this process's thread only)."""
        while not self.ended and len(self.ahead) < 4 * self.jobs:
            chunk = next(self.chunks, None)
            with self.lock:
                if chunk is None:
                    self.ended = True
                else:
                    self.ahead.append(chunk)
                    self.ahead_elements += _elements(chunk)

    def _take(self) -> tuple[int, list[Vector]] | None:
        """The next unit of work and its sequence number (with the lock held)."""
        if not self.ahead:
            return None
        chunk = self.ahead[0]
        size = _elements(chunk)
        if self.ended and self.cut:  # the tail: cut the chunk into smaller units
            want = max(self.smallest, self.ahead_elements // (2 * self.jobs))
            n = elements = 0
            while n < len(chunk) and elements < want:
                elements += len(chunk[n].values)
                n += 1
            if size - elements >= self.smallest:  # else no remnant smaller than a unit
                chunk, self.ahead[0], size = chunk[:n], chunk[n:], elements
        if chunk is self.ahead[0]:
            self.ahead.popleft()
        self.ahead_elements -= size
        seq = self.taken
        self.taken += 1
        return seq, chunk

    def _feed(self) -> None:
        """Give the workers units until each has its share in flight."""
        with self.lock:
            if self.feeding:
                return
            self.feeding = True
            try:
                self._feed_locked()
            finally:
                self.feeding = False

    def _feed_locked(self) -> None:
        depth = 2 if not self.ended or len(self.ahead) > self.jobs else 1
        while (
            not self.closed
            and self.running < depth * (self.jobs - 1)
            and len(self.outcomes) < 4 * self.jobs
        ):
            unit = self._take()
            if unit is None:
                return
            seq, vectors = unit
            future: Future[ChunkOutcome]
            keep = None if self.summarise is None else self.summarise()
            try:
                if self.shared:
                    future = self.pool.submit(_audit_shared, vectors, keep)
                else:
                    future = self.pool.submit(_audit, vectors, self.options, keep)
            except Exception as e:  # a broken pool: the error surfaces in input order
                self.outcomes[seq] = _failed(e)
                return
            self.outcomes[seq] = future
            self.running += 1
            # runs _done at once, in this thread, if the unit is already done: _feed then
            # returns (self.feeding) and this loop goes on, rather than recursing per unit
            future.add_done_callback(self._done)

    def _done(self, _: Future[ChunkOutcome]) -> None:
        """A worker's unit is done (called in the pool's result thread): feed it another."""
        with self.lock:
            self.running -= 1
        self._feed()


def _failed(error: Exception) -> Future[ChunkOutcome]:
    """A finished future holding ``error``, to be raised when the merge reaches it."""
    future: Future[ChunkOutcome] = Future()
    future.set_exception(error)
    return future


def _elements(vectors: list[Vector]) -> int:
    return sum(len(v.values) for v in vectors)


def _audit(vectors: list[Vector], options: Options, keep: int | None = None) -> ChunkOutcome:
    """A worker's unit; with ``keep``, its results counted in an aggregating accumulator."""
    from lsmcheck.audit import audit_chunk
    from lsmcheck.stream import Accumulator

    outcome = audit_chunk(vectors, options)
    if keep is None:
        return outcome
    partial = Accumulator(keep)
    partial.add(outcome.results)
    return dataclasses.replace(outcome, results=(), partial=partial)


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
    except ValueError as e:  # distributed's address parser: no port, an unknown scheme
        raise UsageError(
            f"--scheduler: {e} (expected an address such as tcp://HOST:PORT)"
        ) from None
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
