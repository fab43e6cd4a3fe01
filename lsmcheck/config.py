"""The project's settings: ``[tool.lsmcheck]`` in ``pyproject.toml``, or ``lsmcheck.toml``.

:func:`discover` walks up from the current directory and takes, in the first directory that
has one, ``lsmcheck.toml`` (its top-level keys) or else a ``pyproject.toml`` with a
``[tool.lsmcheck]`` table (a ``pyproject.toml`` without that table is passed over).
``--config PATH`` names the file instead; ``--no-config`` ignores every file.

Keys (every one optional)::

    inputs = ["cases/logits.csv"]            # logit files, relative to the config file
    algorithms = ["log_softmax_stable"]      # built-in algorithms ("all" for every one)
    implementations = ["log_softmax=mypkg.ops:fused_log_softmax"]
    impl_timeout = 60                        # seconds per call of an implementation (0: none)
    impl_memory = "2G"                       # memory cap of each implementation's process
    dtypes = ["float16", "float32"]
    precision = 113                          # first mpmath precision of the reference
    format = "table"                         # what goes to standard output
    output_format = ["junit:lsmcheck.xml"]   # FORMAT:PATH files, relative to the config file
    baseline = "lsmcheck-baseline.json"      # compare with this baseline (relative)
    baseline_tolerance = 1.0                 # ulp max_ulp may grow before it regresses

    [thresholds]                             # [tool.lsmcheck.thresholds] in pyproject.toml
    max_ulp = 4                              # for every result...
    max_rel_error = 1e-3
    fail_on = ["overflow", "nan"]            # = max_overflow = 0 and max_nan = 0
    max_underflow = 2                        # elements per result
    [thresholds.dtype.float64]               # ...overridden per dtype,
    max_ulp = 1
    [thresholds.algorithm."mypkg.ops:fused_log_softmax"]      # per algorithm,
    max_ulp = 2
    [thresholds.algorithm."mypkg.ops:fused_log_softmax".dtype.float16]   # and both.
    max_ulp = 8

An unknown key or a value of the wrong type is a :class:`ConfigError` (exit 2) that names the
file, the line and column of the key (``pyproject.toml:12:1: tool.lsmcheck.thresholds.max_ulp:
expected a number ...``; :mod:`lsmcheck.tomlpos` finds them, as tomllib does not say) and the
key.  Command-line flags override the file (see :mod:`lsmcheck.cli.run`).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsmcheck.dtypes import get_format
from lsmcheck.errors import UsageError
from lsmcheck.gate import FAIL_ON_CHOICES, FAIL_ON_NAMES, UNAUDITED, Limits, Rule, nonnegative
from lsmcheck.impllimits import parse_size
from lsmcheck.tomlpos import locate
from lsmcheck.userimpl import parse_spec

__all__ = ["Config", "ConfigError", "discover", "find", "load"]

CONFIG_NAMES = ("lsmcheck.toml", "pyproject.toml")

_TOP_KEYS = (
    "inputs",
    "algorithms",
    "implementations",
    "impl_timeout",
    "impl_memory",
    "dtypes",
    "precision",
    "format",
    "output_format",
    "baseline",
    "baseline_tolerance",
    "thresholds",
)
_LIMIT_KEYS = ("max_ulp", "max_rel_error", "max_overflow", "max_underflow", "max_nan", "fail_on")


def _name(text: str) -> str:
    """An input path as the config writes it, tidied (``./a//b.csv`` -> ``a/b.csv``)."""
    return text if text == "-" else os.path.normpath(text)


def _at(shown: str, text: str | None, dotted: str) -> str:
    """``FILE:LINE:COL`` of the key ``dotted`` in the file's ``text``; ``FILE`` where it is not
    found (or the file was not read)."""
    found = None if text is None else locate(text, dotted)
    return shown if found is None else f"{shown}:{found[0]}:{found[1]}"


class ConfigError(UsageError):
    """A config file is unreadable, not TOML, or has an unknown key or a wrong value."""


@dataclass(frozen=True)
class Config:
    """The settings one config file makes; ``None`` (or empty) where it says nothing.

    Attributes:
        path: the file, as shown in messages (``None`` when no file was used).
        table: the table the keys live in: ``"tool.lsmcheck"`` in ``pyproject.toml``, ``""``
            in ``lsmcheck.toml``.
        inputs, baseline, output_format: paths already made relative to the current
            directory (the file writes them relative to itself).
        input_names: ``inputs`` as the file writes them (relative to itself): the names of
            their vectors in reports, the same from any directory, so that a baseline made in
            one directory matches a run from another.
        rules: the thresholds, one :class:`~lsmcheck.gate.Rule` per table.
        text: the file's text, to locate keys in messages.
    """

    path: str | None = None
    table: str = ""
    inputs: tuple[str, ...] | None = None
    input_names: tuple[str, ...] | None = None
    algorithms: tuple[str, ...] | None = None
    implementations: tuple[str, ...] | None = None
    impl_timeout: float | None = None
    impl_memory: str | int | None = None
    dtypes: tuple[str, ...] | None = None
    precision: int | None = None
    format: str | None = None
    output_format: tuple[str, ...] | None = None
    baseline: str | None = None
    baseline_tolerance: float | None = None
    rules: tuple[Rule, ...] = ()
    text: str | None = field(default=None, repr=False, compare=False)

    @property
    def directory(self) -> str | None:
        """The directory of the file (implementations may be imported from it)."""
        return None if self.path is None else os.path.dirname(os.path.abspath(self.path))

    @property
    def search(self) -> tuple[str, ...]:
        """Where the configured implementations are looked for first: the file's directory."""
        return () if self.directory is None else (self.directory,)

    def where(self, key: str) -> str:
        """``"pyproject.toml:7:1: tool.lsmcheck.format"``: a key's location, for messages."""
        return self.at(_dotted(self.table, key))

    def at(self, dotted: str) -> str:
        """``"pyproject.toml:7:1: tool.lsmcheck.format"`` for a key's full dotted name."""
        return f"{_at(str(self.path), self.text, dotted)}: {dotted}"

    def algorithm_names(self) -> set[str]:
        """The ``module:function`` names of the configured implementations."""
        return {spec.split("=", 1)[1].strip() for spec in self.implementations or ()}


def _dotted(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _show(path: Path) -> str:
    """A path for messages: relative to the current directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


_TOML_POSITION = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.DOTALL)
_AT_END = " (at end of document)"


def _read(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config: {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config: {path}: is a directory") from None
    except OSError as e:
        raise ConfigError(f"{_show(path)}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{_show(path)}: not UTF-8 text: {e.reason}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        position, message = _toml_position(str(e), text)
        raise ConfigError(f"{_show(path)}{position}: invalid TOML: {message}") from None


def _toml_position(message: str, text: str) -> tuple[str, str]:
    """(``":LINE:COL"``, the message without it) for a tomllib error, which ends its message
    with ``(at line 3, column 7)`` or ``(at end of document)``; ``""`` if it says neither."""
    if at := _TOML_POSITION.match(message):
        return f":{at[2]}:{at[3]}", at[1]
    if message.endswith(_AT_END):
        line, last = text.count("\n") + 1, text.rpartition("\n")[2]
        return f":{line}:{len(last) + 1}", message.removesuffix(_AT_END)
    return "", message


def _section(path: Path, document: dict[str, Any]) -> tuple[str, Any] | None:
    """The lsmcheck table of a parsed file, or None for a pyproject.toml without one."""
    if path.name != "pyproject.toml":
        return "", document
    tool = document.get("tool", {})
    if not isinstance(tool, dict) or "lsmcheck" not in tool:
        return None
    return "tool.lsmcheck", tool["lsmcheck"]


def find(start: Path | None = None) -> Path | None:
    """The config file that applies in ``start`` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "lsmcheck.toml"
        if candidate.is_file():
            return candidate
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and _section(candidate, _read(candidate)[0]) is not None:
            return candidate
    return None


def discover(explicit: str | None = None, use_files: bool = True) -> Config:
    """The config in effect: ``explicit`` (``--config``), else the one :func:`find` finds."""
    if explicit is not None:
        return load(Path(explicit))
    if not use_files:
        return Config()
    found = find()
    return Config() if found is None else load(found)


def load(path: Path) -> Config:
    """Read and check one config file."""
    document, text = _read(path)
    section = _section(path, document)
    shown = _show(path)
    if section is None:
        raise ConfigError(f"{shown}: no [tool.lsmcheck] table")
    table, values = section
    check = _Checker(shown, table, path.resolve().parent, text)
    if not isinstance(values, dict):
        raise ConfigError(f"{check.at(table)}: {table}: expected a table, got {_type(values)}")
    tool = values.get("tool") if not table else None
    if isinstance(tool, dict) and "lsmcheck" in tool:  # a pyproject.toml table pasted in
        raise ConfigError(
            f"{check.at('tool.lsmcheck')}: tool.lsmcheck: {path.name} takes its keys at the top "
            "level; drop the 'tool.lsmcheck' prefix from its tables ([thresholds], not "
            "[tool.lsmcheck.thresholds]), or move them to pyproject.toml"
        )
    check.keys(values, _TOP_KEYS, table)
    # [] would audit only the built-ins: a gate that checks nothing of the user's, silently
    implementations = check.strings(values, "implementations", empty=False)
    for i, spec in enumerate(implementations or ()):
        parse_spec(spec, where=f"{check.where('implementations')}[{i}]")
    precision = check.integer(values, "precision")
    impl_timeout = check.number(values, "impl_timeout", finite=True)
    impl_memory = values.get("impl_memory")
    if impl_memory is not None:
        if isinstance(impl_memory, bool) or not isinstance(impl_memory, str | int):
            raise check.error("impl_memory", f'expected a size like "2G", got {_type(impl_memory)}')
        try:
            parse_size(impl_memory, where=check.where("impl_memory"))
        except UsageError as e:
            raise ConfigError(str(e)) from None
    tolerance = check.number(values, "baseline_tolerance", finite=True)
    fmt = values.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise check.error("format", f"expected a string, got {_type(fmt)}")
    baseline = values.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise check.error("baseline", f"expected a string, got {_type(baseline)}")
    return Config(
        path=shown,
        table=table,
        inputs=check.paths(written := check.strings(values, "inputs", empty=False)),
        input_names=None if written is None else tuple(map(_name, written)),
        algorithms=check.strings(values, "algorithms", empty=False),
        implementations=implementations,
        impl_timeout=impl_timeout,
        impl_memory=impl_memory,
        dtypes=check.dtypes(values),
        precision=precision,
        format=fmt,
        output_format=check.outputs(values),
        baseline=None if baseline is None else check.path(baseline),
        baseline_tolerance=tolerance,
        rules=check.thresholds(values.get("thresholds")),
        text=text,
    )


def _type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    text = names.get(type(value), type(value).__name__)
    if isinstance(value, str | int | float):
        return f"{value!r} ({text})"
    return text


class _Checker:
    """Type checks that name the file and the key of whatever is wrong."""

    def __init__(self, shown: str, table: str, directory: Path, text: str) -> None:
        self.shown, self.table, self.directory, self.text = shown, table, directory, text

    def at(self, dotted: str) -> str:
        """``FILE:LINE:COL`` of a key (its full dotted name), or ``FILE``."""
        return _at(self.shown, self.text, dotted)

    def where(self, key: str) -> str:
        """``FILE:LINE:COL: table.key`` for a key of the lsmcheck table."""
        dotted = _dotted(self.table, key)
        return f"{self.at(dotted)}: {dotted}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {message}")

    def keys(self, values: Mapping[str, Any], allowed: Iterable[str], prefix: str) -> None:
        allowed = list(allowed)
        for key in values:
            if key not in allowed:
                close = difflib.get_close_matches(key.replace("-", "_"), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                where = _dotted(prefix, key) if prefix else key
                raise ConfigError(f"{self.at(where)}: {where}: unknown key{hint}")

    def strings(
        self, values: Mapping[str, Any], key: str, empty: bool = True
    ) -> tuple[str, ...] | None:
        """An array of strings; ``empty=False``: one that names nothing is an error (as
        ``-d ''`` is), not the default it would silently mean."""
        value = values.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected an array of strings, got {_type(value)}")
        if not empty and not value:
            raise self.error(key, "an empty array names nothing; leave the key out for the default")
        return tuple(value)

    def number(self, values: Mapping[str, Any], key: str, finite: bool = False) -> float | None:
        value = values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_type(value)}")
        if not nonnegative(value) or (finite and math.isinf(value)):
            bound = "a finite number >= 0" if finite else "a number >= 0 (or inf: no limit)"
            raise self.error(key, f"expected {bound}, got {value!r}")
        return float(value)

    def integer(self, values: Mapping[str, Any], key: str) -> int | None:
        value = values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_type(value)}")
        return value

    def path(self, text: str) -> str:
        """A path written relative to the config file, made relative to the cwd."""
        if text == "-":
            return text
        full = os.path.normpath(os.path.join(self.directory, text))
        try:
            return os.path.relpath(full)
        except ValueError:  # another drive
            return full

    def paths(self, texts: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if texts is None else tuple(self.path(t) for t in texts)

    def dtypes(self, values: Mapping[str, Any]) -> tuple[str, ...] | None:
        names = self.strings(values, "dtypes", empty=False)
        for name in names or ():
            if name == "all":
                continue
            try:
                get_format(name)
            except UsageError as e:
                raise self.error("dtypes", str(e).removeprefix("--dtype: ")) from None
        return names

    def outputs(self, values: Mapping[str, Any]) -> tuple[str, ...] | None:
        specs = self.strings(values, "output_format")
        out = []
        for i, spec in enumerate(specs or ()):
            name, sep, target = spec.partition(":")
            if not (sep and name and target):
                raise self.error(
                    f"output_format[{i}]",
                    f"expected FORMAT:PATH (e.g. junit:report.xml), got {spec!r}",
                )
            out.append(f"{name}:{self.path(target)}")
        return None if specs is None else tuple(out)

    def thresholds(self, value: Any) -> tuple[Rule, ...]:
        if value is None:
            return ()
        table = _dotted(self.table, "thresholds")
        if not isinstance(value, dict):
            raise ConfigError(f"{self.at(table)}: {table}: expected a table, got {_type(value)}")
        rules = [self.rule(value, table, None, None, ("dtype", "algorithm"))]
        rules += self.per_dtype(value, table, None)
        algorithms = value.get("algorithm", {})
        where = _dotted(table, "algorithm")
        if not isinstance(algorithms, dict):
            raise ConfigError(
                f"{self.at(where)}: {where}: expected a table, got {_type(algorithms)}"
            )
        for name, limits in algorithms.items():
            sub = f"{where}.{_quote(name)}"
            if not isinstance(limits, dict):
                raise ConfigError(f"{self.at(sub)}: {sub}: expected a table, got {_type(limits)}")
            rules.append(self.rule(limits, sub, name, None, ("dtype",)))
            rules += self.per_dtype(limits, sub, name)
        return tuple(r for r in rules if r.limits != Limits())

    def per_dtype(self, value: Mapping[str, Any], table: str, algorithm: str | None) -> list[Rule]:
        dtypes = value.get("dtype", {})
        where = f"{table}.dtype"
        if not isinstance(dtypes, dict):
            raise ConfigError(f"{self.at(where)}: {where}: expected a table, got {_type(dtypes)}")
        rules = []
        for name, limits in dtypes.items():
            sub = f"{where}.{_quote(name)}"
            try:
                get_format(name)
            except UsageError as e:
                message = str(e).removeprefix("--dtype: ")
                raise ConfigError(f"{self.at(sub)}: {sub}: {message}") from None
            if not isinstance(limits, dict):
                raise ConfigError(f"{self.at(sub)}: {sub}: expected a table, got {_type(limits)}")
            rules.append(self.rule(limits, sub, algorithm, name, ()))
        return rules

    def rule(
        self,
        value: Mapping[str, Any],
        table: str,
        algorithm: str | None,
        dtype: str | None,
        nested: tuple[str, ...],
    ) -> Rule:
        self.keys(value, (*_LIMIT_KEYS, *nested), table)

        def bad(key: str, message: str) -> ConfigError:
            return ConfigError(f"{self.at(f'{table}.{key}')}: {table}.{key}: {message}")

        limits: dict[str, float | None] = {}
        for key in _LIMIT_KEYS[:-1]:
            v = value.get(key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise bad(key, f"expected a number, got {_type(v)}")
            count = key not in ("max_ulp", "max_rel_error")
            whole = not count or math.isinf(v) or float(v).is_integer()
            if not nonnegative(v) or not whole:
                what = "a whole number" if count else "a number"
                raise bad(key, f"expected {what} >= 0 (or inf: no limit), got {v!r}")
            limits[key] = float(v)
        unaudited = None
        fail_on = value.get("fail_on")
        if fail_on is not None:
            if not isinstance(fail_on, list) or not all(isinstance(v, str) for v in fail_on):
                raise bad("fail_on", f"expected an array of strings, got {_type(fail_on)}")
            for name in fail_on:
                if name not in FAIL_ON_NAMES:
                    choices = ", ".join(FAIL_ON_NAMES)
                    raise bad("fail_on", f"unknown event {name!r} (choose from {choices})")
                if name in (UNAUDITED, "all"):  # all: the event counts and unaudited
                    unaudited = True
                if name == UNAUDITED:
                    continue
                for kind in FAIL_ON_CHOICES if name == "all" else (name,):
                    if f"max_{kind}" in limits and limits[f"max_{kind}"] != 0:
                        raise bad("fail_on", f"names {kind!r} but max_{kind} is also set")
                    limits[f"max_{kind}"] = 0.0
        origin = f"{self.shown} [{table}]"
        return Rule(
            Limits(**limits, unaudited=unaudited), algorithm=algorithm, dtype=dtype, origin=origin
        )


def _quote(name: str) -> str:
    """A table key as TOML would need it written."""
    simple = name.replace("_", "").replace("-", "").isalnum() and name.isascii()
    return name if simple else f'"{name}"'
