""".npy and .npz input: real float or integer arrays, vectors along the last axis.

A C-order ``.npy`` file is read in blocks of whole rows with plain reads, so a file larger
than memory streams; a Fortran-order one is memory-mapped.  The members of an ``.npz``
archive are read straight from the zip, their declared sizes and headers checked before
anything is decompressed.  Nothing is ever unpickled.
"""

from __future__ import annotations

import lzma
import math
import os
import stat
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt

from lsmcheck.errors import InputError
from lsmcheck.sources.common import _OUT_OF_RANGE, _one_line
from lsmcheck.vectors import Vector

#: The largest uncompressed ``.npz`` member read (a member is loaded whole).
MAX_NPZ_MEMBER_BYTES = 256 << 20

_UNSUPPORTED_KINDS = {
    "b": "bool",
    "c": "complex",
    "U": "string",
    "S": "bytes",
    "V": "structured",
    "M": "datetime",
    "m": "timedelta",
}


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
    except tokenize.TokenError:  # its args are a tuple (message, position) in the header text
        raise InputError(where, "not a valid .npy array: its header is cut short") from None
    except (ValueError, SyntaxError, TypeError) as error:
        # ValueError includes UnicodeDecodeError; numpy tokenizes and literal-evals the header,
        # so a corrupt one can also raise SyntaxError (or TokenError, above).
        if str(error).endswith(("descriptor: '<f1'", "descriptor: '>f1'")):  # float8_e5m2
            raise InputError(where, _raw_bytes(1, "<f1")) from None
        raise InputError(where, f"not a valid .npy array: {_one_line(error)}") from None
    return shape, dtype


def _raw_bytes(size: int, dtype: str) -> str:
    """What to say of an array of ml_dtypes' (``np.save`` writes bfloat16 as ``|V2``, float8
    as ``|V1`` or ``<f1``: headers that do not say which format they hold)."""
    return (
        f"raw {size}-byte values (dtype {dtype}) do not say their format: numpy saves "
        "ml_dtypes' bfloat16 and float8 arrays so; save them as float32 (exact for every one of "
        "them) and audit with -d bfloat16 or -d float8_..."
    )


def _check_array(shape: tuple[int, ...], dtype: np.dtype[Any], where: str) -> None:
    """Reject dtypes and shapes that do not hold at least one real logit vector."""
    if dtype.hasobject:
        raise InputError(where, "object arrays are not supported; lsmcheck never unpickles")
    if dtype.names is not None or dtype.kind not in "fiu":
        kind = _UNSUPPORTED_KINDS.get(dtype.kind, "non-numeric")
        if dtype.names is not None:
            kind = "structured"
        elif dtype.kind == "V" and dtype.itemsize in (1, 2):  # how np.save writes ml_dtypes
            raise InputError(where, _raw_bytes(dtype.itemsize, str(dtype)))
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
    if any(n < 0 for n in shape):  # a forged header: numpy reads it, rows would be negative
        raise InputError(where, f"negative dimension in the array's shape {shape}")
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
