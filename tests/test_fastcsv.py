"""The fast CSV path against the exact one: same vectors bit for bit, same errors, same order.

The reference is the reader as it was before the fast path: the file read line by line with
``readline`` (the code below is that reader, kept verbatim), each line given to the exact,
token-by-token rules.  The reader under test reads blocks of whole lines (of every size, down to
one byte a read) and converts each run of plain lines with numpy.
"""

from __future__ import annotations

import io
import math
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsmcheck import fastcsv, sources
from lsmcheck.errors import InputError
from lsmcheck.sources import iter_source
from lsmcheck.sources import text as delimited
from lsmcheck.vectors import Vector

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Outcome = tuple[list[tuple[str, int, int | None, bytes, int]], str | None]


# ---------------------------------------------------------------------------------------------
# The reference: the line-by-line reader the fast path replaced
# ---------------------------------------------------------------------------------------------


def _old_file_lines(file: Any, path: str) -> Iterator[tuple[int, str]]:
    """``sources._file_lines`` before the fast path (verbatim but for the module prefixes)."""
    line_number = 0
    while True:
        raw = file.readline(delimited.MAX_LINE_BYTES + 1)
        if not raw:
            return
        line_number += 1
        if len(raw) > delimited.MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise delimited._long_line(path, line_number)
        if line_number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        if b"\0" in raw:
            raise InputError(path, delimited._BINARY_FILE)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise delimited._utf8_error(path, line_number, raw, error.start) from None
        yield line_number, text


def _old_read_delimited(
    lines: tuple[str, Any, str], rules: delimited._Delimited, decode: object
) -> Iterator[Vector]:
    """The loop of the old ``_read_delimited``: every line through the exact rules."""
    kind, stream, name = lines
    read = _old_file_lines if kind == "file" else delimited._stream_lines
    for line_number, text in read(stream, name):
        vector = rules.line(line_number, text)
        if vector is not None:
            yield vector
    rules.finish()


def outcome(read: Callable[[], Iterator[Vector]]) -> Outcome:
    """Every vector yielded (values as bytes, so -0.0 and NaN payloads count) and the error
    that stopped the reading, if any."""
    vectors = []
    try:
        for v in read():
            assert v.values.dtype == np.float64 and v.values.flags.c_contiguous
            vectors.append((v.source, v.index, v.line, v.values.tobytes(), v.values.size))
    except InputError as error:
        return vectors, str(error)
    return vectors, None


def reference(path: str, stdin: TextIO | None = None) -> Outcome:
    with pytest.MonkeyPatch.context() as patch:  # the names iter_source looks up, in the package
        patch.setattr(sources, "_file_blocks", lambda file, name: ("file", file, name))
        patch.setattr(sources, "_stream_blocks", lambda stream, name: ("stream", stream, name))
        patch.setattr(sources, "_read_delimited", _old_read_delimited)
        return outcome(lambda: iter_source(path, stdin))


def fast(path: str, stdin: TextIO | None = None, *, block: int = 1 << 20) -> Outcome:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(delimited, "_TEXT_BLOCK", block)
        return outcome(lambda: iter_source(path, stdin))


# ---------------------------------------------------------------------------------------------
# Generated delimited text
# ---------------------------------------------------------------------------------------------

_FINITE = st.floats(allow_nan=False, allow_infinity=False)
_NUMBER = st.one_of(
    _FINITE.map(repr),
    _FINITE.map(lambda x: f"{x:.18e}"),
    _FINITE.map(lambda x: f"{x:.6g}"),
    _FINITE.map(lambda x: f"{x:.17E}"),
    st.integers(-(10**30), 10**30).map(str),
    st.integers(0, 10**6).map(lambda n: f"+{n}."),
    st.integers(0, 10**6).map(lambda n: f"-.{n}"),
    st.integers(-400, 400).map(lambda e: f"1e{e}"),
    st.integers(-340, 340).map(lambda e: f"-2.5E+{e}" if e >= 0 else f"-2.5E{e}"),
    st.sampled_from(
        [
            "0",
            "-0",
            "-0.0",
            "00012",
            "1.",
            ".5",
            "9007199254740993",  # 2**53 + 1: halfway between two float64s
            "2.2250738585072011e-308",
            "2.4703282292062327e-324",  # half the smallest subnormal: ties to 0
            "2.4703282292062328e-324",
            "4.9406564584124654e-324",
            "1.7976931348623157e308",
            "1.7976931348623159e308",  # rounds past the largest float64: out of range
            "-1e999",
            "1e-999",
            "0." + "0" * 300 + "1",
            "1" * 320,
            "3.14159265358979323846264338327950288419716939937510",
        ]
    ),
)
_ODD = st.sampled_from(
    [
        "inf",
        "-Infinity",
        "NaN",
        "+nan",
        "1_000",
        "0x10",
        "abc",
        "",
        "1e",
        ".",
        "-",
        "+-1",
        "1.2.3",
        "1e5e5",
        "1+2",
        "٣",
        "é",
        "#",
        "1 2",
        "\t",
    ]
)
_SEPARATOR = st.sampled_from([",", ",", ", ", " , ", "\t", " \t ", " ", "  ", ",,"])
_ENDING = st.sampled_from(["\n", "\n", "\n", "\r\n", " \n", "\r\r\n", "\r", " # note\n"])


