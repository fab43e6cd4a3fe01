"""The verdicts of ``lsmcheck limits`` in plain words: one sentence per finding, with advice.

Algorithms with the same outcome in a dtype share a sentence; nothing here measures anything
(the limits come from :mod:`lsmcheck.explore.limits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lsmcheck.dtypes import get_format
from lsmcheck.results import prose_number

if TYPE_CHECKING:
    from lsmcheck.explore.limits import Limit


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _advice(lim: Limit) -> str:
    if lim.name in ("overflow", "underflow"):
        return "shift by the maximum first"
    if lim.name == "flush":
        return "compute log_softmax directly: (x - max) - log(sum(exp(x - max)))"
    if lim.name == "length":
        return "accumulate the sum in a wider type (float32)"
    if "log" in lim.algorithm:
        return "log(1 + s) loses the small sum s of the other terms, log1p(s) keeps it"
    return "compute in a wider type"


#: Third person singular and plural of the verbs the verdicts use.
_VERBS = {
    "overflow": ("overflows", "overflow"),
    "underflow": ("underflows", "underflow"),
    "nan": ("returns NaN", "return NaN"),
    "flush": ("flushes", "flush"),
    "off": ("is off", "are off"),
}


def _what(lim: Limit, plural: bool) -> str:
    """What happens past the limit, in a few words, with the verb agreeing."""

    def verb(key: str) -> str:
        return _VERBS[key][plural]

    last = prose_number(lim.value or 0.0)
    kind = lim.event_kind.split(":")[0]
    if lim.name == "overflow":
        return f"{verb(kind)} once any logit exceeds {last}"
    if lim.name == "underflow":
        return f"{verb(kind)} once every logit is below {last}"
    if lim.name == "flush":
        zero = "0" if lim.algorithm.startswith("softmax") else "-inf"
        if zero == "-inf" and not get_format(lim.dtype).has_inf:
            zero = f"NaN (-inf, which {lim.dtype} cannot hold)"
        return (
            f"{verb('flush')} a logit more than {prose_number(lim.last_ok or 0.0)} below the "
            f"maximum to {zero} although its exact value is representable"
        )
    if lim.name == "spread":
        fmt = get_format(lim.dtype)
        first = lim.first_bad or 0.0
        if lim.sampled:
            return (
                f"{verb('off')} by more than {prose_number(lim.bound or 0.0)} ulp when the top "
                f"logit leads the rest by {prose_number(first)}, the smallest lead found to "
                f"break ({lim.tried} smaller {fmt.name} leads tried hold, but not every value; "
                "an untried one may break too)"
            )
        if first == 0:
            tried = "already with no lead"
        else:
            tried = f"every smaller {fmt.name} lead down to 2**-6 holds"
        return (
            f"{verb('off')} by more than {prose_number(lim.bound or 0.0)} ulp first when the top "
            f"logit leads the rest by {prose_number(first)} ({tried})"
        )
    return f"{verb(kind)} from a length of {prose_number(lim.first_bad or 0.0)} equal logits"


def verdicts(limits: Sequence[Limit]) -> list[str]:
    """One sentence per (dtype, limit, outcome), algorithms with the same outcome grouped."""
    everyone = {d: {x.algorithm for x in limits if x.dtype == d} for d in {x.dtype for x in limits}}
    grouped: dict[tuple[str, str, str, str], list[Limit]] = {}
    for lim in limits:
        if lim.breaks or (lim.name == "spread" and lim.found):
            key = (lim.dtype, lim.name, _what(lim, False), _advice(lim))
            grouped.setdefault(key, []).append(lim)
    out = []
    for (dtype, _, _, advice), lims in grouped.items():
        algs = [lim.algorithm for lim in lims]
        every = len(algs) > 2 and set(algs) == everyone[dtype]
        who = "every algorithm" if every else _join(algs)
        sentence = f"{who} in {dtype} {_what(lims[0], len(algs) > 1 and not every)}: {advice}."
        out.append(sentence[0].upper() + sentence[1:] if every else sentence)
    failed: dict[tuple[str, str], str] = {}
    for lim in limits:
        if lim.event.startswith("error"):
            failed.setdefault((lim.algorithm, lim.dtype), lim.event)
    for (alg, dtype), error in failed.items():
        out.append(f"{alg} in {dtype} could not be probed: {error}.")
    survivors: dict[str, list[str]] = {}
    for lim in limits:
        if lim.name == "overflow" and lim.applicable and not lim.found:
            survivors.setdefault(lim.dtype, []).append(lim.algorithm)
    for dtype, algs in survivors.items():
        fmt = get_format(dtype)
        verb = "never overflows" if len(algs) == 1 else "never overflow"
        out.append(
            f"{_join(algs)} in {dtype} {verb} on [t, 0], up to the format's maximum "
            f"{prose_number(fmt.max)}."
        )
    return out
