"""The user's own implementations: import, call, check, and report failures as results.

Expected numbers come from ``tests/oracle.py`` (300-bit mpmath) or are exact by construction
(a softmax of ties is exactly 0.5).  The fixture package is ``tests/fixtures/mysoftmax``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from lsmcheck import Options, Status, Thresholds, Vector, audit
from lsmcheck.algorithms import Kind
from lsmcheck.audit import audit as engine_audit
from lsmcheck.cli import main
from lsmcheck.errors import UsageError
from lsmcheck.userimpl import load, parse_spec, wrap
from tests import oracle

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
LOGITS = "logits.csv"  # in FIXTURES: line 2 "1,2,3", line 3 "10,11", line 4 "1000,1001,1002"


@pytest.fixture
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the fixture directory, as a user runs lsmcheck from their project."""
    monkeypatch.chdir(FIXTURES)
    return FIXTURES


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["run", "--no-config", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def vec(values: list[float], index: int = 0) -> Vector:
    return Vector("t", index, index + 1, np.array(values))


# --- parsing and importing ------------------------------------------------------------------


def test_parse_spec() -> None:
    assert parse_spec("log_softmax=pkg.mod:fn") == (Kind.LOG_SOFTMAX, "pkg.mod", "fn")
    assert parse_spec(" softmax=m:Cls.method ") == (Kind.SOFTMAX, "m", "Cls.method")
    assert parse_spec("softmax=ops/v2 fused.py:f") == (Kind.SOFTMAX, "ops/v2 fused.py", "f")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("pkg.mod:fn", "expected KIND=module.path:function"),
        ("softmax=pkg.mod", "expected KIND=module.path:function"),
        ("softmx=pkg:fn", "unknown kind 'softmx'"),
        ("softmax=:fn", "expected KIND=module.path:function"),
        ("cross_entropy=pkg:fn", "cannot be audited as cross_entropy"),
        ("log_softmax_grad=pkg:fn", "cannot be audited as log_softmax_grad"),
        ("cross_entropy_grad=pkg:fn", "depends on the target class"),
    ],
)
def test_parse_spec_errors(spec: str, words: str) -> None:
    """A kind that depends on a target is refused: the implementation would be given only the
    logits, so it could not know the class it is audited for (it was once accepted, then
    called as f(x) and measured against the target's loss)."""
    with pytest.raises(UsageError, match=words) as e:
        parse_spec(spec)
    assert str(e.value).startswith("--impl")


