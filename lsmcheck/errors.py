"""The one family of errors a user can cause.

Each error renders as a single line that names where the problem is (a file with line and
column, or a command-line flag) and what was expected.  The CLI prints ``str(error)`` and
exits with code 2; a traceback always means a bug in lsmcheck itself.
"""

from __future__ import annotations


class LsmcheckError(Exception):
    """Base class of every error a user can cause (exit code 2)."""

    exit_code = 2


class InputError(LsmcheckError):
    """A logit source could not be read: missing, unreadable, malformed or empty.

    ``where`` is the location prefix, e.g. ``"cases/a.csv:3:7"`` or ``"--logits #2"``.
    """

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class UsageError(LsmcheckError):
    """A command-line option or configuration value is invalid."""
