"""The gate: thresholds at every level, what a failure says, baselines and regressions."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mpmath
import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck.baseline import Baseline, dumps, load, loads, record
from lsmcheck.cli import main
from lsmcheck.errors import InputError, UsageError
from lsmcheck.gate import (
    DEFAULT_TOLERANCE,
    Limits,
    Rule,
    Thresholds,
    compare,
    judge,
    parse_fail_on,
)
from lsmcheck.report import ReferenceInfo, Report, summarise
from lsmcheck.results import Result, Status
from tests import oracle

ROOT = Path(__file__).resolve().parent.parent
INF = math.inf


def result(
    algorithm: str = "mine",
    dtype: str = "float32",
    vector: int = 0,
    max_ulp: float | None = 0.5,
    source: str = "a.csv",
    **kw: object,
) -> Result:
    base = Result(
        source=source,
        vector=vector,
        line=vector + 1,
        length=3,
        algorithm=algorithm,
        kind="softmax",
        dtype=dtype,
        max_ulp=max_ulp,
        mean_ulp=max_ulp,
        max_abs_error=0.0,
        max_rel_error=0.0,
        worst_index=1,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def report(*results: Result) -> Report:
    return Report("0", ReferenceInfo("mpmath", 113, 113), tuple(results), summarise(results))


# --- thresholds -------------------------------------------------------------------------------

RULES = (
    Rule(Limits(max_ulp=4, max_nan=0), origin="cfg [t]"),
    Rule(Limits(max_ulp=1), dtype="float64", origin="cfg [t.dtype.float64]"),
    Rule(Limits(max_ulp=8), algorithm="mine", origin="cfg [t.algorithm.mine]"),
    Rule(Limits(max_ulp=16), algorithm="mine", dtype="float16", origin="cfg [mine.float16]"),
    Rule(Limits(max_ulp=INF, max_nan=INF), algorithm="loose", origin="cfg [t.algorithm.loose]"),
)


@pytest.mark.parametrize(
    ("algorithm", "dtype", "limits"),
    [
        ("other", "float32", {"max_ulp": (4, "cfg [t]"), "nan": (0, "cfg [t]")}),
        ("other", "float64", {"max_ulp": (1, "cfg [t.dtype.float64]"), "nan": (0, "cfg [t]")}),
        ("mine", "float64", {"max_ulp": (8, "cfg [t.algorithm.mine]"), "nan": (0, "cfg [t]")}),
        ("mine", "float16", {"max_ulp": (16, "cfg [mine.float16]"), "nan": (0, "cfg [t]")}),
        ("loose", "float64", {}),  # inf lifts both limits
    ],
)
def test_most_specific_level_wins(
    algorithm: str, dtype: str, limits: dict[str, tuple[float, str]]
) -> None:
    assert Thresholds(rules=RULES).resolve(algorithm, dtype) == limits


def test_direct_thresholds_override_every_level() -> None:
    t = Thresholds(max_ulp=100, fail_on=frozenset({"overflow"}), rules=RULES)
    assert t.resolve("mine", "float16") == {
        "max_ulp": (100, ""),
        "nan": (0, "cfg [t]"),
        "overflow": (0, ""),
    }
    assert t.resolve("loose", "float32") == {"max_ulp": (100, ""), "overflow": (0, "")}


def test_judge_says_which_threshold_and_by_how_much() -> None:
    t = Thresholds(max_rel_error=1e-3, rules=RULES)
    r = judge(result("other", "float64", max_ulp=3.5, nan=2, max_rel_error=0.25), t)
    assert r.status is Status.FAIL
    assert r.failures == (
        "max_ulp 3.5 > 1 by 2.5 (element 1, limit from cfg [t.dtype.float64])",
        "max_rel_error 0.25 > 0.001 by 0.249",
        "nan 2 > 0 (limit from cfg [t])",
    )
    b = r.breaches[0]
    assert (b.check, b.value, b.limit, b.excess, b.origin) == (
        "max_ulp",
        3.5,
        1.0,
        2.5,
        "cfg [t.dtype.float64]",
    )
    assert judge(result(max_ulp=INF), Thresholds(max_ulp=2)).failures == (
        "max_ulp inf > 2 (element 1)",
    )
    assert judge(result(max_ulp=2.0), Thresholds(max_ulp=2)).status is Status.PASS  # <= passes
    counted = Thresholds(rules=(Rule(Limits(max_underflow=2)),))
    assert judge(result(underflow=2), counted).status is Status.PASS
    assert judge(result(underflow=3), counted).failures == ("underflow 3 > 2",)


def test_statuses_without_metrics_are_kept() -> None:
    t = Thresholds(max_ulp=0)
    err = result(max_ulp=None, status=Status.ERROR, reason="raised ValueError: x")
    undefined = result(max_ulp=None, status=Status.UNDEFINED, reason="NaN logit")
    assert judge(err, t) == err and judge(undefined, t) == undefined
    assert not report(err).passed and report(err).exit_code == 1
    assert report(undefined).passed


def test_invalid_thresholds() -> None:
    with pytest.raises(UsageError, match="--fail-on: unknown event 'inf'"):
        Thresholds(fail_on=frozenset({"inf"}))
    with pytest.raises(UsageError, match="--max-rel-error"):
        Thresholds(max_rel_error=-1)
    with pytest.raises(UsageError, match="max_ulp: expected a number >= 0"):
        Limits(max_ulp=math.nan)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-rel-error", "-0.0"], "--max-rel-error: expected a number >= 0, got -0.0"),
        (["--max-ulp", "-0"], "--max-ulp: expected a number >= 0, got -0.0"),
        (["--baseline-tolerance", "-0.0"], "--baseline-tolerance: expected a finite number"),
        (["--impl-timeout", "-0.0"], "--impl-timeout: expected seconds >= 0 (0: no limit)"),
        (["--danger-zone", "-0"], "--danger-zone: expected a percentage from 0 to below 100"),
    ],
)
def test_a_negative_zero_limit_is_refused(args: list[str], message: str) -> None:
    """``--max-rel-error -0.0`` was accepted and failures read ``max_rel_error 4e-08 > -0``."""
    done = CliRunner().invoke(main, ["run", "--no-config", "-l", "1,2", *args])
    assert done.exit_code == 2 and done.stdout == ""
    assert done.stderr.startswith(f"lsmcheck: error: {message}") and done.stderr.count("\n") == 1
    with pytest.raises(UsageError, match="max_ulp: expected a number >= 0"):
        Limits(max_ulp=-0.0)


def test_limits_refuses_a_negative_zero_ulp_bound() -> None:
    done = CliRunner().invoke(main, ["limits", "--ulp-bound", "-0.0"])
    assert done.exit_code == 2
    assert done.stderr == "lsmcheck: error: --ulp-bound: expected a number >= 0, got -0.0\n"


# --- comparison with a baseline ---------------------------------------------------------------


def baseline_of(*results: Result, path: str = "b.json") -> Baseline:
    return loads(dumps(results), path)


def test_regressions_improvements_known_new_and_vanished() -> None:
    t = Thresholds(max_ulp=4, fail_on=frozenset({"overflow"}))
    old = [
        result(vector=0, max_ulp=0.5),  # will grow by 2 ulp: regression
        result(vector=1, max_ulp=0.5),  # will grow by exactly the tolerance: not a regression
        result(vector=2, max_ulp=50.0),  # known failure, unchanged
        result(vector=3, max_ulp=50.0, overflow=2),  # improves
        result(vector=4, max_ulp=3.5),  # newly breaks max_ulp 4 without growing > tolerance
        result(vector=5, max_ulp=0.5),  # vanishes
        result(vector=6, max_ulp=0.5, nan=0),  # a new NaN
    ]
    new = [
        result(vector=0, max_ulp=2.5),
        result(vector=1, max_ulp=1.5),
        result(vector=2, max_ulp=50.0),
        result(vector=3, max_ulp=0.5, overflow=0),
        result(vector=4, max_ulp=3.9 + 0.2),
        result(vector=6, max_ulp=0.5, nan=1),
        result(vector=7, max_ulp=9.0),  # new, judged by the thresholds
    ]
    rep = compare(report(*(judge(r, t) for r in new)), baseline_of(*(judge(r, t) for r in old)))
    by = {r.vector: r for r in rep.results}
    assert [by[v].baseline for v in (0, 1, 2, 3, 4, 6, 7)] == [
        "regressed",
        "unchanged",
        "unchanged",
        "improved",
        "regressed",
        "regressed",
        "new",
    ]
    assert by[0].failures == ("max_ulp regressed 0.5 -> 2.5 (tolerance 1 ulp)",)
    assert by[0].breaches[0].check == "baseline.max_ulp" and by[0].breaches[0].limit == 1.5
    assert by[2].status is Status.PASS and [b.check for b in by[2].known] == ["max_ulp"]
    assert by[3].status is Status.PASS
    assert by[3].baseline_note == "max_ulp 50 -> 0.5; overflow 2 -> 0"
    assert by[4].failures == ("max_ulp 4.1 > 4 by 0.1 (element 1), was 3.5 in the baseline",)
    assert by[6].failures == ("nan 0 -> 1",)
    assert by[7].status is Status.FAIL and by[7].failures[0].startswith("max_ulp 9 > 4")
    summary = rep.baseline
    assert summary is not None
    assert (summary.regressed, summary.improved, summary.unchanged, summary.new) == (3, 1, 2, 1)
    assert [v.vector for v in summary.vanished] == [5]
    assert not rep.passed and rep.exit_code == 1
    # the groups are recomputed from the judged results
    assert rep.groups[0].failed == 4


def test_vanished_alone_fails_and_error_always_fails() -> None:
    rep = compare(report(result(vector=0)), baseline_of(result(vector=0), result(vector=1)))
    assert all(r.status is Status.PASS for r in rep.results) and not rep.passed
    err = result(vector=0, max_ulp=None, status=Status.ERROR, reason="raised")
    rep = compare(report(err), baseline_of(err))
    assert rep.results[0].baseline == "unchanged" and not rep.passed
    rep = compare(report(err), baseline_of(result(vector=0)))
    assert rep.results[0].baseline == "regressed"
    assert rep.results[0].baseline_note == "status pass -> error"


def test_fail_on_unaudited_known_to_the_baseline_does_not_fail() -> None:
    """--fail-on unaudited fails a result that was not audited; the baseline recorded it so:
    known, as a recorded threshold breach is (it kept failing the gate on an unchanged run).
    One that was audited before still fails."""
    t = Thresholds(fail_on=frozenset({"unaudited"}))
    skipped = judge(result(max_ulp=None, status=Status.UNDEFINED, reason="all -inf"), t)
    assert skipped.status is Status.FAIL
    rep = compare(report(skipped), baseline_of(skipped))
    assert rep.passed and rep.results[0].baseline == "unchanged"
    assert rep.results[0].status is Status.PASS and rep.results[0].reason == "all -inf"
    rep = compare(report(skipped), baseline_of(result(max_ulp=0.5)))
    assert not rep.passed and rep.results[0].status is Status.FAIL


def test_a_config_can_fail_unaudited_vectors_for_every_result_or_per_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fail_on = ["unaudited"]`` in the config did what ``--fail-on unaudited`` does only on
    the command line (the config refused it: a CI gate in pyproject.toml alone could not)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("1,2\n1e10,0\n")  # line 2 overflows float16
    args = ["run", "in.csv", "-d", "float16,float32", "-a", "softmax_stable", "-f", "json"]

    def statuses(config: str) -> tuple[int, list[str]]:
        (tmp_path / "pyproject.toml").write_text(config)
        done = CliRunner().invoke(main, args)
        assert done.exit_code in (0, 1), done.output
        return done.exit_code, [r["status"] for r in json.loads(done.stdout)["results"]]

    everywhere = '[tool.lsmcheck.thresholds]\nfail_on = ["unaudited"]\n'
    assert statuses(everywhere) == (1, ["pass", "pass", "fail", "pass"])
    in_float32 = '[tool.lsmcheck.thresholds.dtype.float32]\nfail_on = ["unaudited"]\n'
    assert statuses(in_float32) == (0, ["pass", "pass", "unrepresentable", "pass"])
    lifted = everywhere + "[tool.lsmcheck.thresholds.dtype.float16]\nfail_on = []\n"
    assert statuses(lifted)[0] == 1  # an empty list lifts nothing: the lower level holds
    t = Thresholds(rules=(Rule(Limits(unaudited=True)), Rule(Limits(unaudited=False), dtype="a")))
    assert t.fails_unaudited("x", "b") and not t.fails_unaudited("x", "a")


def test_fail_on_all_fails_unaudited_vectors_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--fail-on all`` (and a config's ``fail_on = ["all"]``) fails on every condition it
    can name, ``unaudited`` included: it passed a gate with an input it never audited."""
    assert parse_fail_on(["all"]) == {"overflow", "underflow", "nan", "unaudited"}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("1,2\n1e10,0\n")  # line 2 overflows float16
    args = ["run", "in.csv", "-d", "float16", "-a", "softmax_stable", "-f", "json"]
    done = CliRunner().invoke(main, [*args, "--no-config", "--fail-on", "all"])
    assert done.exit_code == 1, done.output
    assert [r["status"] for r in json.loads(done.stdout)["results"]] == ["pass", "fail"]
    (tmp_path / "lsmcheck.toml").write_text('[thresholds]\nfail_on = ["all"]\n')
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 1, done.output
    assert [r["status"] for r in json.loads(done.stdout)["results"]] == ["pass", "fail"]


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_an_empty_fail_on_is_an_error_not_an_open_gate(value: str) -> None:
    """``--fail-on "$EVENTS"`` with an empty variable passed every result."""
    done = CliRunner().invoke(
        main, ["run", "-l", "1000,0", "-a", "softmax_naive", "--fail-on", value]
    )
    assert done.exit_code == 2
    assert done.output == (
        "lsmcheck: error: --fail-on: no event given "
        "(choose from overflow, underflow, nan, unaudited, all)\n"
    )


