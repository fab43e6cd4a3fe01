"""JSON input: a list of numbers (one vector) or a list of lists of numbers.

The file is parsed whole (up to :data:`MAX_JSON_BYTES`), numbers as correctly rounded
float64; ``"inf"``, ``"-inf"`` and ``"nan"`` strings are accepted, and a bad element is located
at its line and column.  (Named ``jsonfile`` so as not to shadow the standard ``json``.)
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from lsmcheck.errors import InputError
from lsmcheck.sources.common import (
    _BINARY_FILE,
    _OUT_OF_RANGE,
    _SPECIAL_VALUES,
    _UTF8_BOM,
    FloatArray,
    _BadValue,
    _os_error,
    _utf8_error,
)
from lsmcheck.vectors import Vector

#: The largest JSON file read (JSON is parsed whole).
MAX_JSON_BYTES = 64 << 20


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
