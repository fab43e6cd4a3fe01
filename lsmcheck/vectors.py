"""The unit of work: one logit vector and where it came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


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
        if self.line is not None:
            return f"{self.source}:{self.line}"
        return f"{self.source}[{self.index}]"
