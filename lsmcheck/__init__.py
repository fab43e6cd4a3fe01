"""lsmcheck: a numerical-stability auditor for softmax, log-softmax and logsumexp.

The Python API::

    import lsmcheck
    report = lsmcheck.audit([[1000.0, 1001.0]], implementations=[my_softmax], kind="softmax",
                            dtypes=["float16", "float32"], max_ulp=4, fail_on=["overflow"])
    report.passed, report.results[0].max_ulp, report.to_json()

    from lsmcheck import audit, Options, Vector          # the same function, full control
    report = audit([Vector("mine", 0, None, np.array([1000.0, 1001.0]))], Options())

For pytest, :func:`lsmcheck.testing.assert_stable`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from lsmcheck import _startup

_startup.guard()  # before the imports below, the longest part of the program's start

from lsmcheck.api import audit  # noqa: E402
from lsmcheck.errors import InputError, LsmcheckError, UsageError  # noqa: E402
from lsmcheck.gate import Limits, Rule, Thresholds  # noqa: E402
from lsmcheck.options import Options  # noqa: E402
from lsmcheck.report import Group, Report  # noqa: E402
from lsmcheck.results import Breach, Element, Finding, Result, Status  # noqa: E402
from lsmcheck.vectors import Vector  # noqa: E402

__all__ = [
    "Breach",
    "Element",
    "Finding",
    "Group",
    "InputError",
    "Limits",
    "LsmcheckError",
    "Options",
    "Report",
    "Result",
    "Rule",
    "Status",
    "Thresholds",
    "UsageError",
    "Vector",
    "__version__",
    "audit",
]
