"""RFC 8707 resource indicators: which audiences a token may be issued for."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from .clients import OAuthClient
from .errors import InvalidTargetError


def validate_resources(values: Sequence[str], client: OAuthClient) -> tuple[str, ...]:
    """The requested resources, each registered as an audience of ``client``.

    RFC 8707 §2: absolute URIs without a fragment; a resource the client may not use is
    ``invalid_target``.
    """
    accepted: list[str] = []
    for value in values:
        try:
            parts = urlsplit(value)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            raise InvalidTargetError("The resource parameter is not a valid URI.") from None
        if not parts.scheme or "#" in value or not (parts.netloc or parts.path):
            raise InvalidTargetError("The resource parameter must be an absolute URI without a fragment.")
        if value not in client.stored.audiences:
            raise InvalidTargetError("The client may not request a token for this resource.")
        accepted.append(value)
    return tuple(dict.fromkeys(accepted))


def audiences_for(client: OAuthClient, requested: tuple[str, ...]) -> str | list[str]:
    """``aud`` of an access token: the requested resources, else the client's registered
    audiences, else the client itself (RFC 9068 §3 requires a default)."""
    audiences = list(requested or client.stored.audiences)
    if not audiences:
        return client.get_client_id()
    return audiences[0] if len(audiences) == 1 else audiences
