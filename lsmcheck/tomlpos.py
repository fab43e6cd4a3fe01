"""Where a key is written in a TOML file, for error messages (``tomllib`` gives no positions).

:func:`locate` finds the line and column of a dotted key such as
``tool.lsmcheck.thresholds.max_ulp`` in the text of a file.  It reads what ordinary config
files hold: table headers (``[a.b]``, ``[[a]]``) and ``key = value`` lines with bare, quoted
and dotted keys; it skips comments, strings (multi-line ones too) and the insides of arrays
and inline tables.  A key inside an inline table (``thresholds = {max_ulp = "4"}``) is found
at the key that holds it.  What it cannot find is ``None``: the caller names the file alone.
"""

from __future__ import annotations

import functools
import json
import re

__all__ = ["locate", "split_key"]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"(\[\d+\])+$")

#: (line, column), both counted from 1.
Position = tuple[int, int]


class _Text:
    """A cursor over the text of a TOML file."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def peek(self, n: int = 1) -> str:
        return self.text[self.i : self.i + n]

    def position(self) -> Position:
        line = self.text.count("\n", 0, self.i) + 1
        return line, self.i - (self.text.rfind("\n", 0, self.i) + 1) + 1

    def blanks(self) -> None:
        """Skip spaces and tabs."""
        while self.peek() in (" ", "\t") and self.peek():
            self.i += 1

    def rest_of_line(self) -> None:
        end = self.text.find("\n", self.i)
        self.i = len(self.text) if end < 0 else end + 1

    def string(self) -> str | None:
        """A quoted string at the cursor (the cursor moves past it), or ``None``."""
        for quote in ('"""', "'''"):
            if self.peek(3) == quote:
                end = self.i + 3
                while True:
                    end = self.text.find(quote, end)
                    if end < 0:
                        self.i = len(self.text)
                        return None
                    if quote == "'''" or not _escaped(self.text, end):
                        break
                    end += 1
                while self.text[end + 3 : end + 4] == quote[0]:  # """a"""" ends at the last
                    end += 1
                body, self.i = self.text[self.i + 3 : end], end + 3
                return body
        quote = self.peek()
        if quote not in ('"', "'"):
            return None
        end = self.i + 1
        while end < len(self.text) and self.text[end] != "\n":
            if self.text[end] == quote and (quote == "'" or not _escaped(self.text, end)):
                break
            end += 1
        else:
            return None
        body, self.i = self.text[self.i + 1 : end], end + 1
        if quote == '"':
            try:
                decoded: str = json.loads(f'"{body}"')
                return decoded
            except ValueError:
                return body
        return body

    def key(self) -> tuple[tuple[str, ...], Position] | None:
        """A dotted key at the cursor and where it starts, or ``None``."""
        start = self.position()
        parts = []
        while True:
            self.blanks()
            bare = _BARE.match(self.text, self.i)
            if bare:
                parts.append(bare.group())
                self.i = bare.end()
            else:
                part = self.string()
                if part is None:
                    return None
                parts.append(part)
            self.blanks()
            if self.peek() != ".":
                return tuple(parts), start
            self.i += 1

    def value(self) -> None:
        """Skip a value: to the end of its line, or of its array or inline table."""
        depth = 0
        while self.i < len(self.text):
            c = self.peek()
            if c in ('"', "'"):
                if self.string() is None:
                    self.i += 1
                continue
            if c == "#":
                end = self.text.find("\n", self.i)
                self.i = len(self.text) if end < 0 else end
                continue
            if c == "\n" and depth <= 0:
                self.i += 1
                return
            depth += (c in "[{") - (c in "]}")
            self.i += 1


def _escaped(text: str, at: int) -> bool:
    """Whether the quote at ``at`` is escaped (an odd number of backslashes before it)."""
    n = 0
    while at - n - 1 >= 0 and text[at - n - 1] == "\\":
        n += 1
    return n % 2 == 1


@functools.lru_cache(maxsize=8)
def _positions(text: str) -> tuple[dict[tuple[str, ...], Position], set[tuple[str, ...]]]:
    """Every table and key of ``text``: path -> where its key starts (the first time), and
    the paths that hold a value (``key = ...``, not a header)."""
    found: dict[tuple[str, ...], Position] = {}
    valued: set[tuple[str, ...]] = set()
    cursor = _Text(text)
    table: tuple[str, ...] = ()
    while cursor.i < len(text):
        cursor.blanks()
        c = cursor.peek()
        if c in ("\n", "\r", "#", ""):
            cursor.rest_of_line()
            continue
        if c == "[":
            start = cursor.position()  # a header is located at its bracket
            cursor.i += 2 if cursor.peek(2) == "[[" else 1
            got = cursor.key()
            if got is not None:
                table = got[0]
                for n in range(1, len(table) + 1):  # [a.b] also defines the table a
                    found.setdefault(table[:n], start)
            cursor.rest_of_line()
            continue
        got = cursor.key()
        cursor.blanks()
        if got is None or cursor.peek() != "=":
            cursor.rest_of_line()
            continue
        cursor.i += 1
        cursor.blanks()
        path = table + got[0]
        for n in range(len(table) + 1, len(path) + 1):  # a.b = 1 also defines the table a
            found.setdefault(path[:n], got[1])
        valued.add(path)
        cursor.value()
    return found, valued


def split_key(dotted: str) -> tuple[str, ...] | None:
    """``tool.lsmcheck.thresholds.algorithm."a:b"`` as its parts (an index such as
    ``implementations[0]`` is dropped); ``None`` if it is not a TOML key."""
    cursor = _Text(_INDEX.sub("", dotted))
    got = cursor.key()
    return None if got is None or cursor.i != len(cursor.text) else got[0]


def locate(text: str, dotted: str) -> Position | None:
    """Where the key ``dotted`` is written in ``text`` (the line and column of the key), or,
    for a key inside an inline table or an array, of the key holding it; ``None`` if it is
    not there."""
    path = split_key(dotted)
    if not path:
        return None
    found, valued = _positions(text)
    if path in found:
        return found[path]
    for n in range(len(path) - 1, 0, -1):
        if path[:n] in valued:
            return found[path[:n]]
    return None
