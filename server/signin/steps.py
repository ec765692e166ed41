"""The sign-in flow's steps and the pieces they share, as functions: loading the browser's
session and the interaction, parking a request until the user answers (``wait_for_user``,
``begin_account``), validating the stored request again, answering errors to the client,
and the one gate that issues the code (``complete``).

Each runs inside the caller's transaction, its session handed in (``db``, or the one the
request joined, ``request.extras.session``), with what else it needs: the Authlib server
(``server``), the issuer, the settings, the level policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError

from .. import i18n
from ..authn import sessions
from ..authn.secrets import new_grant_id, new_token
from ..i18n import N_
from ..keys.holder import KeyRingHolder
from ..oauth.errors import MalformedRequestError
from ..oauth.request import OstiaryRequest
from ..settings import Settings
from ..storage import Session, consents, interactions, users as user_store
from ..storage.base import sha256 as digest, utcnow
from ..storage.interactions import StoredInteraction
from ..storage.sessions import SeenFrom, StoredSession
from ..storage.users import StoredUser
from . import response_modes
from .acr import NOTHING, requested_acr
from .checks import Needs, stored_params
from .id_token_hint import hinted_subject
from .levels import (
    APP_ONLY,
    Level,
    LevelPolicy,
    Methods,
    otp_page,
    password_change_page,
    same_credential,
    satisfied,
    unmet,
)
from .outcome import ACCOUNT_CHANGED, CHANGED, EXPIRED, Outcome, describe_scope, error_page

log = logging.getLogger("ostiary")


def account_name(settings: Settings) -> str:
    """How the account pages are named where a client's name would be."""
    return i18n.gettext("your %(brand)s account") % {"brand": settings.brand_name}


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
class Waiting:
    """An open interaction as the pages show it."""

    stored: StoredInteraction
    client_name: str
    #: the redirect URI it ends at (None: an account sign-in, which ends on our own pages)
    client_redirect: str | None
    #: the second factors its user may show, once the password is checked
    methods: Methods = APP_ONLY


@dataclass(frozen=True)
class PasswordLogin:
    """A right password, as the sign-in step after it needs it."""

    user: StoredUser
    #: the password's new hash, when its parameters are outdated
    rehash: str | None
    old_session: str | None
    device_cookie: str | None
    #: the browser and address the sign-in came from
    seen_from: SeenFrom | None = None


@dataclass(frozen=True)
class SecondFactorLogin:
    """A code typed for a sign-in that waits for the second factor."""

    code: str
    device_cookie: str | None
    seen_from: SeenFrom | None = None


@dataclass(frozen=True)
class ForcedChange:
    password_hash: str
    device_cookie: str | None
    seen_from: SeenFrom | None = None


def store_interaction(
    db: Session,
    settings: Settings,
    handle: str,
    browser: str,
    origin: bytes | None,
    *,
    client_id: str | None,
    params: list[tuple[str, str]],
    session_sid: str | None,
    return_to: str | None = None,
) -> None:
    """Store an interaction, first making room among its origin's pending ones: past
    ``OSTIARY_PENDING_INTERACTIONS_PER_ADDRESS`` the oldest gives way, so a flood from one
    address costs at most that many rows, and nobody is turned away."""
    if origin is not None:
        evicted = interactions.make_room(db, origin, settings.pending_interactions_per_address - 1)
        if evicted:
            log.info("an address reached its pending sign-ins limit: %d oldest evicted", evicted)
    interactions.insert_interaction(
        db,
        id_digest=digest(handle),
        browser_digest=digest(browser),
        origin_digest=origin,
        client_id=client_id,
        params=params,
        session_sid=session_sid,
        return_to=return_to,
        expires_at=utcnow() + timedelta(seconds=settings.interaction_ttl),
    )


def wait_for_user(
    settings: Settings,
    request: OstiaryRequest,
    grant: Any,
    needs: Needs,
    *,
    pairs: list[tuple[str, str]],
    browser: str,
    origin: bytes | None,
) -> Outcome:
    """Keep a new request (``pairs``, validated as ``grant``) as an interaction and show the
    page it waits on: the second factor, a new password, consent, or the login form."""
    handle = new_token()
    store_interaction(
        request.extras.session,
        settings,
        handle,
        browser,
        origin,
        client_id=grant.client.get_client_id(),
        params=stored_params(pairs),
        session_sid=needs.session.sid if needs.session is not None else None,
    )
    name = grant.client.stored.name
    if needs.step_up:
        outcome = otp_page(handle, name, methods=needs.methods)
    elif needs.must_change:
        outcome = password_change_page(handle, name)
    elif needs.session is not None:
        outcome = consent_page(handle, grant)
    elif "create" in needs.prompts and settings.signup == "open":
        # OpenID Connect's "Initiating User Registration" (prompt=create): the sign-up form
        outcome = Outcome(redirect="/signup?" + urlencode({"interaction": handle}))
    else:
        hint = (request.payload.data.get("login_hint") or "")[:150]
        context = {"handle": handle, "client_name": name, "username": hint}
        outcome = Outcome(page="login.html", context=context)
    return replace(outcome, client_redirect=grant.redirect_uri)


