"""What an administrator does to an account: find, list, disable, enable, edit, delete,
unlock, reset the second factor, require a new password, mail a reset link, end sessions
and grants.

The one service layer of the CLI, the admin API and the console, so the three cannot
disagree. Each function runs in the caller's transaction, finds the user by username (the
name the administrator sees; the API resolves a ``sub`` with :func:`find_by_sub` first),
raises :class:`UnknownUser` for no such account, and writes one audit row naming ``actor``
for each change. A disabled account keeps its rows: every sign-in, refresh, userinfo call
and introspection reads ``disabled_at``, so enabling it again gives back what had not
expired meanwhile, except its browser sessions and the refresh families bound to them,
which disabling ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..authn.lockout import FACTOR_OTP, FACTOR_PASSWORD, Lockout
from ..mfa import service as mfa_service
from ..observe import metrics
from ..storage import (
    Session,
    audit,
    failures,
    grants as grant_store,
    mfa as mfa_store,
    outbox,
    resets,
    sessions as session_store,
    users as user_store,
)
from ..storage.base import utcnow
from ..storage.grants import StoredGrant
from ..storage.sessions import StoredSession
from ..storage.users import StoredUser
from .errors import LastAdministrator, Unknown, UnknownUser, UserError
from .reset import LOOKUP_TEMPLATE
from .service import create_user, validate_new_user

#: the largest page :func:`list_users` gives
MAX_PAGE = 1000
#: why an administrator's revocation ended a grant (the grant's ``revoked_reason``)
REVOKED_BY_ADMIN = "revoked_by_admin"


@dataclass(frozen=True)
class ProfileChanges:
    """The fields an administrator gave (``ostiary users update``, a PATCH); None leaves a
    field as it is. ``is_admin`` is the admin role."""

    username: str | None = None
    email: str | None = None
    name: str | None = None
    email_verified: bool | None = None
    is_admin: bool | None = None

    def empty(self) -> bool:
        """True when no field was given: an update that would change nothing is refused."""
        values = (self.username, self.email, self.name, self.email_verified, self.is_admin)
        return all(value is None for value in values)


@dataclass(frozen=True)
class Standing:
    """An account with what guards its sign-in: ``locked_factors`` names the lockout
    counters (``password``, ``otp``) refusing attempts now."""

    user: StoredUser
    mfa_enrolled: bool
    locked_factors: tuple[str, ...]


@dataclass(frozen=True)
class UserOverview(Standing):
    """All an administrator looks at for one account: its standing, and its live sessions
    and grants, newest first."""

    sessions: list[StoredSession]
    grants: list[StoredGrant]


def find(db: Session, username: str) -> StoredUser:
    """The account named ``username`` (case-insensitively); UnknownUser if none."""
    user = user_store.get_user_by_username(db, username)
    if user is None:
        raise UnknownUser("USER", f"no user named {username!r}")
    return user


def find_by_sub(db: Session, sub: str) -> StoredUser:
    """The account whose ``sub`` this is (exactly); UnknownUser if none."""
    user = user_store.get_user_by_sub(db, sub)
    if user is None:
        raise UnknownUser("USER", f"no user with sub {sub!r}")
    return user


def list_users(db: Session, *, query: str | None, after: int | None, limit: int) -> list[StoredUser]:
    """One page of accounts in id order after the cursor ``after`` (the last id of the
    previous page), with ``query`` those whose username or e-mail contains it, in any case."""
    if not 1 <= limit <= MAX_PAGE:
        raise UserError("limit", f"must be from 1 to {MAX_PAGE}")
    if after is not None and after < 0:
        raise UserError("after", "must be a user id (0 or more)")
    return user_store.list_users(db, query=query, after=after, limit=limit)


# long: one keyword per field of the account
def create(
    db: Session,
    *,
    username: str,
    email: str | None,
    name: str | None,
    password_hash: str | None,
    email_verified: bool = False,
    is_admin: bool = False,
    must_change_password: bool = False,
    actor: str,
) -> StoredUser:
    """A new account (validated by :func:`~server.users.service.validate_new_user`, its
    password checked and hashed, by the caller), with the admin role and a forced password
    change when asked: what ``ostiary users create``, the admin API and the console share."""
    user = create_user(
        db,
        username=username,
        email=email,
        name=name,
        password_hash=password_hash,
        email_verified=email_verified,
        actor=actor,
    )
    if is_admin:
        user = update(db, user.username, ProfileChanges(is_admin=True), actor=actor)
    if must_change_password:
        user, _ = require_password_change(db, user.username, actor=actor)
    return user


def set_disabled(db: Session, username: str, disabled: bool, *, actor: str) -> tuple[StoredUser, bool]:
    """Disable or enable an account; returns it and whether anything changed.

    Disabling also ends the user's browser sessions (and the token families bound to
    them); families with ``offline_access`` stay, inactive while the account is disabled.
    """
    user = find(db, username)
    if (user.disabled_at is not None) == disabled:
        return user, False
    if disabled:
        _keep_an_admin(db, user, "disable")
    user_store.set_disabled(db, user.id, utcnow() if disabled else None)
    details: dict[str, object] = {"username": user.username}
    if disabled:
        details["sessions"] = session_store.end_user_sessions(db, user.id, "user_disabled")
    audit.record(db, "user.disabled" if disabled else "user.enabled", actor=actor, user=user.sub, details=details)
    return find(db, username), True


def update(db: Session, username: str, changes: ProfileChanges, *, actor: str) -> StoredUser:
    """Edit the profile by the rules of account creation, and give or take the admin role.
    A new e-mail address is not verified unless ``email_verified`` says so; an empty one
    removes the address; a changed one voids every reset link mailed to the old one."""
    if changes.empty():
        raise UserError(
            "users update", "nothing to change: give --username, --email, --name, --email-verified or --admin"
        )
    user = find(db, username)
    new_username, email, name, verified = _new_profile(user, changes)
    taken = user_store.taken_by_another(db, user.id, new_username, email)
    if taken:
        raise UserError(f"--{taken}", f"that {taken} is already in use")
    if changes.is_admin is False:
        _keep_an_admin(db, user, "take the admin role from")
    if changes.is_admin is not None:
        user_store.set_admin(db, user.id, changes.is_admin)
    updated = user_store.update_profile(
        db, user.id, username=new_username, email=email, name=name, email_verified=verified
    )
    if updated is None:
        raise UnknownUser("USER", f"no user named {username!r}")
    fields = ("username", "email", "name", "email_verified", "is_admin")
    changed = [field for field in fields if _differs(user, updated, field)]
    if "email" in changed:
        # A link already mailed to the old address (perhaps a lost mailbox) must not work.
        resets.void_resets(db, user.id)
    if changed:  # the fields changed, and the role as it now is (never the values of the rest)
        details: dict[str, object] = {"changed": changed}
        if "is_admin" in changed:
            details["admin"] = updated.is_admin
        audit.record(db, "user.updated", actor=actor, user=user.sub, details=details)
    return updated


def _keep_an_admin(db: Session, user: StoredUser, action: str) -> None:
    """Refuse to remove the last enabled administrator: nobody could administer the server
    over the network any more (``ostiary users update --admin`` would be the way back)."""
    if user.is_admin and user.disabled_at is None and not user_store.other_active_admins(db, user.id):
        raise LastAdministrator("USER", f"cannot {action} {user.username!r}: it is the last enabled administrator")


def _new_profile(user: StoredUser, changes: ProfileChanges) -> tuple[str, str | None, str | None, bool]:
    """The username, e-mail, name and verified flag after ``changes``, validated."""
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
    return new_username, email, name, verified


def delete(db: Session, username: str, *, actor: str) -> StoredUser:
    """Delete an account and, by the foreign keys' cascades, everything it owns: browser
    sessions, token families and their refresh tokens, codes, consents, second factors."""
    user = find(db, username)
    _keep_an_admin(db, user, "delete")
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
    """Whether ``field`` changed, for the audit row's list of changed fields."""
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
        raise Unknown("SID", f"{username!r} has no live session {sid!r}")
    session_store.end_session_by_sid(db, sid, "ended_by_admin")
    audit.record(db, "session.ended", actor=actor, user=user.sub, details={"sid": sid})
    return user


