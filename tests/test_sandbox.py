"""The sandbox: an --impl that hangs, runs out of memory or kills its process is an error result.

Every test here runs lsmcheck as a real subprocess (``python -m lsmcheck run ...``) from a
temporary directory holding a small module of misbehaving implementations, and checks the exit
code, the message in the JSON report, that the other implementations still get their results,
and that no sandbox process is left alive.  The module writes the pid of each process that
imports it to ``pids.txt`` and of each call to ``calls.txt``, so the tests know which processes
to look for and how often the implementation was called.

The ``timeout=`` of each subprocess call only guards against a hung gate (the failure this file
tests for); no test asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lsmcheck.config import ConfigError
from lsmcheck.config import load as load_config

ROOT = Path(__file__).resolve().parent.parent
GUARD = 120  # seconds: only a hung gate takes this long

MODULE = '''
"""Implementations that misbehave, and one that does not."""
import ctypes, os, signal
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "pids.txt"), "a") as f:
    f.write(f"{os.getpid()}\\n")


def _called():
    with open(os.path.join(_HERE, "calls.txt"), "a") as f:
        f.write(f"{os.getpid()}\\n")


def good(x):
    """A plain log_softmax."""
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def chatty(x):
    """Prints, then computes."""
    print("hello from chatty")
    return good(x)


def hang(x):
    _called()
    while True:
        pass


def hog(x):
    _called()
    return np.ones(400 << 20, np.uint8)  # 400 MiB, above a 200M cap (far below the machine)


def leave(x):
    _called()
    os._exit(3)


def suicide(x):
    _called()
    os.kill(os.getpid(), signal.SIGKILL)


def segfault(x):
    _called()
    ctypes.string_at(0)


def interrupt(x):
    _called()
    raise KeyboardInterrupt  # the code's own: the terminal's Ctrl-C never reaches the sandbox


def generator_exit(x):
    _called()
    raise GeneratorExit("closed")


def hangs_when_long(x):
    """Good on the user's short vectors; hangs on the headroom probes' long ones."""
    if x.shape[-1] > 100:
        hang(x)
    return good(x)
'''

# Two vectors of length 3 (one batch) and one of length 2 (a second batch).
LOGITS = ["-l", "1,2,3", "-l", "3,2,1", "-l", "4,5"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "userk.py").write_text(MODULE)
    return tmp_path


def lsmcheck(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "lsmcheck", "run", "--no-config", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=GUARD,
    )


def start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "lsmcheck", "run", "--no-config", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def pids(project: Path, name: str = "pids.txt") -> list[int]:
    path = project / name
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Whether a sandbox process with this pid runs (a zombie or a reused pid does not)."""
    try:
        import psutil
    except ImportError:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"_usercode.py" in cmdline
    try:
        process = psutil.Process(pid)
        cmdline = process.cmdline()
        return process.status() != psutil.STATUS_ZOMBIE and any(
            "_usercode.py" in a for a in cmdline
        )
    except psutil.Error:
        return False


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def by_algorithm(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in report["results"]:
        out.setdefault(r["algorithm"], []).append(r)
    return out


TIMED_OUT = "timed out after 1 s (--impl-timeout)"
NOT_RUN = "not run: it timed out after 1 s on an earlier call (--impl-timeout)"


@pytest.mark.parametrize(
    ("function", "reasons", "calls", "processes"),
    [
        # the batch of two is not re-run row by row; the second batch is not run at all
        ("hang", [TIMED_OUT, TIMED_OUT, NOT_RUN], 1, 1),
        # the process survives its MemoryError: called again for the second batch
        ("hog", ["ran out of memory (--impl-memory 200M): Unable to allocate 400."] * 3, 2, 1),
        # a process that died is started again for the second batch
        ("leave", ["the process running it exited with code 3"] * 3, 2, 2),
        ("suicide", ["the process running it was killed by SIGKILL"] * 3, 2, 2),
        ("segfault", ["the process running it was killed by SIGSEGV"] * 3, 2, 2),
        # raised by the code, not by a signal: an error like any other (re-run row by row)
        ("interrupt", ["raised KeyboardInterrupt"] * 3, 4, 1),
        ("generator_exit", ["raised GeneratorExit: closed"] * 3, 4, 1),
    ],
)
def test_a_misbehaving_implementation_is_an_error_result(
    project: Path, function: str, reasons: list[str], calls: int, processes: int
) -> None:
    done = lsmcheck(
        project,
        *LOGITS,
        *("-d", "float32", "-a", "log_softmax_stable", "-f", "json"),
        *("--impl", f"log_softmax=userk:{function}", "--impl", "log_softmax=userk:good"),
        *("--impl-timeout", "1", "--impl-memory", "200M"),
    )
    assert done.returncode == 1, done.stderr
    results = by_algorithm(json.loads(done.stdout))
    bad = results[f"userk:{function}"]
    assert [r["status"] for r in bad] == ["error"] * 3
    for r, reason in zip(bad, reasons, strict=True):
        assert r["reason"].startswith(reason), r["reason"]
        assert "\n" not in r["reason"] and r["max_ulp"] is None
    for name in ("log_softmax_stable", "userk:good"):  # the others still get their numbers
        assert [r["status"] for r in results[name]] == ["pass"] * 3
        assert all(isinstance(r["max_ulp"], float) for r in results[name])
    assert len(pids(project, "calls.txt")) == calls
    started = pids(project)  # the bad implementation's processes, good's, and the process
    assert len(started) == processes + 2  # measuring good's limits for headroom
    assert not any(alive(p) for p in started)


def test_after_three_deaths_the_implementation_is_not_started_again(project: Path) -> None:
    lengths = [",".join(["1"] * n) for n in range(2, 7)]  # five batches
    done = lsmcheck(
        project,
        *(a for n in lengths for a in ("-l", n)),
        *("-d", "float32", "--impl", "softmax=userk:segfault", "-f", "json"),
    )
    assert done.returncode == 1
    reasons = [r["reason"] for r in json.loads(done.stdout)["results"]]
    killed = "the process running it was killed by SIGSEGV"
    given_up = "not run: the process running it died 3 times (last: it was killed by SIGSEGV)"
    assert reasons == [killed] * 3 + [given_up] * 2
    assert len(pids(project, "calls.txt")) == 3
    assert not any(alive(p) for p in pids(project))


def test_every_format_reports_the_failure(project: Path) -> None:
    outputs = {f: project / f"report.{f}" for f in ("json", "junit", "github", "csv")}
    done = lsmcheck(
        project,
        *("-l", "1,2,3", "--impl", "log_softmax=userk:leave", "--impl", "log_softmax=userk:good"),
        *(a for f, path in outputs.items() for a in ("--output-format", f"{f}:{path}")),
    )
    assert done.returncode == 1
    message = "the process running it exited with code 3"
    assert "userk:leave" in done.stdout and message in done.stdout  # the table
    for path in outputs.values():
        assert message in path.read_text(), path


def test_jobs_2_each_worker_bounds_its_own_sandbox(project: Path) -> None:
    # 400 vectors of 1000 logits: several chunks, shared by lsmcheck and one worker process
    rows = np.random.default_rng(0).normal(size=(400, 1000))
    np.save(project / "big.npy", rows)
    done = lsmcheck(
        project,
        *("big.npy", "-d", "float32", "--impl", "softmax=userk:hang", "--impl-timeout", "1"),
        *("--jobs", "2", "-f", "json"),
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["statuses"]["error"] == 400
    reasons = {r["reason"] for r in report["results"]}
    assert TIMED_OUT in reasons and reasons <= {TIMED_OUT, NOT_RUN}
    started = pids(project)
    assert len(started) >= 1 and not any(alive(p) for p in started)


def hanging_run(project: Path, jobs: int) -> tuple[subprocess.Popen[str], list[int]]:
    """lsmcheck running an implementation that hangs, with no timeout, in ``jobs`` processes;
    returned once every process is in the call (the pids of their sandboxes)."""
    np.save(project / "big.npy", np.random.default_rng(0).normal(size=(400, 1000)))
    proc = start(
        project,
        *("big.npy", "-d", "float32", "--impl", "softmax=userk:hang", "--impl-timeout", "0"),
        *("--jobs", str(jobs), "-q"),
    )
    wait_for(lambda: len(pids(project, "calls.txt")) == jobs, "every process to call it")
    return proc, pids(project)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_end_the_run_and_its_sandboxes(
    project: Path, sig: signal.Signals, code: int, jobs: int
) -> None:
    proc, started = hanging_run(project, jobs)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=GUARD)
    assert proc.returncode == code, stderr
    assert len(started) == jobs and not any(alive(p) for p in started)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_lsmcheck_takes_its_workers_and_sandboxes_with_it(project: Path) -> None:
    proc, started = hanging_run(project, jobs=2)
    proc.kill()
    proc.communicate(timeout=GUARD)  # returns once the worker, which holds stdout, is gone
    for child in started:
        wait_for(lambda child=child: not alive(child), "the sandbox processes to die")


def test_what_it_prints_goes_to_standard_error(project: Path) -> None:
    done = lsmcheck(project, "-l", "1,2", "--impl", "log_softmax=userk:chatty", "-f", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["status"] == "pass"
    assert "hello from chatty" in done.stderr


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import time\ntime.sleep(3600)\n", "importing 'broken' did not finish within 1 s"),
        ("import ctypes\nctypes.string_at(0)\n", "importing 'broken': the process running it"),
        ("import numpy\nX = numpy.ones(400 << 20, numpy.uint8)\n", "importing 'broken' ran out"),
        ("raise SystemExit('no numpy here')\n", "importing 'broken' raised SystemExit: no numpy"),
        ("raise KeyboardInterrupt\n", "importing 'broken' raised KeyboardInterrupt"),
    ],
)
def test_an_import_that_hangs_crashes_or_runs_out_of_memory_is_a_usage_error(
    project: Path, body: str, message: str
) -> None:
    (project / "broken.py").write_text(body)
    done = lsmcheck(
        project,
        *("-l", "1,2", "--impl", "softmax=broken:f", "--impl-timeout", "1"),
        *("--impl-memory", "200M"),
    )
    assert done.returncode == 2 and done.stdout == ""
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"lsmcheck: error: --impl: {message}"), done.stderr


