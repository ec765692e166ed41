"""Client authentication at the token endpoint (RFC 6749 §2.3.1).

Our own ``client_secret_basic`` and ``client_secret_post``: an unknown client, a wrong
secret or a malformed header all end the same way, 401 ``invalid_client`` with
``WWW-Authenticate: Basic`` (RFC 9110 §15.5.2 requires the header on every 401), instead
of Authlib's mix of 400 and 401 depending on the method tried first.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from .clients import OAuthClient

if TYPE_CHECKING:
    from .bridge import OstiaryRequest

QueryClient = Callable[[str], OAuthClient | None]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` from a Basic header, form-urldecoded per §2.3.1; None if absent or bad.

    Bad means anything that is not ``Basic`` followed by base64 (RFC 7617 §2) of UTF-8
    ``id:secret``. Starlette decodes header bytes as Latin-1, so a header may hold any
    character: one outside ASCII is refused before ``b64decode``, which would raise a bare
    ``ValueError`` for it rather than ``binascii.Error``.
    """
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    encoded = encoded.strip()
    if scheme.lower() != "basic" or not encoded or not encoded.isascii():
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    try:
        pair = _form_decode(client_id), _form_decode(secret)
    except UnicodeDecodeError:
        return None
    # RFC 7617 §2 forbids control characters in both parts; a NUL would also reach
    # PostgreSQL, which refuses it in text as an error deep inside the client lookup.
    return None if any(_CONTROL.search(part) for part in pair) else pair


def claimed_client_ids(request: OstiaryRequest) -> list[str]:
    """The client ids a token request names, in its Basic header or its form."""
    credentials = request.basic_credentials
    named = [credentials[0]] if credentials is not None else []
    named += request.payload.datalist.get("client_id", [])
    return [client_id for client_id in dict.fromkeys(named) if client_id]


def _form_decode(value: str) -> str:
    return unquote_to_bytes(value.replace("+", " ")).decode("utf-8")


def authenticate_basic(query_client: QueryClient, request: OstiaryRequest) -> OAuthClient | None:
    credentials = request.basic_credentials
    if credentials is None:
        return None
    return _check(query_client, *credentials)


def authenticate_post(query_client: QueryClient, request: Any) -> OAuthClient | None:
    client_id, secret = request.form.get("client_id"), request.form.get("client_secret")
    if not client_id or not secret:
        return None
    return _check(query_client, client_id, secret)


def _check(query_client: QueryClient, client_id: str, secret: str) -> OAuthClient | None:
    client = query_client(client_id)
    if client is None or not client.check_client_secret(secret):
        return None
    return client
