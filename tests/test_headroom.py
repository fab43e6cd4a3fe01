"""Headroom: how close a vector comes to its implementation's measured limits, in run/explain.

Expected thresholds are float16 values worked out by hand: the largest float16 below
ln(65504) = 11.0899 is 11.0859375 (float16 spacing at 8..16 is 2**-7), and the largest below
-ln(2**-25) = 17.3287 is 17.328125 (spacing 2**-6 at 16..32).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck import Options, UsageError, Vector, audit
from lsmcheck.algorithms import BUILTINS
from lsmcheck.cli import main
from lsmcheck.dtypes import FORMATS
from lsmcheck.explore.headroom import assess

F16 = FORMATS["float16"]
OVERFLOW_F16 = 11.0859375
UNDERFLOW_F16 = -17.328125


def f16(values: list[float]) -> np.ndarray:  # type: ignore[type-arg]
    return np.asarray(F16.cast(np.array(values)), np.float64)


def entries(name: str, values: list[float], zone: float = 0.10) -> dict[str, object]:
    return {h.limit: h for h in assess(BUILTINS[name], F16, f16(values), zone)}


def test_largest_logit_near_the_overflow_limit_warns() -> None:
    (h,) = [h for h in assess(BUILTINS["softmax_naive"], F16, f16([10.2, 0.0])) if h.limit]
    assert h.limit == "overflow"
    x = float(np.float16(10.2))  # 10.203125
    assert h.value == x and h.threshold == OVERFLOW_F16
    assert h.headroom == pytest.approx((OVERFLOW_F16 - x) / OVERFLOW_F16)
    assert h.warning
    assert h.message == (
        "largest logit 10.20 of 11.09 before exp overflows in float16: 7.9% headroom"
    )


def test_far_from_the_limit_no_warning_and_stable_has_no_overflow_limit() -> None:
    h = entries("softmax_naive", [5.0, 0.0])["overflow"]
    assert not h.warning and h.message.endswith("54% headroom")  # type: ignore[attr-defined]
    assert "overflow" not in entries("softmax_stable", [10.2, 0.0])


def test_past_the_limit() -> None:
    h = entries("softmax_naive", [12.0, 0.0])["overflow"]
    assert h.headroom < 0 and h.warning and h.message.endswith("past the limit")  # type: ignore[attr-defined]


def test_underflow_side_and_flush() -> None:
    h = entries("log_softmax_naive", [-16.5, -16.75])["underflow"]
    assert h.threshold == UNDERFLOW_F16 and h.warning  # type: ignore[attr-defined]
    assert h.headroom == pytest.approx((-16.5 - UNDERFLOW_F16) / UNDERFLOW_F16 * -1)  # type: ignore[attr-defined]
    flush = entries("log_of_softmax", [0.0, -16.5])["flush"]
    assert flush.threshold == UNDERFLOW_F16 and flush.warning  # type: ignore[attr-defined]
    # softmax_stable flushes there too, but correctly (the probability rounds to 0): no limit
    assert "flush" not in entries("softmax_stable", [0.0, -16.5])


def test_length_near_the_float16_sum_limit() -> None:
    h = entries("softmax_stable", [0.0] * 60000)["length"]
    assert h.threshold == 65519 and h.warning  # type: ignore[attr-defined]
    assert "length" not in entries("softmax_stable", [0.0] * 20)  # searched to 1024: none


def test_zone_changes_the_warning() -> None:
    assert not entries("softmax_naive", [10.5, 0.0], zone=0.03)["overflow"].warning  # type: ignore[attr-defined]
    assert entries("softmax_naive", [10.5, 0.0], zone=0.06)["overflow"].warning  # type: ignore[attr-defined]


def test_audit_fills_headroom_and_json() -> None:
    v = [Vector("t", 0, 1, np.array([10.5, 0.0]))]
    opts = Options(dtypes=("float16",), algorithms=("softmax_naive",))
    (r,) = audit(v, opts).results
    assert [h.limit for h in r.headroom] == ["overflow"] and r.headroom[0].warning
    doc = json.loads(audit(v, opts).to_json())
    first = doc["results"][0]["headroom"][0]
    assert first["limit"] == "overflow" and first["warning"] is True
    assert first["threshold"] == OVERFLOW_F16
    (r,) = audit(
        v, Options(dtypes=("float16",), algorithms=("softmax_naive",), danger_zone=None)
    ).results
    assert r.headroom == ()
    with pytest.raises(UsageError, match="--danger-zone"):
        Options(danger_zone=1.5)


def test_run_and_explain_show_warnings() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["run", "-l", "10.5,0", "-d", "float16", "-a", "softmax_naive"])
    assert res.exit_code == 0
    assert "Close to a limit" in res.stdout
    assert "largest logit 10.50 of 11.09 before exp overflows in float16: 5.2% headroom" in (
        " ".join(res.stdout.split())
    )
    res = runner.invoke(
        main, ["run", "-l", "10.5,0", "-d", "float16", "-a", "softmax_naive", "--danger-zone", "3"]
    )
    assert "Close to a limit" not in res.stdout
    # 100 logits of 10: e^10 is finite in float16 but their sum (2.2e6) overflows; "What
    # broke" says so, and the exp limit's 9.7% headroom is not repeated as a warning
    res = runner.invoke(main, ["run", "-l", ",".join(["10"] * 100), "-d", "float16", "-a",
                               "softmax_naive"])  # fmt: skip
    assert "the sum of exp terms overflowed" in " ".join(res.stdout.split())
    assert "Close to a limit" not in res.stdout
    res = runner.invoke(main, ["explain", "10.5,0", "-d", "float16", "-a", "softmax_naive"])
    assert res.exit_code == 0
    flat = " ".join(res.stdout.split())
    assert "Headroom" in flat and "softmax_naive is close to a limit: largest logit 10.50" in flat
    res = runner.invoke(main, ["run", "-l", "1,0", "--danger-zone", "100"])
    assert res.exit_code == 2 and "--danger-zone" in res.stderr


def test_limits_cached_on_disk_are_the_measured_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses as dc

    from lsmcheck.algorithms import BUILTINS
    from lsmcheck.dtypes import FORMATS
    from lsmcheck.explore import headroom as hr

    monkeypatch.setenv("LSMCHECK_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(hr, "_DISK", None)
    monkeypatch.setattr(hr, "_CACHE", {})
    alg, fmt = BUILTINS["softmax_naive"], FORMATS["float16"]
    measured = hr.measured_limit(alg, fmt, "overflow")
    assert list(tmp_path.glob("limits-*.json"))
    monkeypatch.setattr(hr, "_DISK", None)  # a new process: read back from disk
    monkeypatch.setattr(hr, "_CACHE", {})
    assert dc.asdict(hr.measured_limit(alg, fmt, "overflow")) == dc.asdict(measured)