def test_infinite_errors_compare_sanely() -> None:
    rep = compare(report(result(max_ulp=INF)), baseline_of(result(max_ulp=INF)))
    assert rep.results[0].baseline == "unchanged" and rep.passed
    rep = compare(report(result(max_ulp=INF)), baseline_of(result(max_ulp=3.0)))
    assert rep.results[0].failures == ("max_ulp regressed 3 -> inf (tolerance 1 ulp)",)
    assert DEFAULT_TOLERANCE == 1.0
    with pytest.raises(UsageError, match="--baseline-tolerance"):
        compare(report(result()), baseline_of(result()), tolerance=-1)


# --- the baseline file ------------------------------------------------------------------------


def test_baseline_file_is_sorted_stable_and_one_result_per_line() -> None:
    results = [
        result("b", "float64", vector=10, max_ulp=INF, nan=3, source="z.csv"),
        result("b", "float16", vector=2, source="z.csv"),
        result("a", "float32", vector=9, max_ulp=0.25),
        result("a", "float32", vector=10, max_ulp=None, status=Status.UNDEFINED),
    ]
    text = dumps(results)
    assert text == dumps(list(reversed(results)))
    lines = text.splitlines()
    assert lines[:3] == ["{", '  "schema": "lsmcheck.baseline/1",', '  "results": [']
    assert lines[-2:] == ["  ]", "}"]
    body = [json.loads(line.strip().rstrip(",")) for line in lines[3:-2]]
    assert [(d["source"], d["vector"], d["algorithm"], d["dtype"]) for d in body] == [
        ("a.csv", 9, "a", "float32"),
        ("a.csv", 10, "a", "float32"),
        ("z.csv", 2, "b", "float16"),
        ("z.csv", 10, "b", "float64"),
    ]
    assert all(list(d) == sorted(d) for d in body)
    assert body[3]["max_ulp"] == "inf" and body[1]["max_ulp"] is None
    again = loads(text, "b.json")
    assert again.results == tuple(sorted((record(r) for r in results), key=lambda r: r.key))
    assert dumps([]) == '{\n  "schema": "lsmcheck.baseline/1",\n  "results": []\n}\n'


