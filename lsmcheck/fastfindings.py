"""The findings of a batch of outputs at once: :func:`lsmcheck.metrics.findings` vectorised,
turning the masks of :func:`lsmcheck.metrics.classify` and the traced event codes into words.
Split from :mod:`lsmcheck.fastmetrics`, which measures the errors those masks come from."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import Event, describe_event
from lsmcheck.dtypes import Format
from lsmcheck.results import Finding

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def findings_batch(
    masks: tuple[Bools, Bools, Bools, Bools],
    overflow_codes: npt.NDArray[np.uint8],
    flush_codes: npt.NDArray[np.uint8],
    nan_codes: npt.NDArray[np.uint8],
    args: F64,
    fmt: Format,
) -> list[tuple[Finding, ...]]:
    """:func:`lsmcheck.metrics.findings` for every row of a batch at once (the same findings,
    in the same order, with the same messages).  ``masks``: overflow, underflow, benign, nan."""
    overflow, underflow, benign, nan = masks
    b = overflow.shape[0]
    out: list[list[Finding]] = [[] for _ in range(b)]
    rows = np.flatnonzero((overflow | underflow | benign | nan).any(axis=1))
    if not rows.size:
        return [() for _ in range(b)]
    sub_args = args[rows]
    has_arg = ~np.isnan(sub_args)
    messages: dict[tuple[int, float, float], str] = {}
    kinds = (
        ("overflow", overflow, overflow_codes, BLIND["overflow"]),
        ("underflow", underflow, flush_codes, BLIND["underflow"]),
        ("nan", nan, nan_codes, BLIND["nan"]),
    )
    for kind, mask, codes, blind in kinds:
        sub_mask, sub_codes = mask[rows], codes[rows]
        entries: dict[int, list[tuple[int, Finding]]] = {}
        # the codes present (np.unique would import numpy.ma on its first call: 15-25 ms)
        for code in np.flatnonzero(np.bincount(sub_codes[sub_mask])).tolist():
            sel = sub_mask & (sub_codes == code)
            counts = sel.sum(axis=1)
            first = np.argmax(sel, axis=1)
            if code == Event.NONE:
                lo = hi = np.full(len(rows), math.nan)
            else:
                valid = sel & has_arg
                lo = np.where(valid, sub_args, np.inf).min(axis=1)
                hi = np.where(valid, sub_args, -np.inf).max(axis=1)
                none = ~valid.any(axis=1)
                lo[none] = hi[none] = math.nan
            event = "output" if code == Event.NONE else Event(code).name.lower()
            for j in np.flatnonzero(counts).tolist():
                if code == Event.NONE:
                    message = blind
                else:
                    key = (code, float(lo[j]), float(hi[j]))
                    message = messages.get(key) or messages.setdefault(
                        key,
                        describe_event(
                            Event(code), key[1], key[2], fmt.name, fmt.max, fmt.smallest_subnormal
                        ),
                    )
                finding = Finding(kind, event, message, int(counts[j]))
                entries.setdefault(j, []).append((int(first[j]), finding))
        for j, found in entries.items():
            out[rows[j]].extend(f for _, f in sorted(found, key=lambda e: e[0]))
    n_benign = benign[rows].sum(axis=1)
    for j in np.flatnonzero(n_benign).tolist():
        out[rows[j]].append(
            Finding(
                "underflow_benign",
                "output",
                f"flushed to 0 correctly: the exact value is below half of {fmt.name}'s "
                f"smallest subnormal ({fmt.smallest_subnormal:.3g})",
                int(n_benign[j]),
            )
        )
    return [tuple(f) for f in out]


#: The messages of :func:`lsmcheck.metrics.findings` for events no step recorded.
BLIND = {
    "overflow": "the output is ±inf although the exact value is finite",
    "underflow": "the output is 0 (or -inf) but the exact value rounds to a nonzero finite number",
    "nan": "NaN output",
}


__all__ = ["findings_batch"]
