"""lsmcheck's benchmark: one command, every figure measured in the same run on the same data.

    python benchmarks/bench.py            # the whole benchmark (about 2-3 minutes on 2 cores)
    python benchmarks/bench.py --quick    # a smaller matrix and no 2 GB file (a smoke test)

It prints

(a)  lsmcheck's default audit (7 algorithms x float16/32/64) of a seeded 1000 x 1000 float64
     logits matrix, through the CLI as a user runs it (``lsmcheck run m.npy``), with the default
     ``--jobs`` (all cores) and with ``--jobs 1`` and ``--jobs 2``: the wall time of the
     lsmcheck process from start to exit, best of five runs (``--repeat``) after one warm-up
     run (which fills the on-disk cache of the danger-zone limits, as any first run on a
     machine does), the three run round by round so that the machine's drifts in speed fall
     on all three alike (the speed-up within each round is printed too);
(b)  the floor: numpy alone computing the same 21 algorithm x dtype outputs (plain numpy, no
     tracing, no reference);
(c)  the baseline a user would otherwise write: a per-element mpmath reference and per-element
     mpmath metrics (lsmcheck's ``--reference mpmath``), measured on the first rows and scaled;
the ratios (a)/(b) and (c)/(a); for ``--jobs``, the ceiling this machine sets (two pieces of
(b) in two processes against one after the other) and lsmcheck's fixed cost (``lsmcheck run -l
1,2``), which give by Amdahl's law the most ``--jobs 2`` can gain through the CLI; and the peak
resident memory (``ru_maxrss`` of the child) of
``lsmcheck run -d float32 -a logsumexp_stable`` (one algorithm in one dtype, to keep the run
short: memory does not grow with either) on a 2 GB ``.npy`` file in a temporary directory.
The agreement of (a) and (c) on the subset (overflow/underflow/NaN counts, ULP errors within
0.01 ulp) is checked and printed too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED = 20240601


#: The audits of (a): default --jobs (all cores), --jobs 1 and --jobs 2.
AUDITS = [[], ["-j", "1"], ["-j", "2"]]


def matrix(rows: int, cols: int) -> np.ndarray:
    """The benchmark matrix: seeded, logits spread like a language model's (sd 4)."""
    return np.random.default_rng(SEED).standard_normal((rows, cols)) * 4.0


#: Runs lsmcheck and reports its peak RSS and CPU time: a small process of its own, so that
#: the benchmark's memory (inherited between fork and exec) does not count.
_WRAPPER = """
import resource, subprocess, sys, time
t = time.perf_counter()
code = subprocess.run([sys.executable, "-m", "lsmcheck", *sys.argv[1:]]).returncode
wall = time.perf_counter() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(u.ru_maxrss, u.ru_utime + u.ru_stime, code, wall, file=sys.stderr)
"""


def run_cli(args: list[str]) -> tuple[float, int, str, float]:
    """Run ``python -m lsmcheck ...`` from the repository root.

    Returns (wall seconds of the lsmcheck process, from its start to its exit (the wrapper's
    own start-up is not counted), peak resident memory of lsmcheck and its workers in KiB (the
    largest of them), stdout, CPU seconds of lsmcheck and its workers).
    """
    # As an installed lsmcheck (pip compiles its bytecode at install): let the source tree's
    # modules be compiled once, by the warm-up run, rather than at every start.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    *messages, last = proc.stderr.strip().splitlines() or [""]
    peak, cpu, code, wall = last.split()
    elapsed = float(wall)
    if int(code) not in (0, 1):
        sys.exit(f"lsmcheck failed ({code}): {' '.join(messages)}")
    return elapsed, int(peak), proc.stdout, float(cpu)