def end_sessions(db: Session, username: str, *, actor: str) -> tuple[StoredUser, int]:
    """End every live session of the user (and the families bound to them); returns how many."""
    user = find(db, username)
    ended = session_store.end_user_sessions(db, user.id, "ended_by_admin")
    audit.record(db, "session.ended", actor=actor, user=user.sub, details={"sessions": ended})
    return user, ended


def reset_mfa(db: Session, username: str, *, actor: str) -> tuple[StoredUser, bool]:
    """Remove the user's second factor and backup codes (a lost device; the user is told by
    mail); returns the user and whether there was one. Audited as ``mfa.reset``."""
    user = find(db, username)
    return user, mfa_service.reset(db, user, actor=actor)


def require_password_change(db: Session, username: str, *, actor: str) -> tuple[StoredUser, bool]:
    """Make the user choose a new password at their next sign-in (the sign-in flow asks for
    it before anything else); returns the user and whether the flag was not already set."""
    user = find(db, username)
    changed = user_store.set_must_change_password(db, user.id, True)
    if changed:
        audit.record(
            db, "user.password_change_required", actor=actor, user=user.sub, details={"username": user.username}
        )
    return find(db, username), changed


def send_reset_link(db: Session, username: str, *, actor: str) -> StoredUser:
    """Mail the user a password-reset link, as "forgot password" would: the queued look-up
    is resolved by the mail sender into a fresh link (voiding older ones) for an enabled
    account with that address. A disabled account or one without an address gets none."""
    user = find(db, username)
    if user.email is None:
        raise UserError("USER", f"{user.username!r} has no e-mail address to send a reset link to")
    if user.disabled_at is not None:
        raise UserError("USER", f"{user.username!r} is disabled: enable the account first")
    outbox.enqueue(db, user.email, LOOKUP_TEMPLATE, {})
    audit.record(db, "user.reset_link_sent", actor=actor, user=user.sub, details={"username": user.username})
    return user


