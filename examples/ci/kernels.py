"""A project's own softmax kernels: what lsmcheck's CI gate audits in docs/ci.md."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def fused_softmax(x: Any) -> Any:
    """The 'fast' softmax: exp(x) / sum(exp(x)), without the max-shift."""
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def fused_log_softmax(x: Any) -> Any:
    """(x - max) - log(sum(exp(x - max)))."""
    if os.environ.get("MYMODEL_LOG_SOFTMAX") == "unshifted":  # an "optimisation" under review
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    d = x - x.max(axis=-1, keepdims=True)
    return d - np.log(np.exp(d).sum(axis=-1, keepdims=True))
