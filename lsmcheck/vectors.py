"""The unit of work: one logit vector and where it came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: The longest vector audited unless asked for more (``run --max-length``): a vector is audited
#: whole, and 2**21 logits take about 1 GB (measured: ``/usr/bin/time -f %M lsmcheck run`` on
#: one 2**21-logit vector, 1.04 GB peak), eight times the largest language-model vocabulary.
MAX_LENGTH = 1 << 21
#: Memory the audit of one logit takes at its peak, about: for the messages that refuse a vector.
BYTES_PER_LOGIT = 500


def audit_size(logits: int) -> str:
    """The memory auditing ``logits`` at once takes, for prose: ``15 MiB``, ``2.0 GiB``."""
    return _bytes(logits * BYTES_PER_LOGIT)


def beyond_memory(logits: int, per_logit: int = BYTES_PER_LOGIT) -> tuple[str, str] | None:
    """When auditing ``logits`` at once (or holding them, at ``per_logit`` bytes each) would
    not fit in memory: the memory it takes and the machine's, for prose; else ``None``.

    The estimate (:data:`BYTES_PER_LOGIT`) leaves out what the caller holds besides, so half
    the physical memory is the most allowed.
    """
    from lsmcheck.impllimits import physical_memory

    memory = physical_memory()
    if memory is None or logits * per_logit <= memory // 2:
        return None
    return _bytes(logits * per_logit), _bytes(memory)


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{max(1, round(n / 2**20))} MiB"


@dataclass(frozen=True, eq=False)
class Vector:
    """One logit vector read from a source.

    Attributes:
        source: the path it was read from, ``"-"`` for standard input, or ``"--logits"``.
        index: 0-based position of the vector within its source.
        line: 1-based line number for text sources (CSV/TSV/stdin); ``None`` otherwise.
        values: the logits as float64, 1-D, at least one element.  Tokens are parsed as
            correctly rounded float64; each audited dtype then rounds these (as a framework's
            ``tensor(..., dtype=...)`` does).
        target: the target class for cross-entropy and gradients (``--target``), if any.
    """

    source: str
    index: int
    line: int | None
    values: npt.NDArray[np.float64]
    target: int | None = None

    @property
    def label(self) -> str:
        """A short human name: ``file:line`` for text sources, ``file[index]`` otherwise."""
        return vector_label(self.source, self.line, self.index)


def vector_label(source: str, line: int | None, index: int) -> str:
    """How a vector is named everywhere (its results and baseline entries too): ``file:line``
    for text sources, ``file[index]`` otherwise."""
    return f"{source}:{line}" if line is not None else f"{source}[{index}]"