#: A valid baseline of one result, for the damaged copies below.
_BASE = dumps([result(max_ulp=0.5)])


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("{", "b.json:1:2", "invalid JSON"),
        ("[]", "b.json", "not a baseline file"),
        ('{"schema": "lsmcheck.baseline/1"}', "b.json", '"results" must be an array'),
        ('{"schema": "lsmcheck.baseline/1", "results": [1]}', "b.json: results[0]", "object"),
        (
            '{"schema": "lsmcheck.baseline/1", "results": [{"source": "a"}]}',
            "b.json: results[0]",
            "'algorithm' must be a string",
        ),
        (_BASE.replace('"max_ulp": 0.5', '"max_ulp": -3'), "b.json: results[0]", ">= 0, got -3"),
        (_BASE.replace('"pass"', '"bogus"'), "b.json: results[0]", "'status' must be one of"),
    ],
)
def test_bad_baseline_files(text: str, where: str, words: str) -> None:
    with pytest.raises(InputError) as e:
        loads(text, "b.json")
    assert e.value.where == where and words in e.value.message


def test_missing_baseline_is_exit_2_before_the_audit(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such baseline file"):
        load(str(tmp_path / "none.json"))
    result_ = CliRunner().invoke(
        main, ["run", "--no-config", "-l", "1,2", "--baseline", str(tmp_path / "none.json")]
    )
    assert result_.exit_code == 2 and result_.stdout == ""
    assert "no such baseline file (create one with --save-baseline)" in result_.stderr


@pytest.mark.parametrize(
    ("saved", "compared"),
    [("./data/x.csv", "data/x.csv"), ("data/x.csv", "./data/x.csv"), ("data//x.csv", "data/x.csv")],
)
def test_a_baseline_matches_however_the_path_was_spelt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saved: str, compared: str
) -> None:
    """A baseline saved from ``lsmcheck run ./data/x.csv`` matches ``lsmcheck run data/x.csv``
    (and the reverse); before, every result was "new" and every recorded one "vanished"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("1,2,3\n10,11\n")
    args = ["run", "--no-config", "-a", "softmax_stable", "-d", "float32", "-q", "-f", "json"]
    first = CliRunner().invoke(main, [*args, saved, "--save-baseline", "b.json"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, [*args, compared, "--baseline", "b.json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)["baseline"]
    assert (summary["unchanged"], summary["new"], summary["vanished"]) == (2, 0, [])


def test_a_baseline_run_keeps_every_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the automatic aggregation threshold a baseline run still keeps (and records, and
    compares) every result: an unchanged input passes against its own baseline.  Before, the
    saved baseline held only the kept results, the comparison called the rest "vanished", and
    the verdict read stale counts: FAIL on an unchanged input."""
    from lsmcheck import stream

    monkeypatch.setattr(stream, "AUTO_AGGREGATE", 20)  # 30 vectors x 2 dtypes: 60 results
    logits = tmp_path / "l.csv"
    logits.write_text("".join(f"{i},{i + 1},{2 * i},-1\n" for i in range(30)))
    base = tmp_path / "b.json"
    args = ["run", str(logits), "-a", "softmax_stable", "-d", "float32,float64", "-q"]
    saved = CliRunner().invoke(main, [*args, "--max-ulp", "1", "--save-baseline", str(base)])
    assert saved.exit_code in (0, 1), saved.output
    assert len(load(str(base)).results) == 60
    again = CliRunner().invoke(main, [*args, "--max-ulp", "1", "--baseline", str(base)])
    assert again.exit_code == 0, again.output
    assert "0 regressed, 0 improved, 60 unchanged, 0 new, 0 vanished" in " ".join(
        again.stdout.split()
    )
    # --keep with a baseline is refused before the audit; so is a bad tolerance
    for extra in (["--keep", "1"], ["--baseline-tolerance", "-1"]):
        bad = CliRunner().invoke(main, [*args, "--baseline", str(base), *extra])
        assert bad.exit_code == 2 and bad.stderr.count("\n") == 1, bad.output
    # the library refuses to compare or record an aggregated report
    with pytest.raises(UsageError, match="result by result"):
        compare(_aggregated(), load(str(base)))
    with pytest.raises(UsageError, match="records every result"):
        dumps(_aggregated())


