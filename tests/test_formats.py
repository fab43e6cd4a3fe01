"""The CI formats: JUnit XML, GitHub workflow commands, markdown, CSV; several at once.

The golden files under ``tests/golden/`` hold the output of one run on
``tests/fixtures/golden.csv``, whose vectors are ties (every softmax is exactly 0.5 where
nothing overflows) so that the figures are the same on every platform.  After a deliberate
change, regenerate them with ``LSMCHECK_UPDATE_GOLDEN=1 python -m pytest tests/test_formats.py``
and review the diff.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt

from lsmcheck.cli import main
from lsmcheck.formats import FORMAT_MODULES
from lsmcheck.formats.csv_format import COLUMNS
from lsmcheck.formats.github import command, escape_data, escape_property
from lsmcheck.formats.markdown import escape

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("LSMCHECK_UPDATE_GOLDEN") == "1"

IMPLEMENTATIONS = ["softmax_naive", "softmax_stable", "mysoftmax:naive_softmax"]
IMPLEMENTATIONS.append("mysoftmax:raising_softmax")
DTYPES = ["float16", "float32"]
SOURCES = ["golden.csv", "--logits"]  # golden.csv has 4 ties; -l 1e5,1e5 overflows float16
RUN = [
    "run",
    "--no-config",
    "golden.csv",
    "-l",
    "1e5,1e5",
    "-a",
    "softmax_naive,softmax_stable",
    "--impl",
    "softmax=mysoftmax:naive_softmax",
    "--impl",
    "softmax=mysoftmax:raising_softmax",
    "-d",
    "float16,float32",
    "--fail-on",
    "overflow,underflow,nan",  # not all, which fails unaudited ones too: keep a <skipped> case
    "--max-ulp",
    "1",
]


@pytest.fixture(autouse=True)
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def golden(fmt: str, suffix: str) -> str:
    code, out, err = invoke(*RUN, "-f", fmt)
    assert (code, err) == (1, "")
    path = GOLDEN / f"report.{suffix}"
    if UPDATE:
        path.write_text(out)
    assert out == path.read_text(), f"{path} differs; see the module docstring"
    return out


def test_formats_are_registered() -> None:
    assert set(FORMAT_MODULES) == {"table", "json", "junit", "github", "markdown", "csv"}


# --- JUnit ------------------------------------------------------------------------------------


def test_junit_parses_with_one_case_per_implementation_dtype_and_source() -> None:
    root = ET.fromstring(golden("junit", "xml"))
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    keys = {(c.get("classname"), c.get("name")) for c in cases}
    assert len(cases) == len(keys) == len(IMPLEMENTATIONS) * len(DTYPES) * len(SOURCES)
    assert keys == {
        (f"lsmcheck.{a}", f"{d} {s}") for a in IMPLEMENTATIONS for d in DTYPES for s in SOURCES
    }
    by_key = {(c.get("classname"), c.get("name")): c for c in cases}
    failure = by_key["lsmcheck.softmax_naive", "float16 golden.csv"].find("failure")
    assert failure is not None
    # the broken thresholds and the worst vector (line 2: exp(12) overflows float16)
    assert failure.get("message") == (
        "2 of 4 vectors broke the gate; worst golden.csv:2: max_ulp inf > 1 (element 0); "
        "overflow 2 > 0; nan 2 > 0"
    )
    assert by_key["lsmcheck.softmax_naive", "float16 golden.csv"].get("line") == "2"
    error = by_key["lsmcheck.mysoftmax:raising_softmax", "float32 golden.csv"].find("error")
    assert error is not None and "raised ValueError: fused kernel not built" in error.get(
        "message", ""
    )
    skipped = by_key["lsmcheck.softmax_stable", "float16 --logits"].find("skipped")
    assert skipped is not None and "overflows float16" in skipped.get("message", "")
    passing = by_key["lsmcheck.softmax_stable", "float32 golden.csv"]
    assert [child.tag for child in passing] == ["system-out"]
    totals = {k: int(root.get(k, "-1")) for k in ("tests", "failures", "errors", "skipped")}
    assert totals == {
        "tests": 16,
        "failures": sum(c.find("failure") is not None for c in cases),
        "errors": sum(c.find("error") is not None for c in cases),
        "skipped": sum(c.find("skipped") is not None for c in cases),
    }
    for suite in root.findall("testsuite"):
        assert int(suite.get("tests", "0")) == len(suite.findall("testcase"))


def test_junit_drops_characters_xml_cannot_hold(tmp_path: Path) -> None:
    from lsmcheck.formats.junit import _clean

    assert _clean("a\x00b\x1bc\td") == "a\ufffdb\ufffdc\td"
    # in attributes too: a file name with an escape character once made the XML unparseable
    logits = tmp_path / "ctl\x1bx.csv"
    logits.write_text("1000,1001\n")
    args = ["run", str(logits), "-a", "softmax_naive", "-d", "float16", "--fail-on", "nan"]
    result = CliRunner().invoke(main, [*args, "-q", "-f", "junit"])
    assert result.exit_code == 1
    case = ET.fromstring(result.stdout).find(".//testcase")
    assert case is not None and "ctl\ufffdx.csv" in case.get("file", "")


# --- GitHub workflow commands -----------------------------------------------------------------

# ::name key=value,key=value::message, with the escaping of @actions/core (command.ts).
PROPERTY = r"[a-z]+=(?:[^%,:\r\n]|%25|%0D|%0A|%3A|%2C)*"
COMMAND = re.compile(rf"::(error|warning|notice)(?: {PROPERTY}(?:,{PROPERTY})*)?::(.*)")
DATA = re.compile(r"(?:[^%\r\n]|%25|%0D|%0A)*")


def unescape(text: str) -> str:
    for code, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, char)
    return text


def test_github_annotations_follow_the_workflow_command_syntax() -> None:
    out = golden("github", "txt")
    lines = out.splitlines()
    assert lines[-1] == "lsmcheck: FAIL: 18 of 40 results broke the gate (8 not audited)"
    commands = [COMMAND.fullmatch(line) for line in lines[:-1]]
    assert all(commands), [line for line, m in zip(lines, commands, strict=False) if not m]
    for m in commands:
        assert m is not None and DATA.fullmatch(m.group(2))
    first = lines[0]
    props = dict(p.split("=", 1) for p in first[len("::error ") :].split("::")[0].split(","))
    assert {k: unescape(v) for k, v in props.items()} == {
        "file": "golden.csv",
        "line": "2",
        "title": "lsmcheck: softmax_naive float16",
    }
    # one annotation per failing implementation x dtype x source; none for passing ones
    assert sum(line.startswith("::error") for line in lines) == 9
    assert not any("softmax_stable" in line for line in lines)
    # an inline vector has no file to point at
    assert any(line.startswith("::error title=") and "--logits[0]" in line for line in lines)


def test_github_escaping() -> None:
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    line = command("error", "x%\ny", file="dir/a,b.csv", line=3, title="t: u", col=None)
    assert line == "::error file=dir/a%2Cb.csv,line=3,title=t%3A u::x%25%0Ay"
    assert COMMAND.fullmatch(line)
    assert command("notice", "plain") == "::notice::plain"


# --- markdown ---------------------------------------------------------------------------------


def test_markdown_renders_as_a_table() -> None:
    text = golden("markdown", "md")
    html = MarkdownIt("commonmark").enable("table").render(text)
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == 1 + len(IMPLEMENTATIONS) * len(DTYPES)  # header + one per group
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in rows]
    assert cells[0] == [
        "algorithm",
        "dtype",
        "max ulp",
        "mean ulp",
        "worst vector",
        "overflow",
        "underflow",
        "nan",
        "status",
    ]
    assert all(len(c) == 9 for c in cells)
    assert cells[1][:3] == ["softmax_naive", "float16", "inf"]
    assert cells[1][-1] == "<strong>FAIL</strong>"
    assert html.startswith(
        "<h3>lsmcheck: FAIL: 18 of 40 results broke the gate (8 not audited)</h3>"
    )
    assert "<li>softmax_naive float16 golden.csv:2: max_ulp inf &gt; 1" in html


def test_an_aggregated_run_is_counted_whole(tmp_path: Path) -> None:
    """With --keep only a few results are kept; the vectors and results counted are still the
    run's, in every format as in the table (markdown once counted the vectors among the kept
    results, and the CI formats' verdict the kept results)."""
    logits = tmp_path / "l.csv"
    logits.write_text("".join(f"{i},{i + 1},{2 * i}\n" for i in range(30)))
    out = {}
    for fmt in ("markdown", "github", "table"):
        result = CliRunner().invoke(
            main, ["run", str(logits), "-a", "softmax_stable", "--keep", "1", "-f", fmt]
        )
        assert result.exit_code == 0, result.output
        out[fmt] = result.output
    assert "30 vectors, reference auto (certified" in out["markdown"]
    assert "lsmcheck: audited 90 results (no gate set)" in out["markdown"]
    assert "lsmcheck: audited 90 results (no gate set)" in out["github"]
    assert "lsmcheck: 30 vectors" in out["table"]
    assert "Audited 90 results" in out["table"]


