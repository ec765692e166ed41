"""The authorization endpoint's decisions (OIDC Core §3.1.2): who must sign in, who must
consent, and what goes back to the client.

Authlib validates the request (client, redirect URI, response type, scope, PKCE, nonce,
``prompt=none`` without a user). What Authlib leaves to us lives in this package:
``max_age`` and ``prompt=login``/``consent`` (``checks``), the authentication level
(``levels``), remembered consent, and the *interaction*: the server-side record of one
request waiting for the user, bound to the browser that started it.

``Authorizer`` is what the web layer calls: each entry point runs one transaction and
answers with an ``Outcome``; the pieces its steps share are functions (``steps``).

Errors go back to the client's registered redirect URI with ``state`` and ``iss``
(RFC 6749 §4.1.2.1, RFC 9207) only once the client and that URI are known to be valid;
otherwise the user sees an error page. Nothing here ever redirects to an unregistered URI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidRequestError

from .. import i18n
from ..authn import sessions
from ..authn.levels import ACR_MFA, ACR_PASSWORD, ACR_PHR, AMR_PASSWORD, MULTI_FACTOR, PASSWORD_ONLY
from ..authn.lockout import FACTOR_OTP
from ..authn.login import LoginGuard
from ..authn.secrets import new_token
from ..keys.holder import KeyRingHolder
from ..mfa.passkeys import PasskeyError, Passkeys
from ..mfa.service import SecondFactor
from ..oauth.calls import in_transaction
from ..oauth.request import OstiaryRequest
from ..observe import context, metrics
from ..settings import Settings
from ..storage import (
    AsyncSession,
    Session,
    async_sessionmaker,
    audit,
    consents,
    interactions,
    users as user_store,
)
from ..storage.base import sha256 as digest
from ..storage.interactions import StoredInteraction
from ..storage.sessions import SeenFrom, StoredSession
from ..storage.users import StoredUser
from ..users.service import change_password
from . import passkey as by_passkey, pushed, steps
from .acr import AcrRequest, requested_acr
from .checks import Needs, check_extras, prompt_none_refusal, prompts, reusable_session
from .levels import (
    APP_ONLY,
    Level,
    LevelPolicy,
    otp_page,
    password_change_page,
    satisfied,
    second_factor_due,
    unmet,
)
from .outcome import ACCOUNT_CHANGED, CHANGED, EXPIRED, Outcome
from .passkey import PasskeyLogin

T = TypeVar("T")


class Authorizer:
    """The sign-in steps over the Authlib ``server``; each entry point is one transaction."""

    def __init__(
        self,
        server: Any,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        second_factor: SecondFactor,
        login_guard: LoginGuard,
        keys: KeyRingHolder,
        passkeys: Passkeys,
    ) -> None:
        self.server = server
        self.passkeys = passkeys
        self.settings = settings
        self.levels = LevelPolicy(settings, second_factor, server)
        self.keys = keys
        self.authorize_uri = settings.endpoint("/authorize")
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
        request = self._request([])
        return await self._run(
            request,
            lambda: steps.begin_account(
                request.extras.session, self.settings, self.levels, session_token, browser, return_to, origin
            ),
        )

    async def interaction(self, handle: str, browser: str) -> steps.Waiting | None:
        """The open interaction behind ``handle`` if this browser started it."""
        request = self._request([])
        return await self._run(request, lambda: self._open(request.extras.session, handle, browser))

    async def second_factor_wait(self, handle: str, browser: str, session_token: str | None) -> steps.Waiting | None:
        """:meth:`interaction`, with the second factors its user may show (the page of a
        sign-in waiting for one)."""
        request = self._request([])

        def open_with_methods() -> steps.Waiting | None:
            db = request.extras.session
            waiting = self._open(db, handle, browser)
            user = steps.awaited(db, waiting.stored, session_token).user if waiting is not None else None
            if waiting is None or user is None:
                return waiting
            return replace(
                waiting, methods=self.levels.methods(db, user, self.levels.for_interaction(db, waiting.stored, user))
            )

        return await self._run(request, open_with_methods)

    async def find_user(self, username: str) -> StoredUser | None:
        request = self._request([])
        return await self._run(request, lambda: user_store.get_user_by_username(request.extras.session, username))

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
        seen_from: SeenFrom | None = None,
    ) -> Outcome:
        """The password was right (counted on ``device``'s lockout counter, which starts
        again); ``device_cookie`` is the browser's known-device cookie, if it has one;
        ``seen_from`` the browser and address a session started here is kept with."""
        request = self._request([])
        login = steps.PasswordLogin(user, rehash, old_session, device_cookie, seen_from)

        def step() -> Outcome:
            db = request.extras.session
            self.login_guard.succeeded(db, user.id, device)
            return steps.framed(
                db, self.server, handle, browser, lambda stored: self._after_login(db, handle, stored, login)
            )

        return await self._run(request, step)

    async def second_factor(
        self,
        handle: str,
        browser: str,
        session_token: str | None,
        code: str,
        *,
        device_cookie: str | None = None,
        seen_from: SeenFrom | None = None,
    ) -> Outcome:
        """The TOTP (or backup) code of a sign-in waiting for it, counted on the known-device
        counter when ``device_cookie`` names the user (as the password is)."""
        login = steps.SecondFactorLogin(code, device_cookie, seen_from)

        def step(db: Session, stored: StoredInteraction) -> Outcome:
            return self._second_factor(db, handle, stored, session_token, login)

        return await self._in_interaction(handle, browser, step)

    async def passkey_options(self, handle: str, browser: str, session_token: str | None) -> str | None:
        """The options of a passkey ceremony (JSON) for the open sign-in behind ``handle``:
        for the user it waits for, or for any passkey when nobody has signed in yet. None
        when there is no such sign-in (or it changed)."""
        request = self._request([])

        def options() -> str | None:
            db = request.extras.session
            stored = steps.open_interaction(db, handle, browser)
            found = steps.awaited(db, stored, session_token) if stored is not None else None
            if found is None or found.changed is not None:
                return None
            return self.passkeys.authentication_options(db, digest(handle), found.user)

        return await self._run(request, options)

    async def passkey(self, handle: str, browser: str, session_token: str | None, login: PasskeyLogin) -> Outcome:
        """The browser's answer to :meth:`passkey_options`: the second factor of the user the
        sign-in waits for, or (nobody yet) a sign-in on its own."""
        return await self._in_interaction(
            handle, browser, lambda db, stored: self._passkey(db, handle, stored, session_token, login)
        )

    async def session_user(self, session_token: str | None) -> StoredUser | None:
        request = self._request([])
        return await self._run(request, lambda: steps.signed_in(request.extras.session, session_token)[1])

    async def forced_password_change(
        self,
        handle: str,
        browser: str,
        session_token: str | None,
        password_hash: str,
        *,
        device_cookie: str | None = None,
        seen_from: SeenFrom | None = None,
    ) -> Outcome:
        """The new password of a user who must change theirs before going on (checked and
        hashed by the caller)."""
        change = steps.ForcedChange(password_hash, device_cookie, seen_from)
        return await self._in_interaction(
            handle, browser, lambda db, stored: self._forced_change(db, handle, stored, session_token, change)
        )

    async def decide(self, handle: str, browser: str, session_token: str | None, allow: bool) -> Outcome:
        return await self._in_interaction(
            handle, browser, lambda db, stored: self._decide(db, handle, stored, session_token, allow)
        )

    def check_pushed(self, push: OstiaryRequest, pairs: list[tuple[str, str]]) -> dict[str, str]:
        """The parameters of a pushed authorization request (RFC 9126 §2.1, ``pairs`` of the
        authenticated ``push``) once the authorization endpoint's rules accept them; else an
        ``OAuth2Error``. Runs in the push's transaction."""
        pairs = pushed.with_client_id(pairs, push.client.get_client_id())
        request = self._request(pairs, push.extras.session)
        grant = pushed.validated_push(self.server, request)
        check_extras(request, pairs, grant.redirect_uri)
        steps.subject_hint(self.keys, self.settings.issuer, request, grant)
        return dict(pairs)

    async def _run(self, request: OstiaryRequest, call: Callable[[], T]) -> T:
        return await in_transaction(self.sessionmaker, request, call)

    async def _in_interaction(
        self, handle: str, browser: str, step: Callable[[Session, StoredInteraction], Outcome]
    ) -> Outcome:
        """Run ``step`` on the open interaction behind ``handle`` (see ``steps.framed``)."""
        request = self._request([])

        def framed() -> Outcome:
            db = request.extras.session
            return steps.framed(db, self.server, handle, browser, lambda stored: step(db, stored))

        return await self._run(request, framed)

    def _request(self, pairs: list[tuple[str, str]], db: Session | None = None) -> OstiaryRequest:
        """An authorization request; ``db``: made inside a transaction, which it joins."""
        request = OstiaryRequest("GET", self.authorize_uri, {}, [], query=pairs)
        request.extras.db = db
        return request

    def _error(self, request: OstiaryRequest, error: OAuth2Error) -> Outcome:
        return steps.answer_error(self.server, self.settings.issuer, request, error)

    def _complete(self, grant: Any, user: StoredUser, session: StoredSession) -> Outcome:
        return steps.complete(self.server, self.levels, self.settings.issuer, grant, user, session)

    # -- the decisions (synchronous, inside the transaction) -----------------------------

    def _begin(
        self,
        request: OstiaryRequest,
        pairs: list[tuple[str, str]],
        session_token: str | None,
        browser: str,
        origin: bytes | None,
    ) -> Outcome:
        own = self._own_or_pushed(request, pairs)
        if isinstance(own, Outcome):
            return own
        request, pairs = own
        session, user = steps.signed_in(request.extras.session, session_token)
        try:
            grant, acr, hinted = self._checked(request, pairs, user)
        except OAuth2Error as error:
            return self._error(request, error)
        needs = self._needs(request, grant, acr, hinted, session, user)
        if needs.unmet:
            return self._error(request, unmet(grant.redirect_uri))
        refusal = prompt_none_refusal(needs, grant.redirect_uri)
        if refusal is not None:
            return self._error(request, refusal)
        if needs.nothing:
            assert needs.session is not None and user is not None
            return self._complete(grant, user, needs.session)
        return steps.wait_for_user(self.settings, request, grant, needs, pairs=pairs, browser=browser, origin=origin)

    def _own_or_pushed(
        self, request: OstiaryRequest, pairs: list[tuple[str, str]]
    ) -> tuple[OstiaryRequest, list[tuple[str, str]]] | Outcome:
        """The request to go on with: the one pushed earlier that ``pairs`` refers to (taken,
        RFC 9126 §4), or ``request`` itself unless its client must push (RFC 9126 §6); else
        the outcome that refuses it."""
        db = request.extras.session
        if pushed.is_reference(pairs):
            try:
                taken = pushed.take(db, pairs)
            except OAuth2Error as error:
                return steps.refusal_page(error)
            return self._request(taken, db), taken
        client_id = request.payload.data.get("client_id")
        client = self.server.query_client(client_id) if client_id else None
        if client is not None and pushed.push_required(self.settings, client):
            return self._error(request, InvalidRequestError(pushed.PUSH_REQUIRED))
        return request, pairs

    def _checked(
        self, request: OstiaryRequest, pairs: list[tuple[str, str]], user: StoredUser | None
    ) -> tuple[Any, AcrRequest, str | None]:
        """The request's grant once Authlib and the rules it leaves to us accept it, the
        level it asks for, and the subject its ``id_token_hint`` names; else an OAuth2Error."""
        grant = steps.validated(self.server, request, user)
        check_extras(request, pairs, grant.redirect_uri)
        acr = requested_acr(request.payload.data)
        hinted = steps.subject_hint(self.keys, self.settings.issuer, request, grant)
        return grant, acr, hinted

    def _needs(
        self,
        request: OstiaryRequest,
        grant: Any,
        acr: AcrRequest,
        hinted: str | None,
        session: StoredSession | None,
        user: StoredUser | None,
    ) -> Needs:
        """What the browser's ``session`` (of ``user``) lacks for this request."""
        data = request.payload.data
        asked = prompts(data)
        fresh = reusable_session(data, session, user, hinted)
        consent = "consent" in asked or user is None or steps.consent_missing(user, grant)
        if fresh is None:
            return Needs(asked, None, consent=consent)
        assert user is not None
        level = self.levels.for_request(request.extras.session, acr, grant.client, user)
        return Needs(
            asked,
            fresh,
            consent=consent,
            unmet=level is Level.UNMET,
            step_up=not satisfied(level, fresh.acr),
            must_change=user.must_change_password,
            methods=self.levels.methods(request.extras.session, user, level),
        )

    def _open(self, db: Session, handle: str, browser: str) -> steps.Waiting | None:
        stored = steps.open_interaction(db, handle, browser)
        if stored is None:
            return None
        return steps.Waiting(stored, steps.client_name(self.server, stored), steps.client_redirect(self.server, stored))

    def _after_login(self, db: Session, handle: str, stored: StoredInteraction, login: steps.PasswordLogin) -> Outcome:
        user, rehash = login.user, login.rehash
        current = user_store.get_user(db, user.id)
        if current is None or current.disabled_at is not None or current.password_hash != user.password_hash:
            # The password changed (or the account was disabled) while this one was checked.
            return ACCOUNT_CHANGED
        if rehash:
            user_store.rehash_password(db, user.id, old=user.password_hash, new=rehash)
            current = replace(current, password_hash=rehash)
        level = self.levels.for_interaction(db, stored, current)
        if second_factor_due(level):
            assert current.password_hash is not None
            interactions.hold_for_second_factor(db, digest(handle), user.id, digest(current.password_hash))
            methods = self.levels.methods(db, current, level)
            return otp_page(handle, steps.client_name(self.server, stored), methods=methods)
        started = sessions.start(
            db,
            user_id=user.id,
            amr=list(PASSWORD_ONLY),
            acr=ACR_PASSWORD,
            ttl=self.settings.session_ttl,
            replaces=login.old_session,
            seen_from=login.seen_from,
        )
        details = {"amr": [AMR_PASSWORD]}
        return self._logged_in(db, handle, stored, current, started, login.device_cookie, details)

    def _second_factor(
        self,
        db: Session,
        handle: str,
        stored: StoredInteraction,
        session_token: str | None,
        login: steps.SecondFactorLogin,
    ) -> Outcome:
        code, device_cookie = login.code, login.device_cookie
        found = steps.awaited(db, stored, session_token)
        if found.changed is not None:
            return found.changed
        user, session = found.user, found.session
        if user is None:  # nobody signed in: no second factor is due
            return CHANGED
        level = self.levels.for_interaction(db, stored, user)
        methods = self.levels.methods(db, user, level)
        if level is Level.PHR:
            message = i18n.gettext("This application asks you to sign in with a passkey.")
            return otp_page(handle, steps.client_name(self.server, stored), methods=methods, error=message)
        verdict = self.levels.mfa.verify(db, user, code, self.login_guard.devices.digest_for(device_cookie, user.id))
        if not verdict.ok:
            return otp_page(handle, steps.client_name(self.server, stored), lock=verdict.lock, methods=methods)
        if session is None:
            started = sessions.start(
                db,
                user_id=user.id,
                amr=list(MULTI_FACTOR),
                acr=ACR_MFA,
                ttl=self.settings.session_ttl,
                replaces=session_token,
                seen_from=login.seen_from,
            )
        else:
            stepped = sessions.step_up(db, session_token, amr=list(MULTI_FACTOR), acr=ACR_MFA)
            if stepped is None:
                return CHANGED
            started = stepped
        details = {"amr": list(MULTI_FACTOR), "method": verdict.method, "step_up": session is not None}
        return self._logged_in(db, handle, stored, user, started, device_cookie, details)

    def _passkey(
        self,
        db: Session,
        handle: str,
        stored: StoredInteraction,
        session_token: str | None,
        login: PasskeyLogin,
    ) -> Outcome:
        found = steps.awaited(db, stored, session_token)
        if found.changed is not None:
            return found.changed
        name = steps.client_name(self.server, stored)
        user = found.user
        methods = self.levels.methods(db, user, self.levels.for_interaction(db, stored, user)) if user else APP_ONLY
        device = self.login_guard.devices.digest_for(login.device_cookie, user.id) if user else None
        lockout = self.levels.mfa.lockout
        lock = lockout.check(db, user.id, FACTOR_OTP, device) if user is not None else None
        if lock is not None and lock.locked:
            return otp_page(handle, name, lock=lock, methods=methods)
        try:
            assertion = self.passkeys.authenticate(db, digest(handle), login.answer, user)
        except PasskeyError as error:
            holder = user_store.get_user(db, error.owner) if error.owner is not None else None
            if holder is not None:  # on this browser's own counter when it is a known device of the holder
                lockout.fail(
                    db, holder.id, FACTOR_OTP, self.login_guard.devices.digest_for(login.device_cookie, holder.id)
                )
                audit.record(db, "mfa.failed", actor=holder.sub, user=holder.sub, details={"reason": "passkey"})
            return by_passkey.refused(handle, name, i18n.gettext(str(error)), user=user, methods=methods)
        owner = user or user_store.get_user(db, assertion.passkey.user_id)
        if owner is None or owner.disabled_at is not None:
            return ACCOUNT_CHANGED
        if user is None:  # signed in by the passkey alone: its account's counter, as for a code
            device = self.login_guard.devices.digest_for(login.device_cookie, owner.id)
            if lockout.check(db, owner.id, FACTOR_OTP, device).locked:
                message = i18n.gettext("Too many failed attempts for this account. Try again later.")
                return by_passkey.refused(handle, name, message, user=None, methods=methods)
        lockout.succeed(db, owner.id, FACTOR_OTP, device)
        amr = by_passkey.amr(assertion, password=user is not None and found.session is None)
        started = self._phishing_resistant(db, owner, found.session, session_token, amr, login.seen_from)
        if started is None:
            return CHANGED
        details = {
            "amr": amr,
            "method": "passkey",
            "passkey": assertion.passkey.id,
            "step_up": found.session is not None,
        }
        return self._logged_in(db, handle, stored, owner, started, login.device_cookie, details)

    def _phishing_resistant(
        self,
        db: Session,
        user: StoredUser,
        session: StoredSession | None,
        session_token: str | None,
        amr: list[str],
        seen_from: SeenFrom | None,
    ) -> sessions.StartedSession | None:
        """A passkey's session: a new one, or ``session`` stepped up (None if it ended)."""
        if session is None:
            return sessions.start(
                db,
                user_id=user.id,
                amr=amr,
                acr=ACR_PHR,
                ttl=self.settings.session_ttl,
                replaces=session_token,
                seen_from=seen_from,
            )
        return sessions.step_up(db, session_token, amr=[*session.amr, *amr], acr=ACR_PHR)

    def _logged_in(
        self,
        db: Session,
        handle: str,
        stored: StoredInteraction,
        user: StoredUser,
        started: sessions.StartedSession,
        device_cookie: str | None,
        details: dict[str, Any],
    ) -> Outcome:
        """A sign-in succeeded (``details``: how, for the audit row): recorded, and on."""
        audit.record(db, "login.succeeded", actor=user.sub, user=user.sub, client=stored.client_id, details=details)
        signed_in(stored.client_id, user.sub)
        return self._session_started(db, handle, stored, user, started, device_cookie)

    def _session_started(
        self,
        db: Session,
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
        interactions.record_login(db, digest(handle), started.session.sid, browser_digest=digest(rebound))
        devices = self.login_guard.devices
        outcome = self._continue(db, handle, stored, user, started.session)
        return replace(
            outcome,
            session_token=started.token,
            browser_token=rebound,
            device_cookie=devices.issue(user.id, devices.device_id(device_cookie)),
        )

    def _continue(
        self, db: Session, handle: str, stored: StoredInteraction, user: StoredUser, session: StoredSession
    ) -> Outcome:
        if user.must_change_password:  # before anything else, once signed in
            return password_change_page(handle, steps.client_name(self.server, stored))
        if stored.client_id is None or stored.return_to is not None:  # for our own pages (account, device)
            if not interactions.complete_interaction(db, digest(handle)):
                return EXPIRED
            return Outcome(redirect=stored.return_to or "/account")
        request = self._request(list(stored.params), db)
        try:
            grant = steps.validated(self.server, request, user)
        except OAuth2Error as error:
            return self._error(request, error)
        if self.levels.for_interaction(db, stored, user) is Level.UNMET:
            interactions.complete_interaction(db, digest(handle))
            return self._error(request, unmet(grant.redirect_uri))
        if "consent" in prompts(request.payload.data) or steps.consent_missing(user, grant):
            return steps.consent_page(handle, grant)
        if not interactions.complete_interaction(db, digest(handle)):
            return EXPIRED
        return self._complete(grant, user, session)

    def _forced_change(
        self, db: Session, handle: str, stored: StoredInteraction, session_token: str | None, change: steps.ForcedChange
    ) -> Outcome:
        session, user = steps.signed_in(db, session_token)
        if session is None or user is None or stored.session_sid != session.sid:
            return CHANGED
        if not user.must_change_password:
            return self._continue(db, handle, stored, user, session)
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
            seen_from=change.seen_from,
        )
        changed = replace(user, password_hash=change.password_hash, must_change_password=False)
        return self._session_started(db, handle, stored, changed, started, change.device_cookie)

    def _decide(
        self, db: Session, handle: str, stored: StoredInteraction, session_token: str | None, allow: bool
    ) -> Outcome:
        if stored.client_id is None or stored.return_to is not None:  # no authorization request to consent to
            return EXPIRED
        session, user = steps.signed_in(db, session_token)
        if session is None or user is None or stored.session_sid != session.sid:
            return CHANGED
        request = self._request(list(stored.params), db)
        try:
            grant = steps.validated(self.server, request, user)
        except OAuth2Error as error:
            return self._error(request, error)
        if not interactions.complete_interaction(db, digest(handle)):
            return EXPIRED
        if not allow:
            audit.record(db, "consent.denied", actor=user.sub, user=user.sub, client=stored.client_id)
            return self._error(request, AccessDeniedError(redirect_uri=grant.redirect_uri))
        consents.remember(db, user.id, stored.client_id, frozenset(request.scope.split()))
        audit.record(
            db,
            "consent.granted",
            actor=user.sub,
            user=user.sub,
            client=stored.client_id,
            details={"scope": request.scope},
        )
        return self._complete(grant, user, session)


def signed_in(client_id: str | None, sub: str) -> None:
    """Counted, and named in the request's log lines."""
    metrics.SIGNINS_SUCCEEDED.inc()
    context.note_client(client_id)
    context.note_user(sub)
