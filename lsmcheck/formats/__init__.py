"""Output formats: one module per format, each a function ``(Report, Style) -> str``.

A formatter returns text and never writes: only the CLI touches files and streams.  The
``--format`` choice is built from :data:`FORMAT_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from lsmcheck.errors import UsageError
from lsmcheck.formats.style import Style
from lsmcheck.report import Report

__all__ = ["FORMAT_MODULES", "Formatter", "Style", "formatter", "render"]

Formatter = Callable[[Report, Style], str]

#: Each format and the module whose ``render`` writes it: imported when used, so that a run
#: does not pay for the formats it does not write (JUnit's XML library, the table's rich).
FORMAT_MODULES: dict[str, str] = {
    "table": "lsmcheck.formats.table",
    "json": "lsmcheck.formats.json_format",
    "junit": "lsmcheck.formats.junit",
    "github": "lsmcheck.formats.github",
    "markdown": "lsmcheck.formats.markdown",
    "csv": "lsmcheck.formats.csv_format",
}


def formatter(name: str) -> Formatter:
    """The function that writes the format ``name``."""
    try:
        module = FORMAT_MODULES[name]
    except KeyError:
        raise UsageError(
            f"--format: unknown format {name!r} (choose from {', '.join(FORMAT_MODULES)})"
        ) from None
    render: Formatter = importlib.import_module(module).render
    return render


def render(name: str, report: Report, style: Style) -> str:
    """``report`` in the format ``name``."""
    return formatter(name)(report, style)
