"""How text output should look; chosen by the CLI, used by the formatters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsmcheck.report import Report


@dataclass(frozen=True)
class Style:
    """How text output should look.

    Attributes:
        color: whether to emit terminal colours.
        width: the line width to lay tables out for.
        files: (source, path) pairs for the sources whose file is not where their name says,
            relative to the current directory: a config's inputs are named as the config
            writes them (relative to itself), and the formats that point CI at files (github,
            junit) need the file from where lsmcheck runs, the repository root.
    """

    color: bool = False
    width: int = 120
    files: tuple[tuple[str, str], ...] = ()

    def file(self, source: str) -> str:
        """Where the file of ``source`` is, relative to the current directory."""
        return dict(self.files).get(source, source)


def reference_text(report: Report) -> str:
    """``mpmath (certified, 113+ bits)``, or for the tiered reference what settled how much."""
    ref = report.reference
    if ref.mode != "auto":
        return f"{ref.method} (certified, {ref.precision_bits}+ bits)"
    settled = ", ".join(f"{n} {tier}" for tier, n in ref.settled.items())
    return f"auto (certified; elements settled: {settled or 'none'})"


def fmt_ulp(x: float | None) -> str:
    """A ULP figure for a table cell: ``0.41``, ``3.2e+15``, ``inf``; ``-`` when absent."""
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    if 0 < x < 0.005:  # tiny but not zero: say so rather than print 0.00
        return f"{x:.1e}"
    return f"{x:.2f}" if x < 1000 else f"{x:.3g}"


def fmt_float(x: float | None) -> str:
    """A float with 3 significant digits, ``-`` when absent."""
    if x is None:
        return "-"
    return f"{x:.3g}"
