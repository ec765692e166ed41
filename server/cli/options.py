"""Command-line values that several commands take."""

from __future__ import annotations

from ..clients.errors import ClientRegistrationError
from ..settings import parse_duration


def duration(option: str, value: str) -> int:
    """A duration (``90``, ``15m``, ``12h``, ``30d``) up to ten years; else one line naming the option."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= 10 * 365 * 86400:
        raise ClientRegistrationError(option, f"{value!r} is not a duration such as 3600, 15m or 1d (up to ten years)")
    return seconds
