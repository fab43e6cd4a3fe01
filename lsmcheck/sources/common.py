"""What the readers of :mod:`lsmcheck.sources` share: one number token, and their errors.

The token rules (:func:`_parse_token`) are the grammar of a CSV, TSV or ``--logits`` field
(:mod:`lsmcheck.fastcsv` certifies the same language); JSON shares their special values
(``inf``, ``nan``) and the message for a number beyond float64.  The helpers at the end build
the :class:`~lsmcheck.errors.InputError` of a failed read (:func:`_os_error`) and of a byte
that is not UTF-8 (:func:`_utf8_error`), and put an exception's message on one line.
"""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

from lsmcheck.errors import InputError

FloatArray = npt.NDArray[np.float64]

_UTF8_BOM = b"\xef\xbb\xbf"
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
# Errors
# ---------------------------------------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    """An exception's message with all whitespace runs (including newlines) collapsed."""
    return " ".join(str(error).split())


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


def _utf8_error(where: str, line_number: int, line: bytes, start: int) -> InputError:
    """Locate the byte at offset ``start`` of ``line`` that is not UTF-8 (column in characters)."""
    column = len(line[:start].decode("utf-8", "replace")) + 1
    return InputError(
        f"{where}:{line_number}:{column}",
        f"not valid UTF-8 (byte 0x{line[start]:02x}); expected UTF-8 text",
    )
