"""Kernels that misbehave in every way a process can: what docs/sandbox.md audits.

Each takes a 2-D array (vectors along axis 0) as lsmcheck calls it.  Run from this directory:
``lsmcheck run -l 1,2,3 --impl log_softmax=misbehaving:hangs --impl-timeout 1``.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

import numpy as np


def plain(x: Any) -> Any:
    """A plain log_softmax: (x - max) - log(sum(exp(x - max)))."""
    d = x - x.max(axis=-1, keepdims=True)
    return d - np.log(np.exp(d).sum(axis=-1, keepdims=True))


def hangs(x: Any) -> Any:
    """Waits for a lock that is never released."""
    while True:
        pass


def hogs_memory(x: Any) -> Any:
    """Builds a 'lookup table' of 4 GiB."""
    table = np.ones((1 << 29,), np.float64)
    return plain(x) + 0 * table[0]


def segfaults(x: Any) -> Any:
    """A C extension reading through a null pointer."""
    return ctypes.string_at(0)


def exits(x: Any) -> Any:
    """A library that calls exit() on an error it cannot handle."""
    os._exit(3)


def is_killed(x: Any) -> Any:
    """Killed from outside (here by itself), as the kernel's out-of-memory killer would."""
    os.kill(os.getpid(), signal.SIGKILL)
