"""A person confirms a device at ``/device`` (RFC 8628 §3.3): the user code, sign-in, and
the decision.

The code is looked up first; then the browser signs in as for the account pages, but at
the level the device's client needs (its ``require_mfa``, the ``OSTIARY_MFA`` policy), the
sign-in pages leading back to ``/device?user_code=...``. Signed in, the person sees the
client's name, the code and the scopes, and allows or denies; the decision is written
once (a pending, unexpired authorization only) with the sign-in it came from.

Each entry point is one transaction and answers with an :class:`~server.signin.outcome.Outcome`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..authn.secrets import new_grant_id
from ..i18n import N_
from ..oauth.calls import in_transaction
from ..oauth.endpoints.device_authorization import displayed_user_code
from ..oauth.request import OstiaryRequest
from ..storage import Session, audit, device_authorizations as device_store
from ..storage.device_authorizations import PendingDevice
from ..storage.sessions import StoredSession
from ..storage.users import StoredUser
from . import steps
from .acr import NOTHING
from .authorizer import Authorizer
from .levels import Level, satisfied
from .outcome import CHANGED, Outcome, describe_scope, error_page

T = TypeVar("T")

UNKNOWN_CODE = N_("That code is not valid. It may have expired or been used already: check your device for its code.")


def entry_page(user_code: str = "", error: str | None = None, status: int = 200) -> Outcome:
    """The page that asks for the code (with what was typed, and what was wrong with it)."""
    return Outcome(page="device.html", context={"user_code": user_code, "error": error}, status=status)


class DeviceConfirmation:
    """The ``/device`` steps over the :class:`Authorizer`'s server, policy and database."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer
        self.uri = authorizer.settings.endpoint("/device")

    async def show(self, user_code: str, session_token: str | None, browser: str, *, origin: bytes | None) -> Outcome:
        """The code ``user_code`` (canonical) entered: the sign-in page it needs first, or
        the confirmation page."""
        return await self._run(lambda db: self._show(db, user_code, session_token, browser, origin))

    async def decide(self, user_code: str, session_token: str | None, *, allow: bool) -> Outcome:
        """The person's answer on the confirmation page."""
        return await self._run(lambda db: self._decide(db, user_code, session_token, allow))

    async def _run(self, step: Callable[[Session], T]) -> T:
        request = OstiaryRequest("GET", self.uri, {}, [])
        return await in_transaction(self.authorizer.sessionmaker, request, lambda: step(request.extras.session))

    def _show(
        self, db: Session, user_code: str, session_token: str | None, browser: str, origin: bytes | None
    ) -> Outcome:
        found = self._pending(db, user_code)
        if isinstance(found, Outcome):
            return found
        pending, client = found
        shown = displayed_user_code(user_code)
        authorizer = self.authorizer
        gate = steps.begin_account(
            db,
            authorizer.settings,
            authorizer.levels,
            session_token,
            browser,
            f"/device?user_code={shown}",
            origin,
            client=client,
        )
        if gate is not None:
            return gate
        session, user = steps.signed_in(db, session_token)
        assert session is not None and user is not None  # begin_account let this session through
        refusal = self._level_refusal(db, client, session, user)
        if refusal is not None:
            return refusal
        context = {
            "client_name": client.stored.name,
            "client_unverified": client.stored.registration_token_digest is not None,
            "user_code": shown,
            "username": user.username,
            "scopes": [describe_scope(scope) for scope in pending.scope.split()],
        }
        return Outcome(page="device_confirm.html", context=context)

    def _decide(self, db: Session, user_code: str, session_token: str | None, allow: bool) -> Outcome:
        found = self._pending(db, user_code)
        if isinstance(found, Outcome):
            return found
        pending, client = found
        session, user = steps.signed_in(db, session_token)
        if session is None or user is None:
            return CHANGED
        refusal = self._level_refusal(db, client, session, user)
        if refusal is not None:
            return refusal
        name = client.stored.name
        if not allow:
            if not device_store.deny(db, pending.key, user_id=user.id):
                return entry_page(error=UNKNOWN_CODE, status=400)
            audit.record(db, "device.denied", actor=user.sub, user=user.sub, client=pending.client_id)
            return Outcome(page="device_done.html", context={"approved": False, "client_name": name})
        approved = device_store.approve(
            db,
            pending.key,
            user_id=user.id,
            grant_id=new_grant_id(),
            auth_time=session.auth_time,
            acr=session.acr,
            amr=session.amr,
        )
        if not approved:
            return entry_page(error=UNKNOWN_CODE, status=400)
        details = {"scope": pending.scope}
        audit.record(db, "device.approved", actor=user.sub, user=user.sub, client=pending.client_id, details=details)
        return Outcome(page="device_done.html", context={"approved": True, "client_name": name})

    def _pending(self, db: Session, user_code: str) -> tuple[PendingDevice, Any] | Outcome:
        """The pending authorization of ``user_code`` and its (enabled) client, or the page
        that says the code is no good."""
        pending = device_store.pending_by_user_code(db, user_code)
        client = self.authorizer.server.query_client(pending.client_id) if pending is not None else None
        if pending is None or client is None:
            return entry_page(displayed_user_code(user_code), UNKNOWN_CODE, status=400)
        return pending, client

    def _level_refusal(self, db: Session, client: Any, session: StoredSession, user: StoredUser) -> Outcome | None:
        """The page refusing a sign-in below what ``client`` needs, if it is."""
        level = self.authorizer.levels.for_request(db, NOTHING, client, user)
        if level is Level.UNMET:
            return error_page(
                "A second factor is needed",
                f"{client.stored.name} requires a second factor, and your account has none. "
                "Set one up on your account page, then enter the code again.",
            )
        if not satisfied(level, session.acr) or user.must_change_password:
            return error_page(N_("Sign in again"), N_("Enter the code from your device again."))
        return None
