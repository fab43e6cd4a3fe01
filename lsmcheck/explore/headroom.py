"""Headroom: how close one vector comes to each measured limit of an implementation.

For every audited result the engine asks :func:`assess` how far the vector is from the limits
that :mod:`lsmcheck.explore.limits` measures for that implementation in that dtype:

=========  ============================================  ==========================================
limit      the vector's quantity                         applies when
=========  ============================================  ==========================================
overflow   its largest logit                             the largest logit is positive
underflow  its largest logit                             the largest logit is negative
flush      its lowest logit minus its largest            the implementation flushes *early* there
length     its length                                    always
=========  ============================================  ==========================================

``headroom = (threshold - value) / threshold``, where ``threshold`` is the last value that holds
(``11.0859375`` for softmax_naive's overflow in float16) and both are measured away from zero in
the limit's direction: 1 far from the limit, 0 on it, negative past it.  A limit that the
implementation never reaches within the searched range gives no entry.  An entry is a *warning*
inside the danger zone (``headroom < zone``, 10% by default) or past the limit.

The limits are measured once per (implementation, dtype, limit) and process, on first use, so
the first audit in a dtype pays for the searches (a fraction of a second) and later ones do not.
The length limit is searched only up to twice the vector's length (at least 1024, rounded up to
a power of two): a limit beyond that leaves more than 50% headroom and gives no entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsmcheck.algorithms import BUILTINS, Algorithm
from lsmcheck.dtypes import Format
from lsmcheck.explore.limits import Explorer, Limit
from lsmcheck.results import Headroom

#: The default danger zone: warn when a vector is within 10% of a limit.
DEFAULT_ZONE = 0.10

#: The length limit is searched up to twice the vector's length, at least this far.
MIN_LENGTH_SEARCHED = 1024

_EXPLORERS: dict[int, Explorer] = {}
_CACHE: dict[tuple[str, str, str, int], Limit] = {}


def measured_limit(alg: Algorithm, fmt: Format, name: str, max_length: int = 0) -> Limit:
    """Limit ``name`` of ``alg`` in ``fmt``, measured on first use and cached.

    ``max_length`` bounds the length search (a power of two; ignored by the other limits).
    The limits of the built-in algorithms are also kept on disk (:func:`_disk_cache`), so a
    run pays for their measurement once per machine and version, not once per process.
    """
    max_length = max_length if name == "length" else 0
    key = (alg.name, fmt.name, name, max_length)
    builtin = BUILTINS.get(alg.name) is alg
    if key not in _CACHE and builtin:
        stored = _disk().get("|".join(map(str, key)))
        if stored is not None:
            _CACHE[key] = Limit(**stored)
    if key not in _CACHE:
        explorer = _EXPLORERS.setdefault(max_length, Explorer(max_length=max(max_length, 2)))
        _CACHE[key] = explorer.limit(_prober(alg), fmt, name)
        if builtin:
            _save("|".join(map(str, key)), dataclasses.asdict(_CACHE[key]))
    return _CACHE[key]


def _prober(alg: Algorithm) -> Algorithm:
    """What is probed to measure ``alg``'s limits: ``alg`` itself, or for an implementation
    of the user's that runs in a sandbox, a twin in a sandbox process of its own.

    The probes call it on vectors of their own (extreme logits, lengths up to the cap): one
    that times out or crashes must cost only that limit (a failed probe gives a limit that
    is not applicable: no headroom entry), not the audit of the user's vectors.
    """
    twin = getattr(alg.run, "twin", None)
    return alg if twin is None else dataclasses.replace(alg, run=twin())


_DISK: dict[str, dict[str, Any]] | None = None


def _cache_file() -> Path | None:
    """Where measured limits are kept: ``$LSMCHECK_CACHE_DIR`` (empty: nowhere), else the
    user's cache directory; the name carries a hash of everything a measurement depends on
    (lsmcheck's numeric code and the numpy and ml_dtypes versions), so a change measures anew.
    """
    base = os.environ.get("LSMCHECK_CACHE_DIR")
    if base == "":
        return None
    if base is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "lsmcheck")
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    modules = (
        "dtypes",
        "metrics",
        "reference",
        "explore/limits",
        "explore/search",
        "explore/probe",
    )
    algorithms = sorted((package / "algorithms").glob("*.py"))  # every module of the package
    for path in [*algorithms, *(package / f"{module}.py" for module in modules)]:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    digest.update(np.__version__.encode())
    try:
        import ml_dtypes

        digest.update(ml_dtypes.__version__.encode())
    except ImportError:
        pass
    return Path(base) / f"limits-{digest.hexdigest()[:16]}.json"


def _disk() -> dict[str, dict[str, Any]]:
    global _DISK
    if _DISK is None:
        _DISK = {}
        path = _cache_file()
        if path is not None:
            try:
                loaded = json.loads(path.read_text())
                _DISK = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                _DISK = {}
    return _DISK


def _save(key: str, limit: dict[str, Any]) -> None:
    """Add one measured limit to the disk cache (atomically; a cache that cannot be written
    is only a slower next run)."""
    disk = _disk()
    disk[key] = limit
    path = _cache_file()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".limits.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(disk, f)
        os.replace(tmp, path)
    except OSError:
        return


def _length_cap(n: int) -> int:
    """A power of two at least ``2n`` and :data:`MIN_LENGTH_SEARCHED` (few cache entries)."""
    return 1 << max(2 * n - 1, MIN_LENGTH_SEARCHED - 1).bit_length()


#: What happens at a limit, by the first finding there (``kind:event``).
_CAUSES = {
    "overflow:exp_overflow": "exp overflows",
    "overflow:sum_overflow": "the sum overflows",
    "overflow:sub_overflow": "x - max overflows",
    "overflow:add_overflow": "max + log(sum) overflows",
    "underflow:exp_flush": "every exp term underflows",
    "underflow:sum_flush": "the sum underflows to 0",
    "underflow:log_of_zero": "the log of a flushed probability gives -inf",
}

_QUANTITIES = {
    "overflow": "largest logit",
    "underflow": "largest logit",
    "flush": "lowest x - max",
    "length": "length",
}


def _cause(lim: Limit) -> str:
    if lim.event_kind in _CAUSES:
        return _CAUSES[lim.event_kind]
    kind = lim.event_kind.split(":")[0] or "breaks"
    return {"nan": "the result is NaN"}.get(kind, f"it {kind}s")


@dataclasses.dataclass(frozen=True)
class _Room:
    """What every headroom entry against one measured limit shares."""

    limit: str
    threshold: float
    quantity: str
    cause: str

    def at(self, value: float, zone: float) -> Headroom:
        """The headroom of ``value`` (signed, as the vector has it)."""
        room = (self.threshold - value) / self.threshold
        return Headroom(
            self.limit, value, self.threshold, room, room < zone, self.quantity, self.cause
        )


def _room(lim: Limit, fmt: Format) -> _Room | None:
    """The shared part of the entries against a limit that exists, else ``None``."""
    if not lim.breaks or lim.last_ok is None:
        return None
    threshold = lim.spec.sign * lim.last_ok
    if threshold == 0:
        return None
    return _Room(lim.name, threshold, _QUANTITIES[lim.name], f"{_cause(lim)} in {fmt.name}")


def assess(
    alg: Algorithm, fmt: Format, x: npt.NDArray[np.float64], zone: float = DEFAULT_ZONE
) -> tuple[Headroom, ...]:
    """The headroom of the dtype-rounded vector ``x`` against ``alg``'s limits in ``fmt``.

    ``x`` must have a finite logit (undefined vectors are not audited).
    """
    finite = x[np.isfinite(x)]
    if not finite.size:
        return ()
    top = float(finite.max())
    wanted: list[tuple[str, float]] = []
    if top > 0:
        wanted.append(("overflow", top))
    elif top < 0:
        wanted.append(("underflow", top))
    gap = float(finite.min()) - top
    if gap < 0 and not alg.kind.per_vector:
        wanted.append(("flush", gap))
    wanted.append(("length", float(x.size)))
    cap = _length_cap(x.size)
    out = []
    for name, value in wanted:
        room = _room(measured_limit(alg, fmt, name, cap), fmt)
        if room is not None:
            out.append(room.at(value, zone))
    return tuple(out)


def assess_rows(
    alg: Algorithm, fmt: Format, x: npt.NDArray[np.float64], zone: float = DEFAULT_ZONE
) -> list[tuple[Headroom, ...]]:
    """:func:`assess` for every row of a batch of equal-length vectors (the same entries).

    The limits are looked up once per batch and the largest and lowest finite logits taken
    for all rows at once; only the entries themselves are built per row.
    """
    finite = np.isfinite(x)
    if finite.all():  # the usual batch: no mask to apply
        tops, lows = x.max(axis=1, initial=-np.inf), x.min(axis=1, initial=np.inf)
    else:
        with np.errstate(invalid="ignore"):
            tops = np.where(finite, x, -np.inf).max(axis=1)
            lows = np.where(finite, x, np.inf).min(axis=1)
    has = np.asarray(finite.any(axis=1))
    n = x.shape[1]
    cap = _length_cap(n)
    rooms = {
        name: _room(measured_limit(alg, fmt, name, cap), fmt)
        for name in ("overflow", "underflow", "flush", "length")
    }
    length = rooms["length"]
    tail = () if length is None else (length.at(float(n), zone),)
    flush = None if alg.kind.per_vector else rooms["flush"]
    out: list[tuple[Headroom, ...]] = []
    for ok, top, low in zip(has.tolist(), tops.tolist(), lows.tolist(), strict=True):
        if not ok:
            out.append(())
            continue
        entries: list[Headroom] = []
        edge = rooms["overflow"] if top > 0 else rooms["underflow"] if top < 0 else None
        if edge is not None:
            entries.append(edge.at(top, zone))
        gap = low - top
        if gap < 0 and flush is not None:
            entries.append(flush.at(gap, zone))
        out.append((*entries, *tail))
    return out


__all__ = ["DEFAULT_ZONE", "assess", "assess_rows", "measured_limit"]
