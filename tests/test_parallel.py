"""--jobs: the report is byte-identical whatever the number of workers and the chunk size."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lsmcheck import Options, Vector, audit, stream
from lsmcheck.errors import UsageError
from lsmcheck.parallel import default_jobs

ROOT = Path(__file__).resolve().parent.parent


def vectors() -> list[Vector]:
    rng = np.random.default_rng(3)
    out = [
        Vector("p", i, i + 1, rng.standard_normal(int(rng.integers(1, 40))) * 30) for i in range(60)
    ]
    out.append(Vector("p", 60, 61, np.array([19.0, 20.0, -math.inf])))
    out.append(Vector("p", 61, 62, np.array([math.nan, 1.0])))
    return out


def test_jobs_and_chunking_do_not_change_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = Options(dtypes=("float16", "float64"))
    reference = audit(vectors(), opts).to_json()
    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 50)  # many chunks of a few vectors
    assert audit(vectors(), opts, jobs=1).to_json() == reference
    assert audit(vectors(), opts, jobs=2).to_json() == reference
    assert audit(vectors(), opts, jobs=3).to_json() == reference


def test_a_generator_is_audited_like_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 100)
    opts = Options(dtypes=("float32",), algorithms=("softmax_stable",))
    assert audit(iter(vectors()), opts, jobs=2).to_json() == audit(vectors(), opts).to_json()


def test_bad_jobs() -> None:
    with pytest.raises(UsageError, match="--jobs"):
        audit(vectors(), Options(), jobs=0)
    assert default_jobs() >= 1


def test_cli_jobs_1_and_2_write_the_same_json(tmp_path: Path) -> None:
    data = np.random.default_rng(5).standard_normal((300, 500)) * 8
    np.save(tmp_path / "m.npy", data)
    outs = []
    for jobs in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-m", "lsmcheck", "run", str(tmp_path / "m.npy"), "-f", "json",
             "-d", "float32", "-a", "softmax_stable,logsumexp_naive", "--jobs", jobs],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""  # no progress bar: stderr is not a terminal
        outs.append(proc.stdout)
    assert outs[0] == outs[1]
    report = json.loads(outs[0])
    assert report["reference"]["settled"] == {"float64": 300 * 501}


def test_user_implementations_run_in_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    # a closure cannot be pickled: forked workers inherit the options instead
    scale = 1.0

    def mine(x: np.ndarray) -> np.ndarray:
        e = np.exp(x * scale)
        return np.asarray(e / e.sum(axis=-1, keepdims=True), x.dtype)

    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 50)
    one = audit(vectors(), implementations=[mine], kind="softmax", jobs=1).to_json()
    assert audit(vectors(), implementations=[mine], kind="softmax", jobs=2).to_json() == one


def test_jobs_with_jax_loaded_start_workers_without_forking_jax(tmp_path: Path) -> None:
    """JAX is multithreaded: forking a process that imported it may deadlock (JAX warns).  In a
    process that imported JAX before the audit (a user's script, a test run), workers come from
    a fork server instead, with the same report."""
    pytest.importorskip("jax")
    data = tmp_path / "m.npy"
    np.save(data, np.random.default_rng(0).standard_normal((300, 1000)))
    reports = []
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}.json"
        args = ["run", str(data), "-a", "jax.nn.log_softmax,softmax_stable", "-d", "float32"]
        args += ["-j", jobs, "-f", "json", "-o", str(out)]
        script = (
            "import jax.numpy as jnp; jnp.ones(3).sum().block_until_ready()\n"
            f"from lsmcheck.cli import main; main({args!r})"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert "fork" not in done.stderr, done.stderr
        reports.append(json.loads(out.read_text())["results"])
    assert reports[0] == reports[1]


def _share(
    monkeypatch: pytest.MonkeyPatch,
    audit_chunk: Any,
    n: int = 200,
    jobs: int = 3,
    options: Options | None = None,
) -> list[Any]:
    """Run the scheduler itself on ``n`` vectors of 4 logits (10 per chunk), with threads
    for its ``jobs - 1`` workers and ``audit_chunk`` standing in for the audit."""
    from concurrent.futures import ThreadPoolExecutor

    from lsmcheck import parallel

    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 40)
    monkeypatch.setattr(sys.modules["lsmcheck.audit"], "audit_chunk", audit_chunk)
    vs = [Vector("p", i, None, np.zeros(4)) for i in range(n)]
    with ThreadPoolExecutor(jobs - 1) as pool:
        sharing = parallel._Sharing(pool, stream.chunks(vs), options or Options(), jobs, False)
        return list(sharing)


def test_work_sharing_cuts_the_tail_and_keeps_input_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every vector is audited once, outcomes come in input order, and each unit is a whole
    chunk or, in the tail, a run of at least a quarter chunk (10 logits: 3 vectors)."""
    units: list[list[int]] = []

    def audit_chunk(vs: list[Vector], _: Options) -> list[int]:
        units.append([v.index for v in vs])
        return units[-1]

    outcomes = _share(monkeypatch, audit_chunk)
    assert [i for o in outcomes for i in o] == list(range(200))
    assert sorted(map(min, units)) == [o[0] for o in outcomes]
    chunks = [list(range(i, i + 10)) for i in range(0, 200, 10)]
    assert all(u in chunks or len(u) >= 3 for u in units)
    assert any(u not in chunks for u in units)  # the tail was cut
    assert all(u in chunks for u in units if u[0] < 100)  # chunks read before the end: whole


def test_work_sharing_never_cuts_for_a_black_box(monkeypatch: pytest.MonkeyPatch) -> None:
    """A framework's or the user's function computes a batch at once and may depend on it
    (one shifting by the batch's maximum does): its chunks are the same whatever --jobs is."""
    from lsmcheck.algorithms import Algorithm, Kind, untraced

    black_box = Algorithm("box", Kind.SOFTMAX, lambda x: untraced(x), "", traced=False)
    units: list[list[int]] = []

    def audit_chunk(vs: list[Vector], _: Options) -> list[int]:
        units.append([v.index for v in vs])
        return units[-1]

    _share(monkeypatch, audit_chunk, options=Options(algorithms=(black_box,)))
    assert sorted(units) == [list(range(i, i + 10)) for i in range(0, 200, 10)]


def test_work_sharing_raises_an_error_in_input_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first failing vector's error is raised after every earlier outcome, whichever
    process audits what: here the workers are slow and fail on vector 15, while this process
    fails at once on vector 57 (one process would raise vector 15's error)."""
    import threading
    import time

    def audit_chunk(vs: list[Vector], _: Options) -> list[int]:
        indices = [v.index for v in vs]
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.05)
        for bad in (15, 57):
            if bad in indices:
                raise ValueError(f"vector {bad}")
        return indices

    seen: list[int] = []
    with pytest.raises(ValueError, match="vector 15"):
        for outcome in _share_iter(monkeypatch, audit_chunk):
            seen.extend(outcome)
    assert seen == list(range(10))


def _share_iter(monkeypatch: pytest.MonkeyPatch, audit_chunk: Any) -> Iterator[Any]:
    from concurrent.futures import ThreadPoolExecutor

    from lsmcheck import parallel

    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 40)
    monkeypatch.setattr(sys.modules["lsmcheck.audit"], "audit_chunk", audit_chunk)
    vs = [Vector("p", i, None, np.zeros(4)) for i in range(200)]
    with ThreadPoolExecutor(2) as pool:
        yield from parallel._Sharing(pool, stream.chunks(vs), Options(), 3, False)


