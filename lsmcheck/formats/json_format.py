"""``--format json``: the ``lsmcheck.report/1`` document (see :mod:`lsmcheck.report`)."""

from __future__ import annotations

from lsmcheck.formats.style import Style
from lsmcheck.report import Report


def render(report: Report, style: Style) -> str:
    """The report as indented, strict JSON, ending with a newline."""
    return report.to_json(indent=2) + "\n"
