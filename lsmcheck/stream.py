"""Cutting a stream of vectors into chunks: the unit of work of the engine.

A chunk is a run of whole, consecutive vectors holding about :data:`CHUNK_ELEMENTS` logits (a
vector longer than that is a chunk of its own).  The cut depends only on the input, never on the
number of workers, so every execution mode audits the same chunks and merges them in the same
order: the report is the same whatever ``--jobs`` is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lsmcheck.vectors import Vector

#: Logits per chunk: large enough to amortise the per-batch work, small enough to spread a
#: 1000 x 1000 matrix over a few cores and to keep a chunk's temporaries small.
CHUNK_ELEMENTS = 1 << 17


def chunks(vectors: Iterable[Vector], size: int | None = None) -> Iterator[list[Vector]]:
    """Yield consecutive runs of ``vectors`` of about ``size`` logits each, lazily.

    ``size`` defaults to :data:`CHUNK_ELEMENTS` (read at call time).
    """
    size = size or CHUNK_ELEMENTS
    chunk: list[Vector] = []
    elements = 0
    for v in vectors:
        chunk.append(v)
        elements += len(v.values)
        if elements >= size:
            yield chunk
            chunk, elements = [], 0
    if chunk:
        yield chunk


__all__ = ["CHUNK_ELEMENTS", "chunks"]