def test_an_aggregated_run_s_cases_count_every_vector(tmp_path: Path) -> None:
    """JUnit's and GitHub's one line per failing case gives the whole run's counts when only
    some results were kept (it said "2 of 2 vectors broke the gate" of the two kept), and the
    same counts as a run that kept everything."""
    logits = tmp_path / "l.csv"
    logits.write_text("".join(f"{i},{i + 1},{2 * i}\n" for i in range(30)))
    args = ["run", str(logits), "-a", "softmax_stable", "-d", "float32", "--max-ulp", "0.1"]
    out = {}
    for keep in ([], ["--keep", "1"]):
        for fmt in ("github", "junit"):
            result = CliRunner().invoke(main, [*args, *keep, "-f", fmt])
            assert result.exit_code == 1, result.output
            out[fmt, bool(keep)] = result.output
    whole = re.search(r"::(\d+) of (\d+) vectors broke the gate;", out["github", False])
    assert whole is not None and whole.group(2) == "30"
    counted = f"{whole.group(1)} of 30 vectors broke the gate over every source"
    assert counted in out["github", True]
    failure = ET.fromstring(out["junit", True]).find(".//failure")
    assert failure is not None and failure.get("message", "").startswith(counted)


def test_an_aggregated_run_over_several_files_has_a_case_per_implementation_and_dtype(
    tmp_path: Path,
) -> None:
    """Cases of an aggregated run cover every source: a file whose failures were not among the
    kept results once showed as skipped (or passing), and --keep 0 gave JUnit no test case at
    all while the run failed."""
    (tmp_path / "a.csv").write_text("1,2,3\n10,11\n")
    (tmp_path / "b.csv").write_text("-inf,-inf\n1000,1001\n2000,2001\n")
    args = ["run", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "-a", "softmax_naive"]
    args += ["-d", "float16,float32", "--fail-on", "nan"]
    full = CliRunner().invoke(main, [*args, "-f", "junit"])
    broken = {
        case.get("name", "").split()[0]
        for case in ET.fromstring(full.stdout).iter("testcase")
        if case.find("failure") is not None
    }
    assert broken == {"float16", "float32"}
    for keep in ("0", "1"):
        result = CliRunner().invoke(main, [*args, "--keep", keep, "-f", "junit"])
        assert result.exit_code == 1, result.output
        root = ET.fromstring(result.stdout)
        testcases = list(root.iter("testcase"))
        assert len(testcases) == 2  # one per implementation and dtype
        assert all(c.get("name", "").endswith("every source (aggregated)") for c in testcases)
        assert all(c.find("failure") is not None for c in testcases)
        assert root.get("failures") == "2"
    markdown = CliRunner().invoke(main, [*args, "--keep", "0", "-f", "markdown"]).stdout
    assert "**What broke the gate**" in markdown
    # --keep 0 keeps none of them: the JSON report has none to show (it once said to look there)
    assert "4 more (not kept in this aggregated run: a larger --keep lists them)" in markdown
    assert "JSON" not in markdown.split("**What broke the gate**")[1]