def test_load_errors(in_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="cannot import 'nosuchmodule'"):
        load("softmax=nosuchmodule:f")
    with pytest.raises(UsageError, match="has no attribute 'nope'"):
        load("softmax=mysoftmax:nope")
    with pytest.raises(UsageError, match="is not callable"):
        load("softmax=mysoftmax:__doc__")
    (tmp_path / "broken_at_import.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="raised RuntimeError: no GPU here"):
        load("softmax=broken_at_import:f")


def test_load_names_and_kind(in_fixtures: Path) -> None:
    alg = load("softmax=mysoftmax:stable_softmax")
    assert alg.name == "mysoftmax:stable_softmax" and alg.kind is Kind.SOFTMAX
    assert not alg.traced
    assert alg.description == "exp(x - max) / sum(exp(x - max))."


def test_wrap_default_name() -> None:
    def mine(x: Any) -> Any:
        return x

    assert wrap(mine, "softmax").name.endswith(":test_wrap_default_name.<locals>.mine")


# --- what the engine makes of them ------------------------------------------------------------


def test_naive_black_box_underflows_where_the_float16_sum_overflows(in_fixtures: Path) -> None:
    naive = load("softmax=mysoftmax:naive_softmax")
    opts = Options(dtypes=("float16",), algorithms=(naive,), thresholds=Thresholds(max_ulp=4))
    (r,) = engine_audit([vec([10.0, 11.0])], opts).results
    # exp(10) + exp(11) = 81900 > 65504: the sum is inf, both outputs 0 (a black box cannot
    # tell the overflow, only that a nonzero probability came out 0).
    assert (r.underflow, r.overflow, r.nan) == (2, 0, 0)
    sm, _, _ = oracle.truth([10.0, 11.0])
    assert r.max_ulp == pytest.approx(oracle.ulp_error(0.0, sm[1], "float16"), abs=0.01)
    assert r.status is Status.FAIL
    assert r.failures[0].startswith("max_ulp 1497 > 4 by 1493 (element 1)")


def test_stable_black_box_is_exact_on_ties(in_fixtures: Path) -> None:
    stable = load("softmax=mysoftmax:stable_softmax")
    rep = engine_audit([vec([700.0, 700.0])], Options(algorithms=(stable,)))
    assert [r.max_ulp for r in rep.results] == [0.0, 0.0, 0.0]  # 0.5 is exact
    assert rep.passed


@pytest.mark.parametrize(
    ("name", "dtypes_failing", "reason"),
    [
        (
            "raising_softmax",
            {"float16", "float32", "float64"},
            "raised ValueError: fused kernel not built for n=2",
        ),
        (
            "wrong_shape_softmax",
            {"float16", "float32", "float64"},
            "returned shape (1,) for input shape (1, 2); expected (1, 2)",
        ),
        ("wrong_dtype_softmax", {"float16", "float32"}, "returned dtype float64 for"),
    ],
)
def test_broken_implementations_are_error_results(
    in_fixtures: Path, name: str, dtypes_failing: set[str], reason: str
) -> None:
    alg = load(f"softmax=mysoftmax:{name}")
    rep = engine_audit([vec([1.0, 2.0])], Options(algorithms=(alg,)))
    errors = {r.dtype: r for r in rep.results if r.status is Status.ERROR}
    assert set(errors) == dtypes_failing
    for r in errors.values():
        assert r.reason is not None and r.reason.startswith(reason)
        assert r.max_ulp is None and r.failures == ()
    assert not rep.passed and rep.exit_code == 1


def test_an_error_names_only_the_vectors_it_happened_on() -> None:
    def picky(x: Any) -> Any:
        if (x > 100).any():
            raise OverflowError("logit above 100")
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    alg = wrap(picky, "softmax", "picky")
    vectors = [vec([1.0, 1.0], 0), vec([500.0, 500.0], 1), vec([2.0, 2.0], 2)]
    rep = engine_audit(vectors, Options(dtypes=("float64",), algorithms=(alg,)))
    assert [r.status for r in rep.results] == [Status.PASS, Status.ERROR, Status.PASS]
    assert rep.results[1].reason == "raised OverflowError: logit above 100"


def test_a_function_that_returns_none_says_so() -> None:
    """A forgotten ``return`` was reported as "returned shape ()"."""

    def forgot(x: Any) -> None:
        np.exp(x)

    rep = engine_audit(
        [vec([1.0, 2.0])],
        Options(dtypes=("float32",), algorithms=(wrap(forgot, "softmax", "forgot"),)),
    )
    (r,) = rep.results
    assert r.status is Status.ERROR and r.reason == "returned None; expected an array"


def test_logsumexp_shapes_and_array_likes() -> None:
    class Tensor:  # like a CPU torch tensor: numpy converts it with __array__
        def __init__(self, a: Any) -> None:
            self.a = a

        def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
            return self.a

    def flat(x: Any) -> Any:
        m = x.max(axis=-1)
        return m + np.log(np.exp(x - m[:, None]).sum(axis=-1))

    def tensor(x: Any) -> Any:
        return Tensor(flat(x)[:, None])

    def scalar(x: Any) -> Any:
        return flat(x).sum()

    algs = (wrap(flat, "logsumexp", "flat"), wrap(tensor, "logsumexp", "tensor"))
    algs += (wrap(scalar, "logsumexp", "scalar"),)
    rep = engine_audit([vec([2.0, 2.0])], Options(dtypes=("float64",), algorithms=algs))
    flat_r, tensor_r, scalar_r = rep.results
    assert flat_r.status is Status.PASS and tensor_r.status is Status.PASS
    _, _, lse = oracle.truth([2.0, 2.0])
    assert flat_r.max_ulp == pytest.approx(oracle.ulp_error(2.0 + np.log(2.0), lse, "float64"))
    assert scalar_r.status is Status.ERROR
    assert scalar_r.reason == "returned shape () for input shape (1, 2); expected (1,) or (1, 1)"


def test_user_code_cannot_spoil_other_results_or_exit() -> None:
    def vandal(x: Any) -> Any:
        x *= 0  # scribbles over its argument
        return np.full_like(x, 0.5)

    def quitter(x: Any) -> Any:
        sys.exit(0)  # would end a CI job with success

    algs = (wrap(vandal, "softmax", "vandal"), wrap(quitter, "softmax", "quitter"))
    rep = engine_audit(
        [vec([0.0, 3.0])],
        Options(dtypes=("float64",), algorithms=(*algs, "softmax_stable")),
    )
    vandal_r, quitter_r, stable_r = rep.results
    assert quitter_r.status is Status.ERROR and quitter_r.reason == "raised SystemExit: 0"
    (alone,) = engine_audit(
        [vec([0.0, 3.0])], Options(dtypes=("float64",), algorithms=("softmax_stable",))
    ).results
    assert stable_r == alone  # the built-in saw the real logits
    sm, _, _ = oracle.truth([0.0, 3.0])
    expected = max(oracle.ulp_error(0.5, p, "float64") for p in sm)
    assert vandal_r.max_ulp == pytest.approx(expected, rel=1e-12)


def test_in_process_code_raising_generator_exit_is_an_error_but_ctrl_c_ends_the_run() -> None:
    def closer(x: Any) -> Any:
        raise GeneratorExit

    def interrupted(x: Any) -> Any:
        raise KeyboardInterrupt  # in lsmcheck's own process: the user's Ctrl-C

    opts = Options(dtypes=("float64",), algorithms=(wrap(closer, "softmax", "closer"),))
    (r,) = engine_audit([vec([0.0, 3.0])], opts).results
    assert r.status is Status.ERROR and r.reason == "raised GeneratorExit"
    opts = Options(dtypes=("float64",), algorithms=(wrap(interrupted, "softmax", "ctrl_c"),))
    with pytest.raises(KeyboardInterrupt):
        engine_audit([vec([0.0, 3.0])], opts)


@pytest.mark.parametrize("fmt", ["table", "github", "markdown", "csv", "json", "junit"])
def test_a_message_with_escape_codes_or_a_lone_surrogate_is_shown_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """A lone surrogate cannot be encoded (it crashed the table writer: exit 3), and escape
    codes would recolour the user's terminal or CI log."""
    (tmp_path / "evil.py").write_text(
        'def f(x):\n    raise ValueError("bad \\ud800 \\x1b[31mred")\n'
    )
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("-l", "1,2", "-d", "float32", "--impl", "softmax=evil:f", "-f", fmt)
    assert code == 1, err
    assert "\x1b" not in out and "\ud800" not in out
    assert r"bad \ud800 \x1b[31mred" in out.replace("\\\\", "\\")


UNPRINTABLE = """\
class Weird(ValueError):
    def __str__(self):
        raise RuntimeError("no message for you")


def raising(x):
    raise Weird("boom")
"""


def test_an_exception_whose_str_raises_is_an_error_result_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Formatting ``str(error)`` raised in lsmcheck's code: a traceback in the sandbox (every
    result "exited with code 1") and, in process, an internal error (exit 3)."""
    (tmp_path / "weird.py").write_text(UNPRINTABLE + "\nraise Weird('at import')\n")
    (tmp_path / "weirdcall.py").write_text(UNPRINTABLE)
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("-l", "1,2", "-d", "float32", "--impl", "softmax=weirdcall:raising")
    assert (code, err) == (1, "")
    assert "weirdcall:raising float32 --logits[0]: raised Weird: <unprintable Weird>" in out
    code, out, err = invoke("-l", "1,2", "-d", "float32", "--impl", "softmax=weird:raising")
    assert (code, out) == (2, "")
    assert err == ("lsmcheck: error: --impl: importing 'weird' raised Weird: <unprintable Weird>\n")
    namespace: dict[str, Any] = {}
    exec(UNPRINTABLE, namespace)  # in process, as the Python API runs a callable
    opts = Options(dtypes=("float64",), algorithms=(wrap(namespace["raising"], "softmax", "w"),))
    (r,) = engine_audit([vec([0.0, 3.0])], opts).results
    assert r.status is Status.ERROR and r.reason == "raised Weird: <unprintable Weird>"


def test_two_implementations_with_one_name_are_an_error(in_fixtures: Path) -> None:
    a = load("softmax=mysoftmax:stable_softmax")
    b = wrap(lambda x: x, "softmax", "mysoftmax:stable_softmax")
    with pytest.raises(UsageError, match="two different implementations are named"):
        Options(algorithms=(a, b)).validate()


# --- the command line -------------------------------------------------------------------------


def test_cli_impl_only_audits_the_users_code(in_fixtures: Path) -> None:
    code, out, err = invoke(LOGITS, "--impl", "softmax=mysoftmax:stable_softmax", "--max-ulp", "4")
    assert (code, err) == (0, "")
    assert "mysoftmax:stable_softmax" in out and "softmax_naive" not in out
    assert out.rstrip().endswith("PASS: 9 results")


def test_cli_the_same_impl_twice_is_audited_once(in_fixtures: Path, tmp_path: Path) -> None:
    """As ``-a x,x`` is; it was an error that called the two "different"."""
    spec = "softmax=mysoftmax:stable_softmax"
    code, out, err = invoke(LOGITS, "-d", "float32", "--impl", spec, "--impl", spec, "-f", "csv")
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 1 + 3  # the header and one row per vector
    config = tmp_path / "lsmcheck.toml"
    config.write_text(f'implementations = ["{spec}", "{spec}"]\n')
    code, out, err = invoke(LOGITS, "-d", "float32", "-f", "csv", "--config", str(config))
    assert (code, err) == (0, "") and len(out.splitlines()) == 1 + 3


def test_cli_mixed_precision_says_it_does_not_reach_an_impl(in_fixtures: Path) -> None:
    """A black box computes as it does: ``--accumulate`` (or ``-d X/acc=Y``) cannot apply to
    it, and its results came back in the storage dtype without a word."""
    spec = "softmax=mysoftmax:stable_softmax"
    for mixed in (["-d", "float16", "--accumulate", "float32"], ["-d", "float16/acc=float32"]):
        code, out, err = invoke(LOGITS, *mixed, "--impl", spec, "-f", "csv")
        assert code == 0
        assert err == (
            "lsmcheck: float16/acc=float32: the accumulation dtype does not apply to "
            "mysoftmax:stable_softmax (your code computes as it does); audited in float16\n"
        )
        assert {row.split(",")[5] for row in out.splitlines()[1:]} == {"float16"}
    code, _, err = invoke(LOGITS, "-d", "float16", "--impl", spec, "-f", "csv")
    assert (code, err) == (0, "")


def test_cli_impl_next_to_builtins(in_fixtures: Path) -> None:
    code, out, _ = invoke(
        LOGITS, "--impl", "softmax=mysoftmax:stable_softmax", "-a", "softmax_stable", "-f", "csv"
    )
    assert code == 0
    algorithms = {line.split(",")[3] for line in out.splitlines()[1:]}
    assert algorithms == {"softmax_stable", "mysoftmax:stable_softmax"}


@pytest.mark.parametrize(
    ("impl", "code"),
    [
        ("stable_softmax", 0),
        ("naive_softmax", 1),
        ("raising_softmax", 1),
        ("wrong_shape_softmax", 1),
        ("wrong_dtype_softmax", 1),
    ],
)
def test_cli_gate_on_each_fixture(in_fixtures: Path, impl: str, code: int) -> None:
    got, _, err = invoke(LOGITS, "--impl", f"softmax=mysoftmax:{impl}", "--fail-on", "all")
    assert (got, err) == (code, "")
    got, _, _ = invoke(LOGITS, "--impl", f"softmax=mysoftmax:{impl}", "--exit-zero")
    assert got == 0


def test_cli_usage_errors_exit_2(in_fixtures: Path) -> None:
    code, out, err = invoke(LOGITS, "--impl", "softmax=mysoftmax:nope")
    assert (code, out) == (2, "")
    assert err == "lsmcheck: error: --impl: module 'mysoftmax' has no attribute 'nope'\n"
    code, _, err = invoke(LOGITS, "--impl", "softmax=mysoftmax:nope", "--exit-zero")
    assert code == 2  # --exit-zero never hides a usage error


def test_real_subprocess_from_the_users_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    junit = tmp_path / "report.xml"
    args = [sys.executable, "-m", "lsmcheck", "run", "--no-config", LOGITS, "--fail-on", "all"]
    done = subprocess.run(
        [*args, "--impl", "softmax=mysoftmax:naive_softmax", "--output-format", f"junit:{junit}"],
        cwd=FIXTURES,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "mysoftmax:naive_softmax" in done.stdout and "FAIL" in done.stdout
    assert done.stderr == f"lsmcheck: wrote {junit}\n"
    assert "<failure" in junit.read_text()
    # Without --impl, nothing of the user's is imported.
    code = (
        "import sys\n"
        "from lsmcheck.cli import main\n"
        "try:\n"
        "    main(['run', '--no-config', 'logits.csv', '-d', 'float64'])\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'mysoftmax' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=FIXTURES,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines()[-1] == "0 False", done.stderr


FILE_IMPL = """
import numpy as np
from helper import SCALE  # a module beside it


