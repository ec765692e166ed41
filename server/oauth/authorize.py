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

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import AccessDeniedError
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
)

from ..authn import sessions
from ..authn.levels import ACR_MFA, ACR_PASSWORD, AMR_PASSWORD, MULTI_FACTOR, PASSWORD_ONLY
from ..authn.login import LoginGuard
from ..authn.secrets import new_token
from ..keys.holder import KeyRingHolder
from ..mfa.service import SecondFactor
from ..settings import Settings
from ..storage import AsyncSession, async_sessionmaker, audit, consents, interactions, users as user_store
from ..storage.base import sha256 as digest
from ..storage.interactions import StoredInteraction
from ..storage.sessions import StoredSession
from ..storage.users import StoredUser
from ..users.service import change_password
from .acr import NOTHING, requested_acr
from .bridge import OstiaryRequest, current_session, run_in_session
from .flow import ACCOUNT_NAME, FlowPieces, ForcedChange, PasswordLogin, Waiting
from .outcome import ACCOUNT_CHANGED, CHANGED, EXPIRED, Outcome
from .request_checks import check_extras, stored_params, too_old
from .stepup import Level, LevelPolicy, otp_page, password_change_page, same_credential, unmet

T = TypeVar("T")


class Authorizer(FlowPieces):
    """The sign-in steps; each entry point is one transaction."""

    def __init__(
        self,
        server: Any,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        second_factor: SecondFactor,
        login_guard: LoginGuard,
        keys: KeyRingHolder,
    ) -> None:
        super().__init__(server, settings, LevelPolicy(settings, second_factor, server), keys)
        self.sessionmaker = sessionmaker
        self.login_guard = login_guard

    # -- entry points (async; each runs one transaction) ------------------------------

    async def begin(
        self, pairs: list[tuple[str, str]], session_token: str | None, browser: str, *, origin: bytes | None
    ) -> Outcome:
        """A new authorization request (``GET``/``POST /authorize``) from the client address
        whose keyed digest is ``origin`` (its pending interactions are capped)."""
        request = self._request(pairs)
        return await self._run(request, lambda: self._begin(request, pairs, session_token, browser, origin))

    async def begin_account(
        self, session_token: str | None, browser: str, return_to: str, *, origin: bytes | None
    ) -> Outcome | None:
        """Sign-in for our own account pages: None when the browser's session is good enough,
        else the page (password, or second factor) that leads back to ``return_to``."""
        return await self._run(
            self._request([]), lambda: self._begin_account(session_token, browser, return_to, origin)
        )

    async def interaction(self, handle: str, browser: str) -> Waiting | None:
        """The open interaction behind ``handle`` if this browser started it."""
        request = self._request([])
        return await self._run(request, lambda: self._open(handle, browser))

    async def find_user(self, username: str) -> StoredUser | None:
        return await self._run(self._request([]), lambda: user_store.get_user_by_username(current_session(), username))

    async def after_login(
        self,
        handle: str,
        browser: str,
        user: StoredUser,
        rehash: str | None,
        old_session: str | None,
        *,
        device: bytes | None = None,
        device_cookie: str | None = None,
    ) -> Outcome:
        """The password was right (counted on ``device``'s lockout counter, which starts
        again); ``device_cookie`` is the browser's known-device cookie, if it has one."""
        request = self._request([])
        login = PasswordLogin(user, rehash, old_session, device_cookie)

        def step() -> Outcome:
            self.login_guard.succeeded(current_session(), user.id, device)
            return self._framed(handle, browser, lambda stored: self._after_login(handle, stored, login))

        return await self._run(request, step)

    async def second_factor(
        self, handle: str, browser: str, session_token: str | None, code: str, *, device_cookie: str | None = None
    ) -> Outcome:
        """The TOTP (or backup) code of a sign-in waiting for it, counted on the known-device
        counter when ``device_cookie`` names the user (as the password is)."""
        request = self._request([])

        def step(stored: StoredInteraction) -> Outcome:
            return self._second_factor(handle, stored, session_token, code, device_cookie)

        return await self._run(request, lambda: self._framed(handle, browser, step))

    async def session_user(self, session_token: str | None) -> StoredUser | None:
        return await self._run(self._request([]), lambda: self._signed_in(session_token)[1])

    async def forced_password_change(
        self,
        handle: str,
        browser: str,
        session_token: str | None,
        password_hash: str,
        *,
        device_cookie: str | None = None,
    ) -> Outcome:
        """The new password of a user who must change theirs before going on (checked and
        hashed by the caller)."""
        request = self._request([])
        change = ForcedChange(password_hash, device_cookie)
        return await self._run(
            request,
            lambda: self._framed(
                handle, browser, lambda stored: self._forced_change(handle, stored, session_token, change)
            ),
        )

    async def decide(self, handle: str, browser: str, session_token: str | None, allow: bool) -> Outcome:
        request = self._request([])
        return await self._run(
            request,
            lambda: self._framed(handle, browser, lambda stored: self._decide(handle, stored, session_token, allow)),
        )

    async def _run(self, request: OstiaryRequest, call: Callable[[], T]) -> T:
        return await run_in_session(self.sessionmaker, request, call)

    # -- the decisions (synchronous, inside the transaction) -----------------------------

    def _begin(
        self,
        request: OstiaryRequest,
        pairs: list[tuple[str, str]],
        session_token: str | None,
        browser: str,
        origin: bytes | None,
    ) -> Outcome:
        session, user = self._signed_in(session_token)
        try:
            grant = self._validated(request, user)
            check_extras(request, pairs, grant.redirect_uri)
            acr = requested_acr(request.payload.data)
            hinted = self._hinted_subject(request, grant)
        except OAuth2Error as error:
            return self._error(request, error)
        data = request.payload.data
        prompts = set((data.get("prompt") or "").split())
        max_age = int(data["max_age"]) if data.get("max_age") else None
        # A hint naming someone else: this browser's session is not the one asked about
        # (OIDC Core §3.1.2.1), so prompt=none is login_required and otherwise the user signs in.
        other_user = hinted is not None and user is not None and hinted != user.sub
        fresh = session is not None and "login" not in prompts and not too_old(session, max_age) and not other_user
        needs_consent = "consent" in prompts or user is None or self._consent_missing(user, grant)
        step_up = must_change = False
        if fresh:
            assert session is not None and user is not None
            level = self.levels.for_request(current_session(), acr, grant.client, user)
            if level is Level.UNMET:
                return self._error(request, unmet(grant.redirect_uri))
            step_up = level is Level.MFA and session.acr != ACR_MFA
            must_change = user.must_change_password
        if "none" in prompts:
            if not fresh or step_up:
                return self._error(request, LoginRequiredError(redirect_uri=grant.redirect_uri))
            if must_change:
                return self._error(request, InteractionRequiredError(redirect_uri=grant.redirect_uri))
            if needs_consent:
                return self._error(request, ConsentRequiredError(redirect_uri=grant.redirect_uri))
        if fresh and not step_up and not must_change and not needs_consent:
            assert session is not None and user is not None
            return self._complete(grant, user, session)
        handle = new_token()
        self._store(
            handle,
            browser,
            origin,
            client_id=grant.client.get_client_id(),
            params=stored_params(pairs),
            session_sid=session.sid if fresh and session is not None else None,
        )
        client_name = grant.client.stored.name
        if step_up:
            outcome = otp_page(handle, client_name)
        elif must_change:
            outcome = password_change_page(handle, client_name)
        elif fresh:
            outcome = self._consent_page(handle, grant)
        else:
            hint = (data.get("login_hint") or "")[:150]
            context = {"handle": handle, "client_name": client_name, "username": hint}
            outcome = Outcome(page="login.html", context=context)
        return replace(outcome, client_redirect=grant.redirect_uri)

    def _begin_account(
        self, session_token: str | None, browser: str, return_to: str, origin: bytes | None
    ) -> Outcome | None:
        session, user = self._signed_in(session_token)
        step_up = must_change = False
        if session is not None and user is not None:
            level = self.levels.for_request(current_session(), NOTHING, None, user)
            step_up = level is Level.MFA and session.acr != ACR_MFA
            must_change = user.must_change_password
            if not step_up and not must_change:
                return None
        handle = new_token()
        self._store(
            handle,
            browser,
            origin,
            client_id=None,
            params=[],
            session_sid=session.sid if session is not None and (step_up or must_change) else None,
            return_to=return_to,
        )
        if step_up:
            return otp_page(handle, ACCOUNT_NAME)
        if must_change:
            return password_change_page(handle, ACCOUNT_NAME)
        return Outcome(page="login.html", context={"handle": handle, "client_name": ACCOUNT_NAME, "username": ""})

    def _open(self, handle: str, browser: str) -> Waiting | None:
        stored = self._interaction(handle, browser)
        if stored is None:
            return None
        return Waiting(stored, self._client_name(stored), self._client_redirect(stored))

    def _after_login(self, handle: str, stored: StoredInteraction, login: PasswordLogin) -> Outcome:
        db = current_session()
        user, rehash = login.user, login.rehash
        current = user_store.get_user(db, user.id)
        if current is None or current.disabled_at is not None or current.password_hash != user.password_hash:
            # The password changed (or the account was disabled) while this one was checked.
            return ACCOUNT_CHANGED
        if rehash:
            user_store.rehash_password(db, user.id, old=user.password_hash, new=rehash)
            current = replace(current, password_hash=rehash)
        if self.levels.for_interaction(current_session(), stored, current) is Level.MFA:
            assert current.password_hash is not None
            interactions.hold_for_second_factor(db, digest(handle), user.id, digest(current.password_hash))
            return otp_page(handle, self._client_name(stored))
        started = sessions.start(
            db,
            user_id=user.id,
            amr=list(PASSWORD_ONLY),
            acr=ACR_PASSWORD,
            ttl=self.settings.session_ttl,
            replaces=login.old_session,
        )
        audit.record(db, "login.succeeded", actor=user.sub, subject=stored.client_id, details={"amr": [AMR_PASSWORD]})
        return self._session_started(handle, stored, current, started, login.device_cookie)

    def _second_factor(
        self,
        handle: str,
        stored: StoredInteraction,
        session_token: str | None,
        code: str,
        device_cookie: str | None,
    ) -> Outcome:
        db = current_session()
        session: StoredSession | None = None
        if stored.pending_user_id is not None:
            user = user_store.get_user(db, stored.pending_user_id)
            if user is None or user.disabled_at is not None or not same_credential(user, stored.pending_credential):
                return ACCOUNT_CHANGED
        else:
            session, user = self._signed_in(session_token)
            if session is None or user is None or stored.session_sid != session.sid:
                return CHANGED
        verdict = self.levels.mfa.verify(db, user, code, self.login_guard.devices.digest_for(device_cookie, user.id))
        if not verdict.ok:
            return otp_page(handle, self._client_name(stored), lock=verdict.lock)
        if session is None:
            started = sessions.start(
                db,
                user_id=user.id,
                amr=list(MULTI_FACTOR),
                acr=ACR_MFA,
                ttl=self.settings.session_ttl,
                replaces=session_token,
            )
        else:
            stepped = sessions.step_up(db, session_token, amr=list(MULTI_FACTOR), acr=ACR_MFA)
            if stepped is None:
                return CHANGED
            started = stepped
        details = {"amr": list(MULTI_FACTOR), "method": verdict.method, "step_up": session is not None}
        audit.record(db, "login.succeeded", actor=user.sub, subject=stored.client_id, details=details)
        return self._session_started(handle, stored, user, started, device_cookie)

    def _session_started(
        self,
        handle: str,
        stored: StoredInteraction,
        user: StoredUser,
        started: sessions.StartedSession,
        device_cookie: str | None,
    ) -> Outcome:
        """This interaction started (or stepped up) the browser's session. The browser gets
        a new binding token, so every CSRF token it was shown before is void (a token seen
        before sign-in must not work after it), and this interaction moves to that token;
        the browser becomes a known device of ``user`` (its lockout counters are its own)."""
        rebound = new_token()
        interactions.record_login(
            current_session(), digest(handle), started.session.sid, browser_digest=digest(rebound)
        )
        devices = self.login_guard.devices
        outcome = self._continue(handle, stored, user, started.session)
        return replace(
            outcome,
            session_token=started.token,
            browser_token=rebound,
            device_cookie=devices.issue(user.id, devices.device_id(device_cookie)),
        )

    def _continue(self, handle: str, stored: StoredInteraction, user: StoredUser, session: StoredSession) -> Outcome:
        if user.must_change_password:  # before anything else, once signed in
            return password_change_page(handle, self._client_name(stored))
        if stored.client_id is None:  # an account sign-in
            if not interactions.complete_interaction(current_session(), digest(handle)):
                return EXPIRED
            return Outcome(redirect=stored.return_to or "/account")
        request = self._request(list(stored.params))
        try:
            grant = self._validated(request, user)
        except OAuth2Error as error:
            return self._error(request, error)
        prompts = set((request.payload.data.get("prompt") or "").split())
        if self.levels.for_interaction(current_session(), stored, user) is Level.UNMET:
            interactions.complete_interaction(current_session(), digest(handle))
            return self._error(request, unmet(grant.redirect_uri))
        if "consent" in prompts or self._consent_missing(user, grant):
            return self._consent_page(handle, grant)
        if not interactions.complete_interaction(current_session(), digest(handle)):
            return EXPIRED
        return self._complete(grant, user, session)

    def _forced_change(
        self, handle: str, stored: StoredInteraction, session_token: str | None, change: ForcedChange
    ) -> Outcome:
        db = current_session()
        session, user = self._signed_in(session_token)
        if session is None or user is None or stored.session_sid != session.sid:
            return CHANGED
        if not user.must_change_password:
            return self._continue(handle, stored, user, session)
        # Like any password change, this ends every session; the browser gets a new one at its level.
        change_password(db, user, change.password_hash, actor=user.sub)
        started = sessions.start(
            db,
            user_id=user.id,
            amr=list(session.amr),
            acr=session.acr,
            ttl=self.settings.session_ttl,
            replaces=None,
            auth_time=session.auth_time,
        )
        changed = replace(user, password_hash=change.password_hash, must_change_password=False)
        return self._session_started(handle, stored, changed, started, change.device_cookie)

    def _decide(self, handle: str, stored: StoredInteraction, session_token: str | None, allow: bool) -> Outcome:
        db = current_session()
        if stored.client_id is None:
            return EXPIRED
        session, user = self._signed_in(session_token)
        if session is None or user is None or stored.session_sid != session.sid:
            return CHANGED
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