def test_markdown_escaping_keeps_the_table_intact() -> None:
    assert escape("a|b") == "a\\|b" and escape("max_ulp") == "max_ulp"
    assert escape("_x_ *y* <b> [l] [a](b)") == "\\_x\\_ \\*y\\* \\<b> [l] [a\\](b)"
    row = "| " + " | ".join([escape("pkg:f|g"), escape("two\nlines")]) + " |"
    html = MarkdownIt("commonmark").enable("table").render(f"| a | b |\n|---|---|\n{row}\n")
    assert "<td>pkg:f|g</td>" in html and "<td>two lines</td>" in html


# --- CSV --------------------------------------------------------------------------------------


def test_csv_has_one_row_per_result() -> None:
    text = golden("csv", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 5 * len(IMPLEMENTATIONS) * len(DTYPES)
    raising = [r for r in rows if r["algorithm"] == "mysoftmax:raising_softmax"]
    assert {r["status"] for r in raising} == {"error", "unrepresentable"}
    assert all(r["max_ulp"] == "" for r in raising)
    naive = next(r for r in rows if r["algorithm"] == "softmax_naive" and r["line"] == "2")
    assert naive["dtype"] == "float16" and naive["max_ulp"] == "inf" and naive["status"] == "fail"
    assert naive["failures"] == "max_ulp inf > 1 (element 0); overflow 2 > 0; nan 2 > 0"


# --- several outputs at once ------------------------------------------------------------------


def test_table_on_stdout_and_a_file_per_format(tmp_path: Path) -> None:
    outputs = {"junit": "r.xml", "markdown": "r.md", "csv": "r.csv", "github": "r.txt"}
    args = [x for f, p in outputs.items() for x in ("--output-format", f"{f}:{tmp_path / p}")]
    code, out, err = invoke(*RUN, "--format", "table", *args)
    assert code == 1
    assert out.startswith("lsmcheck: 5 vectors") and "FAIL: 18 of 40" in out
    assert err.splitlines() == [f"lsmcheck: wrote {tmp_path / p}" for p in outputs.values()]
    suffix = {"junit": "xml", "markdown": "md", "csv": "csv", "github": "txt"}
    for fmt, name in outputs.items():
        assert (tmp_path / name).read_text() == (GOLDEN / f"report.{suffix[fmt]}").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(outputs.values())  # no temps
    code, out, err = invoke(*RUN, "-f", "json", "-o", str(tmp_path / "r.json"), "--exit-zero")
    assert (code, out) == (0, "") and (tmp_path / "r.json").read_text().startswith("{")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output-format", "csv:golden.csv"], "--output-format: golden.csv is an input file"),
        (["--output-format", "xml:a.xml"], "--output-format: expected FORMAT:PATH with FORMAT"),
        (["--output-format", "junit"], "--output-format: expected FORMAT:PATH"),
        (
            ["--output-format", "junit:a.xml", "--output-format", "csv:a.xml"],
            "--output-format: a.xml is written twice",
        ),
        (["--output-format", "junit:no/such/dir/a.xml"], "--output-format: directory 'no/such"),
        (["--save-baseline", "golden.csv"], "--save-baseline: golden.csv is an input file"),
    ],
)
def test_output_errors_exit_2_and_touch_nothing(args: list[str], message: str) -> None:
    before = (FIXTURES / "golden.csv").read_bytes()
    code, out, err = invoke(*RUN, *args)
    assert (code, out) == (2, "")
    assert err.startswith(f"lsmcheck: error: {message}")
    assert (FIXTURES / "golden.csv").read_bytes() == before
    assert not (FIXTURES / "a.xml").exists()


