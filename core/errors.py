"""Errors a user can fix; the CLI prints them as one line, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a missing token, an unreadable file, a bad symbol."""
