"""Delimited text: CSV, TSV, standard input and ``-l/--logits`` values.

One vector per non-empty line, comma separated (``.tsv``: tab separated; a line without the
delimiter may be whitespace separated).  ``#`` starts a comment; the first data line may be a
header of names and is skipped.  Files and standard input stream in blocks of whole lines:
runs of lines that hold nothing but decimal numbers are converted many at once by
:mod:`lsmcheck.fastcsv`, every other line token by token (:class:`_Delimited`), with the same
vectors and errors either way.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TextIO

import numpy as np

from lsmcheck import fastcsv
from lsmcheck.errors import InputError
from lsmcheck.sources.common import (
    _BINARY_FILE,
    _SPECIAL_VALUES,
    _UTF8_BOM,
    FloatArray,
    _BadValue,
    _os_error,
    _parse_token,
    _show,
    _utf8_error,
)
from lsmcheck.vectors import Vector

# ---------------------------------------------------------------------------------------------
# Delimited text: CSV, TSV, standard input, --logits
# ---------------------------------------------------------------------------------------------

_COMMA = re.compile(r"\s*,\s*")
_TAB = re.compile(r"[^\S\t]*\t[^\S\t]*")  # a tab with the spaces (not tabs) around it
_WHITESPACE = re.compile(r"\s+")
_COMMA_OR_WHITESPACE = re.compile(r"\s*,\s*|\s+")


#: The spaces at either end of a line that are not fields' separators (a TSV line's leading
#: or trailing tab is one: an empty first or last field, refused like any other).
_EDGES = {True: (re.compile(r"\A[^\S\t]*"), re.compile(r"[^\S\t]*\Z")),
          False: (re.compile(r"\A\s*"), re.compile(r"\s*\Z"))}  # fmt: skip


def _split_fields(text: str, separator: re.Pattern[str]) -> list[tuple[int, str]]:
    """Split ``text`` at ``separator`` into ``(column, token)`` pairs.

    Whitespace around tokens is dropped; ``column`` is the 1-based position in ``text`` of the
    token's first character (for an empty field, of the character just after it).
    """
    lead, trail = (edge.search(text) for edge in _EDGES[separator is _TAB])
    assert lead is not None and trail is not None  # (both match the empty string)
    pos = lead.end()
    end = max(pos, trail.start())
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
            message = str(error)
            if token.lstrip().startswith(("[", "{")):  # JSON given where text is read
                message += " (this is read as comma-separated text: JSON needs a file named .json)"
            raise InputError(f"{where}{column}", message) from None
    return values


def _is_header(fields: list[tuple[int, str]]) -> bool:
    """Whether every field is a name (``logit_0``, ``"logit_0"``): it starts with a letter or
    ``_`` (inside quotes or not) and is not ``inf``/``nan``.  Anything else, such as ``"1.5"``,
    ``−1.5`` with a Unicode minus or full-width digits, is data, so that a row in an unusual
    spelling is an error rather than silently skipped as a header."""
    return all(_is_name(token.strip('"')) for _, token in fields)


def _is_name(token: str) -> bool:
    return (
        bool(token)
        and (token[0].isalpha() or token[0] == "_")
        and (token.lower() not in _SPECIAL_VALUES)
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


# ---------------------------------------------------------------------------------------------
# Lines in blocks: files and streams
# ---------------------------------------------------------------------------------------------

#: The longest text line read (a vector of about 1.5 million logits); longer ones are refused
#: so that memory stays bounded.  Binary ``.npy`` is streamed in blocks whatever its width.
MAX_LINE_BYTES = 16 << 20


#: Bytes of a text file read at once (at least the block's whole lines are parsed together).
_TEXT_BLOCK = 1 << 20


def _long_line(source: str, line_number: int) -> InputError:
    return InputError(
        f"{source}:{line_number}",
        f"line longer than {MAX_LINE_BYTES >> 20} MiB; save vectors this long as .npy, "
        "which is streamed",
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
