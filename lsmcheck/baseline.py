"""Baseline files: the figures of one run, recorded so that later runs fail only on regressions.

The file is JSON that diffs well in review: one result per line, results sorted by
(source, vector, algorithm, dtype), keys sorted within each line, no timestamps and no
version numbers that would change on every run::

    {
      "schema": "lsmcheck.baseline/1",
      "results": [
        {"algorithm": "softmax_naive", "dtype": "float16", "kind": "softmax", "line": 2, ...},
        ...
      ]
    }

Non-finite figures are written as the strings ``"inf"`` and ``"nan"`` (as in the report).  The
comparison itself is :func:`lsmcheck.gate.compare`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsmcheck.errors import InputError, UsageError
from lsmcheck.report import Recorded, Report, recorded_to_dict
from lsmcheck.results import Result, Status

__all__ = ["SCHEMA", "Baseline", "dumps", "load", "loads", "record"]

SCHEMA = "lsmcheck.baseline/1"


@dataclass(frozen=True)
class Baseline:
    """A recorded run.

    Attributes:
        path: the file it was read from (shown in reports).
        results: one entry per recorded result, unique by (source, vector, algorithm, dtype).
    """

    path: str
    results: tuple[Recorded, ...]


_INT_FIELDS = ("vector", "overflow", "underflow", "nan")
_STR_FIELDS = ("source", "algorithm", "kind", "dtype", "status")
_STATUSES = tuple(s.value for s in Status)


def record(result: Result) -> Recorded:
    """What a baseline keeps of one result."""
    return Recorded(
        source=result.source,
        vector=result.vector,
        line=result.line,
        algorithm=result.algorithm,
        kind=result.kind,
        dtype=result.dtype,
        status=result.status.value,
        max_ulp=result.max_ulp,
        max_rel_error=result.max_rel_error,
        overflow=result.overflow,
        underflow=result.underflow,
        nan=result.nan,
    )


def _sort_key(r: Recorded) -> tuple[str, int, str, str]:
    return r.key


def dumps(results: Report | Iterable[Result]) -> str:
    """The baseline file for ``results`` (a report or its results), ending with a newline."""
    if isinstance(results, Report) and results.aggregated is not None:
        raise UsageError(
            "--save-baseline: a baseline records every result, and this report kept only some "
            "of them (aggregated); audit without --keep"
        )
    items = results.results if isinstance(results, Report) else results
    recorded = sorted((record(r) for r in items), key=_sort_key)
    lines = [
        json.dumps(recorded_to_dict(r), sort_keys=True, allow_nan=False, ensure_ascii=False)
        for r in recorded
    ]
    body = ",\n".join(f"    {line}" for line in lines)
    results_text = f"[\n{body}\n  ]" if lines else "[]"
    return f'{{\n  "schema": "{SCHEMA}",\n  "results": {results_text}\n}}\n'


def load(path: str) -> Baseline:
    """Read a baseline file; :class:`InputError` naming the file for any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such baseline file (create one with --save-baseline)") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a baseline file") from None
    except OSError as e:
        raise InputError(path, f"cannot read the baseline: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a baseline file (not UTF-8 text)") from None
    return loads(text, path)


def loads(text: str, path: str = "baseline") -> Baseline:
    """Parse the text of a baseline file (``path`` names it in errors)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}:{e.colno}", f"invalid JSON: {e.msg}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise InputError(path, f'not a baseline file (expected "schema": "{SCHEMA}")')
    entries = document.get("results")
    if not isinstance(entries, list):
        raise InputError(path, '"results" must be an array')
    out: dict[tuple[str, int, str, str], Recorded] = {}
    for i, entry in enumerate(entries):
        r = _entry(entry, f"{path}: results[{i}]")
        if r.key in out:
            raise InputError(f"{path}: results[{i}]", f"duplicate entry for {r.label}")
        out[r.key] = r
    return Baseline(path, tuple(out.values()))


def _entry(entry: Any, where: str) -> Recorded:
    if not isinstance(entry, dict):
        raise InputError(where, "expected an object")
    for name in _STR_FIELDS:
        if not isinstance(entry.get(name), str):
            raise InputError(where, f"{name!r} must be a string")
    for name in _INT_FIELDS:
        value = entry.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(where, f"{name!r} must be a whole number >= 0")
    line = entry.get("line")
    if line is not None and (isinstance(line, bool) or not isinstance(line, int)):
        raise InputError(where, "'line' must be a whole number or null")
    if entry["status"] not in _STATUSES:
        raise InputError(
            where, f"'status' must be one of {', '.join(_STATUSES)}, got {entry['status']!r}"
        )
    return Recorded(
        source=entry["source"],
        vector=entry["vector"],
        line=line,
        algorithm=entry["algorithm"],
        kind=entry["kind"],
        dtype=entry["dtype"],
        status=entry["status"],
        max_ulp=_float(entry.get("max_ulp"), where, "max_ulp"),
        max_rel_error=_float(entry.get("max_rel_error"), where, "max_rel_error"),
        overflow=entry["overflow"],
        underflow=entry["underflow"],
        nan=entry["nan"],
    )


def _float(value: Any, where: str, name: str) -> float | None:
    if value is None:
        return None
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(where, f"{name!r} must be a number, a string inf/nan, or null")
    result = float(value)
    if math.isnan(result):
        raise InputError(where, f"{name!r} must be a number")
    if result < 0:  # an error is never negative
        raise InputError(where, f"{name!r} must be >= 0, got {result:g}")
    return result
