"""OAuth errors Authlib does not define."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is invalid, unknown, or not allowed for the client."""

    error = "invalid_target"
