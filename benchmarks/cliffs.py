"""Hard logit dumps: how long ``lsmcheck run`` takes on rows that drive elements to mpmath.

    python benchmarks/cliffs.py          # about 20 s on 2 cores

The benchmark matrix (``bench.py``) is logits of a language model's usual spread, which the
fast certified tiers settle whole.  These are the dumps that once took minutes because some
elements could not be settled there and went to the mpmath path (each such element made it
compute its vector's whole reference, at up to thousands of bits): 8 rows of 4,096 float64
logits each (seeded), audited with the default seven algorithms in float16/32/64 and
``--jobs 1``.  For each it prints the wall time of the ``lsmcheck`` process and how many
output elements each reference tier settled.

* ``spread x100``: logits of sd 200 (a temperature of 0.01): most log-probabilities computed
  as ``-inf`` next to a rounding boundary of the format;
* ``spread x1e4``: sd 20,000;
* ``top +80``: one logit 80 above the rest (top probability ``1 - e**-80``);
* ``one-hot``: one logit 0, the rest -1e9 (errors of ``e**-1e9``);
* ``sd 2``: the usual case, for comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def families() -> dict[str, np.ndarray]:
    """The dumps, 8 x 4096 each."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 4096)) * 2
    top = x.copy()
    top[:, 7] += 80
    one_hot = np.full((8, 4096), -1e9)
    one_hot[np.arange(8), np.arange(8)] = 0.0
    return {
        "sd 2": x,
        "spread x100": x * 100,
        "spread x1e4": x * 1e4,
        "top +80": top,
        "one-hot": one_hot,
    }


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="lsmcheck-cliffs-") as tmp:
        out = os.path.join(tmp, "r.json")
        warm = [sys.executable, "-m", "lsmcheck", "run", "-l", "1,2", "-o", out]
        subprocess.run(warm, cwd=ROOT, env=env, check=True, capture_output=True)
        print(f"{'dump (8 x 4096)':<14} {'wall':>7}   elements settled by each tier")
        for name, x in families().items():
            path = os.path.join(tmp, "x.npy")
            np.save(path, x)
            cmd = [sys.executable, "-m", "lsmcheck", "run", path, "-j", "1", "-f", "json"]
            t = time.perf_counter()
            subprocess.run([*cmd, "-o", out], cwd=ROOT, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - t
            with open(out) as f:
                settled = json.load(f)["reference"]["settled"]
            print(f"{name:<14} {wall:6.2f} s   {settled}")


if __name__ == "__main__":
    main()
