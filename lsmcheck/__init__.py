"""lsmcheck: a numerical-stability auditor for softmax, log-softmax and logsumexp.

The Python API::

    from lsmcheck import audit, Options, Vector
    report = audit([Vector("mine", 0, None, np.array([1000.0, 1001.0]))], Options())
    report.passed, report.results[0].max_ulp, report.to_json()
"""

from __future__ import annotations

__version__ = "0.1.0"

from lsmcheck.audit import Options, audit
from lsmcheck.errors import InputError, LsmcheckError, UsageError
from lsmcheck.gate import Thresholds
from lsmcheck.results import Element, Finding, Group, Report, Result, Status
from lsmcheck.vectors import Vector

__all__ = [
    "Element",
    "Finding",
    "Group",
    "InputError",
    "LsmcheckError",
    "Options",
    "Report",
    "Result",
    "Status",
    "Thresholds",
    "UsageError",
    "Vector",
    "__version__",
    "audit",
]
