"""Property tests: every reader either yields vectors or raises a one-line InputError.

Arbitrary bytes and structured near-valid inputs go to each reader (CSV, TSV, JSON, .npy,
.npz, an unknown extension that is sniffed, standard input and ``-l/--logits``).  Any other
exception is a bug in :mod:`lsmcheck.sources`.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsmcheck.errors import InputError
from lsmcheck.sources import parse_logits_flag, read_sources

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EXTENSIONS = [".csv", ".tsv", ".txt", ".json", ".npy", ".npz", ".dat"]


def _audit_or_refuse(call: object) -> None:
    """Run ``call``; vectors must be 1-D float64 and non-empty, or the error one line."""
    assert callable(call)
    try:
        vectors = call()
    except InputError as error:
        text = str(error)
        assert text and "\n" not in text and "\r" not in text, repr(text)
        return
    assert vectors
    for vector in vectors:
        assert vector.values.dtype == np.float64
        assert vector.values.ndim == 1 and vector.values.size >= 1


def _write(tmp_path: Path, extension: str, data: bytes) -> str:
    path = tmp_path / f"input{extension}"
    path.write_bytes(data)
    return str(path)


@FUZZ
@given(data=st.binary(max_size=400), extension=st.sampled_from(EXTENSIONS))
def test_arbitrary_bytes_in_a_file(tmp_path: Path, data: bytes, extension: str) -> None:
    path = _write(tmp_path, extension, data)
    _audit_or_refuse(lambda: read_sources([path]))


_TOKEN = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**400), 10**400).map(str),
    st.sampled_from(["inf", "-Infinity", "nan", "1e999", "-1e-999", "1_0", "0x1", "", " ", "#"]),
    st.text(max_size=6),
)
_SEPARATOR = st.sampled_from([",", "\t", " ", ", ", ",,", ";", "\t ", ""])
_LINE_END = st.sampled_from(["\n", "\r\n", "\r", ""])


@st.composite
def _delimited_text(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        tokens = draw(st.lists(_TOKEN, max_size=6))
        separator = draw(_SEPARATOR)
        lines.append(separator.join(tokens) + draw(_LINE_END))
    prefix = draw(st.sampled_from(["", "\ufeff", "logit_0,logit_1\n", "# c\n"]))
    return prefix + "".join(lines)


@FUZZ
@given(text=_delimited_text(), extension=st.sampled_from([".csv", ".tsv", ".txt", ".dat"]))
def test_near_valid_delimited_text(tmp_path: Path, text: str, extension: str) -> None:
    path = _write(tmp_path, extension, text.encode("utf-8", "surrogatepass"))
    _audit_or_refuse(lambda: read_sources([path]))


@FUZZ
@given(text=_delimited_text())
def test_near_valid_standard_input(text: str) -> None:
    _audit_or_refuse(lambda: read_sources(["-"], stdin=io.StringIO(text)))


@FUZZ
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_on_standard_input(data: bytes) -> None:
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
    _audit_or_refuse(lambda: read_sources(["-"], stdin=stream))


@FUZZ
@given(text=st.text(max_size=200))
def test_logits_flag(text: str) -> None:
    _audit_or_refuse(lambda: [parse_logits_flag(text, 0)])
    _audit_or_refuse(lambda: read_sources([], logits=[text]))


_JSON_LEAF = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**400), 10**400),
    st.booleans(),
    st.none(),
    st.sampled_from(["inf", "-inf", "NaN", "x", ""]),
)
_JSON_VALUE = st.recursive(
    _JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=2)
    ),
    max_leaves=20,
)


@FUZZ
@given(value=_JSON_VALUE, cut=st.integers(0, 400), mangle=st.booleans())
def test_near_valid_json(tmp_path: Path, value: object, cut: int, mangle: bool) -> None:
    text = json.dumps(value)
    if mangle:
        text = text[:cut] + text[cut + 1 :]
    path = _write(tmp_path, ".json", text.encode())
    _audit_or_refuse(lambda: read_sources([path]))


_DTYPES = st.sampled_from(
    ["<f8", ">f4", "<f2", "<i4", "|u1", "|b1", "<c16", "|O", "<U3", "|V8", "<M8[s]", "<f16"]
)
_SHAPE = st.lists(st.integers(0, 4), max_size=3).map(tuple)


def _npy_bytes(descr: str, shape: tuple[int, ...], fortran: bool, payload: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


@FUZZ
@given(
    descr=_DTYPES,
    shape=_SHAPE,
    fortran=st.booleans(),
    payload=st.binary(max_size=200),
    mutate=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=3),
    as_npz=st.booleans(),
)
def test_near_valid_npy_and_npz(
    tmp_path: Path,
    descr: str,
    shape: tuple[int, ...],
    fortran: bool,
    payload: bytes,
    mutate: list[tuple[int, int]],
    as_npz: bool,
) -> None:
    data = bytearray(_npy_bytes(descr, shape, fortran, payload))
    for position, byte in mutate:
        if position < len(data):
            data[position] = byte
    if as_npz:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("a.npy", bytes(data))
        path = _write(tmp_path, ".npz", buffer.getvalue())
    else:
        path = _write(tmp_path, ".npy", bytes(data))
    _audit_or_refuse(lambda: read_sources([path]))