def test_work_sharing_with_many_workers_and_instant_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """Units done before their callback is added run it at once, in the feeding thread: with
    400 jobs that recursed past Python's limit (RecursionError); now the feeding loop goes on."""
    outcomes = _share(monkeypatch, lambda vs, _: [v.index for v in vs], n=4000, jobs=400)
    assert [i for o in outcomes for i in o] == list(range(4000))


BATCH_SHIFT = '''
import numpy as np


def softmax(x):
    """Shifts by the batch's maximum, not each row's: its results depend on the batch."""
    e = np.exp(x - x.max())
    return e / e.sum(axis=-1, keepdims=True)
'''


def test_a_batch_dependent_implementation_gets_the_same_report_whatever_jobs(
    tmp_path: Path,
) -> None:
    """Found in review: cutting the tail into smaller batches changed this implementation's
    results with --jobs 2 (five of 2,000 vectors differed); black boxes are never cut."""
    (tmp_path / "batchdep.py").write_text(BATCH_SHIFT)
    x = np.random.default_rng(0).standard_normal((2000, 100))
    x[::250] += 30
    np.save(tmp_path / "e.npy", x)
    outs = []
    for jobs in ("1", "2"):
        subprocess.run(
            [sys.executable, "-m", "lsmcheck", "run", "e.npy", "--impl", "softmax=batchdep:softmax",
             "-d", "float16", "-f", "json", "-q", "--jobs", jobs, "-o", f"{jobs}.json"],
            cwd=tmp_path, capture_output=True, text=True, check=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        outs.append((tmp_path / f"{jobs}.json").read_text())
    assert outs[0] == outs[1]


def test_work_sharing_stops_at_once_for_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """--timeout's alarm raises LimitError inside whatever this process is auditing: that
    stops the run at once, not when the merge reaches the unit (as a unit's own error would)."""
    import threading
    import time

    from lsmcheck.errors import LimitError

    def audit_chunk(vs: list[Vector], _: Options) -> list[int]:
        if threading.current_thread() is threading.main_thread():
            raise LimitError("--timeout 1: stopped")
        time.sleep(0.05)
        return [v.index for v in vs]

    seen: list[int] = []
    with pytest.raises(LimitError):
        for outcome in _share_iter(monkeypatch, audit_chunk):
            seen.extend(outcome)
    assert seen == []  # the workers' first units were not waited for
