"""User accounts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select, update

from . import Session
from .base import utcnow
from .models import User

_COLUMNS = (
    User.id.label("user_id"),
    User.sub,
    User.username,
    User.email,
    User.email_verified,
    User.name,
    User.password_hash,
    User.is_admin,
    User.must_change_password,
    User.created_at,
    User.updated_at,
    User.disabled_at,
)
#: every column of a user, as :func:`to_user` reads them (other queries may select them too)
USER_COLUMNS = _COLUMNS
_BY_ID = select(*_COLUMNS).where(User.id == bindparam("id"))
_BY_USERNAME = select(*_COLUMNS).where(User.username_key == bindparam("key"))
_BY_EMAIL = select(*_COLUMNS).where(User.email_key == bindparam("key"))
_BY_SUB = select(*_COLUMNS).where(User.sub == bindparam("sub"))


@dataclass(frozen=True, slots=True)
class StoredUser:
    id: int
    sub: str
    username: str
    email: str | None
    email_verified: bool
    name: str | None
    password_hash: str | None
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    is_admin: bool = False
    must_change_password: bool = False


def to_user(row: object) -> StoredUser:
    """A user from a row holding :data:`USER_COLUMNS`."""
    return user_from(row._mapping)  # type: ignore[attr-defined]


def user_from(r: Mapping[Any, Any]) -> StoredUser:
    """A user from a mapping (a row's, or an asyncpg record) of :data:`USER_COLUMNS`."""
    return StoredUser(
        id=r["user_id"],
        sub=r["sub"],
        username=r["username"],
        email=r["email"],
        email_verified=r["email_verified"],
        name=r["name"],
        password_hash=r["password_hash"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        disabled_at=r["disabled_at"],
        is_admin=bool(r["is_admin"]),
        must_change_password=bool(r["must_change_password"]),
    )


def username_key(username: str) -> str:
    return username.strip().casefold()


def insert_user(
    session: Session,
    *,
    sub: str,
    username: str,
    email: str | None,
    name: str | None,
    password_hash: str | None,
    email_verified: bool = False,
    is_admin: bool = False,
    must_change_password: bool = False,
) -> StoredUser:
    now = utcnow()
    result = session.execute(
        insert(User)
        .values(
            sub=sub,
            username=username,
            username_key=username_key(username),
            email=email,
            email_key=email.casefold() if email else None,
            email_verified=email_verified,
            name=name,
            password_hash=password_hash,
            is_admin=is_admin,
            must_change_password=must_change_password,
            created_at=now,
            updated_at=now,
        )
        .returning(*_COLUMNS)
    )
    return to_user(result.one())


def get_user(session: Session, user_id: int) -> StoredUser | None:
    row = session.execute(_BY_ID, {"id": user_id}).one_or_none()
    return to_user(row) if row else None


def get_user_by_username(session: Session, username: str) -> StoredUser | None:
    row = session.execute(_BY_USERNAME, {"key": username_key(username)}).one_or_none()
    return to_user(row) if row else None


def get_user_by_email(session: Session, email: str) -> StoredUser | None:
    row = session.execute(_BY_EMAIL, {"key": email.strip().casefold()}).one_or_none()
    return to_user(row) if row else None


def get_user_by_sub(session: Session, sub: str) -> StoredUser | None:
    """The account with this ``sub`` (the stable identifier the admin API addresses)."""
    row = session.execute(_BY_SUB, {"sub": sub}).one_or_none()
    return to_user(row) if row else None


def list_users(session: Session, *, query: str | None, after: int | None, limit: int) -> list[StoredUser]:
    """One page of accounts in id order: those with an id above ``after`` (the last id of
    the previous page; a cursor stays right while accounts are added or deleted, where an
    offset would skip or repeat), and, with ``query``, whose username or e-mail address
    contains it, case-insensitively (both keys are stored casefolded; ``%`` and ``_`` in
    ``query`` match themselves)."""
    statement = select(*_COLUMNS).order_by(User.id).limit(limit)
    if after is not None:
        statement = statement.where(User.id > after)
    needle = query.strip().casefold() if query is not None else ""
    if needle:
        statement = statement.where(
            or_(User.username_key.contains(needle, autoescape=True), User.email_key.contains(needle, autoescape=True))
        )
    return [to_user(row) for row in session.execute(statement)]


def any_admin(session: Session) -> bool:
    return session.execute(select(User.id).where(User.is_admin.is_(True)).limit(1)).first() is not None


def other_active_admins(session: Session, user_id: int) -> int:
    """How many enabled administrators there are besides ``user_id`` (locked on PostgreSQL,
    so that two requests cannot each remove one of the last two)."""
    query = (
        select(User.id).where(User.is_admin.is_(True), User.disabled_at.is_(None), User.id != user_id).with_for_update()
    )
    return len(session.execute(query).all())


def username_or_email_taken(session: Session, username: str, email: str | None) -> str | None:
    """Which of the two is already in use ("username" or "email"), or None."""
    if session.execute(select(User.id).where(User.username_key == username_key(username))).first():
        return "username"
    if email and session.execute(select(User.id).where(User.email_key == email.casefold())).first():
        return "email"
    return None


def set_password_hash(session: Session, user_id: int, password_hash: str) -> None:
    """A new password (which also satisfies a pending "must change" flag)."""
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(password_hash=password_hash, must_change_password=False, updated_at=utcnow())
    )


def rehash_password(session: Session, user_id: int, *, old: str | None, new: str) -> bool:
    """Replace a hash made with weaker parameters, only if it is still the stored one."""
    result = session.execute(
        update(User).where(User.id == user_id, User.password_hash == old).values(password_hash=new).returning(User.id)
    )
    return result.first() is not None


def taken_by_another(session: Session, user_id: int, username: str, email: str | None) -> str | None:
    """Which of the two another account already uses ("username" or "email"), or None."""
    others = User.id != user_id
    if session.execute(select(User.id).where(User.username_key == username_key(username), others)).first():
        return "username"
    if email and session.execute(select(User.id).where(User.email_key == email.casefold(), others)).first():
        return "email"
    return None


def update_profile(
    session: Session, user_id: int, *, username: str, email: str | None, name: str | None, email_verified: bool
) -> StoredUser | None:
    """Store the profile an administrator edited; None when the user no longer exists."""
    result = session.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            username=username,
            username_key=username_key(username),
            email=email,
            email_key=email.casefold() if email else None,
            name=name,
            email_verified=email_verified,
            updated_at=utcnow(),
        )
        .returning(*_COLUMNS)
    )
    row = result.first()
    return to_user(row) if row is not None else None


