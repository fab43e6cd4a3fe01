"""Where ``--jobs 2`` loses against twice the speed of ``--jobs 1``, in CPU seconds.

    python benchmarks/jobs.py              # the benchmark's 1000 x 1000 matrix, 4 rounds
    python benchmarks/jobs.py --rounds 2

In this process (no interpreter start-up), after one untimed warm-up audit, it prints:

1. the default audit with ``--jobs 1`` and ``--jobs 2``, round by round: wall seconds, and the
   CPU seconds of each process split into ``audit_chunk`` (the audit proper) and the rest
   (merging the outcomes in order; for ``--jobs 2`` also pickling them, unpickling them, and
   starting the worker), with the rows each process audited;
2. the CPU seconds of a ``--jobs 1`` audit while the other core idles, runs a pure-Python
   loop, or runs numpy over an 8 MB array: what a busy neighbour costs the audit on this
   machine (a shared cache and memory bus, or a host that slows a busy pair of cores).

The medians over the rounds are printed last.  With ``--batches 18,16,15`` it also times
both audits (wall, median of the rounds) with at most 2**18, 2**16 and 2**15 logits per batch
(:data:`lsmcheck.audit.BATCH_ELEMENTS`): smaller batches keep each array in the core's own
cache, which spares two busy cores the memory they share but costs per-call overhead.
Nothing here is a target; it says where the time of a second process goes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import matrix  # noqa: E402
from lsmcheck import Options, Vector, audit  # noqa: E402
from lsmcheck.parallel import tune_malloc  # noqa: E402

audit_module: Any = sys.modules["lsmcheck.audit"]  # (lsmcheck.audit is the function)


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Timed:
    """``audit_chunk`` timed in every process (CPU of its thread, rows), reported on a queue."""

    def __init__(self) -> None:
        self.queue: Any = multiprocessing.get_context("fork").SimpleQueue()
        self.original = audit_module.audit_chunk

    def __call__(self, chunk: list[Vector], options: Options) -> Any:
        start = time.thread_time()
        out = self.original(chunk, options)
        self.queue.put((os.getpid(), len(chunk), time.thread_time() - start))
        return out

    def drain(self) -> list[tuple[int, int, float]]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get())
        return items


def split(vectors: list[Vector], jobs: int, timed: _Timed) -> dict[str, float]:
    """One audit: wall, and per process its CPU, its audit_chunk CPU and its rows."""
    cpu, start = _cpu(), time.perf_counter()
    audit(vectors, Options(), jobs=jobs)
    wall, total = time.perf_counter() - start, _cpu() - cpu
    items = timed.drain()
    main = os.getpid()
    here = [i for i in items if i[0] == main]
    there = [i for i in items if i[0] != main]
    return {
        "wall": wall,
        "cpu": total,
        "main_audit": sum(i[2] for i in here),
        "main_rows": sum(i[1] for i in here),
        "worker_audit": sum(i[2] for i in there),
        "worker_rows": sum(i[1] for i in there),
    }


def _neighbour(kind: str, stop: Any) -> None:
    import numpy as np

    a = np.random.default_rng(0).random(1 << 20)
    while not stop.is_set():
        if kind == "numpy":
            for _ in range(20):
                np.exp(a)
        else:
            total = 0
            for i in range(100_000):
                total += i


def with_neighbour(vectors: list[Vector], kind: str) -> float:
    """CPU seconds of a --jobs 1 audit while the other core idles or runs ``kind``."""
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    other = None
    if kind != "idle":
        other = context.Process(target=_neighbour, args=(kind, stop))
        other.start()
        time.sleep(0.2)
    start = time.process_time()
    audit(vectors, Options(), jobs=1)
    cpu = time.process_time() - start
    if other is not None:
        stop.set()
        other.join()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batches", default="", help="e.g. 18,16,15: log2 of batch sizes")
    args = parser.parse_args()
    tune_malloc()
    x = matrix(args.rows, 1000)
    vectors = [Vector("m", i, None, x[i]) for i in range(args.rows)]
    audit(vectors, Options())  # warm-up: imports, caches, the heap
    timed = _Timed()
    audit_module.audit_chunk = timed
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    neighbours: dict[str, list[float]] = {"idle": [], "python": [], "numpy": []}
    print(f"default audit of {args.rows} x 1000 in this process, CPU seconds:")
    for r in range(args.rounds):
        for jobs in (1, 2):
            s = split(vectors, jobs, timed)
            runs[jobs].append(s)
            rest = s["cpu"] - s["main_audit"] - s["worker_audit"]
            line = (
                f"  round {r + 1} --jobs {jobs}: wall {s['wall']:.2f}  CPU {s['cpu']:.2f} = "
                f"audit_chunk {s['main_audit']:.2f} ({s['main_rows']:.0f} rows)"
            )
            if jobs == 2:
                line += f" + worker's {s['worker_audit']:.2f} ({s['worker_rows']:.0f} rows)"
            print(f"{line} + the rest {rest:.2f}", flush=True)
    audit_module.audit_chunk = timed.original
    print("a --jobs 1 audit's CPU seconds while the other core ...")
    for _ in range(args.rounds):
        for kind in neighbours:
            neighbours[kind].append(with_neighbour(vectors, kind))
    for kind, cpus in neighbours.items():
        print(f"  {kind:>7}: {', '.join(f'{c:.2f}' for c in cpus)}")

    def median(jobs: int, key: str) -> float:
        return statistics.median(s[key] for s in runs[jobs])

    one, two = median(1, "wall"), median(2, "wall")
    per_row_1 = median(1, "main_audit") / args.rows
    per_row_2 = statistics.median(
        (s["main_audit"] + s["worker_audit"]) / (s["main_rows"] + s["worker_rows"]) for s in runs[2]
    )
    idle = statistics.median(neighbours["idle"])
    print("medians:")
    print(f"  wall: --jobs 1 {one:.2f} s, --jobs 2 {two:.2f} s: {one / two:.2f}x")
    print(
        f"  CPU: --jobs 1 {median(1, 'cpu'):.2f} s, --jobs 2 {median(2, 'cpu'):.2f} s "
        f"(+{median(2, 'cpu') - median(1, 'cpu'):.2f})"
    )
    print(
        f"  audit_chunk per 1000 rows: --jobs 1 {1000 * per_row_1:.2f} s, --jobs 2 "
        f"{1000 * per_row_2:.2f} s ({per_row_2 / per_row_1 - 1:+.0%})"
    )
    for kind in ("python", "numpy"):
        cpu = statistics.median(neighbours[kind])
        print(f"  a busy neighbour running {kind}: {cpu / idle - 1:+.0%} CPU for the audit")
    if args.batches:
        batch_sizes(vectors, [int(b) for b in args.batches.split(",")], args.rounds)


def batch_sizes(vectors: list[Vector], logs: list[int], rounds: int) -> None:
    """Wall seconds of --jobs 1 and --jobs 2 audits with batches of 2**b logits, the sizes
    run round by round (the order alternating)."""
    default = audit_module.BATCH_ELEMENTS
    walls: dict[tuple[int, int], list[float]] = {(b, j): [] for b in logs for j in (1, 2)}
    for r in range(rounds):
        for b in logs if r % 2 == 0 else logs[::-1]:
            audit_module.BATCH_ELEMENTS = 1 << b
            for jobs in (1, 2):
                start = time.perf_counter()
                audit(vectors, Options(), jobs=jobs)
                walls[b, jobs].append(time.perf_counter() - start)
    audit_module.BATCH_ELEMENTS = default
    print("batch size (logits): wall seconds, median of the rounds")
    for b in logs:
        one, two = statistics.median(walls[b, 1]), statistics.median(walls[b, 2])
        print(f"  2**{b}: --jobs 1 {one:.2f} s, --jobs 2 {two:.2f} s: {one / two:.2f}x")


if __name__ == "__main__":
    main()
