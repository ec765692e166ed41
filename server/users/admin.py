"""What an administrator does to an account: disable, enable, edit, delete, unlock, end sessions.

Each function runs in the caller's transaction, finds the user by username (the name the
administrator sees), and writes one audit row naming ``actor``. A disabled account keeps
its rows: every sign-in, refresh, userinfo call and introspection reads ``disabled_at``,
so enabling it again gives back what had not expired meanwhile, except its browser
sessions and the refresh families bound to them, which disabling ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..authn.lockout import FACTOR_OTP, FACTOR_PASSWORD
from ..storage import Session, audit, failures, resets, sessions as session_store, users as user_store
from ..storage.base import utcnow
from ..storage.sessions import StoredSession
from ..storage.users import StoredUser
from .errors import UserError
from .service import validate_new_user


@dataclass(frozen=True)
class ProfileChanges:
    """The fields ``ostiary users update`` was given; None leaves a field as it is."""

    username: str | None = None
    email: str | None = None
    name: str | None = None
    email_verified: bool | None = None

    def empty(self) -> bool:
        return all(value is None for value in (self.username, self.email, self.name, self.email_verified))


def find(db: Session, username: str) -> StoredUser:
    user = user_store.get_user_by_username(db, username)
    if user is None:
        raise UserError("USER", f"no user named {username!r}")
    return user


def set_disabled(db: Session, username: str, disabled: bool, *, actor: str) -> tuple[StoredUser, bool]:
    """Disable or enable an account; returns it and whether anything changed.

    Disabling also ends the user's browser sessions (and the token families bound to
    them); families with ``offline_access`` stay, inactive while the account is disabled.
    """
    user = find(db, username)
    if (user.disabled_at is not None) == disabled:
        return user, False
    user_store.set_disabled(db, user.id, utcnow() if disabled else None)
    details: dict[str, object] = {"username": user.username}
    if disabled:
        details["sessions"] = session_store.end_user_sessions(db, user.id, "user_disabled")
    audit.record(db, "user.disabled" if disabled else "user.enabled", actor=actor, user=user.sub, details=details)
    return find(db, username), True


def update(db: Session, username: str, changes: ProfileChanges, *, actor: str) -> StoredUser:
    """Edit the profile by the rules of account creation. A new e-mail address is not
    verified unless ``email_verified`` says so; an empty one removes the address; a changed
    one voids every reset link mailed to the old one."""
    if changes.empty():
        raise UserError("users update", "nothing to change: give --username, --email, --name or --email-verified")
    user = find(db, username)
    email = user.email if changes.email is None else (changes.email.strip() or None)
    name = user.name if changes.name is None else changes.name
    new_username, email, name = validate_new_user(
        user.username if changes.username is None else changes.username, email, name
    )
    verified = user.email_verified if email == user.email else False
    if changes.email_verified is not None:
        verified = changes.email_verified
    if verified and email is None:
        raise UserError("--email-verified", "the user has no e-mail address")
    taken = user_store.taken_by_another(db, user.id, new_username, email)
    if taken:
        raise UserError(f"--{taken}", f"that {taken} is already in use")
    updated = user_store.update_profile(
        db, user.id, username=new_username, email=email, name=name, email_verified=verified
    )
    if updated is None:
        raise UserError("USER", f"no user named {username!r}")
    changed = [field for field in ("username", "email", "name", "email_verified") if _differs(user, updated, field)]
    if "email" in changed:
        # A link already mailed to the old address (perhaps a lost mailbox) must not work.
        resets.void_resets(db, user.id)
    audit.record(db, "user.updated", actor=actor, user=user.sub, details={"changed": changed})
    return updated


def delete(db: Session, username: str, *, actor: str) -> StoredUser:
    """Delete an account and, by the foreign keys' cascades, everything it owns: browser
    sessions, token families and their refresh tokens, codes, consents, second factors."""
    user = find(db, username)
    user_store.delete_user(db, user.id)
    audit.record(db, "user.deleted", actor=actor, user=user.sub, details={"username": user.username})
    return user


def unlock(db: Session, username: str, *, actor: str) -> StoredUser:
    """Forget every counted failure of the account (passwords and second factors, on every
    device), so a locked-out user may try again at once."""
    user = find(db, username)
    for factor in (FACTOR_PASSWORD, FACTOR_OTP):
        failures.clear(db, user.id, factor, every_device=True)
    audit.record(db, "user.unlocked", actor=actor, user=user.sub, details={"username": user.username})
    return user


def _differs(before: StoredUser, after: StoredUser, field: str) -> bool:
    return bool(getattr(before, field) != getattr(after, field))


def sessions(db: Session, username: str) -> tuple[StoredUser, list[StoredSession]]:
    """The user's live browser sessions, newest first."""
    user = find(db, username)
    return user, session_store.list_live_sessions(db, user.id)


def end_session(db: Session, username: str, sid: str, *, actor: str) -> StoredUser:
    """End one of the user's live sessions (``sid``, as ``ostiary sessions list`` shows it)
    and, with it, the refresh-token families bound to it (issued without ``offline_access``)."""
    user = find(db, username)
    if not any(live.sid == sid for live in session_store.list_live_sessions(db, user.id)):
        raise UserError("SID", f"{username!r} has no live session {sid!r}")
    session_store.end_session_by_sid(db, sid, "ended_by_admin")
    audit.record(db, "session.ended", actor=actor, user=user.sub, details={"sid": sid})
    return user


def end_sessions(db: Session, username: str, *, actor: str) -> tuple[StoredUser, int]:
    """End every live session of the user (and the families bound to them); returns how many."""
    user = find(db, username)
    ended = session_store.end_user_sessions(db, user.id, "ended_by_admin")
    audit.record(db, "session.ended", actor=actor, user=user.sub, details={"sessions": ended})
    return user, ended
