"""The Python API on plain lists and a callable (docs/ci.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

import lsmcheck


def fused_softmax(x: Any) -> Any:  # x: (batch, n) in the audited dtype
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


report = lsmcheck.audit(
    [[2.0, 1.0, 0.1], [1000.0, 1001.0, 1002.0]],
    implementations=[fused_softmax],
    kind="softmax",
    dtypes=["float16", "float32"],
    max_ulp=4,
    fail_on=["all"],
)
print(report.passed, report.exit_code)
for r in report.results:
    print(r.label, r.dtype, r.status.value, r.max_ulp, r.failures)
