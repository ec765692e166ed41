"""Errors of the second factor, raised to the web layer, which shows them to the user."""

from __future__ import annotations


class MfaError(Exception):
    """An action on the second factor that cannot be done; ``str()`` is for the user."""
