"""Grants: the family of every token one authorization produced."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, literal, select, update

from . import Session, refresh
from .base import insert_row, sha256, utcnow
from .models import Grant, RefreshToken

_INSERT_GRANT = insert_row(Grant)


def _family_statement() -> Any:
    """PostgreSQL: the grant and its first refresh token (generation 1) in one statement."""
    grants, tokens = cast(Table, Grant.__table__), cast(Table, RefreshToken.__table__)
    new_grant = (
        insert(grants)
        .values({column.name: bindparam(column.name, type_=column.type) for column in grants.columns})
        .returning(grants.c.id, grants.c.client_id, grants.c.created_at)
        .cte("new_grant")
    )
    first_token = select(
        bindparam("token_digest", type_=tokens.c.token_digest.type),
        new_grant.c.id,
        new_grant.c.client_id,
        literal(1),
        new_grant.c.created_at,
        bindparam("token_expires_at", type_=tokens.c.expires_at.type),
    )
    return insert(tokens).from_select(refresh.TOKEN_COLUMNS, first_token).add_cte(new_grant, nest_here=True)


_INSERT_FAMILY = _family_statement()


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
    first_refresh_token: tuple[str, datetime] | None = None,
) -> None:
    """A new grant; with ``first_refresh_token`` (the token, its expiry), that token as its
    family's first generation and head: one statement on PostgreSQL, two on SQLite."""
    row: dict[str, Any] = {
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
        "head_generation": 1 if first_refresh_token else 0,
        "revoked_at": None,
        "revoked_reason": None,
    }
    connection = session.connection()
    if first_refresh_token is None:
        connection.execute(_INSERT_GRANT, row)
        return
    token, token_expires_at = first_refresh_token
    if connection.dialect.name == "postgresql":
        connection.execute(_INSERT_FAMILY, {**row, "token_digest": sha256(token), "token_expires_at": token_expires_at})
        return
    connection.execute(_INSERT_GRANT, row)
    refresh.insert_first(session, token, grant_id=grant_id, client_id=client_id, expires_at=token_expires_at)


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