def begin_account(
    db: Session,
    settings: Settings,
    levels: LevelPolicy,
    session_token: str | None,
    browser: str,
    return_to: str,
    origin: bytes | None,
    client: Any = None,
) -> Outcome | None:
    """Sign-in for our own account pages: None when the browser's session is good enough,
    else a new interaction and its page (password, second factor, new password).

    With ``client``, sign-in for a page that acts for that client (a device's
    confirmation, RFC 8628): at the level the client needs, with its name on the pages."""
    session, user = signed_in(db, session_token)
    step_up = must_change = False
    methods = APP_ONLY
    if session is not None and user is not None:
        level = levels.for_request(db, NOTHING, client, user)
        step_up = not satisfied(level, session.acr)
        methods = levels.methods(db, user, level)
        must_change = user.must_change_password
        if not step_up and not must_change:
            return None
    handle = new_token()
    store_interaction(
        db,
        settings,
        handle,
        browser,
        origin,
        client_id=client.get_client_id() if client is not None else None,
        params=[],
        session_sid=session.sid if session is not None and (step_up or must_change) else None,
        return_to=return_to,
    )
    name = client.stored.name if client is not None else account_name(settings)
    if step_up:
        return otp_page(handle, name, methods=methods)
    if must_change:
        return password_change_page(handle, name)
    return Outcome(page="login.html", context={"handle": handle, "client_name": name, "username": ""})


def framed(
    db: Session, server: Any, handle: str, browser: str, step: Callable[[StoredInteraction], Outcome]
) -> Outcome:
    """Run ``step`` on the open interaction behind ``handle`` (EXPIRED without one); the
    pages it shows may lead to the interaction's redirect URI (CSP ``form-action``)."""
    stored = open_interaction(db, handle, browser)
    if stored is None:
        return EXPIRED
    outcome = step(stored)
    if outcome.page is None or outcome.client_redirect is not None:
        return outcome
    return replace(outcome, client_redirect=client_redirect(server, stored))


def client_redirect(server: Any, stored: StoredInteraction) -> str | None:
    """The registered redirect URI the interaction's request will be answered at."""
    if stored.client_id is None:
        return None
    client = server.query_client(stored.client_id)
    if client is None:
        return None
    uri = dict(stored.params).get("redirect_uri") or client.get_default_redirect_uri()
    return uri if uri and client.check_redirect_uri(uri) else None


def subject_hint(keys: KeyRingHolder, issuer: str, request: OstiaryRequest, grant: Any) -> str | None:
    """The ``sub`` of the request's ``id_token_hint`` (None without one); a hint we did not
    issue to this client is ``invalid_request`` at the redirect URI."""
    hint = request.payload.data.get("id_token_hint")
    if not hint:  # RFC 6749 §3.1: a parameter without a value is as if omitted
        return None
    ring = keys.current
    client_id = grant.client.get_client_id()
    return hinted_subject(hint, ring.verification, issuer, client_id, grant.redirect_uri)


def complete(
    server: Any, levels: LevelPolicy, issuer: str, grant: Any, user: StoredUser, session: StoredSession
) -> Outcome:
    """Issue the code and send the browser back to the client, if the session's level is
    what this request needs (the one gate every path to a code goes through)."""
    request: OstiaryRequest = grant.request
    level = levels.for_request(request.extras.session, requested_acr(request.payload.data), grant.client, user)
    if level is Level.UNMET:
        return answer_error(server, issuer, request, unmet(grant.redirect_uri))
    if not satisfied(level, session.acr):
        return error_page(N_("A second factor is needed"), N_("Go back to the application and sign in again."))
    if user.must_change_password:
        return error_page(N_("A new password is needed"), N_("Go back to the application and sign in again."))
    request.extras.sign_in = SignIn(
        user=user,
        sid=session.sid,
        auth_time=session.auth_time,
        amr=session.amr,
        acr=session.acr,
        grant_id=new_grant_id(),
    )
    response = server.create_authorization_response(request, grant_user=user, grant=grant)
    location = _with_iss(issuer, dict(response.headers)["Location"])
    return response_modes.deliver(request.payload.data, grant.redirect_uri, location)


