"""Authorization request rules that Authlib leaves to us (OIDC Core §3.1.2.1)."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.core.errors import RequestNotSupportedError, RequestURINotSupportedError

from ..storage.base import utcnow
from ..storage.sessions import StoredSession
from .bridge import OstiaryRequest

_MAX_AGE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() accepts "²", which int() refuses

#: bytes of parameters (names and values, UTF-8) a request may store while it waits for the
#: user: a bounded cost for every unauthenticated request, and room to spare for a real one
MAX_STORED_PARAMS = 4096
#: used when the request begins and never stored
_NOT_STORED = frozenset({"id_token_hint"})


def stored_params(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What an interaction keeps of its request: everything but the ``id_token_hint``."""
    return [(name, value) for name, value in pairs if name not in _NOT_STORED]


def stored_size(pairs: list[tuple[str, str]]) -> int:
    return sum(len(name.encode()) + len(value.encode()) for name, value in stored_params(pairs))


def check_extras(request: OstiaryRequest, pairs: list[tuple[str, str]], redirect_uri: str) -> None:
    """Request rules Authlib leaves to us; raised errors go to the (valid) redirect URI."""
    data = request.payload.data
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise InvalidRequestError("A parameter is repeated.", redirect_uri=redirect_uri)
        seen.add(name)
    if stored_size(pairs) > MAX_STORED_PARAMS:
        raise InvalidRequestError(
            f"The request's parameters exceed {MAX_STORED_PARAMS} bytes.", redirect_uri=redirect_uri
        )
    if "request" in data:
        raise RequestNotSupportedError(redirect_uri=redirect_uri)
    if "request_uri" in data:
        raise RequestURINotSupportedError(redirect_uri=redirect_uri)
    if data.get("response_mode", "query") != "query":
        raise InvalidRequestError("Only response_mode=query is supported.", redirect_uri=redirect_uri)
    if len(data.get("nonce") or "") > 512:
        raise InvalidRequestError("The nonce is longer than 512 characters.", redirect_uri=redirect_uri)
    max_age = data.get("max_age")
    if max_age is not None and not _MAX_AGE.fullmatch(max_age):
        raise InvalidRequestError("max_age must be a whole number of seconds.", redirect_uri=redirect_uri)


def too_old(session: StoredSession, max_age: int | None) -> bool:
    """``max_age`` (OIDC Core §3.1.2.1): re-authenticate when the last one is older; 0 always."""
    if max_age is None:
        return False
    if max_age == 0:
        return True
    return (utcnow() - session.auth_time).total_seconds() > max_age
