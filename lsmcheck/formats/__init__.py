"""Output formats: one module per format, each a function ``(Report, Style) -> str``.

A formatter returns text and never writes: only the CLI touches files and streams.  The
``--format`` choice is built from :data:`FORMATTERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from lsmcheck.errors import UsageError
from lsmcheck.formats import csv_format, github, json_format, junit, markdown, table
from lsmcheck.formats.style import Style
from lsmcheck.results import Report

__all__ = ["FORMATTERS", "Formatter", "Style", "render"]

Formatter = Callable[[Report, Style], str]

FORMATTERS: dict[str, Formatter] = {
    "table": table.render,
    "json": json_format.render,
    "junit": junit.render,
    "github": github.render,
    "markdown": markdown.render,
    "csv": csv_format.render,
}


def render(name: str, report: Report, style: Style) -> str:
    """``report`` in the format ``name``."""
    try:
        formatter = FORMATTERS[name]
    except KeyError:
        raise UsageError(
            f"--format: unknown format {name!r} (choose from {', '.join(FORMATTERS)})"
        ) from None
    return formatter(report, style)