def best_cli(args: list[str], repeat: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of ``repeat`` runs of ``lsmcheck ARGS``."""
    runs = [run_cli(args) for _ in range(repeat)]
    wall, _, _, cpu = min(runs, key=lambda r: r[0])
    return wall, cpu


def interleaved(
    variants: list[list[str]], repeat: int
) -> tuple[list[tuple[float, float]], list[list[float]]]:
    """Run each variant of ``lsmcheck ARGS`` ``repeat`` times, round by round (one run of each
    per round, the order rotating), so that this shared machine's drifts in speed (10-20%
    over minutes, measured) fall on every variant alike.

    Returns per variant the (wall, CPU) seconds of its fastest run, and the wall times of
    every round (``rounds[r][v]``), for the ratio within each round.
    """
    best = [(math.inf, math.inf)] * len(variants)
    rounds = []
    for r in range(repeat):
        walls = [0.0] * len(variants)
        for k in range(len(variants)):
            v = (r + k) % len(variants)
            wall, _, _, cpu = run_cli(variants[v])
            walls[v] = wall
            best[v] = min(best[v], (wall, cpu))
        rounds.append(walls)
    return best, rounds


def numpy_floor(x: np.ndarray, repeat: int = 3) -> tuple[float, float]:
    """(b): the 7 algorithms in 3 dtypes with numpy alone; best of ``repeat`` (wall, CPU)."""
    best = best_cpu = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        cpu = time.process_time()
        with np.errstate(all="ignore"):
            for dt in (np.float16, np.float32, np.float64):
                v = x.astype(dt)
                m = v.max(axis=-1, keepdims=True)
                e = np.exp(v)
                s = e.sum(axis=-1, keepdims=True)
                _ = e / s  # softmax_naive
                d = v - m
                e2 = np.exp(d)
                s2 = e2.sum(axis=-1, keepdims=True)
                p = e2 / s2  # softmax_stable
                _ = v - np.log(s)  # log_softmax_naive
                _ = d - np.log(s2)  # log_softmax_stable
                _ = np.log(p)  # log_of_softmax
                _ = np.log(s)  # logsumexp_naive
                _ = m + np.log(s2)  # logsumexp_stable
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def _floor_work(_: int) -> float:
    """The numpy floor (b) on a quarter of the benchmark matrix, twice (about 0.3 s)."""
    x = matrix(250, 1000)
    t = time.perf_counter()
    numpy_floor(x, repeat=2)
    return time.perf_counter() - t


def machine_parallelism(repeat: int = 3) -> float:
    """How much faster two processes run two equal pieces of the numpy floor (b) than one
    process runs them one after the other: the most ``--jobs 2`` can gain on this machine right
    now, for work of this kind (numpy over arrays of a few MB, which two cores slow each other
    down on through the memory they share).  2.0 would be perfect.  Best of ``repeat``."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_floor_work, [0, 1], chunksize=1)  # warm both workers
        best = 0.0
        for _ in range(repeat):
            t = time.perf_counter()
            pool.apply(_floor_work, (0,))
            pool.apply(_floor_work, (1,))
            one = time.perf_counter() - t
            t = time.perf_counter()
            pool.map(_floor_work, [0, 1], chunksize=1)
            best = max(best, one / (time.perf_counter() - t))
    return best


def in_process(path: str, repeat: int) -> tuple[float, float]:
    """The default audit through the Python API with 1 and 2 jobs, alternating: best of
    ``repeat`` each (this machine is a shared virtual machine whose speed varies by some 10%
    run to run)."""
    sys.path.insert(0, str(ROOT))
    from lsmcheck import Options, audit
    from lsmcheck.parallel import tune_malloc
    from lsmcheck.sources import read_sources

    tune_malloc()
    vectors = read_sources([path])
    best = {1: math.inf, 2: math.inf}
    for jobs in (1, 2) * repeat:
        t = time.perf_counter()
        audit(vectors, Options(), jobs=jobs)
        best[jobs] = min(best[jobs], time.perf_counter() - t)
    return best[1], best[2]


def mpmath_baseline(x: np.ndarray, rows: int) -> tuple[float, object, object]:
    """(c) on the first ``rows`` rows: lsmcheck with --reference mpmath, and (a) on the same."""
    sys.path.insert(0, str(ROOT))
    from lsmcheck import Options, Vector, audit

    vectors = [Vector("m", i, None, x[i]) for i in range(rows)]
    t = time.perf_counter()
    slow = audit(vectors, Options(reference="mpmath"))
    elapsed = time.perf_counter() - t
    fast = audit(vectors, Options())
    return elapsed, slow, fast


def agreement(fast: object, slow: object) -> str:
    """Counts identical and ULP errors within 0.01 ulp, over every result of the subset."""
    worst = 0.0
    for ra, rb in zip(fast.results, slow.results, strict=True):  # type: ignore[attr-defined]
        if (ra.overflow, ra.underflow, ra.underflow_benign, ra.nan) != (
            rb.overflow,
            rb.underflow,
            rb.underflow_benign,
            rb.nan,
        ):
            return f"DISAGREE on counts at {ra.label} {ra.algorithm} {ra.dtype}"
        for a, b in ((ra.max_ulp, rb.max_ulp), (ra.mean_ulp, rb.mean_ulp)):
            if math.isinf(b):
                if a != b:
                    return f"DISAGREE on ulp at {ra.label} {ra.algorithm} {ra.dtype}"
            else:
                worst = max(worst, abs(a - b))
    return f"identical counts, ULP errors within {worst:.2g} ulp"


