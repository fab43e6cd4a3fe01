"""``explain``: the per-element view of one vector, and a verdict in plain words.

:func:`explain` audits one vector with per-element detail and writes, per dtype, a short
paragraph of what broke and why; the terminal rendering lives in :mod:`lsmcheck.formats.explain`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lsmcheck.audit import audit
from lsmcheck.dtypes import Format, get_format
from lsmcheck.options import Options
from lsmcheck.report import Report
from lsmcheck.results import Result, Status
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


def _outputs(r: Result) -> int:
    return 1 if r.kind == "logsumexp" else r.length


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


#: Beyond this many ulp an answer without overflow or underflow is called inaccurate.
INACCURATE_ULP = 2.0**8


def verdict(dtype: str, results: list[Result]) -> str:
    """A paragraph on one dtype's results for one vector: what broke, why, and what works."""
    audited = [r for r in results if r.audited]
    if not audited:
        return f"Not audited in {dtype}: {results[0].reason}."
    fmt = get_format(dtype)
    sentences = []
    broken = [r for r in audited if _broken(r)]
    by_event: dict[str, list[Result]] = {}
    for r in broken:
        first = next(f for f in r.findings if f.kind != "underflow_benign")
        by_event.setdefault(f"{first.kind}:{first.event}", []).append(r)
    for rs in by_event.values():
        first = next(f for f in rs[0].findings if f.kind != "underflow_benign")
        spoiled = sum(r.overflow + r.underflow + r.nan > 0 for r in rs)
        every = all(
            max(r.overflow, r.underflow, r.nan) == _outputs(r) for r in rs
        ) and spoiled == len(rs)
        sentences.append(
            f"{_join([r.algorithm for r in rs])} {'break' if len(rs) > 1 else 'breaks'}: "
            f"{first.message}"
            + (", spoiling every output." if every else f" ({_count(first.count)}).")
        )
    inaccurate = [r for r in audited if not _broken(r) and (r.max_ulp or 0.0) > INACCURATE_ULP]
    if inaccurate:
        sentences.extend(_inaccurate(inaccurate, fmt))
    fixes = _fixes(audited, broken + inaccurate)
    if fixes:
        sentences.append(fixes)
    if any(r.algorithm == "log_of_softmax" and r.underflow for r in audited):
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
    sentences.extend(_close_calls(audited))
    skipped = [r for r in results if r.status is Status.UNDEFINED]
    if skipped:
        sentences.append(f"Not audited: {skipped[0].reason}.")
    return " ".join(sentences)


def _inaccurate(results: list[Result], fmt: Format) -> list[str]:
    """Why results without any overflow or underflow are still far off, one cause at a time."""
    by_cause: dict[str, list[Result]] = {}
    for r in results:
        by_cause.setdefault(_cause(r, fmt), []).append(r)
    sentences = []
    for cause, rs in by_cause.items():
        worst = max(rs, key=lambda r: r.max_ulp or 0.0)
        verb = (
            "neither overflow nor underflow but are"
            if len(rs) > 1
            else ("neither overflows nor underflows but is")
        )
        sentences.append(
            f"{_join([r.algorithm for r in rs])} {verb} off by up to {worst.max_ulp:.3g} ulp "
            f"(element {worst.worst_index}, exact {_exact_at(worst)}){cause}."
        )
    return sentences


def _cause(r: Result, fmt: Format) -> str:
    """The cause of a large error where it can be read off the inputs, else ''."""
    if r.elements is None or r.worst_index is None:
        return ""
    i = r.worst_index
    text = r.elements[i].exact
    exact = float(text) if text not in ("inf", "-inf") else 0.0
    if r.kind != "softmax" and 0 < abs(exact) < 2.0 ** (1 - fmt.p):
        return (
            ": the exact value is smaller than the rounding error of 1 + sum, so log(sum) "
            "loses it (the log1p form, max + log1p(sum of the others), keeps it)"
        )
    if r.kind != "softmax" and 0 < abs(exact) < 2.0**-4 and "log1p" not in r.algorithm:
        # log(1 + s) for a small s: 1 + s rounds with an error of up to half an ulp of 1,
        # about 1 / |value| ulps of the result, and the log keeps it
        return (
            ": the exact value is far below 1, and the rounding error of the sum near 1 it is "
            "the log of is many of its ulps, which log(sum) keeps (the log1p form, max + "
            "log1p(sum of the others), does not)"
        )
    inputs = [e.input for e in r.elements if e.input is not None]
    if r.kind != "softmax" or len(inputs) != len(r.elements):
        return ""
    shifted = "naive" not in r.algorithm
    arg = inputs[i] - max(inputs) if shifted else inputs[i]
    if arg < math.log(fmt.smallest_normal):
        return (
            f": exp({arg:.6g}) is a subnormal {fmt.name} number, below {fmt.smallest_normal:.3g}, "
            "which keeps fewer significant bits"
            + ("" if shifted else " (shifting by the maximum keeps the largest term normal)")
        )
    return ""


def _close_calls(results: list[Result]) -> list[str]:
    """Warn about limits a vector is close to but has not crossed (the headroom)."""
    by_message: dict[str, list[str]] = {}
    for r in results:
        for h in r.headroom:
            if h.warning and h.headroom >= 0:
                by_message.setdefault(h.message, []).append(r.algorithm)
    return [
        f"{_join(algs)} {'are' if len(algs) > 1 else 'is'} close to a limit: {message}."
        for message, algs in by_message.items()
    ]


def _count(n: int) -> str:
    return f"{n} element{'s' if n != 1 else ''}"


def _exact_at(r: Result) -> str:
    if r.elements is None or r.worst_index is None:
        return "?"
    text = r.elements[r.worst_index].exact
    return text if text in ("inf", "-inf", "0") else f"{float(text):.4g}"


def _fixes(audited: list[Result], bad: list[Result]) -> str:
    """Which algorithm gets each kind right where another of the same kind broke.

    The max-shifted ("stable") form is named first when it works, as it is the usual fix; the
    most accurate one is named too when it is more than twice as accurate and the stable form
    is off by more than 2 ulp (on some vectors another form is far better, e.g. the log1p
    form of log-softmax).
    """
    parts = []
    for kind in dict.fromkeys(r.kind for r in bad):
        good = [r for r in audited if r.kind == kind and r not in bad and r.max_ulp is not None]
        if not good:
            continue
        best = min(good, key=lambda r: r.max_ulp or 0.0)
        stable = next((r for r in good if "stable" in r.algorithm), best)
        part = f"{stable.algorithm} is within {stable.max_ulp:.2f} ulp"
        if (stable.max_ulp or 0.0) > 2 and (best.max_ulp or 0.0) < (stable.max_ulp or 0.0) / 2:
            part += f" ({best.algorithm}: {best.max_ulp:.2f} ulp)"
        parts.append(part)
    if not parts:
        return ""
    return "What works: " + _join(parts) + "."


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
