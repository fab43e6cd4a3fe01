"""The pass/fail decision, in one place.

A :class:`Thresholds` says what a result may show; :func:`judge` applies it to one result and
returns the result with its status and, for a failure, each broken threshold and by how much.
Results without metrics (``undefined``, ``unrepresentable``, ``error``) keep their status: an
``error`` always fails the gate, the other two never do.

Thresholds come in levels.  A :class:`Rule` sets :class:`Limits` for every result, for one
dtype, for one algorithm, or for one algorithm in one dtype; the most specific rule that sets
a limit wins.  The direct fields of :class:`Thresholds` (``max_ulp``, ``max_rel_error``,
``fail_on``: the command-line flags) override every rule.  A limit of ``math.inf`` lifts a
limit set at a less specific level.

:func:`compare` judges a report against a recorded baseline instead: then only regressions
fail (see its docstring).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from lsmcheck.baseline import Baseline
from lsmcheck.errors import UsageError
from lsmcheck.report import BaselineSummary, Recorded, Report, source_key, summarise
from lsmcheck.results import Breach, Result, Status

#: The event counts ``--fail-on`` may name.
FAIL_ON_CHOICES: tuple[str, ...] = ("overflow", "underflow", "nan")

#: ``--fail-on`` may also name this: a result that could not be audited (its input overflows
#: the dtype, or its softmax is undefined) then fails, so a gate never passes unseen inputs.
UNAUDITED = "unaudited"

#: Every name ``--fail-on`` and a config's ``fail_on`` take (``all``: every one of them, the
#: event counts and ``unaudited``: whatever a CI user would expect "fail on all" to fail).
FAIL_ON_NAMES: tuple[str, ...] = (*FAIL_ON_CHOICES, UNAUDITED, "all")

#: Every check a threshold can set, in the order failures are listed.
CHECKS: tuple[str, ...] = ("max_ulp", "max_rel_error", *FAIL_ON_CHOICES)

#: How many ulp ``max_ulp`` may grow against a baseline before it counts as a regression.
DEFAULT_TOLERANCE = 1.0


def nonnegative(value: float) -> bool:
    """Whether ``value`` is a number >= 0: not NaN, and not ``-0.0`` (a limit written with a
    minus sign is a slip, and failures would read ``max_ulp 0.5 > -0``)."""
    return value >= 0 and math.copysign(1.0, value) > 0


@dataclass(frozen=True)
class Limits:
    """One level of thresholds.  ``None`` inherits the level below; ``math.inf`` lifts a limit.

    Attributes:
        max_ulp: the largest allowed max ULP error.
        max_rel_error: the largest allowed max relative error.
        max_overflow, max_underflow, max_nan: how many output elements of one result may
            overflow, underflow or be NaN (0: any occurrence fails).
        unaudited: whether a vector that cannot be audited (undefined, or unrepresentable in
            the dtype) fails its results (``fail_on = ["unaudited"]`` in a config table).
    """

    max_ulp: float | None = None
    max_rel_error: float | None = None
    max_overflow: float | None = None
    max_underflow: float | None = None
    max_nan: float | None = None
    unaudited: bool | None = None

    def __post_init__(self) -> None:
        for name in _LIMIT_FIELDS.values():
            value = getattr(self, name)
            if value is not None and not nonnegative(value):
                raise UsageError(f"{name}: expected a number >= 0, got {value!r}")

    def get(self, check: str) -> float | None:
        """The limit on ``check`` (one of :data:`CHECKS`) at this level."""
        value: float | None = getattr(self, _LIMIT_FIELDS[check])
        return value


_LIMIT_FIELDS = {
    "max_ulp": "max_ulp",
    "max_rel_error": "max_rel_error",
    "overflow": "max_overflow",
    "underflow": "max_underflow",
    "nan": "max_nan",
}


@dataclass(frozen=True)
class Rule:
    """Limits for the results one rule applies to.

    Attributes:
        limits: what the matching results may show.
        algorithm: the implementation it applies to (``None``: every one).
        dtype: the dtype it applies to (``None``: every one).
        origin: where it was written, for failure messages, e.g.
            ``"pyproject.toml [tool.lsmcheck.thresholds.dtype.float16]"``.
    """

    limits: Limits
    algorithm: str | None = None
    dtype: str | None = None
    origin: str = ""

    def matches(self, algorithm: str, dtype: str) -> bool:
        return self.algorithm in (None, algorithm) and self.dtype in (None, dtype)

    @property
    def specificity(self) -> int:
        """0 for every result, 1 for a dtype, 2 for an algorithm, 3 for both."""
        return 2 * (self.algorithm is not None) + (self.dtype is not None)


@dataclass(frozen=True)
class Thresholds:
    """What a result may show before it fails.

    Attributes:
        max_ulp: the largest allowed max ULP error (``None``: no limit; overrides every rule).
        fail_on: event kinds of which a single occurrence fails the result (overrides the
            rules' count limits on those kinds).
        max_rel_error: the largest allowed max relative error (overrides every rule).
        rules: limits per dtype and per algorithm, usually from the config file.
    """

    max_ulp: float | None = None
    fail_on: frozenset[str] = field(default_factory=frozenset)
    max_rel_error: float | None = None
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fail_on) - {*FAIL_ON_CHOICES, UNAUDITED})
        if unknown:
            choices = ", ".join(FAIL_ON_NAMES)
            raise UsageError(f"--fail-on: unknown event {unknown[0]!r} (choose from {choices})")
        if self.max_ulp is not None and not nonnegative(self.max_ulp):
            raise UsageError(f"--max-ulp: expected a number >= 0, got {self.max_ulp!r}")
        if self.max_rel_error is not None and not nonnegative(self.max_rel_error):
            raise UsageError(f"--max-rel-error: expected a number >= 0, got {self.max_rel_error!r}")

    @property
    def active(self) -> bool:
        """Whether any limit is set: without one, ``run`` reports and never fails."""
        return bool(
            self.max_ulp is not None
            or self.max_rel_error is not None
            or self.fail_on
            or any(r.limits != Limits() for r in self.rules)
        )

    @property
    def direct(self) -> Limits:
        """The direct fields as one level of limits."""
        over, under, nan = (0.0 if k in self.fail_on else None for k in FAIL_ON_CHOICES)
        return Limits(self.max_ulp, self.max_rel_error, over, under, nan)

    def resolve(self, algorithm: str, dtype: str) -> dict[str, tuple[float, str]]:
        """The limits that apply to ``algorithm`` in ``dtype``: check -> (limit, origin)."""
        return _resolve(self, algorithm, dtype)

    def fails_unaudited(self, algorithm: str, dtype: str) -> bool:
        """Whether an unaudited result of ``algorithm`` in ``dtype`` fails: ``--fail-on
        unaudited``, else the most specific rule that says."""
        if UNAUDITED in self.fail_on:
            return True
        said = [r for r in self.rules if r.limits.unaudited is not None]
        levels = sorted((r for r in said if r.matches(algorithm, dtype)), key=_specificity)
        return bool(levels and levels[-1].limits.unaudited)


def _specificity(rule: Rule) -> int:
    return rule.specificity


@functools.lru_cache(maxsize=1024)
def _resolve(thresholds: Thresholds, algorithm: str, dtype: str) -> dict[str, tuple[float, str]]:
    levels = sorted(
        (r for r in thresholds.rules if r.matches(algorithm, dtype)), key=lambda r: r.specificity
    )
    levels.append(Rule(thresholds.direct))
    out: dict[str, tuple[float, str]] = {}
    for rule in levels:
        for check in CHECKS:
            value = rule.limits.get(check)
            if value is not None:
                out[check] = (float(value), rule.origin)
    return {c: v for c, v in out.items() if not math.isinf(v[0])}


def parse_fail_on(values: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Comma-separated or repeated ``--fail-on`` values as a set.

    ``all`` means every one: overflow, underflow, nan and unaudited.
    """
    names = {n.strip() for v in values for n in v.split(",") if n.strip()}
    if values and not names:  # --fail-on "$EVENTS" with an empty variable: not "no gate"
        choices = ", ".join(FAIL_ON_NAMES)
        raise UsageError(f"--fail-on: no event given (choose from {choices})")
    if "all" in names:
        names = (names - {"all"}) | {*FAIL_ON_CHOICES, UNAUDITED}
    return frozenset(names)


def _value(result: Result | Recorded, check: str) -> float | None:
    value: float | None = getattr(result, check)
    return value


def _breaches(result: Result, limits: dict[str, tuple[float, str]]) -> Iterator[Breach]:
    for check in CHECKS:
        if check not in limits:
            continue
        limit, origin = limits[check]
        value = _value(result, check)
        if value is None or value <= limit:
            continue
        where = f"limit from {origin}" if origin else ""
        if check == "max_ulp":
            detail = ", ".join(x for x in (f"element {result.worst_index}", where) if x)
            by = f" by {value - limit:.4g}" if math.isfinite(value) else ""
            message = f"max_ulp {value:.4g} > {limit:g}{by} ({detail})"
        elif check == "max_rel_error":
            by = f" by {value - limit:.3g}" if math.isfinite(value) else ""
            message = f"max_rel_error {value:.3g} > {limit:g}{by}"
            message += f" ({where})" if where else ""
        else:
            message = f"{check} {value:g} > {limit:g}" + (f" ({where})" if where else "")
        yield Breach(check, float(value), limit, origin, message)


def judge(result: Result, thresholds: Thresholds) -> Result:
    """``result`` with status ``pass`` or ``fail`` and the thresholds it broke.

    A result that was not audited keeps its status, unless ``--fail-on unaudited`` asks that
    it fail.
    """
    if not result.audited:
        skipped = result.status in (Status.UNDEFINED, Status.UNREPRESENTABLE)
        if skipped and thresholds.fails_unaudited(result.algorithm, result.dtype):
            why = f"not audited: {result.reason}"
            return dataclasses.replace(result, status=Status.FAIL, failures=(why,))
        return result
    broken = tuple(_breaches(result, thresholds.resolve(result.algorithm, result.dtype)))
    status = Status.FAIL if broken else Status.PASS
    return dataclasses.replace(
        result, status=status, failures=tuple(b.message for b in broken), breaches=broken
    )


def check_tolerance(tolerance: float) -> None:
    """A UsageError unless ``tolerance`` is a finite number of ulp >= 0."""
    if not (math.isfinite(tolerance) and nonnegative(tolerance)):
        raise UsageError(
            f"--baseline-tolerance: expected a finite number of ulp >= 0, got {tolerance:g}"
        )


def compare(report: Report, baseline: Baseline, tolerance: float = DEFAULT_TOLERANCE) -> Report:
    """``report`` judged against a baseline: only regressions fail.

    Results are matched by (source, vector, algorithm, dtype), the source's path normalised
    (``./data/x.csv`` is ``data/x.csv``).  A matched result *regresses* when its ``max_ulp``
    grew by more than ``tolerance`` ulp, when it has more overflowing, underflowing or NaN
    elements than recorded, or when it breaks a threshold its recorded figures did not break.
    Thresholds it breaks as the baseline already did are *known* and do not fail it.  A result
    that is not in the baseline is *new* and judged by the thresholds alone; a recorded result
    this run did not produce has *vanished*, which fails the report.  An ``error`` result
    fails whatever the baseline says.
    """
    check_tolerance(tolerance)
    if report.aggregated is not None:
        raise UsageError(
            "a baseline is compared result by result, and this report kept only some of its "
            "results (aggregated); audit with aggregate=False, without --keep"
        )
    path = baseline.path
    remaining = {r.key: r for r in baseline.results}
    results = []
    for r in report.results:
        old = remaining.pop((source_key(r.source), r.vector, r.algorithm, r.dtype), None)
        results.append(_against(r, old, path, tolerance))
    states = [r.baseline for r in results]
    summary = BaselineSummary(
        path=path,
        tolerance=tolerance,
        regressed=states.count("regressed"),
        improved=states.count("improved"),
        unchanged=states.count("unchanged"),
        new=states.count("new"),
        vanished=tuple(remaining[k] for k in sorted(remaining)),
    )
    return dataclasses.replace(
        report, results=tuple(results), groups=summarise(results), baseline=summary, gated=True
    )


def _against(r: Result, old: Recorded | None, origin: str, tolerance: float) -> Result:
    """One result judged against its recorded figures (``old``)."""
    if old is None:
        return dataclasses.replace(r, baseline="new")
    if not r.audited or old.max_ulp is None:
        if r.status.value == old.status:
            state = "unchanged"
        elif r.status is Status.ERROR:
            state = "regressed"
        elif old.status == Status.ERROR.value:
            state = "improved"
        else:
            state = "new"
        note = None if state == "unchanged" else f"status {old.status} -> {r.status.value}"
        if state == "unchanged" and r.status is Status.FAIL:
            # failed by --fail-on unaudited, as the baseline recorded: known, not failing
            return dataclasses.replace(
                r, status=Status.PASS, failures=(), baseline=state, baseline_note=note
            )
        return dataclasses.replace(r, baseline=state, baseline_note=note)
    regressions, improvements, known, fresh = [], [], [], []
    for b in r.breaches:
        before = _value(old, b.check)
        if before is not None and not before <= b.limit:
            known.append(b)
        else:
            shown = "-" if before is None else f"{before:.4g}"
            fresh.append(
                dataclasses.replace(b, message=f"{b.message}, was {shown} in the baseline")
            )
    covered = {b.check for b in fresh}  # a fresh breach already says what the baseline had
    assert r.max_ulp is not None
    new_ulp, old_ulp = r.max_ulp, old.max_ulp
    if new_ulp > old_ulp + tolerance:
        regressions.append(
            Breach(
                "baseline.max_ulp",
                new_ulp,
                old_ulp + tolerance,
                origin,
                f"max_ulp regressed {old_ulp:.4g} -> {new_ulp:.4g} (tolerance {tolerance:g} ulp)",
            )
        )
    elif new_ulp < old_ulp - tolerance:
        improvements.append(f"max_ulp {old_ulp:.4g} -> {new_ulp:.4g}")
    for kind in FAIL_ON_CHOICES:
        new_n, old_n = getattr(r, kind), getattr(old, kind)
        if new_n > old_n:
            regressions.append(
                Breach(f"baseline.{kind}", new_n, old_n, origin, f"{kind} {old_n} -> {new_n}")
            )
        elif new_n < old_n:
            improvements.append(f"{kind} {old_n} -> {new_n}")
    notes = [b.message for b in regressions] + improvements
    regressions = [b for b in regressions if b.check.removeprefix("baseline.") not in covered]
    failing = [*fresh, *regressions]
    state = "regressed" if failing else ("improved" if improvements else "unchanged")
    return dataclasses.replace(
        r,
        status=Status.FAIL if failing else Status.PASS,
        failures=tuple(b.message for b in failing),
        breaches=tuple(failing),
        known=tuple(known),
        baseline=state,
        baseline_note="; ".join(notes) or None,
    )


def regressions(report: Report) -> Sequence[Result]:
    """The results that regressed against the baseline (empty without one)."""
    return [r for r in report.results if r.baseline == "regressed"]
