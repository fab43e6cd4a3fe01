"""``lsmcheck sweep``: generated families, numbers against direct audits, output formats."""

from __future__ import annotations

import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck import Options, Vector, audit
from lsmcheck.cli import main
from lsmcheck.explore.sweep import run_sweep, to_csv, to_json

ALGS = ("softmax_naive", "log_softmax_stable", "log_of_softmax")
DTYPES = ("float16", "float64")


def draw(seed: int, samples: int, length: int) -> np.ndarray:  # type: ignore[type-arg]
    """The documented draw, written out independently of the generators module."""
    return np.random.default_rng(seed).standard_normal((samples, length))


def direct(vectors: np.ndarray, alg: str, dtype: str) -> tuple[float | None, int, int, int]:  # type: ignore[type-arg]
    """(max of max_ulp, overflow, underflow, nan) over the rows, by plain audit() calls."""
    opts = Options(dtypes=(dtype,), algorithms=(alg,), danger_zone=None)
    rs = [audit([Vector("d", 0, None, row)], opts).results[0] for row in vectors]
    ulps = [r.max_ulp for r in rs if r.max_ulp is not None]
    return (
        max(ulps) if ulps else None,
        sum(r.overflow for r in rs),
        sum(r.underflow for r in rs),
        sum(r.nan for r in rs),
    )


FAMILIES = {
    "scale": lambda z, v: v * z,
    "shift": lambda z, v: z + v,
    "spread": lambda z, v: np.concatenate([z[:, 1:].max(axis=1, keepdims=True) + v, z[:, 1:]], 1),
    "length": lambda z, v: z[:, : int(v)],
}


@pytest.mark.parametrize(
    ("family", "start", "stop"),
    [("scale", 0.5, 200.0), ("shift", -30.0, 30.0), ("spread", 0.1, 200.0), ("length", 2, 40)],
)
def test_sweep_matches_direct_audits(family: str, start: float, stop: float) -> None:
    sw = run_sweep(
        family,
        start=start,
        stop=stop,
        count=5,
        length=6,
        samples=2,
        seed=7,
        algorithms=ALGS,
        dtypes=DTYPES,
    )
    z = draw(7, 2, int(stop) if family == "length" else 6)
    assert len(sw.points) == len(sw.values) * len(ALGS) * len(DTYPES)
    for v in sw.values:
        rows = FAMILIES[family](z, v)
        for a in ALGS:
            for d in DTYPES:
                (pt,) = [p for p in sw.series(a, d) if p.value == v]
                expected = direct(rows, a, d)
                assert (pt.max_ulp, pt.overflow, pt.underflow, pt.nan) == expected, (v, a, d)


def test_values_spacing_and_onsets() -> None:
    sw = run_sweep("scale", start=1, stop=1000, count=4, length=6, samples=2, seed=3,
                   algorithms=("softmax_naive",), dtypes=("float16",))  # fmt: skip
    assert sw.values == pytest.approx((1.0, 10.0, 100.0, 1000.0))
    o = sw.onset("softmax_naive", "float16", "overflow")
    assert o is not None
    z = draw(3, 2, 6)
    # first step whose largest logit exceeds ln(65504) = 11.09 (and is representable)
    first = next(v for v in sw.values if (np.float16(v * z) > 11.09).any())
    assert o.value == first
    lin = run_sweep("shift", start=-10, stop=10, count=3, samples=1, algorithms=ALGS[:1],
                    dtypes=("float64",))  # fmt: skip
    assert lin.values == (-10.0, 0.0, 10.0) and not lin.log


def test_unrepresentable_steps_are_counted_not_audited() -> None:
    sw = run_sweep("scale", start=1e6, stop=1e6, count=1, samples=1, length=4, seed=0,
                   algorithms=("softmax_stable",), dtypes=("float16",))  # fmt: skip
    (pt,) = sw.points
    assert pt.max_ulp is None and pt.audited == 0 and pt.unrepresentable == 1


