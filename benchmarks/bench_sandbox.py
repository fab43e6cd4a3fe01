"""What running an ``--impl`` implementation in its sandbox process costs (docs/sandbox.md).

    python benchmarks/bench_sandbox.py

Measured in one run, on a seeded 1000 x 1000 float32 matrix, for a plain numpy log_softmax
(``examples/sandbox/misbehaving.py:plain``) and for a function that returns its input (so that a
call costs only the way there and back):

(a)  one call on batches of 4 x 5, 262 x 1000 (the engine's batch: 2**18 logits) and
     1000 x 1000, in the sandbox and in-process (``load(..., in_process=True)``), best of 5;
(b)  starting the sandbox (``load``: a Python interpreter, numpy, the user's module), best of 5;
(c)  ``lsmcheck run m.npy -d float32 --impl log_softmax=misbehaving:plain`` through the CLI
     with the sandbox and in-process, best of 5 (wall time, and CPU time of lsmcheck and its
     children).
"""

from __future__ import annotations

import functools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sandbox"
sys.path[:0] = [str(ROOT), str(EXAMPLE)]

from lsmcheck import userimpl  # noqa: E402
from lsmcheck.algorithms import Kind  # noqa: E402

IN_PROCESS_CLI = """
import functools, sys
import lsmcheck.userimpl as u
u.load = functools.partial(u.load, in_process=True)
from lsmcheck.cli import main
main(sys.argv[1:])
"""


def best(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def calls() -> None:
    identity = EXAMPLE / "identity_kernel.py"
    identity.write_text('def same(x):\n    """Returns its input."""\n    return x\n')
    try:
        for spec in ("log_softmax=misbehaving:plain", "log_softmax=identity_kernel:same"):
            sandboxed = userimpl.load(spec, search=(str(EXAMPLE),))
            here = userimpl.load(spec, search=(str(EXAMPLE),), in_process=True)
            print(f"(a) one call of {spec.split('=')[1]}")
            for shape in ((4, 5), (262, 1000), (1000, 1000)):
                x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
                number = 200 if x.size < 1000 else 20
                t_box = best(functools.partial(sandboxed.run, x), number=number)
                t_here = best(functools.partial(here.run, x), number=number)
                rows, cols = shape
                extra = (t_box - t_here) * 1e3
                print(
                    f"    {rows:>4} x {cols:<4}  sandbox {t_box * 1e3:7.3f} ms   "
                    f"in-process {t_here * 1e3:7.3f} ms   difference {extra:+.3f} ms"
                )
    finally:
        identity.unlink()


def startup() -> None:
    from lsmcheck import impllimits, sandbox

    def start() -> None:
        box = sandbox.Sandbox(
            sandbox.Target("misbehaving", "plain", Kind.LOG_SOFTMAX, tuple(sys.path)),
            impllimits.Limits.make(),
        )
        box.start()
        box._state.stop()

    print(f"(b) starting a sandbox: {best(start) * 1e3:.0f} ms")


def cli() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        m = Path(tmp) / "m.npy"
        np.save(m, np.random.default_rng(1).normal(scale=3, size=(1000, 1000)).astype(np.float32))
        args = ["run", str(m), "-d", "float32", "--impl", "log_softmax=misbehaving:plain", "-q"]
        args += ["-f", "json", "-o", str(Path(tmp) / "r.json")]
        print("(c) lsmcheck run m.npy -d float32 --impl log_softmax=misbehaving:plain")
        for name, command in (
            ("sandbox", [sys.executable, "-m", "lsmcheck", *args]),
            ("in-process", [sys.executable, "-c", IN_PROCESS_CLI, *args]),
        ):
            runs = []
            for _ in range(5):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(command, cwd=EXAMPLE, env=env, check=True, capture_output=True)
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                runs.append((wall, cpu))
            wall, cpu = min(runs)
            print(f"    {name:<10}  {wall:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    calls()
    startup()
    cli()