def grants(db: Session, username: str) -> tuple[StoredUser, list[StoredGrant]]:
    """The user's live grants (token families), newest first."""
    user = find(db, username)
    return user, grant_store.list_live_for_user(db, user.id)


def end_grant(db: Session, username: str, grant_id: str, *, actor: str) -> StoredUser:
    """Revoke one live grant of the user: every token issued under it stops working.
    Audited as ``grant.revoked``."""
    user = find(db, username)
    grant = grant_store.get_live_for_user(db, user.id, grant_id)
    if grant is None:
        raise Unknown("GRANT", f"{user.username!r} has no live grant {grant_id!r}")
    grant_store.revoke_audited(db, grant_id, REVOKED_BY_ADMIN, actor=actor, user=user.sub, client=grant.client_id)
    metrics.family_revoked(REVOKED_BY_ADMIN)
    return user


def end_grants(db: Session, username: str, *, actor: str, client_id: str | None = None) -> tuple[StoredUser, int]:
    """Revoke every grant of the user, or of the user and one client; returns how many.
    Audited as ``grants.revoked`` (one row, with the count)."""
    user = find(db, username)
    count = grant_store.revoke_for_user(db, user.id, REVOKED_BY_ADMIN, client_id=client_id)
    metrics.family_revoked(REVOKED_BY_ADMIN, count)
    audit.record(db, "grants.revoked", actor=actor, user=user.sub, client=client_id, details={"count": count})
    return user, count


def standing(db: Session, username: str, lockout: Lockout) -> Standing:
    """The account with its second factor and the lockout counters refusing it now (those
    every browser shares)."""
    user = find(db, username)
    locked = tuple(factor for factor in (FACTOR_PASSWORD, FACTOR_OTP) if lockout.check(db, user.id, factor).locked)
    return Standing(user=user, mfa_enrolled=mfa_store.has_confirmed_totp(db, user.id), locked_factors=locked)


def overview(db: Session, username: str, lockout: Lockout) -> UserOverview:
    """:func:`standing`, with the account's live sessions and grants."""
    seen = standing(db, username, lockout)
    return UserOverview(
        user=seen.user,
        mfa_enrolled=seen.mfa_enrolled,
        locked_factors=seen.locked_factors,
        sessions=session_store.list_live_sessions(db, seen.user.id),
        grants=grant_store.list_live_for_user(db, seen.user.id),
    )


def describe_user(user: StoredUser) -> dict[str, Any]:
    """An account as the admin API and ``ostiary users ... --json`` show it."""
    return {
        "sub": user.sub,
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "admin": user.is_admin,
        "disabled": user.disabled_at is not None,
        "must_change_password": user.must_change_password,
        "created_at": user.created_at.isoformat(),
    }


def describe_session(session: StoredSession) -> dict[str, Any]:
    """A browser session as the admin API and ``ostiary sessions list --json`` show it."""
    return {
        "sid": session.sid,
        "auth_time": session.auth_time.isoformat(),
        "acr": session.acr,
        "amr": list(session.amr),
        "created_at": session.created_at.isoformat(),
        "expires_at": session.expires_at.isoformat(),
    }


def describe_grant(grant: StoredGrant) -> dict[str, Any]:
    """A grant as the admin API and ``ostiary grants list --json`` show it; ``offline`` for
    a family that outlives the browser session (``offline_access``): it has no ``session_sid``."""
    return {
        "grant_id": grant.grant_id,
        "client_id": grant.client_id,
        "scope": grant.scope,
        "created_at": grant.created_at.isoformat(),
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        "auth_time": grant.auth_time.isoformat() if grant.auth_time else None,
        "session_sid": grant.session_sid,
        "offline": grant.session_sid is None,
    }