def test_csv_and_json() -> None:
    sw = run_sweep("spread", count=3, samples=1, algorithms=ALGS[:2], dtypes=("float32",))
    lines = to_csv(sw).splitlines()
    assert lines[0].startswith("d,algorithm,dtype,max_ulp,overflow")
    assert len(lines) == 1 + 3 * 2
    doc = json.loads(to_json(sw))
    assert doc["schema"] == "lsmcheck.sweep/1" and doc["seed"] == 0
    assert len(doc["points"]) == 6 and doc["family"] == "spread"


def test_cli_is_reproducible_and_prints_the_seed() -> None:
    runner = CliRunner()
    args = ["sweep", "shift", "--steps", "5", "--samples", "1", "-a", "softmax_naive",
            "-d", "float16", "--seed", "11", "-f", "csv"]  # fmt: skip
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "default_rng(11)" in first.stderr and "repeat with: lsmcheck sweep shift" in first.stderr
    assert first.stdout.startswith("c,algorithm,dtype")
    again = runner.invoke(main, args)
    assert again.stdout == first.stdout
    # the printed repeat command gives the same numbers
    repeat = first.stderr.split("repeat with: lsmcheck ")[1].split()
    third = runner.invoke(main, [*repeat, "-a", "softmax_naive", "-d", "float16", "-f", "csv"])
    assert third.stdout == first.stdout


def test_cli_plot_to_stdout() -> None:
    res = CliRunner().invoke(
        main, ["sweep", "--steps", "9", "-a", "softmax_naive,softmax_stable", "-d", "float16"]
    )
    assert res.exit_code == 0
    assert "scale sweep in float16" in res.stdout and "inf/nan" in res.stdout
    assert "softmax_naive  overflow from s=" in res.stdout
    assert "\x1b[" not in res.stdout  # not a terminal: no colour codes


