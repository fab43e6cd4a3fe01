"""``lsmcheck hunt``: it finds what breaks, its case lines round-trip, --save never clobbers."""

from __future__ import annotations

import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck import Options, Vector, audit
from lsmcheck.algorithms import BUILTINS
from lsmcheck.cli import main
from lsmcheck.cli.explore import append_cases
from lsmcheck.explore.hunt import hunt
from lsmcheck.sources import read_sources
from tests import oracle


def test_finds_an_overflow_of_softmax_naive_in_float16_within_its_budget() -> None:
    h = hunt("softmax_naive", "float16", budget=1.0, seed=0)
    worst = h.worst[0]
    assert worst.result.overflow > 0 and h.broken > 0
    # independently: exp of the largest logit is beyond float16's max, 65504
    assert mpmath.exp(float(np.max(worst.values))) > 65504
    (again,) = audit(
        [Vector("t", 0, None, worst.values)],
        Options(dtypes=("float16",), algorithms=("softmax_naive",), danger_zone=None),
    ).results
    assert again.overflow == worst.result.overflow
    assert "shift by the maximum first" in h.verdict()


def test_log_softmax_stable_float64_far_worse_than_random_normal_logits() -> None:
    # the baseline, measured here: 200 random normal vectors of the same length
    rng = np.random.default_rng(12345)
    normal = [Vector("n", i, None, rng.standard_normal(8)) for i in range(200)]
    opts = Options(dtypes=("float64",), algorithms=("log_softmax_stable",), danger_zone=None)
    baseline = max(r.max_ulp or 0.0 for r in audit(normal, opts).results)
    assert 0 < baseline < 100
    h = hunt("log_softmax_stable", "float64", evals=320, seed=0, length=8)
    worst = h.worst[0]
    assert not worst.broken
    assert worst.result.max_ulp is not None and worst.result.max_ulp > 1e6 * baseline
    # the ULP error checked against the independent 300-bit oracle
    _, truth, _ = oracle.truth(worst.values.tolist())
    (r,) = audit([Vector("t", 0, None, worst.values)], opts).results
    i = r.worst_index
    assert i is not None
    computed = float(BUILTINS["log_softmax_stable"].run(worst.values[None, :]).out[0, i])
    assert math.isclose(oracle.ulp_error(computed, truth[i], "float64"), r.max_ulp, rel_tol=1e-6)


def test_evals_make_a_hunt_repeatable() -> None:
    a = hunt("logsumexp_naive", "float32", evals=100, seed=4)
    b = hunt("logsumexp_naive", "float32", evals=100, seed=4)
    assert a.evaluations == b.evaluations == 100
    assert [f.values.tolist() for f in a.worst] == [f.values.tolist() for f in b.worst]
    c = hunt("logsumexp_naive", "float32", evals=100, seed=5)
    assert [f.values.tolist() for f in a.worst] != [f.values.tolist() for f in c.worst]


def test_case_lines_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    h = hunt("log_of_softmax", "float16", evals=96, seed=2, top=3)
    path = tmp_path / "found.csv"
    path.write_text(h.case_text())
    vectors = read_sources([str(path)], ())
    assert len(vectors) == len(h.worst)
    opts = Options(dtypes=("float16",), algorithms=("log_of_softmax",), danger_zone=None)
    for v, found in zip(vectors, h.worst, strict=True):
        assert np.array_equal(np.float16(v.values), np.float16(found.values))
        (r,) = audit([v], opts).results
        assert r.max_ulp == found.result.max_ulp


def test_append_cases_never_clobbers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cases.csv"
    path.write_text("# mine\n1,2,3")  # no trailing newline
    added, skipped = append_cases(str(path), "# c1\n4,5\n# c2\n1,2,3\n")
    assert (added, skipped) == (1, 1)
    assert path.read_text() == "# mine\n1,2,3\n# c1\n4,5\n"
    assert append_cases(str(path), "# c1\n4,5\n") == (0, 1)
    assert path.read_text() == "# mine\n1,2,3\n# c1\n4,5\n"
    assert not list(tmp_path.glob(".*.tmp"))
    fresh = tmp_path / "new.csv"
    assert append_cases(str(fresh), "# c\n7,8\n") == (1, 0)
    assert fresh.read_text() == "# c\n7,8\n"