def _aggregated() -> Report:
    from lsmcheck import Options, Vector, audit

    return audit([Vector("t", 0, None, np.array([1.0, 2.0]))], Options(keep=1))


# --- a baseline recorded on one commit, compared on a changed implementation -------------------

KERNELS_V1 = """
import numpy as np

def fast_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

def fast_log_softmax(x):
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
"""

# The "optimisation" under review: drop the max-shift of softmax; fix log-softmax.
KERNELS_V2 = """
import numpy as np

def fast_softmax(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)

def fast_log_softmax(x):
    d = x - x.max(axis=-1, keepdims=True)
    return d - np.log(np.exp(d).sum(axis=-1, keepdims=True))
"""

TIES = [0.0, 11.0, 12.0, 100.0, 1000.0]  # each line is "x,x": the softmax is exactly 0.5, 0.5


def lsmcheck(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lsmcheck", "run", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def sum_overflows(x: float, dtype: str) -> bool:
    """Whether exp(x) + exp(x) rounds to inf in ``dtype`` (300-bit mpmath, by the oracle's
    format table): then e / sum is inf/inf or 0, where the exact answer is 0.5."""
    p, _, emax = oracle.FORMATS[dtype]
    with mpmath.workprec(300):
        threshold = (2 - mpmath.mpf(2) ** -p) * mpmath.mpf(2) ** emax
        return bool(2 * mpmath.exp(x) >= threshold)


def test_baseline_reports_exactly_the_regressions_introduced(tmp_path: Path) -> None:
    (tmp_path / "kernels.py").write_text(KERNELS_V1)
    (tmp_path / "ties.csv").write_text("".join(f"{x:g},{x:g}\n" for x in TIES))
    (tmp_path / "lsmcheck.toml").write_text(
        textwrap.dedent(
            """\
            inputs = ["ties.csv"]
            implementations = [
                "softmax=kernels:fast_softmax",
                "log_softmax=kernels:fast_log_softmax",
            ]
            [thresholds]
            max_ulp = 4
            fail_on = ["all"]
            """
        )
    )
    saved = lsmcheck(tmp_path, "--save-baseline", "baseline.json", "--exit-zero")
    assert saved.returncode == 0, saved.stderr
    assert saved.stderr == "lsmcheck: wrote baseline.json\n"
    first = (tmp_path / "baseline.json").read_text()

    (tmp_path / "kernels.py").write_text(KERNELS_V2)  # the next commit
    done = lsmcheck(tmp_path, "--baseline", "baseline.json", "-f", "json")
    assert done.returncode == 1 and done.stderr == ""
    doc = json.loads(done.stdout)
    regressed = {
        (r["algorithm"], r["line"], r["dtype"])
        for r in doc["results"]
        if r["baseline"] == "regressed"
    }
    expected = {
        ("kernels:fast_softmax", line, dtype)
        for line, x in enumerate(TIES, start=1)
        for dtype in ("float16", "float32", "float64")
        if x <= oracle_max(dtype) and sum_overflows(x, dtype)
    }
    assert expected == {
        ("kernels:fast_softmax", 2, "float16"),
        ("kernels:fast_softmax", 3, "float16"),
        ("kernels:fast_softmax", 4, "float16"),
        ("kernels:fast_softmax", 5, "float16"),
        ("kernels:fast_softmax", 4, "float32"),
        ("kernels:fast_softmax", 5, "float32"),
        ("kernels:fast_softmax", 5, "float64"),
    }
    assert regressed == expected
    improved = {
        (r["algorithm"], r["line"], r["dtype"])
        for r in doc["results"]
        if r["baseline"] == "improved"
    }
    broken_log = {("kernels:fast_log_softmax", line, dtype) for _, line, dtype in expected}
    assert broken_log <= improved  # the log-softmax that overflowed no longer does
    assert {alg for alg, _, _ in improved} == {"kernels:fast_log_softmax"}
    assert doc["baseline"]["vanished"] == [] and doc["baseline"]["regressed"] == len(expected)
    assert all(
        r["status"] == ("fail" if (r["algorithm"], r["line"], r["dtype"]) in expected else "pass")
        for r in doc["results"]
    )

    # The table says the same in words; the baseline file itself did not change.
    table = lsmcheck(tmp_path, "--baseline", "baseline.json").stdout
    assert "7 regressed" in table and "regressed kernels:fast_softmax float16 ties.csv:2:" in table
    assert (tmp_path / "baseline.json").read_text() == first

    # Accepting the change: save a new baseline; the next run passes.
    assert lsmcheck(tmp_path, "--save-baseline", "baseline.json", "--exit-zero").returncode == 0
    assert lsmcheck(tmp_path, "--baseline", "baseline.json").returncode == 0


def oracle_max(dtype: str) -> float:
    """The largest finite value of ``dtype`` (a larger logit is not representable)."""
    p, _, emax = oracle.FORMATS[dtype]
    return float((2 - 2.0 ** (1 - p)) * 2.0**emax)
