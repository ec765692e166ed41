"""Grants: the family of every token one authorization produced."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, insert, update

from . import Session
from .base import utcnow
from .models import Grant

_INSERT_GRANT = insert(Grant).values(
    id=bindparam("b_id"),
    client_id=bindparam("b_client_id"),
    user_id=bindparam("b_user_id"),
    scope=bindparam("b_scope"),
    session_sid=bindparam("b_session_sid"),
    created_at=bindparam("b_now"),
    expires_at=bindparam("b_expires_at"),
    auth_time=bindparam("b_auth_time"),
    acr=bindparam("b_acr"),
    amr=bindparam("b_amr", type_=Grant.__table__.c.amr.type),
    head_generation=bindparam("b_head_generation"),
)


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
    params = {
        "b_id": grant_id,
        "b_client_id": client_id,
        "b_user_id": user_id,
        "b_scope": scope,
        "b_session_sid": session_sid,
        "b_now": utcnow(),
        "b_expires_at": expires_at,
        "b_auth_time": auth_time,
        "b_acr": acr,
        "b_amr": amr or [],
        "b_head_generation": head_generation,
    }
    session.execute(_INSERT_GRANT, params)


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
