"""--scheduler: the same chunks on a local Dask distributed cluster give the same report."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from lsmcheck import Options, Vector, audit, stream
from lsmcheck.errors import UsageError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    # in-process workers on the loopback interface: a real scheduler reached by address
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


def test_dask_run_is_identical_to_a_local_run(
    scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "CHUNK_ELEMENTS", 40)
    rng = np.random.default_rng(2)
    vs = [Vector("d", i, None, rng.standard_normal(10) * 50) for i in range(30)]
    opts = Options(dtypes=("float16", "float64"))
    local = audit(vs, opts).to_json()
    assert audit(vs, opts, scheduler=scheduler).to_json() == local


def test_unreachable_scheduler_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lsmcheck.parallel.CONNECT_TIMEOUT", "1s")
    with pytest.raises(UsageError, match="--scheduler: cannot connect"):
        audit([Vector("d", 0, None, np.ones(3))], Options(), scheduler="tcp://127.0.0.1:9")


@pytest.mark.parametrize("address", ["notanaddress", "tcp://127.0.0.1", "foo://x:1", ""])
def test_a_malformed_scheduler_address_is_a_usage_error(address: str) -> None:
    """distributed's address parser raises ValueError: that was a traceback and exit 3."""
    with pytest.raises(UsageError, match=r"^--scheduler: .*expected an address such as"):
        audit([Vector("d", 0, None, np.ones(3))], Options(), scheduler=address)


def test_cli_scheduler_flag(scheduler: str) -> None:
    from click.testing import CliRunner

    from lsmcheck.cli import main

    args = ["run", "cases/seeds.csv", "-f", "json", "-d", "float32"]
    local = CliRunner().invoke(main, args)
    remote = CliRunner().invoke(main, [*args, "--scheduler", scheduler])
    assert remote.exit_code == local.exit_code == 0, remote.output
    assert remote.stdout == local.stdout


def test_cluster_without_lsmcheck_is_a_usage_error() -> None:
    from lsmcheck.parallel import _result

    class Future:
        def result(self) -> None:
            try:
                raise ModuleNotFoundError("No module named 'lsmcheck'")
            except ImportError as e:
                raise RuntimeError("Error during deserialization of the task graph") from e

    with pytest.raises(UsageError, match="install the same lsmcheck on the scheduler"):
        _result(Future())
