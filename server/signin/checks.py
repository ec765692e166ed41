"""Authorization request rules that Authlib leaves to us (OIDC Core §3.1.2.1): parameters
it does not check, whether the browser's session may answer the request (``prompt``,
``max_age``, ``id_token_hint``), and what ``prompt=none`` answers when it may not."""

from __future__ import annotations

import re
from dataclasses import dataclass

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)

from ..oauth.request import OstiaryRequest
from ..storage.base import utcnow
from ..storage.sessions import StoredSession
from ..storage.users import StoredUser
from . import response_modes
from .levels import APP_ONLY, Methods

_MAX_AGE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() accepts "²", which int() refuses
#: RFC 9449 §10: base64url (no padding) of a SHA-256 JWK thumbprint (RFC 7638)
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")

#: bytes of parameters (names and values, UTF-8) a request may store while it waits for the
#: user: a bounded cost for every unauthenticated request, and room to spare for a real one
MAX_STORED_PARAMS = 4096
#: used when the request begins and never stored
_NOT_STORED = frozenset({"id_token_hint"})


@dataclass(frozen=True)
class Needs:
    """What a new request needs before its code can be issued."""

    prompts: frozenset[str]
    #: the browser's session, when it may answer this request (see ``reusable_session``)
    session: StoredSession | None
    consent: bool
    #: the client requires a second factor the user does not have
    unmet: bool = False
    step_up: bool = False
    must_change: bool = False
    #: the second factors the user may step up with
    methods: Methods = APP_ONLY

    @property
    def nothing(self) -> bool:
        return self.session is not None and not (self.step_up or self.must_change or self.consent)


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
        # A pushed request's reference (RFC 9126) was taken before these rules run: what is
        # left is a request object by reference (OIDC Core §6.2), which is not served.
        raise RequestURINotSupportedError(redirect_uri=redirect_uri)
    response_modes.check(data, redirect_uri)
    if len(data.get("nonce") or "") > 512:
        raise InvalidRequestError("The nonce is longer than 512 characters.", redirect_uri=redirect_uri)
    max_age = data.get("max_age")
    if max_age is not None and not _MAX_AGE.fullmatch(max_age):
        raise InvalidRequestError("max_age must be a whole number of seconds.", redirect_uri=redirect_uri)
    jkt = data.get("dpop_jkt")
    if jkt is not None and not _JKT.fullmatch(jkt):
        raise InvalidRequestError(
            "dpop_jkt must be the base64url SHA-256 thumbprint of a JWK.", redirect_uri=redirect_uri
        )


def prompts(data: dict[str, str]) -> frozenset[str]:
    return frozenset((data.get("prompt") or "").split())


def reusable_session(
    data: dict[str, str], session: StoredSession | None, user: StoredUser | None, hinted: str | None
) -> StoredSession | None:
    """The browser's ``session`` (of ``user``) if it may answer the request with ``data``
    (checked) as it is: not under ``prompt=login``, not past ``max_age``, and not when the
    ``id_token_hint`` names a subject other than ``user``'s (``hinted``)."""
    max_age = int(data["max_age"]) if data.get("max_age") else None
    # A hint naming someone else: this browser's session is not the one asked about
    # (OIDC Core §3.1.2.1), so prompt=none is login_required and otherwise the user signs in.
    other_user = hinted is not None and user is not None and hinted != user.sub
    if session is None or "login" in prompts(data) or too_old(session, max_age) or other_user:
        return None
    return session


def prompt_none_refusal(needs: Needs, redirect_uri: str) -> OAuth2Error | None:
    """Why a ``prompt=none`` request cannot be answered without the user (OIDC Core
    §3.1.2.6), if it is one that cannot."""
    if "none" not in needs.prompts:
        return None
    if needs.session is None or needs.step_up:
        return LoginRequiredError(redirect_uri=redirect_uri)
    if needs.must_change:
        return InteractionRequiredError(redirect_uri=redirect_uri)
    if needs.consent:
        return ConsentRequiredError(redirect_uri=redirect_uri)
    return None


def too_old(session: StoredSession, max_age: int | None) -> bool:
    """``max_age`` (OIDC Core §3.1.2.1): re-authenticate when the last one is older; 0 always."""
    if max_age is None:
        return False
    if max_age == 0:
        return True
    return (utcnow() - session.auth_time).total_seconds() > max_age
