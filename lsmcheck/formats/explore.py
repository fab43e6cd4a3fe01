"""Renderings of ``lsmcheck limits`` and ``lsmcheck hunt`` (each a function returning text)."""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from lsmcheck.explore.hunt import HuntReport
from lsmcheck.explore.limits import LIMITS, SPECS, Limit, LimitsReport
from lsmcheck.explore.search import SPREAD_PER_BINADE, SPREAD_WINDOW
from lsmcheck.formats.style import Style
from lsmcheck.formats.table import to_text
from lsmcheck.results import json_number, prose_number, repr_float

LIMITS_SCHEMA = "lsmcheck.limits/1"

_HEADERS = {
    "overflow": "overflow\nlargest logit",
    "underflow": "underflow\nlowest max logit",
    "flush": "flush\nlowest x - max",
    "spread": "spread\ntop lead within {bound} ulp",
    "length": "length\nsum overflows at",
}


def _cell(lim: Limit) -> Text:
    """The measured value: the last that holds (length: the first that breaks; a sampled
    spread: below the first break found)."""
    if not lim.applicable:
        return Text("error", "red") if lim.event.startswith("error") else Text("n/a", "dim")
    if lim.name == "length":
        if lim.first_bad is None:
            return Text(f"> {int(lim.searched)}", "dim")
        return Text(str(int(lim.first_bad)), "red")
    if lim.sampled and lim.first_bad is None:
        return Text("none found", "dim")
    if lim.first_bad is None:
        return Text("never", "dim")
    if lim.sampled and lim.first_bad > 0:
        # not every smaller lead was tried: the last that holds is below the first found
        return Text(f"< {repr_float(lim.spec.sign * lim.first_bad, lim.dtype)}", "yellow")
    if lim.last_ok is None:
        return Text(f"breaks at {lim.spec.sign * lim.first_bad:g}", "red")
    text = Text(repr_float(lim.spec.sign * lim.last_ok, lim.dtype))
    if lim.name == "flush":
        text.append(" early" if lim.early else " ok", "bold red" if lim.early else "dim")
    elif lim.breaks:
        text.stylize("red")
    else:
        text.stylize("yellow")
    return text


def _analytical(name: str, lims: list[Limit]) -> str:
    a = lims[0].analytical
    if a is None:
        return "-"
    if name == "length":
        return prose_number(a) if a < 1e7 else f"{a:.4g}"
    return f"{SPECS[name].sign * a:.6g}"


def limits_tables(report: LimitsReport) -> list[RenderableType]:
    """One table per dtype: rows are algorithms, columns limits; then the verdicts."""
    parts: list[RenderableType] = []
    names = [n for n in LIMITS if any(lim.name == n for lim in report.limits)]
    for facts in report.facts:
        lims = [lim for lim in report.limits if lim.dtype == facts.dtype]
        # the heading is a line of its own: a table's title wraps at the table's width
        heading = f"{facts.dtype}: max {facts.max:.6g}, smallest subnormal "
        parts.append(Text(heading + f"{facts.smallest_subnormal:.3g}", "bold"))
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("algorithm", no_wrap=True)
        for n in names:
            header = _HEADERS[n].format(bound=prose_number(report.ulp_bound))
            table.add_column(Text(header + f"\n{SPECS[n].form}"), justify="right")
        row = [Text("analytical", "italic")]
        for n in names:
            row.append(Text(_analytical(n, [x for x in lims if x.name == n]), "italic"))
        table.add_row(*row)
        if "flush" in names and facts.representable is not None:
            ref = [Text("exact reference", "italic")] + [Text("") for _ in names]
            ref[1 + names.index("flush")] = Text(
                repr_float(-facts.representable[0], facts.dtype), "italic"
            )
            table.add_row(*ref)
        table.add_section()
        for alg in dict.fromkeys(x.algorithm for x in lims):
            cells = [Text(alg)]
            for n in names:
                cells.append(_cell(next(x for x in lims if x.algorithm == alg and x.name == n)))
            table.add_row(*cells)
        parts.append(table)
    spread = (
        "Spread: the error jumps from one t to the next, so every value of a 16-bit or "
        "narrower format from 2**-6 to where exp(-t) flushes is tried; float32 and float64 "
        f"have too many, so {SPREAD_PER_BINADE} per binade and {SPREAD_WINDOW} consecutive "
        "values where an exact output falls below a power of two are tried: '< t' there is "
        "the first break found, and a value not tried may break earlier; 'none found' "
        "covers the values tried. "
        if any(x.name == "spread" for x in report.limits)
        else ""
    )
    notes = Text(
        "Values are the last that holds, found by bisection on the real float results "
        f"(length: the first that breaks; never: holds up to the format's maximum; "
        f"> {report.max_length}: the longest length searched). {spread}{report.evaluations} "
        "probe vectors run.\n",
        "dim",
    )
    parts.append(notes)
    verdict = Text("Verdict\n", "bold")
    for sentence in report.verdicts() or ["nothing broke within the ranges searched"]:
        verdict.append("  " + sentence + "\n")
    parts.append(verdict)
    return parts