#: Writes the big .npy in a process of its own (its pages never enter the benchmark's memory).
_WRITE_BIG = f"""
import sys, numpy as np
path, n = sys.argv[1], int(sys.argv[2])
mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, 4096))
rng = np.random.default_rng({SEED})
for i in range(0, n, 4096):
    mm[i : i + 4096] = rng.standard_normal((min(4096, n - i), 4096)) * 4.0
mm.flush()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 x 1000, no 2 GB file")
    parser.add_argument("--subset", type=int, default=4, help="rows measured for (c)")
    parser.add_argument("--big-gb", type=float, default=2.0, help="size of the .npy for RSS")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each audit in (a)")
    args = parser.parse_args()
    rows = 200 if args.quick else 1000
    x = matrix(rows, 1000)
    print(f"lsmcheck benchmark: {rows} x 1000 float64 logits (seed {SEED}, sd 4)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="lsmcheck-bench-") as tmp:
        path = os.path.join(tmp, "m.npy")
        np.save(path, x)
        b, b_cpu = numpy_floor(x)
        # lsmcheck's first run on a machine measures the danger-zone limits once and caches
        # them on disk (about a second): warm that cache first
        run_cli(["run", path, "-o", os.path.join(tmp, "warm.txt")])
        variants = [["run", path, *jobs, "-o", os.path.join(tmp, "a.txt")] for jobs in AUDITS]
        best, rounds = interleaved(variants, args.repeat)
        (a, a_cpu), (a1, a1_cpu), (a2, a2_cpu) = best
        per_round = sorted(walls[1] / walls[2] for walls in rounds)
        parallel = machine_parallelism()
        fixed, _ = best_cli(["run", "-l", "1,2", "-o", os.path.join(tmp, "fixed.txt")])
        in_1, in_2 = in_process(path, args.repeat)
        c_sub, slow, fast = mpmath_baseline(x, args.subset)
        c = c_sub * rows / args.subset
        print("(wall seconds; CPU seconds of the process and its workers in brackets)")
        print(f"(a) lsmcheck run m.npy (default --jobs, all cores): {a:8.2f} s  [{a_cpu:.2f}]")
        print(
            f"    --jobs 1: {a1:.2f} s [{a1_cpu:.2f}]   --jobs 2: {a2:.2f} s [{a2_cpu:.2f}]   "
            f"speed-up {a1 / a2:.2f}x"
        )
        print(
            f"    (best of {args.repeat} each, run round by round; the speed-up within each "
            f"round: {', '.join(f'{r:.2f}' for r in per_round)}, median "
            f"{statistics.median(per_round):.2f}x)"
        )
        print(
            f"    in-process audit() (no interpreter start-up): --jobs 1: {in_1:.2f} s   "
            f"--jobs 2: {in_2:.2f} s   speed-up {in_1 / in_2:.2f}x"
        )
        # Amdahl's law with the measured ceiling: the fixed part does not parallelise at all
        bound = a1 / (fixed + (a1 - fixed) / parallel)
        print(
            f"    the machine runs two pieces of (b) {parallel:.2f}x faster in 2 processes than "
            "in 1 (the ceiling for --jobs 2)"
        )
        print(
            f"    lsmcheck's fixed cost, lsmcheck run -l 1,2: {fixed:.2f} s; with it and that "
            f"ceiling, the CLI's --jobs 2 can be at most {bound:.2f}x faster than --jobs 1"
        )
        print(f"(b) numpy alone, the same 21 outputs:               {b:8.2f} s  [{b_cpu:.2f}]")
        print(f"(c) per-element mpmath audit (measured on {args.subset} rows, scaled): {c:8.1f} s")
        print(
            f"(a)/(b) = {a / b:.1f}   (a, --jobs 1)/(b) = {a1 / b:.1f}   "
            f"CPU (a, --jobs 1)/(b) = {a1_cpu / b_cpu:.1f}"
        )
        print(f"(c)/(a) = {c / a:.0f}   (c)/(a, --jobs 1) = {c / a1:.0f}")
        print(f"agreement of (a) and (c) on the subset: {agreement(fast, slow)}")
        if not args.quick:
            big = os.path.join(tmp, "big.npy")
            n = int(args.big_gb * 2**30 / 8 / 4096)
            subprocess.run([sys.executable, "-c", _WRITE_BIG, big, str(n)], check=True)
            size = os.path.getsize(big) / 2**30
            t, peak_kib, out, _ = run_cli(
                ["run", big, "-d", "float32", "-a", "logsumexp_stable", "-f", "json", "--quiet"]
            )
            settled = json.loads(out)["reference"]["settled"]
            print(
                f"2 GB input: {size:.2f} GiB .npy ({n} x 4096), float32 logsumexp_stable: "
                f"{t:.1f} s, peak RSS {peak_kib / 1024:.0f} MiB (settled: {settled})"
            )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
