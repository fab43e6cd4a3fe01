"""``--target``: the class whose negative log-likelihood the cross-entropy losses take.

A target is given as one of:

* ``N``: class ``N`` of every vector (a negative ``N`` counts from the end, as in Python);
* ``N1,N2,...``: one class index per vector, in input order;
* ``argmax`` / ``argmin``: each vector's most likely class (where the log1p form matters: the
  dominant class's log-probability cancels in ``x - max - log(sum)``) or least likely one;
* ``col:K``: column ``K`` of each input vector holds the class index, from 0 (a labelled dump
  such as ``label,logit0,logit1,...``); the column is removed from the logits.  A negative
  label (``-1``, ``-100``: an ignored example in most datasets) is an error, not a class.

Every index is checked against its vector: an error names the vector's file and line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from lsmcheck.errors import InputError, UsageError
from lsmcheck.vectors import Vector

#: The forms ``--target`` accepts, for error messages and help.
FORMS = "N, N1,N2,... (one per vector), argmax, argmin or col:K"


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UsageError(f"--target: expected {FORMS}, got {what!r}") from None


def _check(v: Vector, index: int, n: int, spec: str, what: str = "class") -> int:
    if not -n <= index < n:
        many = f"{n} {what}{'es' if what == 'class' else 's'}" if n != 1 else f"1 {what}"
        raise InputError(v.label, f"--target {spec}: {what} {index} is out of range ({many})")
    return index % n


def resolve(spec: str | None, vectors: Sequence[Vector]) -> tuple[list[Vector], list[int] | None]:
    """The vectors (with a target column removed) and each vector's target class.

    ``None`` targets when ``spec`` is ``None``.  :class:`UsageError` for a malformed ``spec``,
    :class:`InputError` (naming the vector) for an index out of range or a bad label column.
    """
    if spec is None:
        return list(vectors), None
    text = spec.strip()
    if text in ("argmax", "argmin"):
        pick = np.argmax if text == "argmax" else np.argmin
        out = []
        for v in vectors:
            finite = np.where(np.isnan(v.values), -np.inf if text == "argmax" else np.inf, v.values)
            out.append(int(pick(finite)))
        return list(vectors), out
    if text.startswith("col:"):
        return _from_column(_int(text[4:], text), vectors, text)
    parts = [p for p in text.split(",") if p.strip()]
    if len(parts) > 1 or "," in text:
        indices = [_int(p, text) for p in parts]
        if len(indices) != len(vectors):
            raise UsageError(
                f"--target: {len(indices)} class indices for {len(vectors)} vectors "
                "(give one per vector, or a single index for all)"
            )
        return list(vectors), [
            _check(v, i, len(v.values), text) for v, i in zip(vectors, indices, strict=True)
        ]
    index = _int(text, text)
    return list(vectors), [_check(v, index, len(v.values), text) for v in vectors]


def _from_column(k: int, vectors: Sequence[Vector], spec: str) -> tuple[list[Vector], list[int]]:
    out_vectors, targets = [], []
    for v in vectors:
        n = len(v.values)
        if n < 2:
            raise InputError(v.label, f"--target {spec}: a label column needs at least 2 columns")
        col = _check(v, k, n, spec, "column")
        label = float(v.values[col])
        logits = np.delete(v.values, col)
        # a label counts from 0 only: -1 (or -100) marks an ignored example in most datasets,
        # and must not be read as the last class
        if not (math.isfinite(label) and label == int(label) and 0 <= label < len(logits)):
            raise InputError(
                v.label,
                f"--target {spec}: label {label:g} is not a class index (0 to {len(logits) - 1})",
            )
        out_vectors.append(dataclasses.replace(v, values=logits))
        targets.append(int(label))
    return out_vectors, targets
