"""Grants: the family of every token one authorization produced."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from . import Session
from .base import insert_row, utcnow
from .models import Grant

_INSERT_GRANT = insert_row(Grant)


def insert_grant(
    session: Session,
    *,
    grant_id: str,
    client_id: str,
    user_id: int,
    scope: str,
    session_sid: str | None,
    expires_at: datetime,
    auth_time: datetime | None = None,
    acr: str | None = None,
    amr: list[str] | None = None,
    head_generation: int = 0,
) -> None:
    row = {
        "id": grant_id,
        "client_id": client_id,
        "user_id": user_id,
        "scope": scope,
        "session_sid": session_sid,
        "created_at": utcnow(),
        "expires_at": expires_at,
        "auth_time": auth_time,
        "acr": acr,
        "amr": amr or [],
        "head_generation": head_generation,
    }
    session.connection().execute(_INSERT_GRANT, row)


def revoke(session: Session, grant_id: str, reason: str) -> bool:
    """Revoke one grant; True if it was active."""
    result = session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .returning(Grant.id)
    )
    return result.first() is not None


def revoke_for_session(session: Session, session_sid: str, reason: str) -> int:
    """Revoke every grant bound to a browser session (logout); returns how many."""
    result = session.execute(
        update(Grant)
        .where(Grant.session_sid == session_sid, Grant.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .returning(Grant.id)
    )
    return len(result.all())


def revoke_for_user(session: Session, user_id: int, reason: str, *, client_id: str | None = None) -> int:
    """Revoke every grant of a user, or of a user and one client (password change or
    reset, admin action)."""
    only = (Grant.client_id == client_id,) if client_id else ()
    result = session.execute(
        update(Grant)
        .where(Grant.user_id == user_id, Grant.revoked_at.is_(None), *only)
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .returning(Grant.id)
    )
    return len(result.all())
