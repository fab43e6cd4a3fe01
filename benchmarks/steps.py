"""Where the time of lsmcheck's default audit goes, step by step.

    python benchmarks/steps.py            # the benchmark's 1000 x 1000 matrix
    python benchmarks/steps.py --rows 200

It prints the CPU seconds of each step of :func:`lsmcheck.audit.audit_chunk` over the chunks of
the benchmark matrix (``--jobs 1``, in this process, after one untimed warm-up pass), then the
fixed costs of the command line: starting Python and importing ``lsmcheck run``, and
rendering the table.  Steps nest (``_measure_batch`` holds the reference and metrics steps);
``other`` is what no named step covers.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import matrix  # noqa: E402
from lsmcheck import Options, Vector  # noqa: E402
from lsmcheck.parallel import tune_malloc  # noqa: E402

audit_module = sys.modules["lsmcheck.audit"]

#: (module, function, label) of the steps timed.  The module is the one whose global the caller
#: looks the function up in: ``audit_chunk`` calls ``_measure_batch`` (defined in
#: lsmcheck.measure) by the name lsmcheck.audit imports, and ``_measure_batch`` calls
#: ``fast_reference`` (defined in lsmcheck.fastref) by lsmcheck.measure's.
#: ``audit_chunk`` hands ``_measure_batch`` the implementations' runs as a generator, so the
#: traced algorithms run inside the measuring step and are counted there.
STEPS = [
    ("lsmcheck.audit", "_measure_batch", "measuring (all of it)"),
    ("lsmcheck.audit", "_run", "  traced algorithms"),
    ("lsmcheck.measure", "fast_reference", "  fast reference"),
    ("lsmcheck.fastmetrics", "prepare", "  reference in ulp units"),
    ("lsmcheck.fastmetrics", "measure_batch", "  errors of the outputs"),
    ("lsmcheck.measure", "_row_stats", "  per-row statistics"),
    ("lsmcheck.fastfindings", "findings_batch", "  findings"),
    ("lsmcheck.explore.headroom", "assess_rows", "  headroom"),
    ("lsmcheck.measure", "_result", "  building results"),
]


def timed(spent: collections.defaultdict[str, float], label: str, fn: Callable[..., Any]) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.process_time() - start

    return wrapper


def wall(command: list[str], repeat: int = 3) -> float:
    """Best wall time of ``repeat`` runs of ``command`` from the repository root, after one
    untimed run that compiles the bytecode (as ``pip install`` does for an installed lsmcheck;
    this machine sets PYTHONDONTWRITEBYTECODE, which would compile it at every start)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    best = float("inf")
    for i in range(repeat + 1):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env=env)
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    tune_malloc()
    x = matrix(args.rows, 1000)
    vectors = [Vector("m", i, None, x[i]) for i in range(args.rows)]
    chunks = [vectors[i : i + 131] for i in range(0, args.rows, 131)]
    spent: collections.defaultdict[str, float] = collections.defaultdict(float)
    for module, name, label in STEPS:
        mod = sys.modules[module]
        setattr(mod, name, timed(spent, label, getattr(mod, name)))
    for chunk in chunks:  # warm-up: limits cache, first-call costs
        audit_module.audit_chunk(chunk, Options())
    spent.clear()
    start = time.process_time()
    for chunk in chunks:
        audit_module.audit_chunk(chunk, Options())
    total = time.process_time() - start
    print(f"default audit of {args.rows} x 1000, --jobs 1, CPU seconds by step:")
    print(f"  {'audit_chunk (everything)':28s} {total:6.2f}")
    for _, _, label in STEPS:
        print(f"  {label:28s} {spent[label]:6.2f}")
    named = spent["measuring (all of it)"]
    print(f"  {'other':28s} {total - named:6.2f}")
    python = [sys.executable, "-c", "pass"]
    imports = [sys.executable, "-c", "import lsmcheck.cli.run"]
    tiny = [sys.executable, "-m", "lsmcheck", "run", "-l", "1,2"]
    print("fixed costs of the command line (wall seconds, best of 3):")
    print(f"  {'python -c pass':28s} {wall(python):6.2f}")
    print(f"  {'import lsmcheck.cli.run':28s} {wall(imports):6.2f}")
    print(f"  {'lsmcheck run -l 1,2':28s} {wall(tiny):6.2f}")


if __name__ == "__main__":
    main()
