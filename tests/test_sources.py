"""Tests for lsmcheck.sources: every format, every location in every error message."""

from __future__ import annotations

import io
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lsmcheck import sources
from lsmcheck.errors import InputError
from lsmcheck.sources import iter_source, parse_logits_flag, read_sources
from lsmcheck.vectors import Vector

INF = math.inf


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own directory so sources are short relative paths."""
    monkeypatch.chdir(tmp_path)


def write(name: str, content: str | bytes) -> str:
    """Write ``content`` (text as UTF-8, without newline translation) and return ``name``."""
    Path(name).write_bytes(content.encode() if isinstance(content, str) else content)
    return name


def read(path: str, stdin: TextIO | None = None) -> list[Vector]:
    return list(iter_source(path, stdin))


def values(vectors: list[Vector]) -> list[list[float]]:
    return [v.values.tolist() for v in vectors]


def error_of(path: str, stdin: TextIO | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        read(path, stdin)
    return info.value


def check_error(error: InputError, where: str, *words: str) -> None:
    assert error.where == where
    assert "\n" not in str(error)
    assert str(error) == f"{where}: {error.message}"
    for word in words:
        assert word in error.message, (word, error.message)


def same(actual: npt.NDArray[np.float64], expected: list[float]) -> bool:
    """Exact equality, with nan equal to nan."""
    return bool(np.array_equal(actual, np.array(expected, dtype=np.float64), equal_nan=True))


# ---------------------------------------------------------------------------------------------
# CSV, TSV and friends
# ---------------------------------------------------------------------------------------------


def test_csv_basic_fields() -> None:
    vectors = read(write("a.csv", "2,1,0.1\n-3.5e2, +4 ,.5\n"))
    assert values(vectors) == [[2.0, 1.0, 0.1], [-350.0, 4.0, 0.5]]
    assert [(v.source, v.index, v.line) for v in vectors] == [("a.csv", 0, 1), ("a.csv", 1, 2)]
    for vector in vectors:
        assert vector.values.dtype == np.float64
        assert vector.values.ndim == 1
        assert vector.values.flags.c_contiguous


def test_csv_comments_blank_lines_and_line_numbers() -> None:
    text = "# produced by a test\n\n1,2 # trailing comment\n   \n#1,2,3\n3,4\n"
    vectors = read(write("a.csv", text))
    assert values(vectors) == [[1, 2], [3, 4]]
    assert [v.line for v in vectors] == [3, 6]
    assert [v.index for v in vectors] == [0, 1]
    assert [v.label for v in vectors] == ["a.csv:3", "a.csv:6"]


@pytest.mark.parametrize("header", ["a,b,c", "logit_0, logit_1", '"x","y"', "class cat"])
def test_csv_header_row_is_skipped(header: str) -> None:
    vectors = read(write("a.csv", f"# comment first\n{header}\n1,2\n"))
    assert values(vectors) == [[1, 2]]
    assert vectors[0].line == 3


def test_csv_ragged_rows_and_whitespace_separated_lines() -> None:
    vectors = read(write("a.csv", "1\n1,2,3\n4 5\t6\n  7  \n"))
    assert values(vectors) == [[1], [1, 2, 3], [4, 5, 6], [7]]


def test_csv_special_tokens() -> None:
    tokens = "inf,+inf,-inf,Infinity,-INFINITY,nan,NaN,-nan,1e-400,-0.0"
    (vector,) = read(write("a.csv", tokens + "\n"))
    assert same(vector.values, [INF, INF, -INF, INF, -INF, math.nan, math.nan, math.nan, 0, 0])
    assert math.copysign(1, vector.values[-1]) == -1


def test_csv_bom_and_crlf() -> None:
    vectors = read(write("a.csv", b"\xef\xbb\xbfa,b\r\n1,2\r\n3,4\r\n"))
    assert values(vectors) == [[1, 2], [3, 4]]
    assert [v.line for v in vectors] == [2, 3]
    error = error_of(write("b.csv", b"\xef\xbb\xbf1,x\r\n"))
    check_error(error, "b.csv:1:3", "expected a number", "'x'")  # the BOM is not a column


def test_tsv() -> None:
    vectors = read(write("a.tsv", "x\ty\n1\t2\n 3 \t -inf\n5 6\n"))
    assert values(vectors) == [[1, 2], [3, -INF], [5, 6]]


def test_txt_and_uppercase_extension_are_csv() -> None:
    assert values(read(write("a.txt", "1,2\n"))) == [[1, 2]]
    assert values(read(write("A.CSV", "3 4\n"))) == [[3, 4]]


def test_csv_is_lazy() -> None:
    iterator = iter_source(write("a.csv", "1,2\n3,oops\n"))
    assert next(iterator).values.tolist() == [1, 2]
    with pytest.raises(InputError):
        next(iterator)


@pytest.mark.parametrize(
    ("content", "where", "words"),
    [
        ("1,2\n\n1,abc,3\n", "a.csv:3:3", ["expected a number", "'abc'"]),
        ("1, 2,   zz\n", "a.csv:1:9", ["expected a number", "'zz'"]),
        ("1,,2\n", "a.csv:1:3", ["empty field"]),
        ("1,2,\n", "a.csv:1:5", ["empty field"]),
        ("1,1e400\n", "a.csv:1:3", ["1e400", "outside float64's range", "1.8e308"]),
        ("-1e999\n", "a.csv:1:1", ["-1e999", "outside float64's range"]),
        ("1,1_000\n", "a.csv:1:3", ["'1_000'", "'_'"]),
        ("0x1p3,1\n", "a.csv:1:1", ["'0x1p3'", "hexadecimal"]),
        ("1,2 3\n", "a.csv:1:3", ["'2 3'"]),
        ("1,٣\n", "a.csv:1:3", ["expected a number"]),
        ("1,2\nx,y\n", "a.csv:2:1", ["'x'", "header row", "first data line"]),
        ("a,b\nc,d\n", "a.csv:2:1", ["'c'", "header row"]),
        ("a,2\n", "a.csv:1:1", ["expected a number", "'a'"]),
        # a first row in an unusual spelling is data, never silently skipped as a header
        ('"1.5","2.5"\n3,4\n', "a.csv:1:1", ["expected a number", "'\"1.5\"'"]),
        ("\u22121.5,\u22122\n3,4\n", "a.csv:1:1", ["expected a number", "'\u22121.5'"]),
        ("\uff11,\uff12\n3,4\n", "a.csv:1:1", ["expected a number"]),
        ("1\t2,3\n", "a.csv:1:1", ["'1\\t2'"]),
    ],
)
def test_csv_bad_tokens(content: str, where: str, words: list[str]) -> None:
    check_error(error_of(write("a.csv", content)), where, *words)


def test_tsv_bad_tokens() -> None:
    check_error(error_of(write("a.tsv", "1\t\t2\n")), "a.tsv:1:3", "empty field")
    check_error(error_of(write("b.tsv", "1\t2,5\n")), "b.tsv:1:3", "'2,5'")
    # an empty first or last field (a label column left blank): the line's leading or trailing
    # tab was stripped as whitespace, and the row read as one logit shorter
    check_error(error_of(write("c.tsv", "\t1\t2\t3\n")), "c.tsv:1:1", "empty field")
    check_error(error_of(write("d.tsv", "1\t2\t\n")), "d.tsv:1:5", "empty field")
    check_error(error_of(write("e.tsv", "4\t5\n \t1\t2 \r\n")), "e.tsv:2:2", "empty field")


def test_tsv_spaces_at_the_ends_of_a_line_are_not_fields() -> None:
    vectors = read(write("f.tsv", " 1\t2 \n3\t4\t5\r\n"))
    assert [v.values.tolist() for v in vectors] == [[1.0, 2.0], [3.0, 4.0, 5.0]]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "(empty file)"),
        ("\n\n  \n", "(empty file)"),
        ("# nothing\n\n# here\n", "(only comments and blank lines)"),
        ("# names\nlogit_0,logit_1\n", "(only a header row)"),
    ],
)
def test_csv_without_vectors(content: str, reason: str) -> None:
    check_error(error_of(write("a.csv", content)), "a.csv", "no logit vectors found", reason)


def test_text_not_utf8_names_line_and_column() -> None:
    error = error_of(write("a.csv", b"1,2\n3,\xe9t\n"))
    check_error(error, "a.csv:2:3", "not valid UTF-8", "0xe9")
    error = error_of(write("b.csv", "1,é,".encode() + b"\xff\n"))
    check_error(error, "b.csv:1:5", "0xff")  # columns count characters, not bytes


def test_binary_files_are_rejected() -> None:
    check_error(
        error_of(write("a.csv", b"1,2\n\x00\x01")),
        "a.csv",
        "binary file; expected CSV, TSV, JSON, .npy or .npz",
    )
    check_error(error_of(write("blob", b"\x01\x02\x00\x03")), "blob", "binary file")
    check_error(error_of(write("a.json", b"[1,\x00]")), "a.json", "binary file")
    check_error(error_of(write("u.csv", "1,2\n".encode("utf-16"))), "u.csv", "UTF-16", "UTF-8")


# ---------------------------------------------------------------------------------------------
# Files that cannot be opened
# ---------------------------------------------------------------------------------------------


def test_missing_file_and_directory() -> None:
    check_error(error_of("missing.csv"), "missing.csv", "no such file")
    check_error(error_of("missing.npy"), "missing.npy", "no such file")
    os.mkdir("folder.csv")
    check_error(error_of("folder.csv"), "folder.csv", "is a directory")
    write("plain", "1\n")
    check_error(error_of("plain/x.csv"), "plain/x.csv", "no such file")


def test_permission_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    write("secret.csv", "1,2\n")

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", "secret.csv")

    monkeypatch.setattr(sources, "open", deny, raising=False)
    check_error(error_of("secret.csv"), "secret.csv", "permission denied")


# ---------------------------------------------------------------------------------------------
# Standard input and --logits
# ---------------------------------------------------------------------------------------------


def test_stdin_is_csv() -> None:
    vectors = read("-", io.StringIO("\ufeffa,b\r\n1,2\n# c\n3 4 -inf\n"))
    assert values(vectors) == [[1, 2], [3, 4, -INF]]
    assert [(v.source, v.index, v.line) for v in vectors] == [("-", 0, 2), ("-", 1, 4)]


def test_stdin_defaults_to_sys_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("5,6\n"))
    assert values(read_sources(["-"])) == [[5, 6]]


def test_stdin_errors() -> None:
    check_error(error_of("-", io.StringIO("1,2\n3,q\n")), "-:2:3", "'q'")
    check_error(error_of("-", io.StringIO("")), "-", "no logit vectors found", "empty input")
    check_error(error_of("-", io.StringIO("1\x00\n")), "-", "binary input")
    strict = io.TextIOWrapper(io.BytesIO(b"1,2\n\xff\n"), encoding="utf-8")
    check_error(error_of("-", strict), "-", "not valid UTF-8")
    escaped = io.TextIOWrapper(
        io.BytesIO(b"1,2\n3,\xff\n"), encoding="utf-8", errors="surrogateescape"
    )
    check_error(error_of("-", escaped), "-:2:3", "not valid UTF-8", "0xff")


def test_logits_flag() -> None:
    vector = parse_logits_flag("2,1,0.1", 0)
    assert (vector.source, vector.index, vector.line) == ("--logits", 0, None)
    assert vector.values.tolist() == [2, 1, 0.1]
    assert parse_logits_flag(" 2 1, -inf ,nan ", 3).index == 3
    assert same(parse_logits_flag(" 2 1, -inf ,nan ", 3).values, [2, 1, -INF, math.nan])


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("1,2,3,abc", "--logits #2: column 7", ["expected a number", "'abc'"]),
        ("1 2 abc", "--logits #2: column 5", ["'abc'"]),
        ("1,,2", "--logits #2: column 3", ["empty field"]),
        ("1, 1e400", "--logits #2: column 4", ["1e400", "outside float64's range"]),
        ("", "--logits #2", ["empty value"]),
        ("  ", "--logits #2", ["empty value"]),
    ],
)
def test_logits_flag_errors(text: str, where: str, words: list[str]) -> None:
    with pytest.raises(InputError) as info:
        parse_logits_flag(text, 1)
    check_error(info.value, where, *words)


def test_read_sources_order_and_errors() -> None:
    write("a.csv", "1\n2\n")
    write("b.json", "[3, 4]")
    vectors = read_sources(["a.csv", "-", "b.json"], ["5,6", "7"], stdin=io.StringIO("8\n"))
    assert values(vectors) == [[1], [2], [8], [3, 4], [5, 6], [7]]
    assert [(v.source, v.index) for v in vectors] == [
        ("a.csv", 0),
        ("a.csv", 1),
        ("-", 0),
        ("b.json", 0),
        ("--logits", 0),
        ("--logits", 1),
    ]
    assert values(read_sources([], ["1"])) == [[1]]
    with pytest.raises(InputError) as info:
        read_sources([])
    check_error(info.value, "input", "no input", "'-' for standard input", "-l/--logits")
    with pytest.raises(InputError) as info:
        read_sources(["-", "-"], stdin=io.StringIO("1\n"))
    check_error(info.value, "-", "more than once")
    write("twice.csv", "1,2\n")  # a file named twice would be audited and recorded twice
    for paths in (["twice.csv", "twice.csv"], ["twice.csv", "./twice.csv"]):
        with pytest.raises(InputError) as info:
            read_sources(paths)
        check_error(info.value, paths[1], "given twice")
        with pytest.raises(InputError):
            sources.iter_sources(paths)
    write("empty.csv", "")
    with pytest.raises(InputError) as info:
        read_sources(["a.csv", "empty.csv"])
    check_error(info.value, "empty.csv", "no logit vectors found")


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def test_json_list_is_one_vector() -> None:
    (vector,) = read(write("a.json", "[1, 2.5, -3e2]"))
    assert vector.values.tolist() == [1, 2.5, -300]
    assert (vector.source, vector.index, vector.line) == ("a.json", 0, 1)


def test_json_list_of_lists_with_lines_and_specials() -> None:
    text = '\n[\n  [1, 2],\n  [3, "-inf", "NaN", "Inf"],\n  [-Infinity, NaN, Infinity]\n]\n'
    vectors = read(write("a.json", text))
    assert [v.line for v in vectors] == [3, 4, 5]
    assert [v.index for v in vectors] == [0, 1, 2]
    assert same(vectors[1].values, [3, -INF, math.nan, INF])
    assert same(vectors[2].values, [-INF, math.nan, INF])


def test_json_vectors_on_one_line_have_no_line() -> None:
    vectors = read(write("a.json", b"\xef\xbb\xbf[[1, 2], [3]]"))
    assert [v.line for v in vectors] == [None, None]
    assert [v.label for v in vectors] == ["a.json[0]", "a.json[1]"]


@pytest.mark.parametrize(
    ("content", "where", "words"),
    [
        ('[[1, 2], [3, "abc"]]', "a.json:1:14", ["[1][1]", "expected a number", '"abc"']),
        ('[\n  [1, 2],\n  [3, "abc"]\n]', "a.json:3:7", ["[1][1]", '"abc"']),
        ("[1, true]", "a.json:1:5", ["[1]", "got true"]),
        ("[1, null]", "a.json:1:5", ["[1]", "got null"]),
        ('[1, {"a": 2}]', "a.json:1:5", ["[1]", "got an object"]),
        ('[1, "1.5"]', "a.json:1:5", ["[1]", '"1.5"']),
        ("[1, [2]]", "a.json:1:5", ["[1]", "expected a number", "a list"]),
        ("[[[1]]]", "a.json:1:3", ["[0][0]", "a list", "two deep"]),
        ("[[1], 2]", "a.json:1:7", ["[1]", "expected a list of numbers", "got a number"]),
        ("[[1],\n []]", "a.json:2:2", ["[1]", "empty list", "at least one number"]),
        ("[]", "a.json:1:1", ["empty list", "list of lists of numbers"]),
        ('{"a": [1]}', "a.json:1:1", ["expected a list of numbers", "got an object"]),
        ("  3", "a.json:1:3", ["expected a list", "got a number"]),
        ("[1,\n 1e400]", "a.json:2:2", ["[1]", "1e400", "outside float64's range"]),
        ("[[1, -1" + "0" * 400 + "]]", "a.json:1:6", ["[0][1]", "outside float64's range"]),
        ("[1, 2", "a.json:1:6", ["invalid JSON", "Expecting ',' delimiter"]),
        ("[1,\n 2,]", "a.json:2:4", ["invalid JSON", "Expecting value"]),
        ("[[1, 2]\n [3]]", "a.json:2:2", ["invalid JSON", "delimiter"]),
        ("[1] [2]", "a.json:1:5", ["invalid JSON", "extra data"]),
        ("{", "a.json:1:2", ["invalid JSON"]),
        ("[1, 'a']", "a.json:1:5", ["invalid JSON", "Expecting value"]),
    ],
)
def test_json_errors(content: str, where: str, words: list[str]) -> None:
    check_error(error_of(write("a.json", content)), where, *words)


def test_json_empty_and_not_utf8() -> None:
    check_error(error_of(write("a.json", " \n ")), "a.json", "no logit vectors found")
    check_error(error_of(write("b.json", b'[1,\n 2, "\xe9"]')), "b.json:2:6", "not valid UTF-8")


# ---------------------------------------------------------------------------------------------
# .npy and .npz
# ---------------------------------------------------------------------------------------------


def test_npy_1d_2d_3d() -> None:
    np.save("one.npy", np.array([1.0, -np.inf, np.nan]))
    (vector,) = read("one.npy")
    assert same(vector.values, [1, -INF, math.nan])
    assert (vector.source, vector.index, vector.line, vector.label) == (
        "one.npy",
        0,
        None,
        "one.npy[0]",
    )

    np.save("two.npy", np.arange(6.0).reshape(2, 3))
    assert values(read("two.npy")) == [[0, 1, 2], [3, 4, 5]]

    np.save("three.npy", np.arange(12.0).reshape(2, 3, 2))
    vectors = read("three.npy")
    assert values(vectors) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert [v.index for v in vectors] == list(range(6))


@pytest.mark.parametrize(
    "dtype", ["float16", "float32", ">f8", "int8", "int64", "uint8", "uint64", "longdouble"]
)
def test_npy_dtypes_become_float64(dtype: str) -> None:
    np.save("a.npy", np.array([[0, 1, 2], [3, 100, 7]], dtype=dtype))
    vectors = read("a.npy")
    assert values(vectors) == [[0, 1, 2], [3, 100, 7]]
    for vector in vectors:
        assert vector.values.dtype == np.float64
        assert vector.values.flags.c_contiguous and vector.values.flags.owndata


def test_npy_float16_extremes_and_fortran_order() -> None:
    np.save("h.npy", np.array([65504, -np.inf, 6e-8], dtype=np.float16))
    assert read("h.npy")[0].values.tolist() == [65504.0, -INF, float(np.float16(6e-8))]
    np.save("f.npy", np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    vectors = read("f.npy")
    assert values(vectors) == [[0, 1, 2], [3, 4, 5]]
    assert all(v.values.flags.c_contiguous for v in vectors)


def test_npy_and_npz_never_unpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    # a C-order .npy is read in blocks of rows with plain reads (no np.load at all), so that
    # the pages of a file larger than memory do not stay resident; an .npz member is read from
    # the zip with np.lib.format.read_array (after its size and header are checked)
    calls: list[dict[str, object]] = []
    real_read_array = np.lib.format.read_array

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_read_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    monkeypatch.setattr(np, "load", None)  # never called
    np.save("a.npy", np.ones((3, 2)))
    np.savez("b.npz", x=np.ones(2))
    read("a.npy")
    read("b.npz")
    assert calls == [{"allow_pickle": False}]


def test_npy_is_read_in_blocks_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from lsmcheck.sources import arrays

    monkeypatch.setattr(arrays, "_NPY_BLOCK", 3 * 4 * 8)  # three rows of 4 float64 per read
    data = np.arange(40.0).reshape(2, 5, 4)
    np.save("a.npy", data)
    np.save("f.npy", np.asfortranarray(data))
    for name in ("a.npy", "f.npy"):
        vectors = read(name)
        assert values(vectors) == data.reshape(10, 4).tolist()
        assert [v.index for v in vectors] == list(range(10))


def test_npz_members_in_order() -> None:
    np.savez("a.npz", second=np.array([[1.0, 2.0], [3.0, 4.0]]), first=np.array([5, 6], "i4"))
    vectors = read("a.npz")
    assert values(vectors) == [[1, 2], [3, 4], [5, 6]]
    assert [(v.source, v.index, v.line) for v in vectors] == [
        ("a.npz:second", 0, None),
        ("a.npz:second", 1, None),
        ("a.npz:first", 0, None),
    ]
    assert vectors[0].label == "a.npz:second[0]"


def test_unknown_extension_is_sniffed() -> None:
    np.save("a.npy", np.array([1.0, 2.0]))
    os.rename("a.npy", "array.bin")
    assert values(read("array.bin")) == [[1, 2]]
    np.savez("b.npz", x=np.array([3.0]))
    os.rename("b.npz", "archive")
    assert [v.source for v in read("archive")] == ["archive:x"]
    assert values(read(write("data.out", "\ufeff \n [[4, 5]]"))) == [[4, 5]]
    assert values(read(write("data.log", "6 7\n8,9\n"))) == [[6, 7], [8, 9]]
    check_error(error_of(write("empty.dat", "")), "empty.dat", "no logit vectors found")


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.array([1, "a"], dtype=object), ["object arrays are not supported", "never unpickles"]),
        (np.array([True, False]), ["bool arrays", "real floating-point or integer"]),
        (np.array([1j, 2]), ["complex arrays"]),
        (np.array(["a", "b"]), ["string arrays"]),
        (np.zeros(2, dtype=[("a", "f8"), ("b", "f8")]), ["structured arrays"]),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), ["datetime arrays"]),
        (np.array(1.5), ["0-d array"]),
        (np.zeros(0), ["zero-length vectors", "(0,)"]),
        (np.zeros((3, 0)), ["zero-length vectors", "(3, 0)"]),
        (np.zeros((0, 3)), ["no logit vectors", "(0, 3)"]),
        (np.zeros((2, 0, 3)), ["no logit vectors", "(2, 0, 3)"]),
    ],
)
def test_npy_and_npz_rejected_arrays(array: npt.NDArray[Any], words: list[str]) -> None:
    np.save("a.npy", array, allow_pickle=True)
    check_error(error_of("a.npy"), "a.npy", *words)
    np.savez("b.npz", fine=np.ones(2), bad=array, allow_pickle=True)
    check_error(error_of("b.npz"), "b.npz:bad", *words)


def test_json_read_as_text_says_why() -> None:
    """JSON on standard input (or in a .csv) is read as text: the error says so (it said only
    "got '[[1'", found by a review)."""
    with pytest.raises(InputError, match=r"^-:1:1: expected a number, got '\[\[1' \(this is read"):
        list(read_sources(["-"], stdin=io.StringIO("[[1, 2], [3, 4]]\n")))


def test_npy_corrupt_files() -> None:
    np.save("good.npy", np.arange(10.0))
    data = Path("good.npy").read_bytes()
    check_error(error_of(write("a.npy", data[:20])), "a.npy", "not a valid .npy array", "EOF")
    check_error(error_of(write("b.npy", data[:-8])), "b.npy", "truncated .npy file", "needs")
    check_error(error_of(write("c.npy", "1,2\n")), "c.npy", "not a .npy file")
    broken = data.replace(b"'descr'", b"'DESCR'")
    check_error(error_of(write("d.npy", broken)), "d.npy", "not a valid .npy array", "keys")
    check_error(error_of(write("e.npy", data[:6] + b"\x09\x00" + data[8:])), "e.npy", "version")
    # a header whose dict is cut short: numpy's tokenizer error was shown as a Python tuple
    cut = b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f8', 'shape': (2,  \n"  # 32 bytes, as declared
    check_error(error_of(write("f.npy", cut)), "f.npy", "not a valid .npy array: its header is cut")
    for name, shape in (("f.npy", "(-1, 3)"), ("g.npy", "(2, -3)")):  # forged headers
        header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
        header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
        forged = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
        check_error(error_of(write(name, forged + bytes(48))), name, "negative dimension")


@pytest.mark.skipif(
    bool(np.finfo(np.longdouble).max <= np.finfo(np.float64).max),
    reason="longdouble is no wider than float64 here",
)
def test_npy_longdouble_beyond_float64() -> None:
    np.save("a.npy", np.array([[1, 2], [3, np.longdouble("1e4000")]], dtype=np.longdouble))
    check_error(error_of("a.npy"), "a.npy[1]", "element 1", "1e+4000", "outside float64")


def test_npz_corrupt_archives() -> None:
    np.savez("empty.npz")
    check_error(error_of("empty.npz"), "empty.npz", "empty .npz archive")
    check_error(error_of(write("a.npz", "1,2\n")), "a.npz", "not a .npz archive")
    check_error(error_of(write("b.npz", b"PK\x03\x04garbage")), "b.npz", "not a valid .npz")
    with zipfile.ZipFile("c.npz", "w") as archive:
        archive.writestr("notes.txt", "hello")
    check_error(error_of("c.npz"), "c.npz:notes.txt", "not a valid .npy array")


# ---------------------------------------------------------------------------------------------
# Reading never writes; a round-trip property
# ---------------------------------------------------------------------------------------------


def test_reading_writes_nothing(tmp_path: Path) -> None:
    write("a.csv", "1,2\n")
    write("b.json", "[[1]]")
    np.save("c.npy", np.ones((2, 2)))
    np.savez("d.npz", x=np.ones(2))
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    read_sources(["a.csv", "b.json", "c.npy", "d.npz"], ["1"])
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert before == after


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
rows = hnp.arrays(np.float64, st.integers(1, 8), elements=floats)


def assert_bits_equal(actual: npt.NDArray[np.float64], expected: npt.NDArray[np.float64]) -> None:
    assert actual.shape == expected.shape
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(actual), nan)
    assert np.array_equal(actual[~nan].view(np.uint64), expected[~nan].view(np.uint64))


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, min_size=1, max_size=5))
def test_repr_round_trip_is_exact(arrays: list[npt.NDArray[np.float64]]) -> None:
    text = "".join(",".join(repr(float(x)) for x in row) + "\n" for row in arrays)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "cases.csv")
        Path(path).write_text(text, encoding="utf-8")
        from_file = list(iter_source(path))
    from_stdin = list(iter_source("-", io.StringIO(text)))
    for vectors in (from_file, from_stdin):
        assert len(vectors) == len(arrays)
        for vector, expected in zip(vectors, arrays, strict=True):
            assert_bits_equal(vector.values, expected)
    flag = parse_logits_flag(" ".join(repr(float(x)) for x in arrays[0]), 0)
    assert_bits_equal(flag.values, arrays[0])