def test_png_and_svg(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    png, svg = tmp_path / "s.png", tmp_path / "s.svg"
    res = CliRunner().invoke(
        main,
        ["sweep", "--steps", "5", "-a", "softmax_naive", "-d", "float16,float32",
         "--png", str(png), "--svg", str(svg), "-f", "csv"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    root = ET.fromstring(svg.read_bytes())
    assert root.tag.endswith("svg")
    assert not list(tmp_path.glob(".*.tmp"))


def test_png_without_matplotlib_is_a_one_line_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    res = CliRunner().invoke(
        main, ["sweep", "--steps", "2", "-a", "softmax_naive", "-d", "float16",
               "--png", str(tmp_path / "x.png")]
    )  # fmt: skip
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "lsmcheck: error: --png: matplotlib is not installed; "
        "install it with: pip install 'lsmcheck[plot]'"
    )
    assert not (tmp_path / "x.png").exists()


def test_usage_errors() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["sweep", "shift", "--log", "--from", "-1", "--to", "1"])
    assert res.exit_code == 2 and "positive ends" in res.stderr
    res = runner.invoke(main, ["sweep", "spread", "--length", "1"])
    assert res.exit_code == 2 and "at least 2 logits" in res.stderr
    res = runner.invoke(main, ["sweep", "--steps", "0"])
    assert res.exit_code == 2 and "--steps" in res.stderr
    assert not math.isnan(0.0)


@pytest.mark.parametrize(
    "bad",
    [["--from", "nan"], ["--from", "inf", "--to", "1"], ["--to", "-inf"], ["--seed", "-1"]],
)
def test_non_finite_ends_and_negative_seeds_are_usage_errors(bad: list[str]) -> None:
    """Once a traceback (exit 3) or rows of nan; now one line and exit 2."""
    args = ["sweep", "scale", "--steps", "3", "-a", "softmax_stable", "-d", "float32", *bad]
    for fmt in ("csv", "plot"):
        res = CliRunner().invoke(main, [*args, "-f", fmt])
        assert res.exit_code == 2, res.output
        assert res.stderr.count("\n") == 1
        assert "--from/--to" in res.stderr or "--seed" in res.stderr


def test_linear_ends_near_the_largest_double_do_not_overflow() -> None:
    """-1e308..1e308 in 3 steps is -1e308, 0, 1e308 (numpy's linspace overflowed to nan)."""
    from lsmcheck.explore.generators import get_family, steps

    assert steps(get_family("shift"), -1e308, 1e308, 3, log=False) == [-1e308, 0.0, 1e308]


def test_out_of_memory_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizes too large for the machine (--samples 1e9) are the user's to change: one line and
    exit 2, not a traceback and "a bug in lsmcheck" (exit 3)."""
    import lsmcheck.cli.explore as explore_cli

    def too_big(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(explore_cli, "run_sweep", too_big)
    res = CliRunner().invoke(main, ["sweep", "scale", "-a", "softmax_stable", "-d", "float32"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "out of memory" in res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "scale", "-a", "softmax_stable", "-d", "float32", "--png", "/nonexistent/a.png"],
        ["sweep", "scale", "-a", "softmax_stable", "-d", "float32", "-o", "/nonexistent/a.txt"],
        ["limits", "-a", "softmax_naive", "-d", "float16", "-o", "/nonexistent/l.txt"],
        ["run", "-l", "1,2", "-d", ""],
        ["sweep", "scale", "-a", "", "-d", "float32"],
    ],
)
def test_bad_outputs_and_empty_name_lists_fail_before_any_work(args: list[str]) -> None:
    """One line, exit 2, and nothing else printed: no sweep or measurement ran first (an empty
    -d '' once silently meant every dtype)."""
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert res.stdout == "" and "lsmcheck: error: " in res.stderr


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["length", "--from", "2", "--to", "4000000"], "--from/--to: vectors of 4,000,000 logits"),
        (["scale", "--length", "3000000"], "--length: vectors of 3,000,000 logits"),
    ],
)
def test_a_sweep_too_long_for_memory_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, args: list[str], flag: str
) -> None:
    # a vector is audited whole at about 500 bytes per logit: with 2 GiB of memory, 3 million
    # logits (1.4 GiB) are more than half of it; the draw is never made
    from lsmcheck import impllimits

    monkeypatch.setattr(impllimits, "physical_memory", lambda: 2 << 30)
    res = CliRunner().invoke(main, ["sweep", *args])
    assert res.exit_code == 2
    assert res.output.startswith(f"lsmcheck: error: {flag} need about ")
    assert res.output.endswith("more than half this machine's 2.0 GiB of memory\n")
    res = CliRunner().invoke(main, ["sweep", "length", "--to", "1000", "-q"])
    assert res.exit_code == 0


def test_an_impl_in_a_mixed_precision_sweep_is_plotted_in_the_storage_dtype(
    ops_module: Path,
) -> None:
    # a black box runs in float16 whatever the accumulation dtype: sweep looked its results up
    # under float16/acc=float32 and died with a KeyError (exit 3)
    args = ["sweep", "scale", "-q", "--steps", "3", "-d", "float16/acc=float32"]
    res = CliRunner().invoke(main, [*args, "-a", "softmax_naive", "--impl", "softmax=ops.py:sm"])
    assert res.exit_code == 0, res.output
    assert "the accumulation dtype does not apply to ops.py:sm" in res.stderr
    res = CliRunner().invoke(
        main, [*args, "-a", "softmax_naive", "--impl", "softmax=ops.py:sm", "-f", "json"]
    )
    sweep = json.loads(res.stdout)
    assert sweep["dtypes"] == ["float16/acc=float32", "float16"]
    audited = {(p["algorithm"], p["dtype"]) for p in sweep["points"]}
    assert audited == {("softmax_naive", "float16/acc=float32"), ("ops.py:sm", "float16")}


def test_a_sweep_holding_too_many_logits_is_refused_before_the_draw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each vector fits, but 41 steps x 1000 samples x 100,000 logits (33 GB) do not
    from lsmcheck import impllimits

    monkeypatch.setattr(impllimits, "physical_memory", lambda: 2 << 30)
    res = CliRunner().invoke(main, ["sweep", "scale", "--length", "100000", "--samples", "1000"])
    assert res.exit_code == 2
    assert res.output == (
        "lsmcheck: error: --steps/--samples/--length: the sweep holds 4,100,000,000 logits at "
        "once (steps x samples x length), about 30.5 GiB, more than half this machine's 2.0 GiB "
        "of memory\n"
    )
