"""The limits of a sandboxed ``--impl`` implementation, as settings: ``--impl-timeout`` and
``--impl-memory`` (the config's ``impl_timeout`` and ``impl_memory``, the API's keywords) as
:class:`Limits`, and the memory sizes they are given in.  :mod:`lsmcheck.sandbox` enforces them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from lsmcheck.errors import UsageError

__all__ = [
    "DEFAULT_MEMORY_FRACTION",
    "DEFAULT_TIMEOUT",
    "Limits",
    "parse_size",
    "physical_memory",
    "show_size",
]

#: Seconds a call (or importing the implementation) may take by default.
DEFAULT_TIMEOUT = 60.0
#: The default memory cap, as a fraction of the physical memory (or the cgroup's limit).
DEFAULT_MEMORY_FRACTION = 0.5

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?:(?P<unit>[kmgt])i?b?|(?P<pct>%)|b?)")


def physical_memory() -> int | None:
    """Bytes of memory this process may use: the physical memory, or the cgroup's limit when
    it is lower (a CI container); ``None`` where it cannot be told."""
    try:
        total: int | None = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = None
    for limit in _cgroup_limits():
        total = limit if total is None else min(total, limit)
    return total


def _cgroup_limits() -> list[int]:
    """The memory limits of this process's cgroup (v2, then v1), where set."""
    files = ["/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    files.insert(0, f"/sys/fs/cgroup{line[3:].strip()}/memory.max")
    except OSError:
        return []
    limits = []
    for name in files:
        try:
            with open(name) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "no limit" with a huge number
            limits.append(int(text))
    return limits


def show_size(n: int) -> str:
    """``2147483648`` -> ``"2G"``, ``1610612736`` -> ``"1.5G"`` (binary units)."""
    for unit in "TGMK":
        scale = _UNITS[unit.lower()]
        if n >= scale:
            return f"{float(f'{n / scale:.3g}'):g}{unit}"
    return f"{n}B"


def parse_size(text: str | int, where: str = "--impl-memory") -> int | None:
    """``"2G"``, ``"512M"``, ``"1.5g"``, ``"2GiB"``, ``"25%"`` (of :func:`physical_memory`),
    or a number of bytes -> bytes; ``0`` or ``"none"`` -> ``None`` (no cap).  Units are
    binary (``1G`` = 2**30 bytes), as ``ulimit`` and Docker count."""
    if isinstance(text, bool) or (isinstance(text, int) and text < 0):
        raise UsageError(f"{where}: expected a size like 2G, 512M or 50% (0: no cap), got {text!r}")
    if isinstance(text, int):
        return text or None
    spec = text.strip().lower()
    if spec in ("0", "none"):
        return None
    match = _SIZE.fullmatch(spec)
    if match is None:
        raise UsageError(f"{where}: expected a size like 2G, 512M or 50% (0: no cap), got {text!r}")
    number = float(match["number"])
    if match["pct"]:
        total = physical_memory()
        if total is None:
            raise UsageError(f"{where}: the physical memory is unknown here; give a size like 2G")
        if not 0 < number <= 100:
            raise UsageError(f"{where}: expected a percentage above 0 and up to 100, got {text!r}")
        return int(total * number / 100)
    size = int(number * _UNITS[match["unit"] or ""])
    return size or None


@dataclass(frozen=True)
class Limits:
    """What a sandboxed implementation may take.

    Attributes:
        timeout: seconds per call (and for importing it); ``None``: no limit.
        memory: bytes of memory the child may allocate; ``None``: no cap.
        memory_text: how the cap is shown in messages (``"2G"``, as it was given).
    """

    timeout: float | None = DEFAULT_TIMEOUT
    memory: int | None = None
    memory_text: str = "none"

    @classmethod
    def make(
        cls,
        timeout: float | None = None,
        memory: str | int | None = None,
        timeout_where: str = "--impl-timeout",
        memory_where: str = "--impl-memory",
    ) -> Limits:
        """The limits from settings (``None``: the default; a timeout of 0: no limit)."""
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        if isinstance(timeout, bool) or not (
            timeout >= 0 and math.isfinite(timeout) and math.copysign(1, timeout) > 0
        ):  # -0.0 too: a limit written with a minus sign is a slip
            raise UsageError(
                f"{timeout_where}: expected seconds >= 0 (0: no limit), got {timeout!r}"
            )
        if memory is None:
            total = physical_memory()
            cap = None if total is None else int(total * DEFAULT_MEMORY_FRACTION)
            text = "none" if cap is None else show_size(cap)
        else:
            cap = parse_size(memory, memory_where)
            text = (
                "none"
                if cap is None
                else memory.strip()
                if isinstance(memory, str)
                else show_size(cap)
            )
        return cls(float(timeout) or None, cap, text)

    @property
    def timeout_text(self) -> str:
        return f"{self.timeout:g} s"
