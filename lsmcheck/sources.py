"""Readers that turn files, standard input and ``-l/--logits`` values into logit vectors.

Formats, chosen by file extension (case-insensitive):

* ``.csv``, ``.txt`` and standard input (``-``): one vector per non-empty line, comma
  separated (a line without commas may be whitespace separated).  ``.tsv``: tab separated.
  ``#`` starts a comment; the first data line may be a header of names and is skipped.
* ``.json``: a list of numbers (one vector) or a list of lists of numbers.
* ``.npy``: a float or integer array; vectors lie along the last axis.
* ``.npz``: every member of the archive, in order, read like a ``.npy`` file.

A file with any other extension is sniffed: the ``.npy`` magic, the zip signature, a leading
``[`` (JSON) or else CSV.  Delimited text streams in blocks of whole lines: runs of lines that
hold nothing but decimal numbers are converted many at once by :mod:`lsmcheck.fastcsv`, every
other line token by token, with the same vectors and errors either way.

Every problem raises :class:`~lsmcheck.errors.InputError` whose ``where`` names the file with
line and column for text formats (``cases/a.csv:3:7``).  Reading never writes anything and
never unpickles.
"""

from __future__ import annotations

import bisect
import functools
import io
import json
import lzma
import math
import os
import re
import stat
import struct
import sys
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO, cast

import numpy as np
import numpy.typing as npt

from lsmcheck import fastcsv
from lsmcheck.errors import InputError
from lsmcheck.vectors import Vector

__all__ = [
    "count_elements",
    "iter_source",
    "iter_sources",
    "longest_vectors",
    "parse_logits_flag",
    "read_sources",
]

FloatArray = npt.NDArray[np.float64]

_FORMATS_BY_EXTENSION = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".npy": "npy",
    ".npz": "npz",
}
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_HEAD_SIZE = 8192
_BINARY_FILE = "binary file; expected CSV, TSV, JSON, .npy or .npz"
_OUT_OF_RANGE = "is outside float64's range (about ±1.8e308)"

# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------

_SPECIAL_VALUES = {
    "inf": math.inf,
    "+inf": math.inf,
    "-inf": -math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-infinity": -math.inf,
    "nan": math.nan,
    "+nan": math.nan,
    "-nan": math.nan,
}
# What float() accepts, minus its Python-isms: no underscores, no non-ASCII digits, no spaces.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _BadValue(ValueError):
    """A token or JSON element that is not a usable logit; the caller adds the location."""


def _show(token: str, limit: int = 40) -> str:
    """Quote a token for a message, shortening a long one."""
    if len(token) > limit:
        token = token[: limit - 3] + "..."
    return repr(token)


def _parse_token(token: str) -> float:
    """Parse one text token (already stripped of surrounding whitespace) as a float64.

    Raises:
        _BadValue: the token is empty, not a number, or a finite number beyond float64.
    """
    if not token:
        raise _BadValue("empty field")
    special = _SPECIAL_VALUES.get(token.lower())
    if special is not None:
        return special
    if _DECIMAL.fullmatch(token) is None:
        hint = ""
        if "_" in token and any(c.isdigit() for c in token):
            hint = " (digit separators '_' are not allowed)"
        elif token.lower().lstrip("+-").startswith("0x"):
            hint = " (hexadecimal is not allowed)"
        raise _BadValue(f"expected a number, got {_show(token)}{hint}")
    value = float(token)
    if math.isinf(value):
        raise _BadValue(f"{token} {_OUT_OF_RANGE}")
    return value


# ---------------------------------------------------------------------------------------------
# Delimited text: CSV, TSV, standard input, --logits
# ---------------------------------------------------------------------------------------------

_COMMA = re.compile(r"\s*,\s*")
_TAB = re.compile(r"[^\S\t]*\t[^\S\t]*")  # a tab with the spaces (not tabs) around it
_WHITESPACE = re.compile(r"\s+")
_COMMA_OR_WHITESPACE = re.compile(r"\s*,\s*|\s+")


def _split_fields(text: str, separator: re.Pattern[str]) -> list[tuple[int, str]]:
    """Split ``text`` at ``separator`` into ``(column, token)`` pairs.

    Whitespace around tokens is dropped; ``column`` is the 1-based position in ``text`` of the
    token's first character (for an empty field, of the character just after it).
    """
    end = len(text.rstrip())
    pos = len(text) - len(text.lstrip())
    fields: list[tuple[int, str]] = []
    for match in separator.finditer(text, pos, end):
        fields.append((pos + 1, text[pos : match.start()]))
        pos = match.end()
    fields.append((pos + 1, text[pos:end]))
    return fields


def _fields_to_values(fields: list[tuple[int, str]], where: str) -> FloatArray:
    """Parse every field; a bad one raises InputError at ``where`` followed by its column."""
    values = np.empty(len(fields), dtype=np.float64)
    for i, (column, token) in enumerate(fields):
        try:
            values[i] = _parse_token(token)
        except _BadValue as error:
            raise InputError(f"{where}{column}", str(error)) from None
    return values


