"""``--format csv``: one row per result, for spreadsheets and pandas.

Columns follow the JSON report's result fields; ``failures`` joins the broken thresholds with
``"; "``.  Non-finite numbers are written ``inf``/``nan``; absent ones are empty.
"""

from __future__ import annotations

import csv
import io

from lsmcheck.formats.style import Style
from lsmcheck.report import Report
from lsmcheck.results import Result

COLUMNS: tuple[str, ...] = (
    "source",
    "vector",
    "line",
    "algorithm",
    "kind",
    "dtype",
    "status",
    "max_ulp",
    "mean_ulp",
    "max_abs_error",
    "max_rel_error",
    "overflow",
    "underflow",
    "underflow_benign",
    "nan",
    "sum_error",
    "argmax_preserved",
    "worst_index",
    "failures",
    "reason",
    "baseline",
    "baseline_note",
    # added later, so at the end: columns before them keep their places
    "length",
    "target",
    "bound_ratio",
    "bound_rel_error",
)


def _cell(r: Result, column: str) -> str:
    value = getattr(r, column)
    if value is None:
        return ""
    if column == "failures":
        return "; ".join(value)
    if column == "status":
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render(report: Report, style: Style) -> str:
    """The results as CSV with a header row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in report.results:
        writer.writerow([_cell(r, c) for c in COLUMNS])
    return buf.getvalue()
