"""The fast path of the CSV/TSV reader: many whole lines converted at once by numpy.

:mod:`lsmcheck.sources` reads delimited text in blocks of whole lines.  For each block it asks
:func:`certified_end` how far the lines are *plain*: nothing on them but decimal numbers in the
reader's grammar, the separator, spaces and line ends.  Those lines are converted here by
:func:`convert` in a few numpy calls; every other line (a header, a comment, ``inf`` or ``nan``,
a tab in a CSV, non-ASCII text, an empty field, a bad token...) goes to the reader's exact
token-by-token path, which is also what produces every error message.  So this module never
decides what a line means: it only speeds up the lines whose meaning is plain.

Why the two paths agree bit for bit: a certified token matches ``sources.common._DECIMAL``,
whose language is exactly what Python's ``float`` accepts over these bytes, and numpy's text
conversion (``np.fromstring``, ``NumPyOS_ascii_strtod``) calls the same correctly rounded
routine as ``float`` (CPython's ``PyOS_string_to_double``).  A token beyond float64's range
converts to an infinity here; the caller hands its line to the exact path, which refuses it.
Fields are split the same way too: on a line with the separator, at the separator with the
spaces around it; on a line without, at runs of spaces; leading and trailing spaces and one
``\\r`` before the ``\\n`` are dropped.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

__all__ = ["certified_end", "convert"]

# ``sources.common._DECIMAL`` with possessive quantifiers: the same language (a token never
# contains the separator, a space or a line end, so nothing a quantifier gives up could help a
# match), and no backtracking, so a block of megabytes is matched in linear time.
_TOKEN = rb"[+-]?+(?:[0-9]++\.?+[0-9]*+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+"


def _plain_lines(separator: bytes) -> re.Pattern[bytes]:
    """Any number of plain lines, each ending in ``\\n``: blank, or tokens separated either by
    ``separator`` (with spaces around it) or, on a line without it, by spaces."""
    by_separator = rb"(?: *+" + re.escape(separator) + rb" *+" + _TOKEN + rb")++"
    by_spaces = rb"(?: ++" + _TOKEN + rb")*+"
    line = rb" *+(?:" + _TOKEN + rb"(?:" + by_separator + rb"|" + by_spaces + rb"))?+ *+\r?+\n"
    return re.compile(rb"(?:" + line + rb")*+")


_PLAIN_LINES = {b",": _plain_lines(b","), b"\t": _plain_lines(b"\t")}
_COMMA_TO_SPACE = bytes.maketrans(b",", b" ")

FloatArray = npt.NDArray[np.float64]


def certified_end(data: bytes, pos: int, separator: bytes) -> int:
    """The offset just past the longest run of plain lines of ``data`` starting at ``pos``.

    Args:
        data: whole lines, each ending in ``\\n``.
        pos: the offset of a line start.
        separator: ``b","`` (CSV) or ``b"\\t"`` (TSV).

    Returns:
        ``pos`` when the line at ``pos`` is not plain, else the offset of the first line that is
        not (or ``len(data)``).
    """
    match = _PLAIN_LINES[separator].match(data, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def convert(lines: bytes, separator: bytes) -> tuple[FloatArray, list[int]] | None:
    """Convert plain lines (certified by :func:`certified_end`) to float64.

    Returns:
        Every token's value in order (correctly rounded; an infinity for a token beyond
        float64's range) and how many tokens each line holds (0 for a blank line); or ``None``
        if numpy read a different number of values than there are tokens, which would be a bug
        here: the caller then reads the lines token by token.
    """
    # Counting per line in Python costs less than numpy calls on a few lines and about the
    # same on wide ones (bytes.count runs at memory speed); the caller loops over lines anyway.
    counts = [
        line.count(separator) + 1 if separator in line else len(line.split())
        for line in lines.split(b"\n")[:-1]  # the text ends in "\n"
    ]
    text = lines.translate(_COMMA_TO_SPACE) if separator == b"," else lines
    try:
        values = np.fromstring(text, dtype=np.float64, sep=" ")
    except ValueError:  # unmatched data: certification let through something it should not
        return None
    if values.size != sum(counts):
        return None
    return values, counts