def test_bfloat16_crosses_the_pipe(project: Path) -> None:
    done = lsmcheck(project, "-l", "1,2,3", "-d", "bfloat16", "--impl", "log_softmax=userk:good")
    assert done.returncode == 0, done.stderr


# --- the Python API, the limits and their settings -------------------------------------------


def test_the_api_runs_a_spec_in_a_sandbox_and_a_callable_here(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lsmcheck

    monkeypatch.chdir(project)
    report = lsmcheck.audit(
        [[1.0, 2.0], [3.0, 1.0, 0.5]],
        implementations=["softmax=userk:leave"],
        dtypes=["float64"],
        impl_timeout=5,
    )
    assert [r.reason for r in report.results] == ["the process running it exited with code 3"] * 2
    assert os.getpid() not in pids(project, "calls.txt")

    def mine(x: Any) -> Any:
        return np.full(x.shape, 0.5, x.dtype)

    report = lsmcheck.audit(
        [[1.0, 1.0]], implementations=[mine], kind="softmax", dtypes=["float64"]
    )
    assert report.passed  # exact on ties, computed in this process


def test_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "lsmcheck.toml"
    path.write_text('impl_timeout = 5\nimpl_memory = "1G"\n')
    cfg = load_config(path)
    assert (cfg.impl_timeout, cfg.impl_memory) == (5.0, "1G")
    path.write_text('impl_memory = "lots"\n')
    with pytest.raises(ConfigError, match="impl_memory: expected a size like 2G"):
        load_config(path)
    path.write_text("impl_timeout = -1\n")
    with pytest.raises(ConfigError, match="impl_timeout: expected a finite number >= 0"):
        load_config(path)


def test_config_limits_apply_and_flags_override_them(project: Path) -> None:
    (project / "lsmcheck.toml").write_text(
        'implementations = ["log_softmax=userk:hog"]\nimpl_memory = "200M"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "lsmcheck", "run", "-l", "1,2", "-f", "json"]
    done = subprocess.run(args, cwd=project, capture_output=True, text=True, env=env, timeout=GUARD)
    assert done.returncode == 1, done.stderr
    reason = json.loads(done.stdout)["results"][0]["reason"]
    assert reason.startswith("ran out of memory (--impl-memory 200M)")
    done = subprocess.run(
        [*args, "--impl-memory", "nonsense"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=GUARD,
    )
    assert done.returncode == 2
    assert "--impl-memory: expected a size like 2G, 512M or 50%" in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["hunt", "--impl", "log_softmax=userk:hang", "-d", "float32", "--evals", "3"],
        ["sweep", "scale", "--impl", "log_softmax=userk:hang", "-d", "float32", "--steps", "2"],
        ["limits", "--impl", "log_softmax=userk:hang", "-d", "float32", "--limit", "overflow"],
    ],
)
def test_the_exploring_commands_take_the_sandbox_limits(project: Path, command: list[str]) -> None:
    """With --impl-timeout 0.5 a hanging implementation is an error they report, not a hang:
    each call is ended at its timeout and the later ones fail at once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsmcheck",
            *command,
            "--impl-timeout",
            "0.5",
            "--impl-memory",
            "1G",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=GUARD,
    )
    # hunt audited no candidate at all: the implementation failed, exit 1 (as run's gate)
    assert proc.returncode == (1 if command[0] == "hunt" else 0), proc.stderr
    assert "Traceback" not in proc.stderr
    if command[0] != "sweep":  # sweep plots the ULP errors it has: none
        assert "timed out after 0.5 s (--impl-timeout)" in proc.stdout
    assert len(pids(project, "calls.txt")) == 1  # the first call timed out; no other was made
    assert not any(alive(pid) for pid in pids(project))


def test_a_timeout_of_weeks_is_waited_in_slices(project: Path) -> None:
    """--impl-timeout 2.2e6 (25 days) and 1e8 overflowed poll()'s C int of milliseconds
    (exit 3); the sandbox now waits in slices of a day."""
    for seconds in ("2.2e6", "1e8"):
        res = lsmcheck(
            project, "-l", "1,2", "-d", "float32", "--impl", "softmax=userk:good",
            "--impl-timeout", seconds, "-f", "csv",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert ",userk:good," in res.stdout and ",pass," in res.stdout


def test_a_headroom_probe_that_times_out_costs_no_real_vector(project: Path) -> None:
    """The headroom probes call the implementation on vectors of their own (lengths up to
    1024 among them).  They used its sandbox: a probe that timed out had every later real
    batch reported "not run: it timed out ... on an earlier call", and the gate failed on
    data that never misbehaved.  They now run in a sandbox process of their own."""
    done = lsmcheck(
        project,
        *LOGITS,
        *("-d", "float32", "--impl", "log_softmax=userk:hangs_when_long"),
        *("--impl-timeout", "2", "--max-ulp", "4", "-f", "json"),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [r["status"] for r in report["results"]] == ["pass"] * 3
    # the probes' own process did time out: the length limit has no headroom entry
    assert all(h["limit"] != "length" for r in report["results"] for h in r["headroom"])


def test_danger_zone_off_makes_no_probe_calls(project: Path) -> None:
    done = lsmcheck(
        project,
        *LOGITS,
        *("-d", "float32", "--impl", "log_softmax=userk:hangs_when_long"),
        *("--impl-timeout", "2", "--danger-zone", "off", "-f", "json"),
    )
    assert done.returncode == 0, done.stderr
    assert all(r["headroom"] == [] for r in json.loads(done.stdout)["results"])
    assert len(pids(project)) == 1  # the audit's sandbox only: no process for probes