def _is_header(fields: list[tuple[int, str]]) -> bool:
    """Whether every field is a name (``logit_0``), not something number-like (``1_000``)."""
    return all(
        token and token[0] not in "0123456789+-." and token.lower() not in _SPECIAL_VALUES
        for _, token in fields
    )


class _Delimited:
    """The meaning of the lines of one delimited source, given one at a time in order.

    It holds the state the rules depend on: how many vectors came before (a header row is
    allowed only as the first data line) and whether a header or a comment was seen (for the
    message of a source without vectors).

    Args:
        source: the name in messages and vectors (a path, or ``"-"``).
        delimiter: ``","`` or ``"\\t"``; a line without it is split at whitespace.
        empty: names an input with no lines at all (``"empty file"``).
    """

    def __init__(self, source: str, delimiter: str, empty: str) -> None:
        self.source = source
        self.delimiter = delimiter
        self.split_at = _TAB if delimiter == "\t" else _COMMA
        self.empty = empty
        self.index = 0
        self.saw_comment = self.saw_header = False

    def line(self, line_number: int, line: str) -> Vector | None:
        """The exact path: parse one line token by token.

        Returns:
            Its vector, or None for a blank, comment-only or header line.
        """
        content, hash_sign, _ = line.partition("#")
        self.saw_comment = self.saw_comment or bool(hash_sign)
        if not content.strip():
            return None
        fields = _split_fields(content, self.split_at if self.delimiter in content else _WHITESPACE)
        if _is_header(fields):
            if self.index == 0 and not self.saw_header:
                self.saw_header = True
                return None
            column, token = fields[0]
            raise InputError(
                f"{self.source}:{line_number}:{column}",
                f"expected a number, got {_show(token)} "
                "(a header row is allowed only as the first data line)",
            )
        return self.vector(line_number, _fields_to_values(fields, f"{self.source}:{line_number}:"))

    def vector(self, line_number: int, values: FloatArray) -> Vector:
        """The next vector, read from line ``line_number`` (by either path)."""
        vector = Vector(source=self.source, index=self.index, line=line_number, values=values)
        self.index += 1
        return vector

    def finish(self) -> None:
        """Raise if the source held no vector."""
        if self.index == 0:
            if self.saw_header:
                reason = "only a header row"
            elif self.saw_comment:
                reason = "only comments and blank lines"
            else:
                reason = self.empty
            raise InputError(self.source, f"no logit vectors found ({reason})")


def _read_delimited(
    blocks: Iterable[tuple[int, bytes]], rules: _Delimited, decode: Callable[[int, bytes], str]
) -> Iterator[Vector]:
    """Yield one vector per data line of delimited text.

    Args:
        blocks: ``(number of the first line, whole lines)``: the lines are consecutive, each
            ends in ``\\n``, and together the blocks are the whole source, in order.
        rules: the source's line rules (and its state).
        decode: the text of one line for the exact path, from its number and bytes (without the
            ``\\n``); it raises the line's encoding errors.

    Runs of plain lines (see :mod:`lsmcheck.fastcsv`) are converted many at once; every other
    line is parsed token by token by ``rules``.  Both give the same vectors, and the errors are
    always raised by the exact path, in line order.
    """
    separator = rules.delimiter.encode()
    for line_number, data in blocks:
        pos = 0
        while pos < len(data):
            end = fastcsv.certified_end(data, pos, separator)
            if end > pos:
                stop, line_number = yield from _fast_lines(data, pos, end, line_number, rules)
                if stop > pos:
                    pos = end = stop
            # Token by token: the line after the run (or the run, if it was left whole).
            while pos < len(data) and pos <= end:
                newline = data.index(b"\n", pos)
                vector = rules.line(line_number, decode(line_number, data[pos:newline]))
                if vector is not None:
                    yield vector
                pos, line_number = newline + 1, line_number + 1
    rules.finish()


def _fast_lines(
    data: bytes, pos: int, end: int, line_number: int, rules: _Delimited
) -> Generator[Vector, None, tuple[int, int]]:
    """Yield the vectors of the plain lines ``data[pos:end]`` (the first is ``line_number``).

    Returns:
        The offset and number of the first line not read: ``end`` and the line after the run,
        or, when a value is beyond float64's range, that value's line (which the exact path
        then refuses); ``(pos, line_number)`` if the run was left to the exact path whole.
    """
    converted = fastcsv.convert(data[pos:end], rules.delimiter.encode())
    if converted is None:
        return pos, line_number
    values, counts = converted
    if np.isinf(values).any():  # no inf or nan is spelled on a plain line: an overflow
        bad = int(np.argmax(np.isinf(values)))
        lines = 0
        while bad >= counts[lines]:  # keep the lines before the one holding values[bad]
            bad -= counts[lines]
            lines += 1
        counts = counts[:lines]
        end = pos + sum(len(line) + 1 for line in data[pos:end].split(b"\n")[:lines])
    stop = 0
    for count in counts:
        if count:
            stop += count
            yield rules.vector(line_number, values[stop - count : stop].copy())
        line_number += 1
    return end, line_number


