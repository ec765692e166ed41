"""The authorization endpoint's decisions (OIDC Core §3.1.2): who must sign in, who must
consent, and what goes back to the client.

Authlib validates the request (client, redirect URI, response type, scope, PKCE, nonce,
``prompt=none`` without a user). What Authlib leaves to us lives here: ``max_age``,
``prompt=login``/``consent``, remembered consent, and the *interaction*: the server-side
record of one request waiting for the user, bound to the browser that started it.

Errors go back to the client's registered redirect URI with ``state`` and ``iss``
(RFC 6749 §4.1.2.1, RFC 9207) only once the client and that URI are known to be valid;
otherwise the user sees an error page. Nothing here ever redirects to an unregistered URI.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidClientError, InvalidRequestError
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    LoginRequiredError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)

from ..authn import sessions
from ..authn.levels import ACR_PASSWORD, AMR_PASSWORD
from ..authn.secrets import new_token
from ..settings import Settings
from ..storage import AsyncSession, async_sessionmaker, audit, consents, interactions, users as user_store
from ..storage.base import sha256 as digest, utcnow
from ..storage.interactions import StoredInteraction
from ..storage.sessions import StoredSession
from ..storage.users import StoredUser
from .bridge import OstiaryRequest, current_session, run_in_session

T = TypeVar("T")

_MAX_AGE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() accepts "²", which int() refuses


@dataclass(frozen=True)
class SignIn:
    """The authentication an authorization response is issued for."""

    user: StoredUser
    sid: str
    auth_time: datetime
    amr: tuple[str, ...]
    acr: str
    grant_id: str


@dataclass(frozen=True)
class Outcome:
    """What the web layer should do: redirect, or render a page (with these values)."""

    redirect: str | None = None
    page: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    #: a session was started: set this token as the session cookie
    session_token: str | None = None


def error_page(title: str, message: str, status: int = 400) -> Outcome:
    return Outcome(page="error.html", context={"title": title, "message": message}, status=status)


EXPIRED = error_page(
    "This sign-in has expired",
    "Too much time passed, or it was finished in another tab. Go back to the application and sign in again.",
)


class _Malformed(OAuth2Error):  # type: ignore[misc]
    error = "invalid_request"
    description = "The request has characters that are not allowed."


class Authorizer:
    def __init__(self, server: Any, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.server = server
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.authorize_uri = settings.endpoint("/authorize")

    # -- entry points (async; each runs one transaction) ------------------------------

    async def begin(self, pairs: list[tuple[str, str]], session_token: str | None, browser: str) -> Outcome:
        """A new authorization request (``GET``/``POST /authorize``)."""
        request = self._request(pairs)
        return await self._run(request, lambda: self._begin(request, pairs, session_token, browser))

    async def interaction(self, handle: str, browser: str) -> tuple[StoredInteraction, str] | None:
        """The open interaction behind ``handle`` if this browser started it, with its client's name."""
        request = self._request([])
        return await self._run(request, lambda: self._open(handle, browser))

    async def find_user(self, username: str) -> StoredUser | None:
        return await self._run(self._request([]), lambda: user_store.get_user_by_username(current_session(), username))

    async def after_login(
        self, handle: str, browser: str, user: StoredUser, rehash: str | None, old_session: str | None
    ) -> Outcome:
        request = self._request([])
        return await self._run(request, lambda: self._after_login(handle, browser, user, rehash, old_session))

    async def decide(self, handle: str, browser: str, session_token: str | None, allow: bool) -> Outcome:
        request = self._request([])
        return await self._run(request, lambda: self._decide(handle, browser, session_token, allow))

    # -- the decisions (synchronous, inside the transaction) -----------------------------

    def _begin(
        self, request: OstiaryRequest, pairs: list[tuple[str, str]], session_token: str | None, browser: str
    ) -> Outcome:
        db = current_session()
        session, user = self._signed_in(session_token)
        try:
            grant = self._validated(request, user)
            self._check_extras(request, pairs, grant.redirect_uri)
        except OAuth2Error as error:
            return self._error(request, error)
        data = request.payload.data
        prompts = set((data.get("prompt") or "").split())
        max_age = int(data["max_age"]) if data.get("max_age") else None
        fresh = session is not None and "login" not in prompts and not _too_old(session, max_age)
        needs_consent = "consent" in prompts or user is None or self._consent_missing(user, grant)
        if "none" in prompts:
            if not fresh:
                return self._error(request, LoginRequiredError(redirect_uri=grant.redirect_uri))
            if needs_consent:
                return self._error(request, ConsentRequiredError(redirect_uri=grant.redirect_uri))
        if fresh and not needs_consent:
            assert session is not None and user is not None
            return self._complete(grant, user, session)
        handle = new_token()
        interactions.insert_interaction(
            db,
            id_digest=digest(handle),
            browser_digest=digest(browser),
            client_id=grant.client.get_client_id(),
            params=pairs,
            session_sid=session.sid if fresh and session is not None else None,
            expires_at=utcnow() + timedelta(seconds=self.settings.interaction_ttl),
        )
        client_name = grant.client.stored.name
        if fresh:
            return self._consent_page(handle, grant)
        hint = (data.get("login_hint") or "")[:150]
        return Outcome(page="login.html", context={"handle": handle, "client_name": client_name, "username": hint})

    def _open(self, handle: str, browser: str) -> tuple[StoredInteraction, str] | None:
        stored = self._interaction(handle, browser)
        if stored is None:
            return None
        client = self.server.query_client(stored.client_id)
        return stored, client.stored.name if client else stored.client_id

    def _after_login(
        self, handle: str, browser: str, user: StoredUser, rehash: str | None, old_session: str | None
    ) -> Outcome:
        db = current_session()
        stored = self._interaction(handle, browser)
        if stored is None:
            return EXPIRED
        current = user_store.get_user(db, user.id)
        if current is None or current.disabled_at is not None or current.password_hash != user.password_hash:
            # The password changed (or the account was disabled) while this one was checked.
            return error_page("Sign in again", "Your account changed while you were signing in. Please try again.")
        if rehash:
            user_store.rehash_password(db, user.id, old=user.password_hash, new=rehash)
        started = sessions.start(
            db,
            user_id=user.id,
            amr=[AMR_PASSWORD],
            acr=ACR_PASSWORD,
            ttl=self.settings.session_ttl,
            replaces=old_session,
        )
        interactions.record_login(db, digest(handle), started.session.sid)
        audit.record(db, "login.succeeded", actor=user.sub, subject=stored.client_id, details={"amr": [AMR_PASSWORD]})
        return replace(self._continue(handle, stored, user, started.session), session_token=started.token)

    def _continue(self, handle: str, stored: StoredInteraction, user: StoredUser, session: StoredSession) -> Outcome:
        request = self._request(list(stored.params))
        try:
            grant = self._validated(request, user)
        except OAuth2Error as error:
            return self._error(request, error)
        prompts = set((request.payload.data.get("prompt") or "").split())
        if "consent" in prompts or self._consent_missing(user, grant):
            return self._consent_page(handle, grant)
        if not interactions.complete_interaction(current_session(), digest(handle)):
            return EXPIRED
        return self._complete(grant, user, session)

    def _decide(self, handle: str, browser: str, session_token: str | None, allow: bool) -> Outcome:
        db = current_session()
        stored = self._interaction(handle, browser)
        if stored is None:
            return EXPIRED
        session, user = self._signed_in(session_token)
        if session is None or user is None or stored.session_sid != session.sid:
            return error_page(
                "Your sign-in changed",
                "You signed out or in again in another tab. Go back to the application and start again.",
            )
        request = self._request(list(stored.params))
        try:
            grant = self._validated(request, user)
        except OAuth2Error as error:
            return self._error(request, error)
        if not interactions.complete_interaction(db, digest(handle)):
            return EXPIRED
        if not allow:
            audit.record(db, "consent.denied", actor=user.sub, subject=stored.client_id)
            return self._error(request, AccessDeniedError(redirect_uri=grant.redirect_uri))
        consents.remember(db, user.id, stored.client_id, frozenset(request.scope.split()))
        audit.record(db, "consent.granted", actor=user.sub, subject=stored.client_id, details={"scope": request.scope})
        return self._complete(grant, user, session)

    # -- pieces ------------------------------------------------------------------------

    def _complete(self, grant: Any, user: StoredUser, session: StoredSession) -> Outcome:
        """Issue the code and send the browser back to the client."""
        request: OstiaryRequest = grant.request
        request.sign_in = SignIn(
            user=user,
            sid=session.sid,
            auth_time=session.auth_time,
            amr=session.amr,
            acr=session.acr,
            grant_id=new_token()[:32],
        )
        response = self.server.create_authorization_response(request, grant_user=user, grant=grant)
        return Outcome(redirect=self._with_iss(dict(response.headers)["Location"]))

    def _error(self, request: OstiaryRequest, error: OAuth2Error) -> Outcome:
        redirect_uri = error.redirect_uri or self._safe_redirect_uri(request)
        if redirect_uri is None or isinstance(error, InvalidClientError | _Malformed):
            return error_page("The application's request cannot be used", _describe(error))
        error.redirect_uri = redirect_uri
        error.redirect_fragment = False
        error.state = request.payload.data.get("state")
        _status, _body, headers = error()
        return Outcome(redirect=self._with_iss(dict(headers)["Location"]))

    def _safe_redirect_uri(self, request: OstiaryRequest) -> str | None:
        """The request's redirect URI, only if it is exactly one registered for its client."""
        datalist = request.payload.datalist
        if any(len(datalist.get(name, [])) != 1 for name in ("client_id", "redirect_uri")):
            return None
        client = self.server.query_client(datalist["client_id"][0])
        uri = datalist["redirect_uri"][0]
        return uri if client is not None and client.check_redirect_uri(uri) else None

    def _check_extras(self, request: OstiaryRequest, pairs: list[tuple[str, str]], redirect_uri: str) -> None:
        """Request rules Authlib leaves to us; raised errors go to the (valid) redirect URI."""
        data = request.payload.data
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidRequestError("A parameter is repeated.", redirect_uri=redirect_uri)
            seen.add(name)
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

    def _consent_missing(self, user: StoredUser, grant: Any) -> bool:
        client = grant.client
        if client.stored.first_party:
            return False
        granted = consents.granted_scopes(current_session(), user.id, client.get_client_id())
        return not set(grant.request.scope.split()) <= granted

    def _consent_page(self, handle: str, grant: Any) -> Outcome:
        return Outcome(
            page="consent.html",
            context={
                "handle": handle,
                "client_name": grant.client.stored.name,
                "scopes": [describe_scope(scope) for scope in grant.request.scope.split()],
            },
        )

    def _signed_in(self, session_token: str | None) -> tuple[StoredSession | None, StoredUser | None]:
        db = current_session()
        session = sessions.load(db, session_token)
        if session is None:
            return None, None
        user = user_store.get_user(db, session.user_id)
        if user is None or user.disabled_at is not None:
            return None, None
        return session, user

    def _interaction(self, handle: str, browser: str) -> StoredInteraction | None:
        if not handle or len(handle) > 128:
            return None
        stored = interactions.get_open_interaction(current_session(), digest(handle))
        if stored is None or stored.browser_digest != digest(browser):
            return None
        return stored

    def _request(self, pairs: list[tuple[str, str]]) -> OstiaryRequest:
        return OstiaryRequest("GET", self.authorize_uri, {}, [], query=pairs)

    def _with_iss(self, location: str) -> str:
        return str(add_params_to_uri(location, [("iss", self.settings.issuer)]))

    async def _run(self, request: OstiaryRequest, call: Callable[[], T]) -> T:
        return await run_in_session(self.sessionmaker, request, call)

    def _validated(self, request: OstiaryRequest, user: StoredUser | None) -> Any:
        """Authlib's validation of the request. Authlib raises a bare ValueError when an
        error description would hold characters RFC 6749 forbids (a quote in a redirect
        URI, say): such a request is malformed, so it becomes an error page, never a 500."""
        try:
            return self.server.get_consent_grant(request, end_user=user)
        except ValueError:
            raise _Malformed from None


def _too_old(session: StoredSession, max_age: int | None) -> bool:
    """``max_age`` (OIDC Core §3.1.2.1): re-authenticate when the last one is older; 0 always."""
    if max_age is None:
        return False
    if max_age == 0:
        return True
    return (utcnow() - session.auth_time).total_seconds() > max_age


def _describe(error: OAuth2Error) -> str:
    description = error.get_error_description() or error.error
    return f"{description} ({error.error})"


_SCOPE_WORDS = {
    "openid": "Confirm who you are",
    "profile": "See your name and username",
    "email": "See your email address",
    "offline_access": "Stay connected when you are not using it",
}


def describe_scope(scope: str) -> dict[str, str]:
    return {"name": scope, "text": _SCOPE_WORDS.get(scope, f"Access {scope}")}