@st.composite
def _lines(draw: st.DrawFn) -> str:
    width = draw(st.integers(1, 6))
    uniform = draw(st.booleans())
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["data"] * 12 + ["odd", "header", "comment", "blank"]))
        if kind == "header":
            lines.append(",".join(f"logit_{i}" for i in range(width)) + "\n")
            continue
        if kind == "comment":
            lines.append("# a comment, 1,2\n")
            continue
        if kind == "blank":
            lines.append(draw(st.sampled_from(["\n", "   \n", "\r\n"])))
            continue
        n = width if uniform else draw(st.integers(1, 8))
        tokens = draw(st.lists(_NUMBER, min_size=n, max_size=n))
        if kind == "odd":
            tokens[draw(st.integers(0, n - 1))] = draw(_ODD)
        separator = draw(_SEPARATOR) if draw(st.integers(0, 9)) == 0 else ","
        lead = draw(st.sampled_from(["", "", " ", "\t"]))
        lines.append(lead + separator.join(tokens) + draw(_ENDING))
    text = "".join(lines)
    if draw(st.booleans()):
        text = text.rstrip("\n")  # no newline at the end
    return draw(st.sampled_from(["", "", "\ufeff", "a,b\n"])) + text


@st.composite
def _file_bytes(draw: st.DrawFn) -> bytes:
    data = draw(_lines()).encode()
    damage = draw(st.sampled_from([None, None, None, b"\0", b"\xff", b"\xe9t"]))
    if damage is not None and data:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + damage + data[at:]
    return data


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(
    data=_file_bytes(),
    extension=st.sampled_from([".csv", ".tsv", ".txt"]),
    block=st.sampled_from([1, 7, 64, 1 << 20]),
)
def test_files_read_as_before(tmp_path: Path, data: bytes, extension: str, block: int) -> None:
    path = tmp_path / f"in{extension}"
    path.write_bytes(data)
    assert fast(str(path), block=block) == reference(str(path))


@PROPERTY
@given(data=_file_bytes(), limit=st.integers(1, 120), block=st.sampled_from([1, 5, 64, 1 << 20]))
def test_long_lines_are_refused_as_before(
    tmp_path: Path, data: bytes, limit: int, block: int
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(delimited, "MAX_LINE_BYTES", limit)
        assert fast(str(path), block=block) == reference(str(path))


@st.composite
def _stream_text(draw: st.DrawFn) -> str:
    text = draw(_lines())
    damage = draw(st.sampled_from([None, None, None, "\0", "\udcff", "\ud800"]))
    if damage is not None:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + damage + text[at:]
    return text


@PROPERTY
@given(
    text=_stream_text(),
    block=st.sampled_from([1, 7, 64, 1 << 20]),
    limit=st.sampled_from([16 << 20, 16 << 20, 20, 60]),
)
def test_standard_input_reads_as_before(text: str, block: int, limit: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(delimited, "MAX_LINE_BYTES", limit)
        assert fast("-", io.StringIO(text), block=block) == reference("-", io.StringIO(text))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(_FINITE, min_size=1, max_size=40), min_size=1, max_size=30))
def test_values_are_exact(rows: list[list[float]]) -> None:
    """Any float64 written as repr reads back as itself, on the fast path (an independent
    check: the expected values are the floats themselves, not another parse)."""
    text = "".join(",".join(map(repr, row)) + "\n" for row in rows).encode()
    path = Path("exact.csv")
    try:
        path.write_bytes(text)
        vectors, error = fast(str(path))
    finally:
        path.unlink()
    assert error is None
    assert [v[3] for v in vectors] == [np.array(row, dtype=np.float64).tobytes() for row in rows]


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def _spy_on_tokens(patch: pytest.MonkeyPatch) -> list[str]:
    """Record every token the exact path parses."""
    parsed: list[str] = []
    exact = delimited._parse_token

    def spy(token: str) -> float:
        parsed.append(token)
        return exact(token)

    patch.setattr(delimited, "_parse_token", spy)
    return parsed