#: The longest text line read (a vector of about 1.5 million logits); longer ones are refused
#: so that memory stays bounded.  Binary ``.npy`` is streamed in blocks whatever its width.
MAX_LINE_BYTES = 16 << 20
#: The largest JSON file read (JSON is parsed whole).
MAX_JSON_BYTES = 64 << 20
#: The largest uncompressed ``.npz`` member read (a member is loaded whole).
MAX_NPZ_MEMBER_BYTES = 256 << 20


#: Bytes of a text file read at once (at least the block's whole lines are parsed together).
_TEXT_BLOCK = 1 << 20


def _long_line(source: str, line_number: int) -> InputError:
    return InputError(
        f"{source}:{line_number}",
        f"line longer than {MAX_LINE_BYTES >> 20} MiB; save vectors this long as .npy, "
        "which is streamed",
    )


def _utf8_error(where: str, line_number: int, line: bytes, start: int) -> InputError:
    """Locate the byte at offset ``start`` of ``line`` that is not UTF-8 (column in characters)."""
    column = len(line[:start].decode("utf-8", "replace")) + 1
    return InputError(
        f"{where}:{line_number}:{column}",
        f"not valid UTF-8 (byte 0x{line[start]:02x}); expected UTF-8 text",
    )


def _file_blocks(file: io.BufferedReader, path: str) -> Iterator[tuple[int, bytes]]:
    """Yield the lines of a binary file in blocks: ``(number of the first line, lines)``.

    Each block holds whole lines ending in ``\\n`` (one is added to a last line without) and
    is what one read brought, about :data:`_TEXT_BLOCK` bytes, or at least one line.  A leading
    UTF-8 BOM is removed.  A line longer than :data:`MAX_LINE_BYTES` raises when it is reached,
    after every line before it was yielded, having held at most that much of it.
    """
    size = min(_TEXT_BLOCK, MAX_LINE_BYTES)  # so only a block's first line can be too long
    pending = bytearray()
    line_number = 1
    while True:
        try:
            data = file.read1(size)
        except OSError as error:
            raise _os_error(path, error) from None
        if not data:
            break
        pending += data
        cut = pending.rfind(b"\n") + 1
        if cut == 0:
            if len(pending) > MAX_LINE_BYTES:
                raise _long_line(path, line_number)
            continue
        if pending.find(b"\n") > MAX_LINE_BYTES:
            raise _long_line(path, line_number)
        lines = bytes(pending[:cut])
        del pending[:cut]
        yield line_number, lines.removeprefix(_UTF8_BOM) if line_number == 1 else lines
        line_number += lines.count(b"\n")
    if pending:
        lines = bytes(pending) + b"\n"
        yield line_number, lines.removeprefix(_UTF8_BOM) if line_number == 1 else lines


def _file_line(path: str, line_number: int, raw: bytes) -> str:
    """The text of one line of a file (its bytes without the ``\\n``)."""
    raw = raw.removesuffix(b"\r")
    if b"\0" in raw:
        raise InputError(path, _BINARY_FILE)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _utf8_error(path, line_number, raw, error.start) from None


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # how errors="surrogateescape" keeps bad bytes


