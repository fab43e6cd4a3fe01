"""The limits of a sandboxed --impl: the sizes --impl-memory takes, and Limits.make's defaults.

The sandbox enforcing them is tested in ``tests/test_sandbox.py``.
"""

from __future__ import annotations

import pytest

from lsmcheck.errors import UsageError
from lsmcheck.impllimits import Limits, parse_size, physical_memory, show_size


def test_sizes() -> None:
    assert parse_size("2G") == parse_size("2g") == parse_size("2GiB") == 2 << 30
    assert parse_size("512M") == 512 << 20 and parse_size("1.5G") == 3 << 29
    assert parse_size("64k") == 64 << 10 and parse_size("1000") == 1000
    assert parse_size("0") is None and parse_size("none") is None and parse_size(0) is None
    assert parse_size(1 << 30) == 1 << 30
    total = physical_memory()
    assert total is not None and parse_size("50%") == total // 2
    for bad in ("2X", "-1G", "", "G", "150%", "0%"):
        with pytest.raises(UsageError, match="--impl-memory"):
            parse_size(bad)
    assert [show_size(n) for n in (2 << 30, 3 << 29, 512 << 20, 1000)] == [
        "2G",
        "1.5G",
        "512M",
        "1000B",
    ]


def test_limits_defaults_and_errors() -> None:
    default = Limits.make()
    total = physical_memory()
    assert default.timeout == 60 and total is not None and default.memory == int(total * 0.5)
    assert Limits.make(0, "0") == Limits(None, None, "none")
    assert Limits.make(2.5, "2G") == Limits(2.5, 2 << 30, "2G")
    with pytest.raises(UsageError, match="--impl-timeout: expected seconds >= 0"):
        Limits.make(-1)
