"""Passkeys in the sign-in: whose passkey a waiting sign-in asks for, what a passkey sign-in
records, and the pages of a refusal.

A sign-in that checked the password, or a session stepping up, waits for that user's passkey
(the second factor). A sign-in with nobody yet takes any discoverable passkey that verified
its user, and the passkey says who signed in: two factors in one. Either way the session
reaches the phishing-resistant level (``urn:ostiary:acr:phr``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..authn.levels import AMR_MFA, AMR_PASSWORD
from ..mfa.passkeys import Assertion
from ..storage import Session, users as user_store
from ..storage.interactions import StoredInteraction
from ..storage.sessions import SeenFrom, StoredSession
from ..storage.users import StoredUser
from . import steps
from .levels import Methods, otp_page, same_credential
from .outcome import ACCOUNT_CHANGED, CHANGED, Outcome


@dataclass(frozen=True)
class PasskeyLogin:
    """A browser's answer to a passkey ceremony of a sign-in."""

    answer: str
    device_cookie: str | None
    seen_from: SeenFrom | None = None


@dataclass(frozen=True)
class Waiting:
    """Who a sign-in waits for: ``user`` (None: anyone with a passkey), and the session
    stepping up, if it is one; ``changed``: the page to show instead (the account or the
    session changed meanwhile)."""

    user: StoredUser | None = None
    session: StoredSession | None = None
    changed: Outcome | None = None


def waiting(db: Session, stored: StoredInteraction, session_token: str | None) -> Waiting:
    if stored.pending_user_id is not None:
        user = user_store.get_user(db, stored.pending_user_id)
        if user is None or user.disabled_at is not None or not same_credential(user, stored.pending_credential):
            return Waiting(changed=ACCOUNT_CHANGED)
        return Waiting(user)
    if stored.session_sid is not None:
        session, user = steps.signed_in(db, session_token)
        if session is None or user is None or stored.session_sid != session.sid:
            return Waiting(changed=CHANGED)
        return Waiting(user, session)
    return Waiting()


def amr(assertion: Assertion, *, password: bool) -> list[str]:
    """The methods of a sign-in that a passkey completed (RFC 8176)."""
    return [*([AMR_PASSWORD] if password else []), *assertion.amr, AMR_MFA]


def refused(handle: str, client_name: str, message: str, *, user: StoredUser | None, methods: Methods) -> Outcome:
    """The page a refused passkey leads back to: the second-factor page of a user, or the
    sign-in form of a sign-in with nobody yet."""
    if user is not None:
        return otp_page(handle, client_name, methods=methods, error=message)
    context: dict[str, Any] = {"handle": handle, "client_name": client_name, "username": "", "error": message}
    return Outcome(page="login.html", context=context, status=400)