def halved(x):
    \"\"\"exp(x - max) / sum, times SCALE.\"\"\"
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True) * SCALE
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_file_path_names_an_implementation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "mine.py").write_text(FILE_IMPL)
    (tmp_path / "ops" / "helper.py").write_text("SCALE = 0.5\n")
    monkeypatch.chdir(tmp_path)
    spec = "softmax=ops/mine.py:halved"
    code, out, err = invoke(
        *("-l", "0,3", "-l", "1,2", "-d", "float64", "-j", jobs, "--impl", spec, "-f", "json")
    )
    assert code == 0, err
    results = json.loads(out)["results"]
    assert [r["algorithm"] for r in results] == ["ops/mine.py:halved"] * 2
    for r, x in zip(results, ([0.0, 3.0], [1.0, 2.0]), strict=True):
        e = np.exp(np.array(x) - max(x))
        got = e / e.sum() * 0.5
        sm, _, _ = oracle.truth(x)
        expected = max(
            oracle.ulp_error(float(g), p, "float64") for g, p in zip(got, sm, strict=True)
        )
        assert r["max_ulp"] == pytest.approx(expected, rel=1e-9)


def test_file_path_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("-l", "1,2", "--impl", "softmax=ops/missing.py:f")
    assert (code, out) == (2, "")
    assert err == f"lsmcheck: error: --impl: no such file: {tmp_path / 'ops' / 'missing.py'}\n"
    (tmp_path / "json.py").write_text("def f(x):\n    return x\n")
    code, _, err = invoke("-l", "1,2", "--impl", "softmax=json.py:f")
    assert code == 2 and "the name 'json' is taken by the module json" in err, err
    (tmp_path / "mine.py").write_text(FILE_IMPL)
    with pytest.raises(UsageError, match=r"cannot import .*mine\.py': No module named 'helper'"):
        load("softmax=mine.py:halved", in_process=True)


