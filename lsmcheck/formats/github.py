"""``--format github``: GitHub Actions workflow commands that annotate the pull request.

One ``::error`` per implementation x dtype x source that failed the gate or errored, pointing
at the input line of its worst vector (``file=`` and, for text inputs, ``line=``); one
``::error`` per group of baseline results that vanished; one ``::notice`` per case that
improved against the baseline.  The last line is the verdict in plain text.

Escaping follows the Actions toolkit (``@actions/core``, ``command.ts``): in the message
``%``, ``\\r`` and ``\\n`` become ``%25``, ``%0D`` and ``%0A``; in property values ``:`` and
``,`` also become ``%3A`` and ``%2C``.  ``file=`` is the input's path relative to the current
directory (:meth:`Style.file`: a config's inputs too, which reports name relative to the
config file), so run lsmcheck from the repository root for the annotations to land on the
files.
"""

from __future__ import annotations

from lsmcheck.formats.cases import NOT_FILES, cases, summary, vanished, verdict
from lsmcheck.formats.style import Style
from lsmcheck.report import Report


def escape_data(text: str) -> str:
    """Escape a command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command's property value."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: str | int | None) -> str:
    """``::name key=value,...::message`` with everything escaped (``None`` values left out)."""
    props = ",".join(
        f"{k}={escape_property(str(v))}" for k, v in properties.items() if v is not None
    )
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def render(report: Report, style: Style) -> str:
    """The annotations, one per line, then the verdict."""
    lines = []
    for case in cases(report):
        file = None if not case.source or case.source in NOT_FILES else style.file(case.source)
        title = f"lsmcheck: {case.algorithm} {case.dtype}"
        if case.n_failed or case.n_errors:
            worst = case.worst
            line = worst.line if file is not None and worst is not None else None
            lines.append(command("error", summary(case), file=file, line=line, title=title))
        improved = [r for r in case.results if r.baseline == "improved"]
        if improved:
            message = f"{len(improved)} improved against the baseline; " + "; ".join(
                f"{r.label}: {r.baseline_note}" for r in improved[:5]
            )
            lines.append(command("notice", message, file=file, title=title))
    for (algorithm, dtype, source), gone in vanished(report).items():
        assert report.baseline is not None
        file = None if source in NOT_FILES else style.file(source)
        message = (
            f"{len(gone)} result{'s' if len(gone) != 1 else ''} recorded in "
            f"{report.baseline.path} vanished from this run: "
            + ", ".join(r.label for r in gone[:10])
        )
        title = f"lsmcheck: {algorithm} {dtype}"
        lines.append(command("error", message, file=file, title=title))
    lines.append(f"lsmcheck: {verdict(report)}")
    return "\n".join(lines) + "\n"
