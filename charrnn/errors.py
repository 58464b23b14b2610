"""The one error type for user mistakes.

Library code raises `UserError` for anything the user can fix (a bad path, a bad option value, a
corrupt checkpoint). The CLI turns it into a one-line message and exit code 2; everything else is
a bug and keeps its traceback under CHARRNN_DEBUG=1.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, stated as: what, where, what to do."""

    exit_code = 2


def require(condition: bool, message: str) -> None:
    """Raise `UserError(message)` unless `condition` holds."""
    if not condition:
        raise UserError(message)