def set_disabled(session: Session, user_id: int, disabled_at: datetime | None) -> None:
    """Disable (a time) or enable (None) an account."""
    session.execute(update(User).where(User.id == user_id).values(disabled_at=disabled_at, updated_at=utcnow()))


def set_must_change_password(session: Session, user_id: int, required: bool) -> bool:
    """Require (or no longer require) a new password at the next sign-in; True if the flag changed."""
    result = session.execute(
        update(User)
        .where(User.id == user_id, User.must_change_password != required)
        .values(must_change_password=required, updated_at=utcnow())
        .returning(User.id)
    )
    return result.first() is not None


def set_admin(session: Session, user_id: int, is_admin: bool) -> bool:
    """Give or take the admin role; True if it changed."""
    result = session.execute(
        update(User)
        .where(User.id == user_id, User.is_admin != is_admin)
        .values(is_admin=is_admin, updated_at=utcnow())
        .returning(User.id)
    )
    return result.first() is not None


def delete_user(session: Session, user_id: int) -> bool:
    """Delete an account; its sessions, grants (with their refresh tokens), codes, consents,
    second factors, reset links and lockout counters go with it (foreign keys cascade)."""
    result = session.execute(delete(User).where(User.id == user_id).returning(User.id))
    return result.first() is not None