def render_limits(report: LimitsReport, style: Style) -> str:
    return to_text(limits_tables(report), style)


def _limit_dict(lim: Limit) -> dict[str, Any]:
    return {
        "algorithm": lim.algorithm,
        "dtype": lim.dtype,
        "limit": lim.name,
        "probe": lim.spec.form,
        "quantity": lim.spec.quantity,
        "applicable": lim.applicable,
        "last_ok": json_number(lim.last_ok),
        "first_bad": json_number(lim.first_bad),
        "value": json_number(lim.value),
        "analytical": json_number(
            None if lim.analytical is None else lim.spec.sign * lim.analytical
        ),
        "searched": json_number(lim.searched),
        "early": lim.early,
        "event": lim.event,
        "bound": lim.bound,
        "sampled": lim.sampled,
        "tried": lim.tried,
    }


def limits_json(report: LimitsReport) -> str:
    doc = {
        "schema": LIMITS_SCHEMA,
        "ulp_bound": report.ulp_bound,
        "max_length": report.max_length,
        "evaluations": report.evaluations,
        "dtypes": [
            {
                "dtype": f.dtype,
                "max": json_number(f.max),
                "smallest_subnormal": f.smallest_subnormal,
                "overflow_threshold": f.overflow_threshold,  # exact (float64's: 309 digits)
                "ln_max": f.ln_max,
                "ln_tiny": f.ln_tiny,
                "representable": None
                if f.representable is None
                else {"last_ok": f.representable[0], "first_zero": f.representable[1]},
            }
            for f in report.facts
        ],
        "limits": [_limit_dict(lim) for lim in report.limits],
        "verdicts": report.verdicts(),
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def limits_csv(report: LimitsReport) -> str:
    buf = io.StringIO()
    fields = ["algorithm", "dtype", "limit", "probe", "last_ok", "first_bad", "analytical"]
    fields += ["early", "event", "sampled"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for lim in report.limits:
        d = _limit_dict(lim)
        w.writerow(["" if d[f] is None else d[f] for f in fields])
    return buf.getvalue()


def hunt_text(h: HuntReport, width: int = 100) -> str:
    """The hunt as a case file: a header comment, the worst vectors, the verdict as comments."""
    baseline = (
        f"random normal logits give at most {h.baseline:.3g} ulp"
        if not math.isnan(h.baseline)
        else "no random normal logits could be audited"
    )
    head = (
        f"# lsmcheck hunt: {h.algorithm} in {h.dtype}, length {h.length}, seed {h.seed}: "
        f"{h.evaluations} inputs in {h.rounds} round{'s' if h.rounds != 1 else ''}, "
        f"{h.seconds:.1f} s; {baseline}"
    )
    verdict = textwrap.wrap(
        "Verdict: " + h.verdict(), width=width - 2, break_long_words=False, break_on_hyphens=False
    )
    return head + "\n" + h.case_text() + "\n".join("# " + line for line in verdict) + "\n"


def hunt_json(h: HuntReport) -> str:
    doc = {
        "schema": "lsmcheck.hunt/1",
        "algorithm": h.algorithm,
        "dtype": h.dtype,
        "length": h.length,
        "seed": h.seed,
        "evaluations": h.evaluations,
        "rounds": h.rounds,
        "seconds": h.seconds,
        "baseline_max_ulp": json_number(h.baseline),
        "broken": h.broken,
        "worst": [
            {
                "values": [repr_float(float(v), h.dtype) for v in f.values],
                "origin": f.origin,
                "max_ulp": json_number(f.result.max_ulp),
                "worst_index": f.result.worst_index,
                "overflow": f.result.overflow,
                "underflow": f.result.underflow,
                "nan": f.result.nan,
                "findings": [x.message for x in f.result.findings],
            }
            for f in h.worst
        ],
        "verdict": h.verdict(),
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


__all__ = ["hunt_json", "hunt_text", "limits_csv", "limits_json", "render_limits"]
