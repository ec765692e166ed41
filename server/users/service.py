"""Creating accounts and checking passwords."""

from __future__ import annotations

import re
import secrets

from .. import i18n
from ..authn.lockout import FACTOR_PASSWORD
from ..i18n import N_
from ..observe import metrics
from ..storage import (
    Session,
    audit,
    failures,
    grants as grant_store,
    outbox,
    resets,
    sessions as session_store,
    users as user_store,
)
from ..storage.users import StoredUser
from .breached import BreachedPasswords
from .errors import UserError
from .passwords import Passwords

#: why sessions' families ended (grants.revoked_reason)
PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a reason, not a password)

_USERNAME = re.compile(r"^[\w.@+-]{1,150}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]+$")


def check_address(email: str) -> str:
    """``email`` stripped, if it is an address an account may have; UserError (``--email``) if not."""
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 254:
        raise UserError("--email", i18n.gettext("%(value)r is not an email address") % {"value": email})
    return email


def validate_new_user(username: str, email: str | None, name: str | None) -> tuple[str, str | None, str | None]:
    username = username.strip()
    if not _USERNAME.match(username):
        raise UserError("--username", i18n.gettext("1 to 150 letters, digits and . @ + - _"))
    if email is not None:
        email = check_address(email)
    if name is not None:
        name = name.strip() or None
        if name is not None and (len(name) > 200 or any(ord(c) < 0x20 for c in name)):
            raise UserError("--name", i18n.gettext("at most 200 printable characters"))
    return username, email or None, name


def create_user(
    session: Session,
    *,
    username: str,
    email: str | None,
    name: str | None,
    password_hash: str | None,
    email_verified: bool = False,
    actor: str = "admin",
) -> StoredUser:
    """Store a new account; validate with :func:`validate_new_user` and hash the password
    first. ``actor``: who the audit row names (``cli``, ``client:<id>``, ``user:<sub>``)."""
    taken = user_store.username_or_email_taken(session, username, email)
    if taken:
        raise UserError(f"--{taken}", f"that {taken} is already in use")
    user = user_store.insert_user(
        session,
        sub=secrets.token_urlsafe(16),
        username=username,
        email=email,
        name=name,
        password_hash=password_hash,
        email_verified=email_verified,
    )
    audit.record(session, "user.created", actor=actor, user=user.sub, details={"username": username})
    return user


def bootstrap_admin(session: Session, *, email: str, password_hash: str) -> StoredUser | None:
    """Create the first administrator (``OSTIARY_ADMIN_EMAIL``), flagged to choose a new
    password at the first sign-in; None when an administrator or that address exists.
    The username is the address. Several processes starting at once race on the unique
    username and address: the caller treats a conflict as "exists"."""
    if user_store.any_admin(session) or user_store.get_user_by_email(session, email) is not None:
        return None
    user = user_store.insert_user(
        session,
        sub=secrets.token_urlsafe(16),
        username=email,
        email=email,
        name=None,
        password_hash=password_hash,
        email_verified=True,
        is_admin=True,
        must_change_password=True,
    )
    audit.record(session, "user.created", actor="bootstrap", user=user.sub, details={"admin": True})
    return user


async def authenticate(passwords: Passwords, user: StoredUser | None, password: str) -> tuple[bool, str | None]:
    """Check ``password`` for ``user`` (None: unknown, at the same cost); returns (ok, new hash)."""
    usable = user if user is not None and user.disabled_at is None else None
    result = await passwords.verify_async(usable.password_hash if usable else None, password)
    return result.ok and usable is not None, result.rehash


def change_password(
    db: Session, user: StoredUser, password_hash: str, *, actor: str, kept_session: str | None = None
) -> int:
    """Store a new password hash and end what the old password opened. Every outstanding
    reset link is void, the lockout's password counters start again, and the user is told
    by mail. Returns how many families ended.

    Without ``kept_session`` (a reset link, an administrator, a forced change at sign-in:
    the old password may be in someone else's hands) everything ends: every browser session
    and every refresh-token family, ``offline_access`` ones too (RFC 9700 §4.14.2's
    "credential change"). With ``kept_session``, the sid of the session in which the user
    typed the old password and chose the new one: the user's other sessions end with their
    session-bound families (OIDC Core §11); that session, its families, and the families
    the user chose to keep signed in (``offline_access``) stay.
    """
    user_store.set_password_hash(db, user.id, password_hash)
    # The families first, to count them all (ending a session revokes its own).
    if kept_session is None:
        families = grant_store.revoke_for_user(db, user.id, PASSWORD_CHANGED)
    else:
        families = grant_store.revoke_session_bound(db, user.id, PASSWORD_CHANGED, keep_sid=kept_session)
    metrics.family_revoked(PASSWORD_CHANGED, families)
    sessions = session_store.end_user_sessions(db, user.id, PASSWORD_CHANGED, keep_sid=kept_session)
    links = resets.void_resets(db, user.id)
    failures.clear(db, user.id, FACTOR_PASSWORD, every_device=True)
    audit.record(
        db,
        "user.password_changed",
        actor=actor,
        user=user.sub,
        details={"families": families, "sessions": sessions, "reset_links": links, "kept_session": bool(kept_session)},
    )
    if user.email:
        outbox.enqueue(db, user.email, "password_changed", {"username": user.username})
    return families


async def check_new_password(
    passwords: Passwords,
    breached: BreachedPasswords,
    password: str,
    *,
    username: str,
    email: str | None,
    field: str = "password",
) -> None:
    """NIST SP 800-63B's rules (:meth:`Passwords.check_policy`), and not a breached password."""
    passwords.check_policy(password, username=username, email=email, field=field)
    if await breached.is_breached(password):
        raise UserError(field, i18n.gettext(BREACHED))


def check_new_password_sync(
    passwords: Passwords, breached: BreachedPasswords, password: str, *, username: str, email: str | None
) -> None:
    """The same, for the command line."""
    passwords.check_policy(password, username=username, email=email, field="password")
    if breached.is_breached_sync(password):
        raise UserError("password", BREACHED)


BREACHED = N_("appears in a list of passwords exposed in data breaches (Have I Been Pwned): choose another")