def test_baseline_file_golden(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    code, _, err = invoke(*RUN, "--save-baseline", str(path))
    assert code == 1 and err == f"lsmcheck: wrote {path}\n"
    golden_path = GOLDEN / "baseline.json"
    if UPDATE:
        golden_path.write_text(path.read_text())
    assert path.read_text() == golden_path.read_text()
    code, out, _ = invoke(*RUN, "--baseline", str(path), "-f", "markdown")
    assert code == 1  # the raising implementation still errors; nothing else regressed
    assert "0 regressed, 0 improved, 40 unchanged, 0 new, 0 vanished" in out


def test_audited_counts_agree_between_the_table_json_and_the_ci_formats() -> None:
    """The table said "Audited 2 results (1 not audited)" where JSON said audited 1."""
    args = ["run", "-l", "1,2", "-l", "1,nan", "-d", "float32", "-a", "softmax_stable"]
    table = CliRunner().invoke(main, args).stdout
    doc = json.loads(CliRunner().invoke(main, [*args, "-f", "json"]).stdout)
    github = CliRunner().invoke(main, [*args, "-f", "github"]).stdout
    assert doc["summary"]["audited"] == 1 and doc["summary"]["results"] == 2
    assert "Audited 1 of 2 results (1 not audited); no gate set" in table
    assert github.strip().endswith("audited 1 of 2 results (1 not audited) (no gate set)")


def test_csv_carries_the_target_length_and_bound_of_each_result(tmp_path: Path) -> None:
    """With --target and --bounds the CSV says which class each loss was for and the bound
    ratio, as JSON does (the columns were missing)."""
    logits = tmp_path / "labelled.csv"
    logits.write_text("1,2.5,0.3,-1\n0,4,-2,1\n")
    args = ["run", str(logits), "--target", "col:0", "-d", "float32", "-a", "cross_entropy_log1p"]
    out = CliRunner().invoke(main, [*args, "--bounds", "-f", "csv"]).stdout
    doc = json.loads(CliRunner().invoke(main, [*args, "--bounds", "-f", "json"]).stdout)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["length"], r["target"]) for r in rows] == [("3", "1"), ("3", "0")]
    for row, result in zip(rows, doc["results"], strict=True):
        assert float(row["bound_ratio"]) == result["bound_ratio"]
