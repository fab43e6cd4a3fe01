"""Interruption with worker processes: exit codes, no partial report, no orphaned workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck.cli import main

ROOT = Path(__file__).resolve().parent.parent


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a parent that is not us does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "zombie" not in state


def start(args: list[str], cwd: Path | None = None) -> tuple[subprocess.Popen[str], set[int]]:
    """Start ``lsmcheck ARGS`` and wait until its workers run: the process and their pids."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsmcheck", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    workers: set[int] = set()
    deadline = time.monotonic() + 30
    while not workers and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = children(proc.pid)
    assert workers, "no worker process started"
    return proc, workers


@pytest.fixture(scope="module")
def long_input(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An input whose audit takes many seconds (400 scaled copies of the 32k-vocabulary row)."""
    row = np.load(ROOT / "cases" / "vocab_32k.npy").astype(np.float64)
    path = str(tmp_path_factory.mktemp("in") / "vocab_400.npy")
    np.save(path, np.outer(1 + np.arange(400) / 100, row))
    return path


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_a_parallel_run_and_its_workers(
    tmp_path: Path, long_input: str, sig: signal.Signals, code: int
) -> None:
    out = tmp_path / "report.json"
    proc, workers = start(["run", long_input, "-j", "2", "-f", "json", "-o", str(out)])
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] in ("lsmcheck: interrupted", "lsmcheck: terminated")
    assert list(tmp_path.iterdir()) == []  # no partial report
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers), f"orphaned workers: {workers}"
    assert took < 30, f"took {took:.1f} s to stop"


def test_lsmcheck_runs_from_a_thread_that_is_not_the_main_one() -> None:
    """Only the main thread may install a signal handler: from another thread lsmcheck runs
    without its own SIGTERM handler instead of failing."""
    outcome: dict[str, object] = {}

    def call() -> None:
        result = CliRunner().invoke(
            main, ["run", "-l", "1,2,3", "-a", "softmax_stable", "-d", "float64"]
        )
        outcome["code"], outcome["output"] = result.exit_code, result.output

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(timeout=60)
    assert outcome.get("code") == 0, outcome
    assert "softmax_stable" in str(outcome["output"])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_signal_ends_a_run_whose_worker_is_stuck(tmp_path: Path, long_input: str) -> None:
    """The workers are ended, not waited for: one stuck for good (here in a user's
    implementation that never returns) must not hold the run."""
    (tmp_path / "stuck_impl.py").write_text(
        "import time\n\ndef log_softmax(x):\n    time.sleep(3600)\n"
    )
    out = tmp_path / "report.json"
    args = ["run", long_input, "-j", "2", "--impl", "log_softmax=stuck_impl:log_softmax"]
    proc, workers = start([*args, "-f", "json", "-o", str(out)], cwd=tmp_path)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert not out.exists()
    deadline = time.monotonic() + 10
    family = workers | {c for w in workers for c in children(w)}
    while any(alive(w) for w in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in family), f"orphaned: {family}"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_killed_worker_is_one_line_and_exit_2_not_a_bug(tmp_path: Path, long_input: str) -> None:
    """A worker killed by SIGKILL (as the out-of-memory killer does) used to end the run with
    BrokenProcessPool's traceback and exit 3, 'a bug in lsmcheck'."""
    out = tmp_path / "report.json"
    proc, workers = start(["run", long_input, "-j", "2", "-f", "json", "-o", str(out)])
    time.sleep(0.5)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert stderr == (
        "lsmcheck: error: --jobs 2: a worker process died (killed by a signal: by the system "
        "when memory ran out, or by a user); no report was written; try fewer --jobs\n"
    )
    assert list(tmp_path.iterdir()) == []
    assert not any(alive(pid) for pid in workers)


def test_ctrl_c_while_the_program_starts_is_one_line_not_a_traceback() -> None:
    # the SIGINT lands while lsmcheck's imports run (numpy's extension is being loaded), before
    # the command line's own handling is in place
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsmcheck", "run", "-l", "1,2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if "_multiarray_umath" in maps.read_text():
                break
        except (OSError, ProcessLookupError):
            pass
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.strip(), out) == (130, "lsmcheck: interrupted", "")
