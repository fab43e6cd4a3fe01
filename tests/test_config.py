"""Config files: discovery, every key, errors that name the file and the key, flags on top."""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lsmcheck.cli import main
from lsmcheck.config import ConfigError, discover, find, load
from lsmcheck.gate import Limits, Rule

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["run", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project: the fixture package and logits, no config yet; cwd is its root."""
    shutil.copytree(FIXTURES / "mysoftmax", tmp_path / "mysoftmax")
    shutil.copy(FIXTURES / "logits.csv", tmp_path / "logits.csv")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pyproject(root: Path, body: str) -> Path:
    path = root / "pyproject.toml"
    path.write_text('[project]\nname = "demo"\n\n[tool.lsmcheck]\n' + body)
    return path


GATE = """\
inputs = ["logits.csv"]
implementations = ["softmax=mysoftmax:stable_softmax", "softmax=mysoftmax:naive_softmax"]
dtypes = ["float16", "float32"]

[tool.lsmcheck.thresholds]
max_ulp = 4
fail_on = ["overflow", "nan"]

[tool.lsmcheck.thresholds.dtype.float16]
max_ulp = 1

[tool.lsmcheck.thresholds.algorithm."mysoftmax:naive_softmax".dtype.float32]
max_ulp = inf
"""


# --- discovery --------------------------------------------------------------------------------


def test_discovery_walks_up_and_skips_pyproject_without_the_table(project: Path) -> None:
    sub = project / "a" / "b"
    sub.mkdir(parents=True)
    (project / "a" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find(sub) is None
    top = pyproject(project, 'dtypes = ["float64"]\n')
    assert find(sub) == top
    (project / "a" / "lsmcheck.toml").write_text('dtypes = ["float32"]\n')
    assert find(sub) == project / "a" / "lsmcheck.toml"
    (sub / "lsmcheck.toml").write_text("")
    (sub / "pyproject.toml").write_text("[tool.lsmcheck]\n")
    assert find(sub) == sub / "lsmcheck.toml"  # lsmcheck.toml wins in one directory


def test_no_config_and_explicit_config(project: Path) -> None:
    pyproject(project, 'dtypes = ["float64"]\n')
    assert discover().dtypes == ("float64",)
    assert discover(use_files=False).path is None
    other = project / "ci.toml"
    other.write_text('dtypes = ["float16"]\n')
    assert discover(str(other)).dtypes == ("float16",)


def test_every_key(project: Path) -> None:
    (project / "ci").mkdir()
    path = project / "ci" / "lsmcheck.toml"
    path.write_text(
        """\
inputs = ["../logits.csv", "more.npy"]
algorithms = ["softmax_stable"]
implementations = ["log_softmax=mysoftmax:stable_log_softmax"]
dtypes = ["float32"]
precision = 200
format = "markdown"
output_format = ["junit:out/lsmcheck.xml"]
baseline = "baseline.json"
baseline_tolerance = 0.5

[thresholds]
max_ulp = 4
max_rel_error = 1e-3
fail_on = ["nan"]
max_underflow = 2

[thresholds.dtype.float64]
max_ulp = 1

[thresholds.algorithm."mysoftmax:stable_log_softmax"]
max_overflow = inf
"""
    )
    cfg = load(path)
    assert cfg.path == "ci/lsmcheck.toml" and cfg.table == ""
    assert cfg.inputs == ("logits.csv", "ci/more.npy")  # relative to the file, shown from cwd
    assert cfg.algorithms == ("softmax_stable",)
    assert cfg.implementations == ("log_softmax=mysoftmax:stable_log_softmax",)
    assert (cfg.dtypes, cfg.precision, cfg.format) == (("float32",), 200, "markdown")
    assert cfg.output_format == ("junit:ci/out/lsmcheck.xml",)
    assert (cfg.baseline, cfg.baseline_tolerance) == ("ci/baseline.json", 0.5)
    assert cfg.directory == str(project / "ci")
    origin = "ci/lsmcheck.toml [thresholds"
    assert cfg.rules == (
        Rule(
            Limits(max_ulp=4, max_rel_error=1e-3, max_nan=0, max_underflow=2),
            origin=f"{origin}]",
        ),
        Rule(Limits(max_ulp=1), dtype="float64", origin=f"{origin}.dtype.float64]"),
        Rule(
            Limits(max_overflow=float("inf")),
            algorithm="mysoftmax:stable_log_softmax",
            origin=f'{origin}.algorithm."mysoftmax:stable_log_softmax"]',
        ),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("dtype = []\n", "tool.lsmcheck.dtype: unknown key (did you mean 'dtypes'?)"),
        ("colour = true\n", "tool.lsmcheck.colour: unknown key"),
        ('inputs = "a.csv"\n', "tool.lsmcheck.inputs: expected an array of strings, got 'a.csv'"),
        # an empty array silently meant the default (all dtypes), unlike -d ''
        ("dtypes = []\n", "tool.lsmcheck.dtypes: an empty array names nothing; leave the key"),
        ("algorithms = []\n", "tool.lsmcheck.algorithms: an empty array names nothing"),
        ("inputs = []\n", "tool.lsmcheck.inputs: an empty array names nothing"),
        # an empty one audited the built-ins alone: a gate that checked nothing of the user's
        ("implementations = []\n", "tool.lsmcheck.implementations: an empty array names"),
        ("inputs = [1]\n", "tool.lsmcheck.inputs: expected an array of strings, got an array"),
        ('dtypes = ["float8"]\n', "tool.lsmcheck.dtypes: unknown dtype 'float8'"),
        ("precision = 1.5\n", "tool.lsmcheck.precision: expected an integer, got 1.5 (a float)"),
        ("precision = true\n", "tool.lsmcheck.precision: expected an integer, got True"),
        ("format = 3\n", "tool.lsmcheck.format: expected a string, got 3 (an integer)"),
        ('format = "xml"\n', "tool.lsmcheck.format: unknown format 'xml'"),
        ('output_format = ["junit"]\n', "tool.lsmcheck.output_format[0]: expected FORMAT:PATH"),
        ('output_format = ["xml:a.xml"]\n', "tool.lsmcheck.output_format: expected FORMAT:PATH"),
        ('implementations = ["mysoftmax:f"]\n', "tool.lsmcheck.implementations[0]: expected"),
        ('implementations = ["softmax=mysoftmax:nope"]\n', "implementations[0]: module"),
        ("baseline_tolerance = -1\n", "tool.lsmcheck.baseline_tolerance: expected a finite"),
        ("baseline = 1\n", "tool.lsmcheck.baseline: expected a string, got 1"),
        ("thresholds = 4\n", "tool.lsmcheck.thresholds: expected a table, got 4"),
        ("[tool.lsmcheck.thresholds]\nmax_ulp = '4'\n", "thresholds.max_ulp: expected a number"),
        ("[tool.lsmcheck.thresholds]\nmax_ulp = -1\n", "thresholds.max_ulp: expected a number >="),
        ("[tool.lsmcheck.thresholds]\nmax_ulp = nan\n", "thresholds.max_ulp: expected a number >="),
        (
            "[tool.lsmcheck.thresholds]\nmax_ulp = -0.0\n",
            "thresholds.max_ulp: expected a number >=",
        ),
        ("[tool.lsmcheck.thresholds]\nmax_nan = 0.5\n", "thresholds.max_nan: expected a whole"),
        ("[tool.lsmcheck.thresholds]\nmaxulp = 1\n", "thresholds.maxulp: unknown key (did you"),
        ("[tool.lsmcheck.thresholds]\nfail_on = 'nan'\n", "thresholds.fail_on: expected an array"),
        ("[tool.lsmcheck.thresholds]\nfail_on = ['inf']\n", "fail_on: unknown event 'inf'"),
        (
            "[tool.lsmcheck.thresholds]\nfail_on = ['nan']\nmax_nan = 2\n",
            "fail_on: names 'nan' but max_nan is also set",
        ),
        ("[tool.lsmcheck.thresholds.dtype.float8]\n", "thresholds.dtype.float8: unknown dtype"),
        ("[tool.lsmcheck.thresholds.dtype]\nfloat16 = 1\n", "thresholds.dtype.float16: expected a"),
        (
            "[tool.lsmcheck.thresholds.dtype.float16]\ndtype = {}\n",
            "thresholds.dtype.float16.dtype: unknown key",
        ),
        (
            '[tool.lsmcheck.thresholds.algorithm."softmax_stabel"]\nmax_ulp = 1\n',
            "thresholds.algorithm.softmax_stabel: unknown algorithm 'softmax_stabel'",
        ),
        ("inputs = [\n", ": invalid TOML: "),
        # values the engine checks (they once named the flag, --precision, not the key)
        ("precision = 3\n", "tool.lsmcheck.precision: expected bits between 64 and 4096"),
        ('algorithms = ["nope"]\n', "tool.lsmcheck.algorithms: unknown algorithm 'nope'"),
        ('dtypes = ["float17"]\n', "tool.lsmcheck.dtypes: unknown dtype 'float17'"),
    ],
)
def test_errors_name_the_file_and_key(project: Path, body: str, message: str) -> None:
    """Each error is one line ``FILE:LINE:COL: key: message`` (value errors once said only
    ``FILE: key``: tomllib gives no positions)."""
    pyproject(project, body)
    code, out, err = invoke("-l", "1,2")
    assert (code, out) == (2, "")
    assert re.match(r"lsmcheck: error: pyproject\.toml:\d+:\d+: ", err), err
    assert err.count("\n") == 1
    assert message in err


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('inputs = "a.csv"\n', "pyproject.toml:5:1: tool.lsmcheck.inputs: expected an array"),
        (
            "[tool.lsmcheck.thresholds]\n# the gate\n  max_ulp = 'abc'  # four\n",
            "pyproject.toml:7:3: tool.lsmcheck.thresholds.max_ulp: expected a number, got 'abc'",
        ),
        (  # a key inside an inline table: located at the key that holds it
            'thresholds = { max_ulp = "4" }\n',
            "pyproject.toml:5:1: tool.lsmcheck.thresholds.max_ulp: expected a number",
        ),
        (  # an element of a multi-line array: at its key; strings with = are not keys
            'implementations = [\n  "softmax=mysoftmax:stable_softmax",\n  "oops = x",\n]\n',
            "pyproject.toml:5:1: tool.lsmcheck.implementations[1]: expected KIND=",
        ),
        (
            '[tool.lsmcheck.thresholds.algorithm."mysoftmax:nope"]\nmax_ulp = 1\n',
            'pyproject.toml:5:1: tool.lsmcheck.thresholds.algorithm."mysoftmax:nope": unknown',
        ),
        ("[tool.lsmcheck.thresholds]\nmax-ulp = 4\n", "pyproject.toml:6:1: tool.lsmcheck."),
        ('precision = 3\ndtypes = ["float17"]\n', "pyproject.toml:6:1: tool.lsmcheck.dtypes"),
        ("inputs = [\n", "pyproject.toml:6:1: invalid TOML: "),
    ],
)
def test_errors_give_the_line_and_column_of_the_key(
    project: Path, body: str, expected: str
) -> None:
    pyproject(project, body)
    code, _, err = invoke("-l", "1,2")
    assert code == 2 and err.startswith(f"lsmcheck: error: {expected}"), err


def test_a_tool_lsmcheck_table_in_lsmcheck_toml_says_where_its_keys_go(project: Path) -> None:
    """lsmcheck.toml takes its keys at the top level; a ``[tool.lsmcheck]`` table pasted from
    a pyproject.toml was only 'tool: unknown key'."""
    (project / "lsmcheck.toml").write_text('[tool.lsmcheck]\ndtypes = ["float32"]\n')
    code, _, err = invoke("-l", "1,2")
    assert (code, err) == (
        2,
        "lsmcheck: error: lsmcheck.toml:1:1: tool.lsmcheck: lsmcheck.toml takes its keys at the "
        "top level; drop the 'tool.lsmcheck' prefix from its tables ([thresholds], not "
        "[tool.lsmcheck.thresholds]), or move them to pyproject.toml\n",
    )


def test_an_lsmcheck_toml_error_is_located_too(project: Path) -> None:
    (project / "lsmcheck.toml").write_text('dtypes = ["float16"]\n\n[thresholds]\nmax_ulp = "x"\n')
    code, _, err = invoke("-l", "1,2")
    assert (code, err) == (
        2,
        "lsmcheck: error: lsmcheck.toml:4:1: thresholds.max_ulp: expected a number, got 'x' "
        "(a string)\n",
    )


def test_config_file_errors(project: Path) -> None:
    code, _, err = invoke("--config", "missing.toml", "-l", "1,2")
    assert (code, err) == (2, "lsmcheck: error: --config: missing.toml: no such file\n")
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')
    code, _, err = invoke("--config", "pyproject.toml", "-l", "1,2")
    assert (code, err) == (2, "lsmcheck: error: pyproject.toml: no [tool.lsmcheck] table\n")
    (project / "bad.toml").write_bytes(b"\xff\xfe = 1\n")
    code, _, err = invoke("--config", "bad.toml", "-l", "1,2")
    assert code == 2 and err.startswith("lsmcheck: error: bad.toml: ")
    with pytest.raises(ConfigError, match="not UTF-8"):  # a UsageError: exit 2
        load(project / "bad.toml")


# --- the gate from config ---------------------------------------------------------------------


def test_gate_from_config(project: Path) -> None:
    pyproject(project, GATE)
    code, out, err = invoke("-f", "csv")
    assert (code, err) == (1, "")
    rows = [line.split(",") for line in out.splitlines()[1:]]
    status = {(r[3], r[5], r[2]): r[6] for r in rows}  # (algorithm, dtype, line) -> status
    stable, naive = "mysoftmax:stable_softmax", "mysoftmax:naive_softmax"
    assert {s for (a, _, _), s in status.items() if a == stable} == {"pass"}
    # float16: max_ulp 1 from the dtype table; line 3 underflows to 0 (1497 ulp), line 4 NaN.
    assert [status[naive, "float16", line] for line in "234"] == ["fail", "fail", "fail"]
    # float32: max_ulp lifted (inf) for naive, but NaN still fails (global fail_on).
    assert [status[naive, "float32", line] for line in "234"] == ["pass", "pass", "fail"]
    code, out, _ = invoke()
    assert "limit from pyproject.toml [tool.lsmcheck.thresholds.dtype.float16]" in " ".join(
        out.split()
    )


def test_flags_override_config(project: Path) -> None:
    pyproject(project, GATE)
    # --max-ulp beats every level of max_ulp; fail_on from the file still applies.
    code, out, _ = invoke("--max-ulp", "1e6", "-f", "csv", "-d", "float16")
    rows = [line.split(",") for line in out.splitlines()[1:]]
    assert {r[5] for r in rows} == {"float16"}  # -d beat dtypes
    failing = {(r[3], r[2]) for r in rows if r[6] == "fail"}
    assert failing == {("mysoftmax:naive_softmax", "4")}  # only the NaN vector
    # inputs on the command line replace the config's inputs; --impl replaces implementations.
    code, out, _ = invoke("-l", "0,0", "--impl", "softmax=mysoftmax:stable_softmax", "-f", "csv")
    rows = [line.split(",") for line in out.splitlines()[1:]]
    assert code == 0 and {(r[0], r[3]) for r in rows} == {("--logits", "mysoftmax:stable_softmax")}
    # --no-config: nothing of the file applies (the built-ins run, nothing is gated).
    code, out, _ = invoke("--no-config", "-l", "1000,1000", "-f", "csv")
    assert code == 0 and len(out.splitlines()) == 1 + 7 * 3


def test_config_can_choose_formats_and_outputs(project: Path) -> None:
    pyproject(
        project,
        'inputs = ["logits.csv"]\nalgorithms = ["softmax_stable"]\nformat = "markdown"\n'
        'output_format = ["junit:reports/lsmcheck.xml"]\n',
    )
    (project / "reports").mkdir()
    code, out, err = invoke()
    assert code == 0 and out.startswith("### lsmcheck: audited 9 results (no gate set)")
    assert err == "lsmcheck: wrote reports/lsmcheck.xml\n"
    assert (project / "reports" / "lsmcheck.xml").read_text().startswith("<?xml")
    code, out, _ = invoke("-f", "csv")  # the flag beats the file's format
    assert out.startswith("source,vector,line")


def test_implementations_import_from_the_config_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject(project, GATE)
    sub = project / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    code, out, err = invoke("-f", "csv")
    assert code == 1 and err == ""
    # inputs are relative to the config file, and named as it writes them
    assert "\nlogits.csv," in out and "../../logits.csv" not in out


def test_a_config_s_inputs_keep_their_names_from_any_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a subdirectory, the config's ``logits.csv`` is read as ``../logits.csv`` but
    still named ``logits.csv``: a baseline saved at the root matches (every result had
    'vanished' and the gate failed).  (Annotations point at ``../logits.csv``, the file from
    where lsmcheck runs: see the monorepo test below.)"""
    settings = 'inputs = ["./logits.csv"]\ndtypes = ["float32"]\n'
    pyproject(project, settings)
    code, _, err = invoke("-a", "softmax_stable", "--save-baseline", "b.json", "-q", "-f", "csv")
    assert code == 0, err
    pyproject(project, settings + 'baseline = "b.json"\n')
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    code, out, err = invoke("-a", "softmax_stable", "-q", "-f", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and all(row["source"] == "logits.csv" for row in rows)
    assert all(row["baseline"] == "unchanged" for row in rows)


def test_save_baseline_creates_the_baseline_the_config_names(project: Path) -> None:
    """A config's ``baseline`` that does not exist yet does not block ``--save-baseline``
    (it was an error, and the file could not be created without editing the config); only
    comparing with a missing baseline is an error."""
    pyproject(project, 'inputs = ["logits.csv"]\ndtypes = ["float32"]\nbaseline = "b.json"\n')
    args = ("-a", "softmax_stable", "-q", "-f", "csv")
    code, _, err = invoke(*args, "--save-baseline", "b.json")
    assert code == 0, err
    assert (
        err == "lsmcheck: no baseline b.json yet: nothing to compare with\nlsmcheck: wrote b.json\n"
    )
    assert (project / "b.json").is_file()
    code, out, err = invoke(*args)
    assert (code, err) == (0, "")
    assert {row["baseline"] for row in csv.DictReader(io.StringIO(out))} == {"unchanged"}
    (project / "b.json").unlink()
    code, out, err = invoke(*args)  # comparing only: the missing file is an error
    assert (code, out) == (2, "")
    assert err == (
        "lsmcheck: error: pyproject.toml:7:1: tool.lsmcheck.baseline: b.json: no such baseline "
        "file (create one with --save-baseline)\n"
    )
    # a --baseline typed on the command line and saved elsewhere is a typo, not a new file
    code, _, err = invoke(*args, "--baseline", "typo.json", "--save-baseline", "new.json")
    assert code == 2 and "typo.json: no such baseline file" in err
    assert not (project / "new.json").exists()


def test_annotations_point_at_a_config_s_inputs_from_the_current_directory(
    project: Path,
) -> None:
    """A monorepo: the config in ``sub/``, lsmcheck run from the repository root.  GitHub
    places ``file=`` relative to the checkout, so the annotations (and JUnit's ``file``) must
    say ``sub/logits.csv``; they said ``logits.csv``, the config's name for it, and landed on
    the wrong file.  Reports and baselines keep the config's name."""
    sub = project / "sub"
    sub.mkdir()
    shutil.move(project / "logits.csv", sub / "logits.csv")
    shutil.move(project / "mysoftmax", sub / "mysoftmax")
    pyproject(sub, GATE)
    code, out, err = invoke(
        "--config", "sub/pyproject.toml", "-f", "github", "-q", "--output-format", "junit:r.xml"
    )
    assert code == 1 and err == "lsmcheck: wrote r.xml\n"
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert errors and all(line.startswith("::error file=sub/logits.csv,line=") for line in errors)
    assert "worst logits.csv:" in errors[0]  # the name the config gives it, as in a baseline
    junit = (project / "r.xml").read_text()
    assert 'file="sub/logits.csv"' in junit and 'file="logits.csv"' not in junit
    assert 'name="float16 logits.csv"' in junit


def test_a_missing_baseline_the_config_names_is_located_in_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "x.csv").write_text("1,2,3\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lsmcheck]\ninputs = ["x.csv"]\nbaseline = "nob.json"\n'
    )
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("-q")
    assert (code, out) == (2, "")
    assert err == (
        "lsmcheck: error: pyproject.toml:3:1: tool.lsmcheck.baseline: nob.json: no such "
        "baseline file (create one with --save-baseline)\n"
    )
    code, _, err = invoke("-q", "--baseline", "typo.json")  # typed: the flag's own file
    assert (code, err) == (
        2,
        "lsmcheck: error: typo.json: no such baseline file (create one with --save-baseline)\n",
    )