def test_cli_prints_a_case_file_and_saves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    save = tmp_path / "found.csv"
    args = ["hunt", "-a", "softmax_naive", "-d", "float16", "--evals", "64", "--top", "2"]
    res = runner.invoke(main, [*args, "--save", str(save)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert all(line.startswith("#") or "," in line for line in lines)
    assert sum(not line.startswith("#") for line in lines) == 2
    assert lines[-1].startswith("#") and any(line.startswith("# Verdict:") for line in lines)
    assert "--evals 64" in res.stderr and "appended 2 vectors" in res.stderr
    again = runner.invoke(main, [*args, "--save", str(save)])
    assert "appended 0 vectors" in again.stderr and "(2 already there)" in again.stderr
    # the stdout is itself a case file lsmcheck run reads
    (tmp_path / "out.csv").write_text(res.stdout)
    run = runner.invoke(main, ["run", str(tmp_path / "out.csv"), "-d", "float16"])
    assert run.exit_code == 0 and "softmax_naive" in run.stdout


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2", "bfloat16"])
def test_refinement_nudges_one_byte_and_two_byte_formats(dtype: str) -> None:
    """96 evaluations run a refinement round, which steps a logit by whole units in the last
    place through its bits (float8 once crashed: no 1-byte integer type was mapped)."""
    h = hunt("softmax_naive", dtype, evals=96, seed=0)
    assert h.evaluations == 96
    from lsmcheck.dtypes import get_format

    fmt = get_format(dtype)
    for found in h.worst:  # every candidate is made of values of the dtype
        assert np.array_equal(np.asarray(found.values, fmt.dtype).astype(np.float64), found.values)


def test_save_refuses_what_it_cannot_append_to_before_hunting(tmp_path: Path) -> None:
    """--save writes comma-separated lines: a .tsv or .json would be left unreadable."""
    for name in ("found.tsv", "found.json", "found.npy"):
        path = tmp_path / name
        path.write_text("keep me")
        args = ["hunt", "-a", "softmax_naive", "-d", "float16", "--evals", "32"]
        res = CliRunner().invoke(main, [*args, "--save", str(path)])
        assert res.exit_code == 2 and "--save" in res.stderr and "comma-separated" in res.stderr
        assert "repeat exactly" not in res.stderr  # refused before the search
        assert path.read_text() == "keep me"


def test_cli_usage_errors() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["hunt", "-a", "softmax_naive", "-d", "float16", "--seed", "-1"])
    assert res.exit_code == 2 and "--seed" in res.stderr
    res = runner.invoke(main, ["hunt", "-a", "nope", "-d", "float16", "--evals", "8"])
    assert res.exit_code == 2 and "unknown algorithm" in res.stderr
    res = runner.invoke(main, ["hunt", "-a", "softmax_naive", "-d", "float8"])
    assert res.exit_code == 2 and "unknown dtype" in res.stderr
    res = runner.invoke(main, ["hunt", "-a", "softmax_naive", "-d", "float16", "--budget", "0"])
    assert res.exit_code == 2 and "--budget" in res.stderr
    res = runner.invoke(main, ["hunt", "-a", "softmax_naive", "-d", "float16,float32"])
    assert res.exit_code == 2
    assert res.stderr == (
        "lsmcheck: error: --dtype: hunt takes one, got 'float16,float32' (hunt each in turn)\n"
    )
    res = runner.invoke(main, ["hunt", "-a", "softmax_naive,softmax_stable", "-d", "float16"])
    assert res.exit_code == 2 and "--algorithm: hunt takes one" in res.stderr


FIXTURES = Path(__file__).parent / "fixtures"


def test_hunt_and_limits_take_a_user_implementation(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(FIXTURES)
    runner = CliRunner()
    impl = "softmax=mysoftmax:naive_softmax"
    res = runner.invoke(main, ["hunt", "--impl", impl, "-d", "float16", "--evals", "96"])
    assert res.exit_code == 0, res.output
    assert f"# lsmcheck hunt --impl {impl} -d float16" in res.stdout
    assert f"repeat exactly with: lsmcheck hunt --impl {impl}" in res.stderr
    assert "mysoftmax:naive_softmax in float16 breaks" in res.stdout
    res = runner.invoke(
        main,
        ["limits", "--impl", impl, "--impl", "softmax=mysoftmax:raising_softmax",
         "-d", "float16", "--limit", "overflow"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    flat = " ".join(res.stdout.split())
    assert "mysoftmax:naive_softmax 11.086" in flat
    assert "mysoftmax:naive_softmax in float16 returns NaN once any logit exceeds 11.09" in flat
    assert "mysoftmax:raising_softmax error" in flat and "could not be probed" in flat
    res = runner.invoke(main, ["hunt", "-d", "float16"])
    assert res.exit_code == 2 and "give one implementation" in res.stderr
    # an implementation that fails on every candidate: the hunt found nothing, exit 1 (was 0)
    raising = "softmax=mysoftmax:raising_softmax"
    res = runner.invoke(main, ["hunt", "--impl", raising, "-d", "float16", "--evals", "32"])
    assert res.exit_code == 1, res.output
    assert "no candidate could be audited (the first: raised ValueError" in res.stdout


@pytest.mark.parametrize("evals", [1, 20, 33])
def test_evals_audits_exactly_that_many_candidates(evals: int) -> None:
    """Fewer than the baseline round's 32 included: --evals is exact, not rounded up."""
    assert hunt("softmax_naive", "float16", evals=evals, seed=0).evaluations == evals


def test_the_repeat_flag_names_framework_adapters_with_a() -> None:
    """A framework adapter is repeated with -a (it once said --impl softmax=torch.softmax,
    which --impl refuses), a user's implementation with --impl."""
    import dataclasses

    h = hunt("softmax_naive", "float16", evals=32, seed=0)
    assert h.flag == "-a softmax_naive"
    assert dataclasses.replace(h, algorithm="torch.softmax").flag == "-a torch.softmax"
    mine = dataclasses.replace(h, algorithm="kernels:fused", kind="softmax")
    assert mine.flag == "--impl softmax=kernels:fused"


@pytest.mark.parametrize(
    "args",
    [
        ["hunt", "-a", "cross_entropy_log_softmax", "-d", "float32", "--evals", "32"],
        ["limits", "-a", "log_softmax_stable.grad", "-d", "float32", "--limit", "overflow"],
        ["sweep", "scale", "-a", "cross_entropy_log_softmax", "-d", "float32", "--steps", "3"],
    ],
)
def test_exploring_an_implementation_that_needs_targets_says_where_to_go(args: list[str]) -> None:
    """These commands draw logits, not targets: the error points at run/explain --target
    (it once told the user to pass --target, which none of them has)."""
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "lsmcheck run --target" in res.stderr and "needs the target class" in res.stderr


def test_a_hunt_too_long_for_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # each round audits 32 candidates together: 32 x 200,000 logits (3 GiB) > half of 2 GiB
    from lsmcheck import impllimits

    monkeypatch.setattr(impllimits, "physical_memory", lambda: 2 << 30)
    args = ["hunt", "-a", "softmax_naive", "-d", "float16", "--length", "200000"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    assert res.output == (
        "lsmcheck: error: --length: 32 candidates of 200,000 logits (audited together) need "
        "about 3.0 GiB to audit at once, more than half this machine's 2.0 GiB of memory\n"
    )