def _stream_lines(stream: TextIO, source: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for each line of an already decoded text stream."""
    line_number = 0
    while True:
        try:
            line = stream.readline(MAX_LINE_BYTES + 1)
        except UnicodeDecodeError:
            after = f" (after line {line_number})" if line_number else ""
            raise InputError(source, f"not valid UTF-8{after}; expected UTF-8 text") from None
        except OSError as error:
            raise _os_error(source, error) from None
        if not line:
            return
        line_number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith("\n"):
            raise _long_line(source, line_number)
        if line_number == 1:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\n").removesuffix("\r")
        if "\0" in line:
            raise InputError(source, "binary input; expected CSV text")
        escaped = _ESCAPED_BYTE.search(line)
        if escaped is not None:
            raise InputError(
                f"{source}:{line_number}:{escaped.start() + 1}",
                f"not valid UTF-8 (byte 0x{ord(escaped.group()) - 0xDC00:02x}); "
                "expected UTF-8 text",
            )
        yield line_number, line


def _stream_blocks(stream: TextIO, source: str) -> Iterator[tuple[int, bytes]]:
    """The lines of a text stream in blocks of about :data:`_TEXT_BLOCK` characters, as
    :func:`_file_blocks` gives them (text encoded as UTF-8, lone surrogates kept).

    An error reading a line is raised after the block of the lines before it.
    """
    lines: list[str] = []
    size, first = 0, 1
    failure: InputError | None = None
    try:
        for line_number, line in _stream_lines(stream, source):
            lines.append(line)
            size += len(line) + 1
            if size >= _TEXT_BLOCK:
                yield first, _encode_lines(lines)
                lines, size, first = [], 0, line_number + 1
    except InputError as error:
        failure = error
    if lines:
        yield first, _encode_lines(lines)
    if failure is not None:
        raise failure


def _encode_lines(lines: list[str]) -> bytes:
    return "\n".join([*lines, ""]).encode("utf-8", "surrogatepass")


def _stream_line(line_number: int, raw: bytes) -> str:
    """The text of one line of a text stream, as :func:`_stream_blocks` encoded it."""
    return raw.decode("utf-8", "surrogatepass")


def parse_logits_flag(text: str, occurrence: int) -> Vector:
    """Parse the value of one ``-l/--logits`` option.

    Args:
        text: numbers separated by commas and/or whitespace, e.g. ``"2,1,0.1"`` or
            ``"2 -inf 0.1"``.
        occurrence: 0-based position of this option among all ``--logits`` options; it becomes
            the vector's index and is shown 1-based in messages (``--logits #1``).

    Returns:
        The vector, with source ``"--logits"`` and no line number.

    Raises:
        InputError: the value is empty or holds a token that is not a number; ``where`` is
            ``--logits #N`` or ``--logits #N: column C``.
    """
    where = f"--logits #{occurrence + 1}"
    if not text.strip():
        raise InputError(where, "empty value; expected numbers separated by commas or spaces")
    fields = _split_fields(text, _COMMA_OR_WHITESPACE)
    values = _fields_to_values(fields, f"{where}: column ")
    return Vector(source="--logits", index=occurrence, line=None, values=values)


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OutOfRange:
    """A JSON number literal that overflows float64, kept so it can be reported in place."""

    text: str


def _json_number(text: str) -> float | _OutOfRange:
    """Convert a JSON number literal (integer or not) to a correctly rounded float64."""
    value = float(text)
    return _OutOfRange(text) if math.isinf(value) else value


_JSON_DECODER = json.JSONDecoder(parse_float=_json_number, parse_int=_json_number)
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _describe_json(value: object) -> str:
    """Name a decoded JSON value for a message: ``a list``, ``"abc"``, ``true`` ..."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float | _OutOfRange):
        return "a number"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...", ensure_ascii=False)
    if isinstance(value, list):
        return "a list"
    return "an object"


def _json_element(value: object) -> float:
    """Convert one element of a JSON logit vector to a float64."""
    if isinstance(value, float):
        return value
    if isinstance(value, _OutOfRange):
        raise _BadValue(f"{value.text} {_OUT_OF_RANGE}")
    if isinstance(value, str):
        special = _SPECIAL_VALUES.get(value.lower())
        if special is not None:
            return special
    if isinstance(value, list):
        raise _BadValue(
            "expected a number, got a list (lists nest at most two deep: "
            "a list of lists of numbers)"
        )
    raise _BadValue(f"expected a number, got {_describe_json(value)}")


class _JsonText:
    """JSON source text with positions: decodes values in place and locates them."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self._newlines = [match.start() for match in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        """1-based line of character offset ``pos``."""
        return bisect.bisect_left(self._newlines, pos) + 1

    def where(self, pos: int) -> str:
        """``path:line:column`` of character offset ``pos``."""
        line = self.line(pos)
        line_start = self._newlines[line - 2] + 1 if line > 1 else 0
        return f"{self.path}:{line}:{pos - line_start + 1}"

    def skip_whitespace(self, pos: int) -> int:
        """Offset of the first non-whitespace character at or after ``pos``."""
        match = _JSON_WHITESPACE.match(self.text, pos)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def syntax_error(self, pos: int, message: str) -> InputError:
        """An ``invalid JSON`` error at ``pos``."""
        return InputError(self.where(pos), f"invalid JSON: {message}")

    def value_at(self, pos: int) -> tuple[Any, int]:
        """Decode the JSON value starting at ``pos``; return it and the offset after it."""
        try:
            return _JSON_DECODER.raw_decode(self.text, pos)
        except json.JSONDecodeError as error:
            where = f"{self.path}:{error.lineno}:{error.colno}"
            raise InputError(where, f"invalid JSON: {error.msg}") from None
        except RecursionError:
            raise InputError(
                self.where(pos),
                "JSON nested too deeply; expected a list of numbers or a list of lists of numbers",
            ) from None

    def array_items(self, pos: int) -> tuple[list[tuple[int, Any]], int]:
        """Decode the array whose ``[`` is at ``pos`` element by element.

        Returns:
            ``(offset, value)`` for each element, and the offset just after the ``]``.
        """
        items: list[tuple[int, Any]] = []
        pos = self.skip_whitespace(pos + 1)
        if self.text.startswith("]", pos):
            return items, pos + 1
        while True:
            value, end = self.value_at(pos)
            items.append((pos, value))
            pos = self.skip_whitespace(end)
            if self.text.startswith("]", pos):
                return items, pos + 1
            if not self.text.startswith(",", pos):
                raise self.syntax_error(pos, "Expecting ',' delimiter")
            pos = self.skip_whitespace(pos + 1)

    def vector_values(self, pos: int, values: list[Any], index_path: str) -> FloatArray:
        """Convert the decoded list whose ``[`` is at ``pos``; locate a bad element exactly."""
        out = np.empty(len(values), dtype=np.float64)
        for j, value in enumerate(values):
            try:
                out[j] = _json_element(value)
            except _BadValue as error:
                element_pos = self.array_items(pos)[0][j][0]
                raise InputError(self.where(element_pos), f"{index_path}[{j}]: {error}") from None
        return out


def _read_json(path: str, file: BinaryIO) -> Iterator[Vector]:
    """Yield the vectors of a JSON file: a list of numbers or a list of lists of numbers.

    A vector's line is the line where its list starts, unless two vectors start on the same
    line: then no vector of the file gets a line (their labels use the index instead).
    """
    try:
        data = file.read(MAX_JSON_BYTES + 1)
    except OSError as error:
        raise _os_error(path, error) from None
    if len(data) > MAX_JSON_BYTES:
        raise InputError(
            path,
            f"JSON file larger than {MAX_JSON_BYTES >> 20} MiB (JSON is read whole); "
            "save large inputs as .npy, which is streamed",
        )
    if b"\0" in data:
        raise InputError(path, _BINARY_FILE)
    data = data.removeprefix(_UTF8_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line_number = data.count(b"\n", 0, error.start) + 1
        raise _utf8_error(path, line_number, data[line_start:], error.start - line_start) from None

    doc = _JsonText(text, path)
    start = doc.skip_whitespace(0)
    if start == len(text):
        raise InputError(path, "no logit vectors found (empty file)")
    expected = "expected a list of numbers or a list of lists of numbers"
    if not text.startswith("[", start):
        value, _ = doc.value_at(start)  # reports a syntax error first
        raise InputError(doc.where(start), f"{expected}, got {_describe_json(value)}")
    items, end = doc.array_items(start)
    extra = doc.skip_whitespace(end)
    if extra != len(text):
        raise doc.syntax_error(extra, "extra data after the top-level list")
    if not items:
        raise InputError(doc.where(start), f"empty list; {expected}")

    rows: list[tuple[int, FloatArray]] = []
    if isinstance(items[0][1], list):
        for i, (pos, value) in enumerate(items):
            if not isinstance(value, list):
                raise InputError(
                    doc.where(pos),
                    f"[{i}]: expected a list of numbers (one logit vector), "
                    f"got {_describe_json(value)}",
                )
            if not value:
                raise InputError(
                    doc.where(pos), f"[{i}]: empty list; a logit vector needs at least one number"
                )
            rows.append((pos, doc.vector_values(pos, value, f"[{i}]")))
    else:
        rows.append((start, doc.vector_values(start, [value for _, value in items], "")))

    lines: list[int | None] = [doc.line(pos) for pos, _ in rows]
    if len(set(lines)) != len(lines):
        lines = [None] * len(rows)
    for index, ((_, values), line) in enumerate(zip(rows, lines, strict=True)):
        yield Vector(source=path, index=index, line=line, values=values)


# ---------------------------------------------------------------------------------------------
# .npy and .npz
# ---------------------------------------------------------------------------------------------

_UNSUPPORTED_KINDS = {
    "b": "bool",
    "c": "complex",
    "U": "string",
    "S": "bytes",
    "V": "structured",
    "M": "datetime",
    "m": "timedelta",
}


def _one_line(error: BaseException) -> str:
    """An exception's message with all whitespace runs (including newlines) collapsed."""
    return " ".join(str(error).split())


def _npy_header(file: BinaryIO, where: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Read a ``.npy`` header from ``file`` (left just after it); return shape and dtype."""
    try:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        elif version in ((2, 0), (3, 0)):  # 3.0 only differs for non-ASCII field names
            shape, _, dtype = np.lib.format.read_array_header_2_0(file)
        else:
            raise InputError(where, f"unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, SyntaxError, TypeError, tokenize.TokenError) as error:
        # ValueError includes UnicodeDecodeError; numpy tokenizes and literal-evals the header,
        # so a corrupt one can also raise SyntaxError or TokenError.
        raise InputError(where, f"not a valid .npy array: {_one_line(error)}") from None
    return shape, dtype


def _check_array(shape: tuple[int, ...], dtype: np.dtype[Any], where: str) -> None:
    """Reject dtypes and shapes that do not hold at least one real logit vector."""
    if dtype.hasobject:
        raise InputError(where, "object arrays are not supported; lsmcheck never unpickles")
    if dtype.names is not None or dtype.kind not in "fiu":
        kind = _UNSUPPORTED_KINDS.get(dtype.kind, "non-numeric")
        if dtype.names is not None:
            kind = "structured"
        raise InputError(
            where,
            f"{kind} arrays are not supported (dtype {dtype}); "
            "expected a real floating-point or integer array",
        )
    if not shape:
        raise InputError(
            where,
            "0-d array (a single scalar); expected a 1-D vector or an array of vectors "
            "along the last axis",
        )
    if shape[-1] == 0:
        raise InputError(where, f"zero-length vectors: the last axis has length 0 (shape {shape})")
    if math.prod(shape) == 0:
        raise InputError(where, f"no logit vectors: the array has shape {shape}")


def _array_vectors(array: npt.NDArray[Any], source: str) -> Iterator[Vector]:
    """Yield the vectors along the last axis, leading axes flattened in C order, row by row."""
    wider_than_float64 = array.dtype.kind == "f" and array.dtype.itemsize > 8
    for index, position in enumerate(np.ndindex(*array.shape[:-1])):
        row = array[position]
        with np.errstate(over="ignore"):  # a longdouble beyond float64 is reported below
            values = np.array(row, dtype=np.float64)  # a fresh contiguous copy
        if wider_than_float64:
            overflowed = np.flatnonzero(np.isinf(values) & ~np.isinf(row))
            if overflowed.size:
                j = int(overflowed[0])
                raise InputError(f"{source}[{index}]", f"element {j}: {row[j]!s} {_OUT_OF_RANGE}")
        yield Vector(source=source, index=index, line=None, values=values)


def _npy_bytes(file: BinaryIO, shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    """The size a ``.npy`` file must have, ``file`` positioned just past its header."""
    return file.tell() + math.prod(shape) * dtype.itemsize


def _read_npy(path: str, file: BinaryIO) -> Iterator[Vector]:
    """Yield the vectors of a ``.npy`` file, memory-mapped so rows are read one at a time."""
    shape, dtype = _npy_header(file, path)
    _check_array(shape, dtype, path)
    status = os.fstat(file.fileno())
    needed = _npy_bytes(file, shape, dtype)
    if stat.S_ISREG(status.st_mode) and status.st_size < needed:
        raise InputError(
            path,
            f"truncated .npy file: shape {shape} of {dtype} needs {needed} bytes, "
            f"the file has {status.st_size}",
        )
    if stat.S_ISREG(status.st_mode) and not _fortran_order(path):
        yield from _npy_rows(file, path, shape, dtype)
        return
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(path, f"cannot read the .npy data: {_one_line(error)}") from None
    yield from _array_vectors(array, path)


#: Bytes of a ``.npy`` file read at once: a block of whole rows (at least one row).
_NPY_BLOCK = 8 << 20


def _fortran_order(path: str) -> bool:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0
        if version != (1, 0):
            read = np.lib.format.read_array_header_2_0
        return bool(read(f)[1])


def _npy_rows(
    file: BinaryIO, path: str, shape: tuple[int, ...], dtype: np.dtype[Any]
) -> Iterator[Vector]:
    """Yield the vectors of a C-order ``.npy`` whose data starts at ``file``'s position.

    Blocks of whole rows are read with plain reads rather than through a memory map, so the
    pages of a file larger than memory are not kept resident as it streams by.
    """
    n = shape[-1]
    rows = math.prod(shape[:-1])
    per_block = max(1, _NPY_BLOCK // (n * dtype.itemsize))
    index = 0
    while index < rows:
        count = min(per_block, rows - index)
        try:
            block = np.fromfile(file, dtype=dtype, count=count * n)
        except (OSError, ValueError) as error:
            raise InputError(path, f"cannot read the .npy data: {_one_line(error)}") from None
        if block.size != count * n:
            raise InputError(path, "truncated .npy file: it ended while being read")
        for vector in _array_vectors(block.reshape(count, n), path):
            yield Vector(vector.source, index + vector.index, None, vector.values)
        index += count


#: What reading a damaged or unusual zip archive can raise (zipfile and its decompressors).
_ZIP_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # an unsupported zip version or compression method
    RuntimeError,  # an encrypted member
    struct.error,
    OverflowError,
    MemoryError,
    IndexError,  # zipfile on a member with an empty name
    KeyError,
)


def _read_npz(path: str) -> Iterator[Vector]:
    """Yield the vectors of every member of a ``.npz`` archive, in the archive's order.

    Members are read straight from the zip (never through numpy's loader, which would return
    the bytes of a member not named ``*.npy``).  A member whose declared uncompressed size is
    above :data:`MAX_NPZ_MEMBER_BYTES` is refused before anything is decompressed, and the
    array a header declares must fit in the member, so a zip bomb or a lying header never
    allocates more than that.
    """
    with open(path, "rb") as file:  # ours to close, even when zipfile raises
        try:
            archive = zipfile.ZipFile(file)
            members = [info for info in archive.infolist() if not info.is_dir()]
        except _ZIP_ERRORS as error:
            raise InputError(path, f"not a valid .npz archive: {_one_line(error)}") from None
        with archive:
            if not members:
                raise InputError(path, "empty .npz archive (it holds no arrays)")
            for info in members:
                yield from _npz_member(path, archive, info)


def _npz_member(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[Vector]:
    source = f"{path}:{info.filename.removesuffix('.npy')}"
    if info.file_size > MAX_NPZ_MEMBER_BYTES:
        raise InputError(
            source,
            f"member declares {info.file_size} bytes uncompressed, above the "
            f"{MAX_NPZ_MEMBER_BYTES >> 20} MiB limit for an .npz member; "
            "save large arrays as .npy, which is streamed",
        )
    try:
        with archive.open(info) as stream:
            shape, dtype = _npy_header(cast(BinaryIO, stream), source)
            _check_array(shape, dtype, source)
            needed = math.prod(shape) * dtype.itemsize
            available = info.file_size - stream.tell()
            if needed > available:
                raise InputError(
                    source,
                    f"truncated .npz member: shape {shape} of {dtype} needs {needed} bytes, "
                    f"the member has {max(available, 0)}",
                )
        with archive.open(info) as stream:
            array = np.lib.format.read_array(stream, allow_pickle=False)
    except _ZIP_ERRORS as error:
        raise InputError(source, f"corrupt .npz member: {_one_line(error)}") from None
    yield from _array_vectors(array, source)


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------


def _os_error(path: str, error: OSError) -> InputError:
    """Turn an OSError from opening or reading ``path`` into a one-line InputError."""
    if isinstance(error, FileNotFoundError):
        return InputError(path, "no such file")
    if isinstance(error, IsADirectoryError):
        return InputError(path, "is a directory; expected a file")
    if isinstance(error, NotADirectoryError):
        return InputError(path, "no such file (a parent in the path is not a directory)")
    if isinstance(error, PermissionError):
        return InputError(path, "permission denied")
    return InputError(path, f"cannot read: {error.strerror or _one_line(error)}")


@contextmanager
def _open_binary(path: str) -> Iterator[io.BufferedReader]:
    """Open ``path`` for reading bytes, turning OSError into InputError.

    The file is opened without blocking, so a FIFO that no process writes to reads as empty
    instead of hanging; once open, reads block as usual (a FIFO with a writer streams).
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise _os_error(path, error) from None
    try:
        os.set_blocking(descriptor, True)
        file = open(descriptor, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as error:
        os.close(descriptor)
        raise _os_error(path, error) from None
    with file:
        yield file


def _sniff(head: bytes) -> str:
    """Guess the format of a file with an unknown extension from its first bytes."""
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_ZIP_MAGICS):
        return "npz"
    return "json" if head.removeprefix(_UTF8_BOM).lstrip().startswith(b"[") else "csv"


def iter_source(path: str, stdin: TextIO | None = None) -> Iterator[Vector]:
    """Read the logit vectors of one source lazily.

    Args:
        path: a file path as the user typed it, or ``"-"`` for standard input (read as CSV).
            The format follows the extension (``.csv .txt .tsv .json .npy .npz``, any case);
            other files are sniffed.
        stdin: the stream ``"-"`` reads; ``sys.stdin`` when None.

    Yields:
        Vectors in source order.  Text formats are parsed line by line and ``.npy`` files
        are memory-mapped, so vectors arrive before the whole source is read.

    Raises:
        InputError: the source cannot be read, is malformed, or holds no vector.  Being a
            generator, this happens while iterating, possibly after some vectors.
    """
    if path == "-":
        stream = sys.stdin if stdin is None else stdin
        rules = _Delimited("-", ",", "empty input")
        yield from _read_delimited(_stream_blocks(stream, "-"), rules, _stream_line)
        return
    with _open_binary(path) as file:
        try:
            head = file.peek(_HEAD_SIZE)[:_HEAD_SIZE]
        except OSError as error:
            raise _os_error(path, error) from None
        extension = os.path.splitext(path)[1].lower()
        kind = _FORMATS_BY_EXTENSION.get(extension) or _sniff(head)
        if kind in ("npy", "npz") and not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise InputError(
                path,
                f"not a regular file (a pipe or device); .{kind} input must be a regular file "
                "(text formats can be piped)",
            )
        if kind == "npy":
            if not head.startswith(_NPY_MAGIC):
                raise InputError(path, "not a .npy file (it does not start with '\\x93NUMPY')")
            yield from _read_npy(path, file)
        elif kind == "npz":
            if not head.startswith(_ZIP_MAGICS):
                raise InputError(path, "not a .npz archive (it does not start with a zip header)")
            yield from _read_npz(path)
        else:
            if head.startswith(_UTF16_BOMS):
                raise InputError(path, "UTF-16 text is not supported; save the file as UTF-8")
            if b"\0" in head:
                raise InputError(path, _BINARY_FILE)
            if kind == "json":
                yield from _read_json(path, file)
            else:
                rules = _Delimited(path, "\t" if kind == "tsv" else ",", "empty file")
                decode = functools.partial(_file_line, path)
                yield from _read_delimited(_file_blocks(file, path), rules, decode)


def iter_sources(
    paths: Sequence[str], logits: Sequence[str] = (), stdin: TextIO | None = None
) -> Iterator[Vector]:
    """:func:`read_sources`, lazily: vectors are read as they are consumed (for streaming).

    The checks on the arguments happen at once; a malformed source raises while iterating.
    """
    if not paths and not logits:
        raise InputError("input", "no input: give a file, '-' for standard input, or -l/--logits")
    if list(paths).count("-") > 1:
        raise InputError("-", "standard input given more than once; it can be read only once")
    return _iter_sources(paths, logits, stdin)


def _iter_sources(
    paths: Sequence[str], logits: Sequence[str], stdin: TextIO | None
) -> Iterator[Vector]:
    for path in paths:
        yield from iter_source(path, stdin)
    for occurrence, text in enumerate(logits):
        yield parse_logits_flag(text, occurrence)


def count_elements(paths: Sequence[str], logits: Sequence[str] = ()) -> int | None:
    """How many logits the sources hold, when that is cheap to know (``.npy``/``.npz`` headers
    and ``--logits``); ``None`` when a text source would have to be read to tell."""
    total = sum(len(_split_fields(text, _COMMA_OR_WHITESPACE)) for text in logits)
    for path in paths:
        shapes = _array_shapes(path)
        if shapes is None:
            return None
        total += sum(math.prod(shape) for _, shape in shapes)
    return total


def longest_vectors(paths: Sequence[str]) -> list[tuple[str, int]]:
    """``(source, length)`` of the longest vector of each ``.npy``/``.npz`` source (members of
    an archive apart), from the headers alone.  Text sources are left out: their line and file
    caps bound their vectors already."""
    out = []
    for path in paths:
        for source, shape in _array_shapes(path) or ():
            if shape:
                out.append((source, shape[-1]))
    return out


def _array_shapes(path: str) -> list[tuple[str, tuple[int, ...]]] | None:
    """The shapes in a ``.npy``/``.npz`` file's headers, by source; ``None`` for anything else
    or a file that reading will report on."""
    kind = _FORMATS_BY_EXTENSION.get(os.path.splitext(path)[1].lower())
    try:
        if kind not in ("npy", "npz") or not stat.S_ISREG(os.stat(path).st_mode):
            return None  # opening a FIFO could block; reading will report it
        if kind == "npy":
            with open(path, "rb") as f:
                shape, dtype = _npy_header(f, path)
                if _npy_bytes(f, shape, dtype) > os.fstat(f.fileno()).st_size:
                    return None  # a header claiming more than the file holds: reading says so
                return [(path, shape)]
        shapes = []
        with np.load(path, allow_pickle=False) as archive:
            assert archive.zip is not None
            for name in archive.zip.namelist():
                with archive.zip.open(name) as stream:
                    shape = _npy_header(stream, path)[0]
                    shapes.append((f"{path}:{name.removesuffix('.npy')}", shape))
        return shapes
    except (*_ZIP_ERRORS, InputError):
        return None  # reading will report it


def read_sources(
    paths: Sequence[str], logits: Sequence[str] = (), stdin: TextIO | None = None
) -> list[Vector]:
    """Read every input the user gave, files first, then ``-l/--logits`` values.

    Args:
        paths: file paths in command-line order; ``"-"`` is standard input (at most once).
        logits: the values of the ``-l/--logits`` options, in order.
        stdin: the stream ``"-"`` reads; ``sys.stdin`` when None.

    Returns:
        All vectors: those of each path in order, then one per ``--logits`` value (source
        ``"--logits"``, index = 0-based occurrence).

    Raises:
        InputError: nothing was given (``where="input"``), standard input was named twice, or
            any source is unreadable, malformed or empty.
    """
    if not paths and not logits:
        raise InputError("input", "no input: give a file, '-' for standard input, or -l/--logits")
    if list(paths).count("-") > 1:
        raise InputError("-", "standard input given more than once; it can be read only once")
    vectors: list[Vector] = []
    for path in paths:
        vectors.extend(iter_source(path, stdin))
    for occurrence, text in enumerate(logits):
        vectors.append(parse_logits_flag(text, occurrence))
    return vectors
