"""The pass/fail decision, in one place.

A :class:`Thresholds` says what a result may show; :func:`judge` applies it to one result and
returns the result with its status and, for a failure, each broken threshold and by how much.
Results without metrics (``undefined``, ``unrepresentable``, ``error``) keep their status.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lsmcheck.errors import UsageError
from lsmcheck.results import Result, Status

#: The event counts ``--fail-on`` may name.
FAIL_ON_CHOICES: tuple[str, ...] = ("overflow", "underflow", "nan")


@dataclass(frozen=True)
class Thresholds:
    """What a result may show before it fails.

    Attributes:
        max_ulp: the largest allowed max ULP error (``None``: no limit).
        fail_on: event kinds of which a single occurrence fails the result.
    """

    max_ulp: float | None = None
    fail_on: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fail_on) - set(FAIL_ON_CHOICES))
        if unknown:
            choices = ", ".join(FAIL_ON_CHOICES)
            raise UsageError(f"--fail-on: unknown event {unknown[0]!r} (choose from {choices})")
        if self.max_ulp is not None and not self.max_ulp >= 0:
            raise UsageError(f"--max-ulp: expected a number >= 0, got {self.max_ulp!r}")


def parse_fail_on(values: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Comma-separated or repeated ``--fail-on`` values as a set (``all`` = every kind)."""
    names = {n.strip() for v in values for n in v.split(",") if n.strip()}
    if "all" in names:
        return frozenset(FAIL_ON_CHOICES)
    return frozenset(names)


def judge(result: Result, thresholds: Thresholds) -> Result:
    """``result`` with status ``pass`` or ``fail`` and the thresholds it broke."""
    if not result.audited:
        return result
    broken = []
    limit, ulp = thresholds.max_ulp, result.max_ulp
    if limit is not None and ulp is not None and not ulp <= limit:
        broken.append(f"max_ulp {ulp:.4g} > {limit:g} (element {result.worst_index})")
    for kind in FAIL_ON_CHOICES:
        count = getattr(result, kind)
        if kind in thresholds.fail_on and count > 0:
            broken.append(f"{kind} {count} > 0")
    status = Status.FAIL if broken else Status.PASS
    return dataclasses.replace(result, status=status, failures=tuple(broken))
