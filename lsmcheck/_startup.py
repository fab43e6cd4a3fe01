"""Ctrl-C while the program is still starting: one line and exit code 130, not a traceback.

Importing lsmcheck (numpy, mpmath and the engine) takes the first 0.15-0.2 s of every run; a
KeyboardInterrupt raised there would escape the command line's own handling
(:meth:`lsmcheck.cli.Lsmcheck.main`) as an import's traceback.  When the process is the
``lsmcheck`` program (its console script or ``python -m lsmcheck``), the package's first
import installs :func:`_interrupted` for SIGINT, and the command line hands SIGINT back to
Python (:func:`release`) once it can catch the KeyboardInterrupt itself.  A program that
imports lsmcheck as a library keeps its own SIGINT handling.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"lsmcheck: interrupted\n")
    os._exit(130)  # nothing to clean up yet: no file is written while importing


def _is_program() -> bool:
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if name in ("lsmcheck", "lsmcheck.exe"):  # the console script
        return True
    argv = getattr(sys, "orig_argv", [])  # python [options] -m lsmcheck ...
    return any(a == "-m" and b == "lsmcheck" for a, b in itertools.pairwise(argv))


def guard() -> None:
    """In the program's main thread, with Python's own Ctrl-C handling: exit quietly on SIGINT
    until :func:`release` (a SIGINT ignored, as in a background job, stays ignored)."""
    if _is_program() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        with contextlib.suppress(ValueError):  # not the main thread (only it may set one)
            signal.signal(signal.SIGINT, _interrupted)


def release() -> None:
    """Give SIGINT back to Python (a KeyboardInterrupt), if :func:`guard` took it."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
