"""Every OAuth error Ostiary raises beyond Authlib's own."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is invalid, unknown, or not allowed for the client."""

    error = "invalid_target"


class UnsupportedTokenTypeError(OAuth2Error):  # type: ignore[misc]
    """RFC 7009 §2.2.1, answered 400 as an RFC 6749 §5.2 error (Authlib's is a 401)."""

    error = "unsupported_token_type"
    status_code = 400


class UnmetAuthenticationRequirementsError(OAuth2Error):  # type: ignore[misc]
    """OpenID Connect Core errata (``unmet_authentication_requirements``): the level the
    request asked for cannot be met."""

    error = "unmet_authentication_requirements"


class MalformedRequestError(OAuth2Error):  # type: ignore[misc]
    """A request Authlib could not even describe (characters RFC 6749 §5.2 forbids in an
    error description): answered with an error page, never at the redirect URI."""

    error = "invalid_request"
    description = "The request has characters that are not allowed."
