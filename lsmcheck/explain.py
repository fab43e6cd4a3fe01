"""``explain``: the per-element view of one vector, and a verdict in plain words.

:func:`explain` audits one vector with per-element detail and writes, per dtype, a short
paragraph of what broke and why; the terminal rendering lives in :mod:`lsmcheck.formats.explain`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lsmcheck.audit import Options, audit
from lsmcheck.dtypes import get_format
from lsmcheck.results import Report, Result, Status
from lsmcheck.vectors import Vector


@dataclass(frozen=True)
class Explanation:
    """One vector explained.

    Attributes:
        vector: the vector as given.
        report: its audit, with per-element detail.
        verdicts: per dtype, a paragraph in plain words.
    """

    vector: Vector
    report: Report
    verdicts: dict[str, str]


def explain(vector: Vector, options: Options) -> Explanation:
    """Audit ``vector`` element by element and say in words what broke and why."""
    import dataclasses

    report = audit([vector], dataclasses.replace(options, per_element=True))
    by_dtype: dict[str, list[Result]] = {}
    for r in report.results:
        by_dtype.setdefault(r.dtype, []).append(r)
    return Explanation(vector, report, {d: verdict(d, rs) for d, rs in by_dtype.items()})


def _broken(r: Result) -> bool:
    return bool(r.overflow or r.underflow or r.nan)


def _what(r: Result) -> str:
    real = [f for f in r.findings if f.kind != "underflow_benign"]
    if not real:
        return f"is off by {r.max_ulp:.3g} ulp"
    f = real[0]
    n = f.count
    return f"{f.message}, spoiling {n} of {_outputs(r)} output{'s' if _outputs(r) != 1 else ''}"


def _outputs(r: Result) -> int:
    return 1 if r.kind == "logsumexp" else r.length


def verdict(dtype: str, results: list[Result]) -> str:
    """A paragraph on one dtype's results for one vector."""
    skipped = [r for r in results if not r.audited]
    if skipped and len(skipped) == len(results):
        return f"Not audited in {dtype}: {skipped[0].reason}."
    fmt = get_format(dtype)
    audited = [r for r in results if r.audited]
    sentences = []
    broken = [r for r in audited if _broken(r)]
    for r in broken:
        sentences.append(f"{r.algorithm} {_what(r)}.")
    inaccurate = [
        r for r in audited if not _broken(r) and r.max_ulp is not None and r.max_ulp > 2**8
    ]
    for r in inaccurate:
        sentences.append(
            f"{r.algorithm} overflows nothing but is off by {r.max_ulp:.3g} ulp at element "
            f"{r.worst_index}: the exact value is tiny and the formula rounds it away."
        )
    by_kind: dict[str, list[Result]] = {}
    for r in audited:
        by_kind.setdefault(r.kind, []).append(r)
    for kind, rs in by_kind.items():
        good = [r for r in rs if not _broken(r) and r not in inaccurate]
        bad = [r for r in rs if r not in good]
        if bad and good:
            best = min(good, key=lambda r: r.max_ulp or 0.0)
            sentences.append(
                f"{best.algorithm} gets {kind} right to {best.max_ulp:.2f} ulp"
                + (" by shifting by the maximum first." if "stable" in best.algorithm else ".")
            )
    log_of = next((r for r in audited if r.algorithm == "log_of_softmax" and r.underflow), None)
    if log_of is not None:
        sentences.append(
            "Taking the log of probabilities gives -inf where log_softmax is finite: "
            "compute log_softmax directly."
        )
    if not broken and not inaccurate:
        worst = max(audited, key=lambda r: r.max_ulp or 0.0)
        sentences.append(
            f"Nothing broke in {dtype}: every algorithm is within {worst.max_ulp:.2f} ulp "
            f"(worst: {worst.algorithm})."
        )
        sentences.extend(_close_values(audited, fmt.p))
    for r in skipped:
        if r.status is Status.UNDEFINED:
            sentences.append(f"Not audited: {r.reason}.")
            break
    return " ".join(sentences)


def _close_values(results: list[Result], p: int) -> list[str]:
    """Say so when outputs differ by only a few ulp: printing, not underflow, hides them."""
    out = []
    for r in results:
        if r.kind != "log_softmax" or r.elements is None or r.algorithm != "log_softmax_stable":
            continue
        values = np.array([e.computed for e in r.elements])
        finite = np.unique(values[np.isfinite(values)])
        if finite.size < 2:
            continue
        gap = float(np.min(np.diff(finite)))
        top = float(np.abs(finite).max())
        ulp = 2.0 ** (math.floor(math.log2(top)) - p + 1) if top else 2.0**-1074
        if gap / ulp < 2**10:
            out.append(
                f"The log-probabilities are distinct: the closest two differ by {gap:.3g} "
                f"(about {gap / ulp:.0f} ulp), so a print with fewer than "
                f"{int(np.ceil(p * np.log10(2))) + 1} significant digits makes them look equal; "
                "that is a printing artefact, not an underflow."
            )
    return out
