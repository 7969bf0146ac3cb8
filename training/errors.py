"""User-facing errors of the training package.

A ``UsageError`` is a problem with what the user asked for (a missing file, an
unknown dataset, an invalid option). The CLI prints its message on one line and
exits with status 2, before any work starts.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name), for a one-line error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
