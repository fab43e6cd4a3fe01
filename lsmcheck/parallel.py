"""Running chunks: in this process, in worker processes, or on a Dask cluster.

Every mode runs the same function (:func:`lsmcheck.audit.audit_chunk`) on the same chunks and
yields the outcomes in input order, with at most a few chunks in flight at once so that a stream
of vectors larger than memory is never held whole.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
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
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method)) as pool:
        yield from _windowed(pool, itertools.chain(head, it), options, 2 * jobs)


def _windowed(
    pool: Executor, chunks: Iterable[list[Vector]], options: Options, window: int
) -> Iterator[ChunkOutcome]:
    """Submit chunks with at most ``window`` in flight; yield results in submission order."""
    from lsmcheck.audit import audit_chunk

    pending: deque[Future[ChunkOutcome]] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(audit_chunk, chunk, options))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
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


__all__ = ["default_jobs", "run_chunks"]
