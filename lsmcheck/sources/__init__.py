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

The readers live in submodules, one a format: :mod:`~lsmcheck.sources.text` (CSV, TSV,
standard input, ``--logits``), :mod:`~lsmcheck.sources.jsonfile`,
:mod:`~lsmcheck.sources.arrays` (``.npy``, ``.npz``), and :mod:`~lsmcheck.sources.common` (the
number token and the errors they share).  This module opens a source, picks its reader and
holds the public entry points.  The size limits are re-exported here; each is read in the
module of its reader (patch it there).
"""

from __future__ import annotations

import functools
import io
import math
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

import numpy as np

from lsmcheck.errors import InputError
from lsmcheck.sources.arrays import (
    _ZIP_ERRORS,
    _npy_bytes,
    _npy_header,
    _read_npy,
    _read_npz,
)
from lsmcheck.sources.arrays import MAX_NPZ_MEMBER_BYTES as MAX_NPZ_MEMBER_BYTES
from lsmcheck.sources.common import _BINARY_FILE, _UTF8_BOM, _os_error
from lsmcheck.sources.jsonfile import MAX_JSON_BYTES as MAX_JSON_BYTES
from lsmcheck.sources.jsonfile import _read_json
from lsmcheck.sources.text import (
    _COMMA_OR_WHITESPACE,
    _Delimited,
    _file_blocks,
    _file_line,
    _read_delimited,
    _split_fields,
    _stream_blocks,
    _stream_line,
    parse_logits_flag,
)
from lsmcheck.sources.text import MAX_LINE_BYTES as MAX_LINE_BYTES
from lsmcheck.vectors import Vector

__all__ = [
    "count_elements",
    "iter_source",
    "iter_sources",
    "longest_vectors",
    "parse_logits_flag",
    "read_sources",
]

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
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_HEAD_SIZE = 8192

# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------


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


def _check_inputs(paths: Sequence[str], logits: Sequence[str]) -> None:
    """Something to read, standard input at most once, and no file twice (however spelt: its
    results would be audited, reported and recorded in a baseline twice)."""
    if not paths and not logits:
        raise InputError("input", "no input: give a file, '-' for standard input, or -l/--logits")
    if list(paths).count("-") > 1:
        raise InputError("-", "standard input given more than once; it can be read only once")
    seen: set[str] = set()
    for path in paths:
        key = path if path == "-" else os.path.realpath(path)
        if key in seen:
            raise InputError(path, "given twice as an input; name each file once")
        seen.add(key)


def iter_sources(
    paths: Sequence[str], logits: Sequence[str] = (), stdin: TextIO | None = None
) -> Iterator[Vector]:
    """:func:`read_sources`, lazily: vectors are read as they are consumed (for streaming).

    The checks on the arguments happen at once; a malformed source raises while iterating.
    """
    _check_inputs(paths, logits)
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
    _check_inputs(paths, logits)
    vectors: list[Vector] = []
    for path in paths:
        vectors.extend(iter_source(path, stdin))
    for occurrence, text in enumerate(logits):
        vectors.append(parse_logits_flag(text, occurrence))
    return vectors