def test_a_config_file_names_a_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.py").write_text(FILE_IMPL)
    (tmp_path / "helper.py").write_text("SCALE = 1.0\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lsmcheck]\nimplementations = ["softmax=mine.py:halved"]\n'
    )
    (tmp_path / "deeper").mkdir()
    monkeypatch.chdir(tmp_path / "deeper")  # the path is the config file's, not the cwd's
    result = CliRunner().invoke(main, ["run", "-l", "1,2", "-d", "float64"])
    assert result.exit_code == 0, result.stderr
    assert "mine.py:halved" in result.stdout


def test_api_accepts_the_same_objects(in_fixtures: Path) -> None:
    rep = audit([[1.0, 2.0]], implementations=["softmax=mysoftmax:stable_softmax"])
    assert {r.algorithm for r in rep.results} == {"mysoftmax:stable_softmax"}


def test_one_implementation_spelt_three_ways_is_audited_once(ops_module: Path) -> None:
    # ops.py:sm, ./ops.py:sm and /abs/ops.py:sm load the same function: it was audited three
    # times under three names (and a baseline keyed them apart)
    specs = ["softmax=ops.py:sm", "softmax=./ops.py:sm", f"softmax={ops_module}/ops.py:sm"]
    args = ["run", "--no-config", "-l", "1,2", "-d", "float32", "-f", "json", "-j", "1"]
    for spec in specs:
        args += ["--impl", spec]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert [r["algorithm"] for r in json.loads(res.stdout)["results"]] == ["ops.py:sm"]


def test_a_base_exception_of_the_users_own_is_an_error_result_in_its_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an exception class derived from BaseException (not Exception) escaped the sandbox's
    # handling: a traceback and "the process running it exited with code 1"
    (tmp_path / "bex.py").write_text(
        "class Mine(BaseException):\n"
        "    pass\n"
        "class Worse(BaseException):\n"
        "    def __str__(self):\n"
        "        raise Worse()\n"
        "def mine(x):\n"
        "    raise Mine('boom')\n"
        "def worse(x):\n"
        "    raise Worse()\n"
    )
    monkeypatch.chdir(tmp_path)
    for spec, reason in (
        ("bex:mine", "raised Mine: boom"),
        ("bex:worse", "raised Worse: <unprintable Worse>"),
    ):
        code, out, err = invoke("-l", "1,2", "-d", "float32", "--impl", f"softmax={spec}")
        assert (code, err) == (1, "")
        assert f"{spec} float32 --logits[0]: {reason}" in out
