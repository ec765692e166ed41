"""Who may use the console: a signed-in administrator with TOTP enrolled, whose second
factor was shown within ``OSTIARY_ADMIN_STEP_UP_SECONDS``.

The sign-in pages (``Authorizer.begin_account``) come first: they sign the browser in, with
the second factor when the account has one. What they let through is checked here. A
session older than the step-up window is asked for a code again (:func:`step_up`), as
GitHub's sudo mode does: a browser left signed in is not enough to administer the server.
The code goes through the same lockout as at sign-in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ...authn import sessions
from ...authn.devices import DeviceCookies
from ...authn.levels import ACR_MFA, MULTI_FACTOR, multi_factor
from ...i18n import N_
from ...mfa.service import SecondFactor
from ...settings import Settings
from ...storage import Session, audit, users as user_store
from ...storage.base import utcnow
from ...storage.sessions import StoredSession
from ...storage.users import StoredUser


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    #: signed in, without the admin role
    NOT_ADMIN = "not_admin"
    #: an administrator with no second factor: asked to enrol one first
    NO_SECOND_FACTOR = "no_second_factor"
    #: an administrator whose second factor is not recent enough: asked for a code
    STEP_UP = "step_up"


@dataclass(frozen=True)
class Access:
    verdict: Verdict
    user: StoredUser


class NotSignedIn(Exception):
    """No live session of an enabled account (it ended since the sign-in pages looked)."""


class StepUpRefused(Exception):
    """A wrong code, or too many of them; ``str()`` is shown to the administrator."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check(db: Session, settings: Settings, mfa: SecondFactor, token: str | None) -> Access:
    """What the browser's session may do in the console."""
    session, user = _signed_in(db, token)
    if not user.is_admin:
        return Access(Verdict.NOT_ADMIN, user)
    if not mfa.is_enrolled(db, user):
        return Access(Verdict.NO_SECOND_FACTOR, user)
    if not fresh(session, settings):
        return Access(Verdict.STEP_UP, user)
    return Access(Verdict.ALLOWED, user)


def fresh(session: StoredSession, settings: Settings) -> bool:
    """The session showed the second factor within the step-up window. ``auth_time`` is
    when it last did: a sign-in with both factors, or a step-up (:func:`step_up`) sets it;
    typing the password again (``reauthenticated_at``) is no second factor and does not count."""
    if not multi_factor(session.acr):
        return False
    return (utcnow() - session.auth_time).total_seconds() <= settings.admin_step_up_seconds


def step_up(
    db: Session, mfa: SecondFactor, devices: DeviceCookies, token: str | None, code: str, device_cookie: str | None
) -> str:
    """Check an administrator's TOTP (or backup) code, counted by the sign-in lockout (on
    this browser's own counter when it is a known device of the account); returns the
    session's new token, at the second-factor level as of now. A wrong code raises
    :class:`StepUpRefused`, whose count the caller must commit."""
    _, user = _signed_in(db, token)
    if not user.is_admin or not mfa.is_enrolled(db, user):
        raise NotSignedIn
    verdict = mfa.verify(db, user, code[:64], devices.digest_for(device_cookie, user.id))
    if verdict.lock.locked:
        raise StepUpRefused(N_("Too many wrong codes. Try again later."), status=429)
    if not verdict.ok:
        raise StepUpRefused(N_("That code is not right."))
    stepped = sessions.step_up(db, token, amr=list(MULTI_FACTOR), acr=ACR_MFA)
    if stepped is None:
        raise NotSignedIn
    actor = f"user:{user.sub}"
    audit.record(db, "admin.stepped_up", actor=actor, user=user.sub, details={"method": verdict.method})
    return stepped.token


def _signed_in(db: Session, token: str | None) -> tuple[StoredSession, StoredUser]:
    session = sessions.load(db, token)
    user = user_store.get_user(db, session.user_id) if session else None
    if session is None or user is None or user.disabled_at is not None:
        raise NotSignedIn
    return session, user
