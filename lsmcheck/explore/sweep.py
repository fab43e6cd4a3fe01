"""Vary one parameter of a generated family, audit every step (``lsmcheck sweep``).

Every vector of every step goes through :func:`lsmcheck.audit.audit`, the same engine as
``lsmcheck run``; a sweep only generates the vectors (:mod:`lsmcheck.explore.generators`) and
summarises the results per step, implementation and dtype.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lsmcheck.algorithms import Algorithm
from lsmcheck.audit import audit
from lsmcheck.errors import UsageError
from lsmcheck.explore.generators import (
    Family,
    check_length,
    draw,
    get_family,
    steps,
    vectors,
)
from lsmcheck.options import Options
from lsmcheck.results import Result, Status, json_number
from lsmcheck.vectors import Vector, beyond_memory

Progress = Callable[[int, int], None]

SCHEMA = "lsmcheck.sweep/1"

#: The events whose onset a sweep reports, in order.
EVENTS: tuple[str, ...] = ("overflow", "underflow", "nan", "unrepresentable")


@dataclass(frozen=True)
class Point:
    """One step of a sweep for one implementation in one dtype (over the step's samples).

    Attributes:
        value: the parameter value.
        algorithm, dtype: what it is about.
        max_ulp: the largest max ULP error of the audited samples (``None``: none audited).
        overflow, underflow, nan: elements with each event, summed over the samples.
        audited: samples with metrics; ``unrepresentable``/``undefined``: samples skipped.
    """

    value: float
    algorithm: str
    dtype: str
    max_ulp: float | None
    overflow: int
    underflow: int
    nan: int
    audited: int
    unrepresentable: int
    undefined: int


@dataclass(frozen=True)
class Onset:
    """The first parameter value (in sweep order) at which an event appears.

    Attributes:
        algorithm, dtype: what it is about.
        event: ``overflow``, ``underflow``, ``nan`` or ``unrepresentable``.
        value: the first step with the event; ``previous``: the step before it (``None`` when
            the event is there from the first step).
    """

    algorithm: str
    dtype: str
    event: str
    value: float
    previous: float | None


@dataclass(frozen=True)
class Sweep:
    """A finished sweep.

    Attributes:
        family: the family swept.
        seed, length, samples: the draw (see :mod:`lsmcheck.explore.generators`).
        values: the parameter values, in sweep order.
        log: whether the values are spaced logarithmically.
        algorithms, dtypes: what was audited.
        points: one per (value, algorithm, dtype), in that order.
        onsets: the first step of each event per (algorithm, dtype).
    """

    family: Family
    seed: int
    length: int
    samples: int
    values: tuple[float, ...]
    log: bool
    algorithms: tuple[str, ...]
    dtypes: tuple[str, ...]
    points: tuple[Point, ...]
    onsets: tuple[Onset, ...]

    def series(self, algorithm: str, dtype: str) -> list[Point]:
        return [p for p in self.points if p.algorithm == algorithm and p.dtype == dtype]

    def onset(self, algorithm: str, dtype: str, event: str) -> Onset | None:
        for o in self.onsets:
            if (o.algorithm, o.dtype, o.event) == (algorithm, dtype, event):
                return o
        return None


def run_sweep(
    family: str,
    *,
    start: float | None = None,
    stop: float | None = None,
    count: int | None = None,
    log: bool | None = None,
    length: int = 16,
    samples: int | None = None,
    seed: int = 0,
    algorithms: Sequence[str | Algorithm] = (),
    dtypes: Sequence[str] = (),
    precision_bits: int = 113,
    progress: Progress | None = None,
) -> Sweep:
    """Generate the family's vectors at every step and audit them all with one engine call."""
    fam = get_family(family)
    start = fam.start if start is None else start
    stop = fam.stop if stop is None else stop
    log = fam.log if log is None else log
    count = fam.count if count is None else count
    samples = fam.samples if samples is None else samples
    options = Options(
        dtypes=tuple(dtypes) or Options().dtypes,
        algorithms=tuple(algorithms) or Options().algorithms,
        precision_bits=precision_bits,
        danger_zone=None,
    )
    options.validate()
    values = steps(fam, start, stop, count, log)
    longest = int(max(values)) if fam.integer else length
    if not fam.integer:  # (steps checked the length family's --to) one vector first: the
        check_length("--length", length)  # more telling refusal, before any draw
    held = len(values) * samples * longest  # every step's vectors, audited in one call
    too_big = beyond_memory(held, 8)
    if too_big is not None:
        size, memory = too_big
        raise UsageError(
            f"--steps/--samples/--length: the sweep holds {held:,} logits at once (steps x "
            f"samples x length), about {size}, more than half this machine's {memory} of memory"
        )
    z = draw(seed, samples, longest)
    batch: list[Vector] = []
    for i, v in enumerate(values):
        for k, row in enumerate(vectors(fam, v, z)):
            batch.append(Vector(f"sweep:{fam.name}", i * samples + k, None, row))
    report = audit(batch, options, progress)
    by_step: dict[tuple[int, str, str], list[Result]] = {}
    for r in report.results:
        by_step.setdefault((r.vector // samples, r.algorithm, r.dtype), []).append(r)
    algs = tuple(a.name for a in options.implementations())
    # the dtypes as results name them: an --impl runs in a mixed-precision dtype's storage one
    labels = {r.dtype for r in report.results}
    fmts = tuple(
        dict.fromkeys(
            name for f in options.formats() for name in (f.name, f.storage.name) if name in labels
        )
    )
    points = tuple(
        _point(v, a, d, by_step[i, a, d])
        for i, v in enumerate(values)
        for a in algs
        for d in fmts
        if (i, a, d) in by_step
    )
    return Sweep(
        fam, seed, longest, samples, tuple(values), log, algs, fmts, points, _onsets(points)
    )


def _point(value: float, algorithm: str, dtype: str, results: list[Result]) -> Point:
    ulps = [r.max_ulp for r in results if r.max_ulp is not None]
    finite_or_inf = [u for u in ulps if not math.isnan(u)]
    return Point(
        value=value,
        algorithm=algorithm,
        dtype=dtype,
        max_ulp=max(finite_or_inf) if finite_or_inf else (math.nan if ulps else None),
        overflow=sum(r.overflow for r in results),
        underflow=sum(r.underflow for r in results),
        nan=sum(r.nan for r in results),
        audited=sum(r.audited for r in results),
        unrepresentable=sum(r.status is Status.UNREPRESENTABLE for r in results),
        undefined=sum(r.status is Status.UNDEFINED for r in results),
    )


def _onsets(points: Sequence[Point]) -> tuple[Onset, ...]:
    out: list[Onset] = []
    seen: set[tuple[str, str, str]] = set()
    previous: dict[tuple[str, str], float] = {}
    for p in points:
        for event in EVENTS:
            key = (p.algorithm, p.dtype, event)
            if key not in seen and getattr(p, event) > 0:
                seen.add(key)
                out.append(Onset(p.algorithm, p.dtype, event, p.value, previous.get(key[:2])))
        previous[p.algorithm, p.dtype] = p.value
    order = {e: i for i, e in enumerate(EVENTS)}
    return tuple(sorted(out, key=lambda o: (o.algorithm, o.dtype, order[o.event])))


# ---------------------------------------------------------------------------------------------
# Numbers out: CSV and JSON (the plot lives in lsmcheck.formats.plot)
# ---------------------------------------------------------------------------------------------


def _cell(x: float | None) -> str:
    if x is None:
        return ""
    return repr(float(x)) if math.isfinite(x) else str(json_number(x))


def to_csv(sweep: Sweep) -> str:
    """One line per (value, algorithm, dtype), with a header."""
    p = sweep.family.parameter
    lines = [
        f"{p},algorithm,dtype,max_ulp,overflow,underflow,nan,audited,unrepresentable,undefined"
    ]
    for pt in sweep.points:
        value = str(int(pt.value)) if sweep.family.integer else repr(pt.value)
        lines.append(
            f"{value},{pt.algorithm},{pt.dtype},{_cell(pt.max_ulp)},{pt.overflow},"
            f"{pt.underflow},{pt.nan},{pt.audited},{pt.unrepresentable},{pt.undefined}"
        )
    return "\n".join(lines) + "\n"


def to_json(sweep: Sweep) -> str:
    """The sweep as a ``lsmcheck.sweep/1`` document."""
    doc = {
        "schema": SCHEMA,
        "family": sweep.family.name,
        "parameter": sweep.family.parameter,
        "formula": sweep.family.formula,
        "seed": sweep.seed,
        "length": sweep.length,
        "samples": sweep.samples,
        "log": sweep.log,
        "values": list(sweep.values),
        "algorithms": list(sweep.algorithms),
        "dtypes": list(sweep.dtypes),
        "points": [
            {
                "value": pt.value,
                "algorithm": pt.algorithm,
                "dtype": pt.dtype,
                "max_ulp": json_number(pt.max_ulp),
                "overflow": pt.overflow,
                "underflow": pt.underflow,
                "nan": pt.nan,
                "audited": pt.audited,
                "unrepresentable": pt.unrepresentable,
                "undefined": pt.undefined,
            }
            for pt in sweep.points
        ],
        "onsets": [
            {
                "algorithm": o.algorithm,
                "dtype": o.dtype,
                "event": o.event,
                "value": o.value,
                "previous": o.previous,
            }
            for o in sweep.onsets
        ],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def summary(sweep: Sweep) -> list[str]:
    """The onsets in words, one line per (algorithm, dtype) with any."""
    p = sweep.family.parameter
    lines = []
    for a in sweep.algorithms:
        for d in sweep.dtypes:
            events = [sweep.onset(a, d, e) for e in EVENTS]
            words = [
                f"{o.event} from {p}={_fmt(o.value)}"
                + (f" (fine at {_fmt(o.previous)})" if o.previous is not None else "")
                for o in events
                if o is not None
            ]
            if words:
                lines.append(f"{a} {d}: " + "; ".join(words))
    return lines


def _fmt(x: float) -> str:
    return f"{x:.4g}"


__all__ = ["EVENTS", "SCHEMA", "Onset", "Point", "Sweep", "run_sweep", "summary", "to_csv"]