def test_a_large_uniform_csv_takes_the_fast_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((300, 400)) * 30
    path = tmp_path / "m.csv"
    with path.open("w") as f:
        f.write("# logits\nlogit_" + ",logit_".join(map(str, range(400))) + "\n")
        for row in matrix:
            f.write(",".join(map(repr, row.tolist())) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        parsed = _spy_on_tokens(patch)
        vectors = list(iter_source(str(path)))
    assert parsed == []  # not one token went the exact way (the header is not parsed)
    assert [v.line for v in vectors] == list(range(3, 303))
    assert [v.index for v in vectors] == list(range(300))
    assert np.array_equal(np.stack([v.values for v in vectors]), matrix)


def test_tsv_and_standard_input_take_the_fast_path(tmp_path: Path) -> None:
    rows = [[float(i * 7 + j) / 8 for j in range(50)] for i in range(40)]
    tsv = "".join("\t".join(map(repr, row)) + "\n" for row in rows)
    csv = "".join(", ".join(map(repr, row)) + "\r\n" for row in rows)
    (tmp_path / "a.tsv").write_text(tsv)
    with pytest.MonkeyPatch.context() as patch:
        parsed = _spy_on_tokens(patch)
        from_tsv = list(iter_source(str(tmp_path / "a.tsv")))
        from_stdin = list(iter_source("-", io.StringIO(csv)))
    assert parsed == []
    assert [v.values.tolist() for v in from_tsv] == rows
    assert [v.values.tolist() for v in from_stdin] == rows


def test_only_the_unusual_lines_go_the_exact_way(tmp_path: Path) -> None:
    plain = ",".join(["1.5"] * 100) + "\n"
    text = "a,b\n" + plain * 50 + "inf,2\n" + plain * 50 + "# note\n\n" + plain * 50
    (tmp_path / "a.csv").write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        parsed = _spy_on_tokens(patch)
        vectors = list(iter_source(str(tmp_path / "a.csv")))
    assert parsed == ["inf", "2"]
    assert len(vectors) == 151
    assert [v.line for v in vectors[49:52]] == [51, 52, 53]


def test_an_overflow_in_a_plain_run_is_refused_at_its_line_after_the_lines_before(
    tmp_path: Path,
) -> None:
    plain = ",".join(["2.5"] * 20) + "\n"
    (tmp_path / "a.csv").write_text(plain * 30 + "1,1e400\n" + plain * 30)
    iterator = iter_source(str(tmp_path / "a.csv"))
    assert len([next(iterator) for _ in range(30)]) == 30
    with pytest.raises(InputError) as info:
        next(iterator)
    expected = "1e400 is outside float64's range (about ±1.8e308)"
    assert str(info.value) == f"{tmp_path / 'a.csv'}:31:3: {expected}"


def test_a_csv_larger_than_its_blocks_streams_in_bounded_memory(tmp_path: Path) -> None:
    line = (",".join(repr(x) for x in np.linspace(-40, 40, 1000).tolist()) + "\n").encode()
    path = tmp_path / "big.csv"
    path.write_bytes(line * 1200)  # about 22 MB
    assert path.stat().st_size > 20 << 20
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_source(str(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 1200
    assert peak < 16 << 20, peak  # a few blocks' worth, not the file


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        (b"1,2,3\n", True),
        (b" -1.5e+3 , +.5,7.\r\n", True),
        (b"1 2  3\n", True),  # no comma: split at spaces
        (b"\n  \n\r\n", True),  # blank lines
        (b"1,2\n3\n4 5\n", True),
        (b"1,,2\n", False),
        (b",1\n", False),
        (b"1,\n", False),
        (b"1 2,3\n", False),
        (b"1\t2\n", False),  # a tab in CSV: the exact path decides
        (b"inf\n", False),
        (b"nan\n", False),
        (b"1e\n", False),
        (b"1.2.3\n", False),
        (b"1e5e5\n", False),
        (b"+-1\n", False),
        (b"1_0\n", False),
        (b"0x1\n", False),
        (b"1 # c\n", False),
        (b"1\r2\n", False),
        (b"1,2\r\r\n", False),
        (b"\xc3\xa9\n", False),
    ],
)
def test_what_is_plain_csv(text: bytes, plain: bool) -> None:
    assert fastcsv.certified_end(text, 0, b",") == (len(text) if plain else 0)


def test_what_is_plain_tsv() -> None:
    assert fastcsv.certified_end(b"1\t2 \t 3\n4 5\n", 0, b"\t") == 12
    assert fastcsv.certified_end(b"1,2\n", 0, b"\t") == 0
    assert fastcsv.certified_end(b"\t1\t2\n", 0, b"\t") == 0
    assert fastcsv.certified_end(b"1\t2\n\t1\n", 0, b"\t") == 4  # stops at the line refused


def test_convert_counts_tokens_per_line() -> None:
    converted = fastcsv.convert(b"1,2,3\n\n 4 \n5 6\n", b",")
    assert converted is not None
    values, counts = converted
    assert values.tolist() == [1, 2, 3, 4, 5, 6]
    assert counts == [3, 0, 1, 2]


def test_convert_refuses_what_it_cannot_count() -> None:
    # Never certified; convert says so instead of guessing, and the reader goes the exact way.
    assert fastcsv.convert(b"1,x\n", b",") is None
    assert fastcsv.convert(b"1+2\n", b",") is None  # numpy would read two numbers
    converted = fastcsv.convert(b"1e400\n", b",")
    assert converted is not None and math.isinf(converted[0][0])


def test_a_run_the_fast_path_declines_is_read_token_by_token(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x,y\n1,2\n3,4\n# c\n5,6\n7,oops\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastcsv, "convert", lambda lines, separator: None)
        declined = outcome(lambda: iter_source(str(path)))
    assert declined == reference(str(path)) == fast(str(path))
    assert len(declined[0]) == 3 and declined[1] is not None and ":6:3: " in declined[1]
