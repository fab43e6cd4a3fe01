"""The Python API: ``lsmcheck.audit`` on plain data and callables, and ``assert_stable``.

The gate must pass, fail and error on the fixture package exactly as it does on the command
line (``tests/test_userimpl.py``) and from config (``tests/test_config.py``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lsmcheck
from lsmcheck import Options, Status, Thresholds, Vector
from lsmcheck.api import as_vectors
from lsmcheck.baseline import dumps, loads
from lsmcheck.errors import UsageError
from lsmcheck.testing import assert_stable
from tests import oracle

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LOGITS = [[1.0, 2.0, 3.0], [10.0, 11.0], [1000.0, 1001.0, 1002.0]]  # as tests/fixtures/logits.csv


@pytest.fixture(scope="module")
def mysoftmax() -> Iterator[Any]:
    sys.path.insert(0, str(FIXTURES))
    import mysoftmax

    yield mysoftmax
    sys.path.remove(str(FIXTURES))


def test_plain_logits_become_vectors() -> None:
    one = as_vectors([1.0, 2.0])
    assert len(one) == 1 and one[0].values.tolist() == [1.0, 2.0] and one[0].label == "logits[0]"
    ragged = as_vectors([[1, 2, 3], [4, 5]])
    assert [v.values.tolist() for v in ragged] == [[1, 2, 3], [4, 5]]
    cube = as_vectors(np.arange(12.0).reshape(2, 2, 3))
    assert [v.index for v in cube] == [0, 1, 2, 3] and cube[3].values.tolist() == [9, 10, 11]
    v = Vector("mine", 7, None, np.array([1.0]))
    assert as_vectors([v]) == [v] and as_vectors(v) == [v]
    for bad in ([], [[]], "abc", [["a", "b"]], 3.0):
        with pytest.raises(UsageError):
            as_vectors(bad)


def test_audit_with_a_callable(mysoftmax: Any) -> None:
    report = lsmcheck.audit(
        LOGITS, implementations=[mysoftmax.naive_softmax], kind="softmax", dtypes=["float16"]
    )
    assert [r.algorithm for r in report.results] == ["mysoftmax:naive_softmax"] * 3
    assert report.passed  # no threshold given: nothing fails
    under = report.results[1]
    sm, _, _ = oracle.truth([10.0, 11.0])
    assert under.underflow == 2
    assert under.max_ulp == pytest.approx(oracle.ulp_error(0.0, sm[1], "float16"), abs=0.01)
    doc = json.loads(report.to_json())
    assert doc["schema"] == "lsmcheck.report/1" and doc["results"][1]["underflow"] == 2


@pytest.mark.parametrize(
    ("name", "passed", "statuses"),
    [
        ("stable_softmax", True, {"pass"}),
        ("naive_softmax", False, {"pass", "fail"}),
        ("raising_softmax", False, {"error"}),
        ("wrong_shape_softmax", False, {"error"}),
        ("wrong_dtype_softmax", False, {"pass", "error"}),  # right in float64 only
    ],
)
def test_gate_through_the_api(mysoftmax: Any, name: str, passed: bool, statuses: set[str]) -> None:
    report = lsmcheck.audit(
        LOGITS,
        implementations=[getattr(mysoftmax, name)],
        kind="softmax",
        max_ulp=4,
        fail_on=["all"],
    )
    assert report.passed is passed and report.exit_code == (0 if passed else 1)
    assert {r.status.value for r in report.results} == statuses


def test_builtins_and_options(mysoftmax: Any) -> None:
    report = lsmcheck.audit(LOGITS, algorithms=["softmax_stable"], dtypes=["float32"])
    assert {r.algorithm for r in report.results} == {"softmax_stable"}
    everything = lsmcheck.audit([[0.0, 1.0]])
    assert len(everything.results) == 7 * 3
    opts = Options(dtypes=("float64",), algorithms=("softmax_stable",))
    both = lsmcheck.audit(
        [[0.0, 1.0]], opts, implementations=[mysoftmax.stable_softmax], kind="softmax"
    )
    assert [r.algorithm for r in both.results] == ["softmax_stable", "mysoftmax:stable_softmax"]
    gated = lsmcheck.audit(
        [[1000.0, 1000.0]], Options(thresholds=Thresholds(max_ulp=1)), fail_on="nan"
    )
    assert not gated.passed
    naive16 = next(
        r for r in gated.results if (r.algorithm, r.dtype) == ("softmax_naive", "float16")
    )
    assert naive16.failures == ("max_ulp inf > 1 (element 0)", "nan 2 > 0")
    with pytest.raises(UsageError, match="needs kind="):
        lsmcheck.audit([[1.0]], implementations=[mysoftmax.stable_softmax])
    with pytest.raises(UsageError, match="unknown kind 'softmx'"):
        lsmcheck.audit([[1.0]], implementations=[mysoftmax.stable_softmax], kind="softmx")
    with pytest.raises(UsageError, match=r"^kind: .* cannot be audited as cross_entropy"):
        lsmcheck.audit([[1.0, 2.0]], implementations=[lambda x: x[:, 0]], kind="cross_entropy")


def test_baseline_through_the_api(mysoftmax: Any, tmp_path: Path) -> None:
    before = lsmcheck.audit(
        LOGITS, implementations=[mysoftmax.stable_softmax], kind="softmax", fail_on=["all"]
    )
    path = tmp_path / "baseline.json"
    path.write_text(dumps(before))

    def changed(x: Any) -> Any:  # the next version: the naive formula under the same name
        return mysoftmax.naive_softmax(x)

    after = lsmcheck.audit(
        LOGITS,
        implementations=[lsmcheck.userimpl.wrap(changed, "softmax", "mysoftmax:stable_softmax")],
        fail_on=["all"],
        baseline=path,
    )
    assert not after.passed and after.baseline is not None
    regressed = {(r.vector, r.dtype) for r in after.results if r.baseline == "regressed"}
    # [10, 11] breaks in float16 (sum overflow), [1000, 1001, 1002] in every dtype; the
    # naive formula's extra rounding on [1, 2, 3] stays within the 1-ulp tolerance.
    assert {(v, d) for v, d in regressed if v != 0} == {
        (1, "float16"),
        (2, "float16"),
        (2, "float32"),
        (2, "float64"),
    }
    same = lsmcheck.audit(
        LOGITS,
        implementations=[mysoftmax.stable_softmax],
        kind="softmax",
        baseline=loads(path.read_text(), "b"),
    )
    assert same.passed and same.baseline is not None and same.baseline.unchanged == 9


# --- assert_stable ----------------------------------------------------------------------------


def test_assert_stable_passes_and_returns_the_report(mysoftmax: Any) -> None:
    report = assert_stable(mysoftmax.stable_log_softmax, logits=LOGITS, max_ulp=4)
    assert report.passed and len(report.results) == 9
    assert_stable(
        mysoftmax.stable_softmax, "softmax", logits=np.array(LOGITS[0]), dtypes=["float64"]
    )
    assert_stable(mysoftmax.stable_logsumexp, "logsumexp", logits=LOGITS, max_ulp=2)


def test_assert_stable_message_is_a_readable_table(mysoftmax: Any) -> None:
    with pytest.raises(AssertionError) as e:
        assert_stable(
            mysoftmax.naive_softmax,
            "softmax",
            logits=LOGITS,
            dtypes=["float16", "float32"],
            max_ulp=4,
        )
    lines = str(e.value).splitlines()
    assert lines[0] == (
        "mysoftmax:naive_softmax (softmax) broke the gate in 3 of 6 results "
        "(gate: max_ulp <= 4; no overflow, underflow, nan, unaudited)"
    )
    assert lines[1] == ""
    assert lines[2].split() == [
        "vector",
        "logits",
        "dtype",
        "max",
        "ulp",
        "overflow",
        "underflow",
        "nan",
        "status",
        "why",
    ]
    rows = [line.split("  ") for line in lines[3:]]
    assert len(rows) == 3
    assert lines[3].startswith("logits[1]  [10, 11]")
    assert "float16" in lines[3] and "FAIL" in lines[3]
    assert lines[3].endswith("max_ulp 1497 > 4 by 1493 (element 1); underflow 2 > 0")
    assert lines[5].startswith("logits[2]  [1000, 1001, 1002]")
    assert lines[5].endswith("max_ulp inf > 4 (element 0); nan 3 > 0")
    # the columns line up: every row's status starts where the header's does
    column = lines[2].index("status")
    assert all(line[column : column + 4] == "FAIL" for line in lines[3:])


def test_assert_stable_reports_errors(mysoftmax: Any) -> None:
    with pytest.raises(AssertionError, match=r"ERROR +raised ValueError: fused kernel"):
        assert_stable(mysoftmax.raising_softmax, "softmax", logits=[[0.0, 0.0]])
    with pytest.raises(AssertionError, match="returned dtype float64 for float32 input"):
        assert_stable(mysoftmax.wrong_dtype_softmax, "softmax", logits=[[0.0, 0.0]])
    with pytest.raises(AssertionError, match=r"returned shape \(1,\)"):
        assert_stable(mysoftmax.wrong_shape_softmax, "softmax", logits=[[0.0, 0.0]])


def test_status_enum_unchanged() -> None:
    assert [s.value for s in Status] == ["pass", "fail", "undefined", "unrepresentable", "error"]


def test_assert_stable_fails_when_nothing_could_be_audited() -> None:
    """A vector that cannot be audited in a dtype (not representable, or undefined) fails by
    default: the test once passed a function that returned NaN without calling it."""
    calls: list[Any] = []

    def broken(x: Any) -> Any:
        calls.append(x.shape)
        return np.full_like(x, np.nan)

    cases = (([[70000.0, 0.0]], "float16"), ([[float("-inf"), float("-inf")]], "float32"))
    for logits, dtype in cases:
        with pytest.raises(AssertionError, match="not audited"):
            assert_stable(broken, kind="softmax", logits=logits, dtypes=dtype)
    assert calls == []
    # naming one event or one dtype as a string is one name, not its letters
    report = assert_stable(
        lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True)),
        logits=[[1.0, 2.0]],
        dtypes="float32",
        fail_on="nan",
    )
    assert report.passed


def test_api_arguments_of_the_wrong_kind_are_usage_errors() -> None:
    """One UsageError naming the argument, never a bare TypeError from inside; a generator of
    rows is a stream of vectors; algorithms=[] with options means none."""
    import lsmcheck

    rows = (row for row in [[1.0, 2.0], [3.0, 4.0]])
    assert len(lsmcheck.audit(rows, dtypes="float32", algorithms="softmax_stable").results) == 2
    wrong = [{"fail_on": 3}, {"dtypes": [None]}, {"algorithms": 5}, {"max_ulp": "4"}]
    wrong += [{"keep": "3"}, {"jobs": "2"}, {"precision_bits": "113"}, {"thresholds": {}}]
    for kwargs in wrong:
        with pytest.raises(UsageError):
            lsmcheck.audit([[1.0, 2.0]], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="expected numbers"):
        lsmcheck.audit([[10**400, 1]])
    report = lsmcheck.audit(
        [[1.0, 2.0]],
        Options(dtypes=("float32",)),
        implementations=[lambda x: x],
        kind="softmax",
        algorithms=[],
    )
    assert [r.algorithm.endswith("<lambda>") for r in report.results] == [True]


def test_the_module_examples_run_as_written() -> None:
    import doctest

    import lsmcheck.api

    assert doctest.testmod(lsmcheck.api).failed == 0


def test_all_selects_every_built_in_and_every_dtype() -> None:
    from lsmcheck.algorithms import BUILTINS
    from lsmcheck.dtypes import FORMATS

    report = lsmcheck.audit([[1.0, 2.0]], algorithms=["all"], dtypes="all")
    assert {r.algorithm for r in report.results} == set(BUILTINS)
    assert {r.dtype for r in report.results} == set(FORMATS)


def test_options_take_all_as_audit_does() -> None:
    """``Options(algorithms=("all",), dtypes=("all",))``, as in the README's Python API, means
    what ``-a all -d all`` and ``audit(algorithms="all")`` mean (it was an unknown name)."""
    from lsmcheck import Options, Vector
    from lsmcheck.algorithms import BUILTINS
    from lsmcheck.dtypes import FORMATS

    options = Options(algorithms=("all",), dtypes=("all", "float32"))
    assert set(options.algorithms) == set(BUILTINS) and set(options.dtypes) == set(FORMATS)
    report = lsmcheck.audit([Vector("t", 0, None, np.array([1.0, 2.0]))], options)
    assert {(r.algorithm, r.dtype) for r in report.results} == {
        (a, d) for a in BUILTINS for d in FORMATS
    }