def answer_error(server: Any, issuer: str, request: OstiaryRequest, error: OAuth2Error) -> Outcome:
    """``error`` sent to the request's redirect URI (with ``state`` and ``iss``) when that URI
    is known to be registered for the client; otherwise an error page."""
    redirect_uri = error.redirect_uri or _safe_redirect_uri(server, request)
    if redirect_uri is None or isinstance(error, InvalidClientError | MalformedRequestError):
        return refusal_page(error)
    error.redirect_uri = redirect_uri
    error.redirect_fragment = False
    error.state = request.payload.data.get("state")
    _status, _body, headers = error()
    location = _with_iss(issuer, dict(headers)["Location"])
    return response_modes.deliver(request.payload.data, redirect_uri, location)


def refusal_page(error: OAuth2Error) -> Outcome:
    """The error page of a request that cannot be answered at a redirect URI."""
    return error_page(N_("The application's request cannot be used"), _describe(error))


def _safe_redirect_uri(server: Any, request: OstiaryRequest) -> str | None:
    """The request's redirect URI, only if it is exactly one registered for its client."""
    datalist = request.payload.datalist
    if any(len(datalist.get(name, [])) != 1 for name in ("client_id", "redirect_uri")):
        return None
    client = server.query_client(datalist["client_id"][0])
    uri = datalist["redirect_uri"][0]
    return uri if client is not None and client.check_redirect_uri(uri) else None


def consent_missing(user: StoredUser, grant: Any) -> bool:
    client = grant.client
    if client.stored.first_party:
        return False
    granted = consents.granted_scopes(grant.request.extras.session, user.id, client.get_client_id())
    return not set(grant.request.scope.split()) <= granted


def client_name(server: Any, stored: StoredInteraction) -> str:
    if stored.client_id is None:
        return account_name(server.settings)
    client = server.query_client(stored.client_id)
    return client.stored.name if client else stored.client_id


def consent_page(handle: str, grant: Any) -> Outcome:
    client = grant.client.stored
    return Outcome(
        page="consent.html",
        context={
            "handle": handle,
            "client_name": client.name,
            # RFC 7591 §2: shown to the user (the page's CSP allows the logo's origin)
            "client_logo": client.logo_uri,
            "client_policy": client.policy_uri,
            "client_tos": client.tos_uri,
            "client_unverified": client.registration_token_digest is not None,
            "scopes": [describe_scope(scope) for scope in grant.request.scope.split()],
        },
    )


@dataclass(frozen=True)
class Awaited:
    """Whose second factor a sign-in waits for: ``user`` (None: nobody has signed in yet),
    and the session stepping up, if it is one; ``changed``: the page to show instead, when
    the account or the session changed meanwhile."""

    user: StoredUser | None = None
    session: StoredSession | None = None
    changed: Outcome | None = None


def awaited(db: Session, stored: StoredInteraction, session_token: str | None) -> Awaited:
    """The user whose password this sign-in checked (still that password, still enabled),
    or the user of the browser's session that it steps up (still that session)."""
    if stored.pending_user_id is not None:
        user = user_store.get_user(db, stored.pending_user_id)
        if user is None or user.disabled_at is not None or not same_credential(user, stored.pending_credential):
            return Awaited(changed=ACCOUNT_CHANGED)
        return Awaited(user)
    if stored.session_sid is not None:
        session, user = signed_in(db, session_token)
        if session is None or user is None or stored.session_sid != session.sid:
            return Awaited(changed=CHANGED)
        return Awaited(user, session)
    return Awaited()


def signed_in(db: Session, session_token: str | None) -> tuple[StoredSession | None, StoredUser | None]:
    """The browser's live session and its enabled user, else (None, None). A session found
    is in use: its last-seen time moves (at most every few minutes)."""
    session = sessions.load(db, session_token)
    if session is None:
        return None, None
    user = user_store.get_user(db, session.user_id)
    if user is None or user.disabled_at is not None:
        return None, None
    sessions.seen(db, session)
    return session, user


def open_interaction(db: Session, handle: str, browser: str) -> StoredInteraction | None:
    if not handle or len(handle) > 128:
        return None
    stored = interactions.get_open_interaction(db, digest(handle))
    if stored is None or stored.browser_digest != digest(browser):
        return None
    return stored


def validated(server: Any, request: OstiaryRequest, user: StoredUser | None) -> Any:
    """Authlib's validation of the request. Authlib raises a bare ValueError when an
    error description would hold characters RFC 6749 forbids (a quote in a redirect
    URI, say): such a request is malformed, so it becomes an error page, never a 500."""
    try:
        return server.get_consent_grant(request, end_user=user)
    except ValueError:
        raise MalformedRequestError from None


def _with_iss(issuer: str, location: str) -> str:
    return str(add_params_to_uri(location, [("iss", issuer)]))


def _describe(error: OAuth2Error) -> str:
    description = error.get_error_description() or error.error
    return f"{description} ({error.error})"
