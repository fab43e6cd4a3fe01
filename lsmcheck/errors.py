"""The one family of errors a user can cause.

Each error renders as a single line that names where the problem is (a file with line and
column, or a command-line flag) and what was expected.  The CLI prints ``str(error)`` and
exits with code 2; a traceback always means a bug in lsmcheck itself.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: str) -> str:
    """Escape control characters (a newline in a file or member name) so a message is one line."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class LsmcheckError(Exception):
    """Base class of every error a user can cause (exit code 2)."""

    exit_code = 2


class InputError(LsmcheckError):
    """A logit source could not be read: missing, unreadable, malformed or empty.

    ``where`` is the location prefix, e.g. ``"cases/a.csv:3:7"`` or ``"--logits #2"``.
    """

    def __init__(self, where: str, message: str) -> None:
        where, message = _printable(where), _printable(message)
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class UsageError(LsmcheckError):
    """A command-line option or configuration value is invalid."""


class LimitError(LsmcheckError):
    """A run stopped at ``--max-elements`` or ``--timeout``; no report was written."""


class WorkerError(LsmcheckError):
    """A worker process of ``--jobs`` died (killed by a signal: the system's out-of-memory
    killer, or a user); no report was written."""
