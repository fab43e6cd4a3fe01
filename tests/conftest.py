"""Test-wide settings."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest

# Measured limits are cached on disk (lsmcheck.explore.headroom); the tests use a cache of
# their own so that neither a user's cache nor an earlier run decides what they see.
os.environ["LSMCHECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="lsmcheck-test-cache-")

# A test runner started in the background by a shell without job control (`pytest &`, a
# script's `cmd &`, some CI runners) inherits SIGINT ignored, and every lsmcheck it starts
# inherits that too: the tests that interrupt a run would see it finish and write its report.
# (This was the "rare SIGINT test flake": reproduced every time under `pytest ... &`.)  Python
# turns a handler back into the default disposition across exec, so restoring its own handler
# here gives the children the SIGINT of an ordinary terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def ops_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's implementation file, ``ops.py`` with a max-shifted softmax ``sm``, in a
    temporary directory that is the current one."""
    (tmp_path / "ops.py").write_text(
        "import numpy as np\n"
        "def sm(x):\n"
        "    e = np.exp(x - x.max(-1, keepdims=True))\n"
        "    return e / e.sum(-1, keepdims=True)\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path
