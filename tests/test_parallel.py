"""--jobs: the report is byte-identical whatever the number of workers and the chunk size."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

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


def test_work_sharing_cuts_the_tail_and_keeps_input_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler itself, with threads for workers and a stand-in audit that records the
    units: every vector is audited once, outcomes come in input order, the chunks read before
    the end are whole, and the tail is cut into units of at least a quarter chunk."""
    from concurrent.futures import ThreadPoolExecutor

    from lsmcheck import parallel

    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 40)
    units: list[list[int]] = []
    monkeypatch.setattr(
        sys.modules["lsmcheck.audit"],
        "audit_chunk",
        lambda vs, _: units.append([v.index for v in vs]) or [v.index for v in vs],
    )
    vs = [Vector("p", i, None, np.zeros(4)) for i in range(200)]  # 10 vectors per chunk
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(parallel._Sharing(pool, stream.chunks(vs), Options(), 3, False))
    assert [i for o in outcomes for i in o] == list(range(200))
    assert sorted(map(min, units)) == [o[0] for o in outcomes]
    assert all(len(u) >= 10 // 4 for u in units)
    assert any(len(u) < 10 for u in units)  # the tail was cut
    assert len(outcomes) > 20  # ...into more units than the 20 chunks


def test_work_sharing_raises_a_units_error_in_input_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from lsmcheck import parallel

    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 40)

    def audit_chunk(vs: list[Vector], _: Options) -> list[int]:
        if any(v.index == 57 for v in vs):
            raise ValueError("vector 57")
        return [v.index for v in vs]

    monkeypatch.setattr(sys.modules["lsmcheck.audit"], "audit_chunk", audit_chunk)
    vs = [Vector("p", i, None, np.zeros(4)) for i in range(200)]
    seen: list[int] = []
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="vector 57"):
        for outcome in parallel._Sharing(pool, stream.chunks(vs), Options(), 3, False):
            seen.extend(outcome)  # type: ignore[call-overload]
    assert seen == list(range(50))
