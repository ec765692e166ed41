"""Grants: the family of every token one authorization produced.

A family issued without ``offline_access`` carries the ``sid`` of the browser session it
came from and ends with that session (OpenID Connect Core §11: only ``offline_access``
asks for access while the user is not signed in). Every way a session ends in storage
(:mod:`.sessions`) revokes its families in the same transaction; a session that simply
expires needs no write at all, because such a family is inserted already ending when its
session does (:func:`insert_grant`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, case, func, insert, literal, null, or_, select, update

from . import Session, audit, codes, refresh
from .base import sha256, utcnow
from .driver import DriverStatement
from .models import BrowserSession, Grant, RefreshToken

#: a family whose session had ended before the family was made
REASON_SESSION_ENDED = "session_ended"

_grants, _tokens = cast(Table, Grant.__table__), cast(Table, RefreshToken.__table__)


def _session_end() -> Any:
    """When the session named by ``session_sid`` ends: when it was ended, else when it
    expires; NULL for no session (an ``offline_access`` family). On PostgreSQL the row is
    read ``FOR SHARE``: a sign-out committing meanwhile is waited for and seen, and a
    sign-out that comes later waits for this family, so its revocation sees it."""
    return (
        select(func.coalesce(BrowserSession.ended_at, BrowserSession.expires_at))
        .where(BrowserSession.sid == bindparam("session_sid"))
        .with_for_update(read=True)
        .scalar_subquery()
    )


def _capped(name: str) -> ColumnElement[Any]:
    """The bound datetime ``name``, or the session's end when that comes first."""
    value = bindparam(name, type_=_grants.c.expires_at.type)
    end = _session_end()
    return case((end < value, end), else_=value)


def _grant_values() -> dict[str, Any]:
    """Every column bound by name, but: the family ends with its session, and one whose
    session has ended already (signed out before the code was redeemed) is revoked."""
    values: dict[str, Any] = {column.name: bindparam(column.name, type_=column.type) for column in _grants.columns}
    values["expires_at"] = _capped("expires_at")
    now = bindparam("created_at", type_=_grants.c.created_at.type)
    ended = _session_end() <= now
    values["revoked_at"] = case((ended, now), else_=null())
    values["revoked_reason"] = case((ended, literal(REASON_SESSION_ENDED)), else_=null())
    return values


_INSERT_GRANT = insert(_grants).values(_grant_values())


def _family_statement(*, first_token: bool = True, redeeming: bool = False) -> Any:
    """PostgreSQL: the grant and, with ``first_token``, its first refresh token (generation
    1) in one statement. ``redeeming``: the statement also consumes an authorization code
    (:func:`server.storage.codes.consumption`), and inserts only when it did; it returns
    the grant's id then, and no row when the code could not be consumed."""
    values = _grant_values()
    if redeeming:
        consumed = codes.consumption()
        gated = select(*values.values()).select_from(consumed)
        new_grant_insert = insert(_grants).from_select(list(values), gated)
    else:
        new_grant_insert = insert(_grants).values(values)
    new_grant = new_grant_insert.returning(
        _grants.c.id, _grants.c.client_id, _grants.c.created_at, _grants.c.expires_at
    ).cte("new_grant")
    ctes = (consumed, new_grant) if redeeming else (new_grant,)
    if not first_token:
        return select(new_grant.c.id).add_cte(*ctes, nest_here=True)
    first = select(
        bindparam("token_digest", type_=_tokens.c.token_digest.type),
        new_grant.c.id,
        new_grant.c.client_id,
        literal(1),
        new_grant.c.created_at,
        func.least(bindparam("token_expires_at", type_=_tokens.c.expires_at.type), new_grant.c.expires_at),
    )
    statement = insert(_tokens).from_select(refresh.TOKEN_COLUMNS, first)
    if redeeming:
        statement = statement.returning(_tokens.c.grant_id)
    return statement.add_cte(*ctes, nest_here=True)


_INSERT_FAMILY = _family_statement()
# A code's redemption on a connection of its own (no BEGIN or COMMIT): the code consumed and
# its grant inserted in one statement, so a replay that finds the code consumed finds the
# grant it made too, and can revoke it.
_REDEEM_GRANT = DriverStatement(_family_statement(first_token=False, redeeming=True))
_REDEEM_FAMILY = DriverStatement(_family_statement(redeeming=True))


@dataclass(frozen=True, slots=True)
class Redemption:
    """The authorization code whose use creates a grant: the code as presented, and the
    client and DPoP key thumbprint of the request (as :func:`server.storage.codes.consume`
    takes them)."""

    code: str
    client_id: str
    dpop_jkt: str | None


# long: one keyword and one row entry per column of the grant, and both ways to insert it
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
    dpop_jkt: str | None = None,
    redeeming: Redemption | None = None,
) -> bool:
    """A new grant; with ``first_refresh_token`` (the token, its expiry), that token as its
    family's first generation and head: one statement on PostgreSQL, two on SQLite.

    With a ``session_sid`` (a family without ``offline_access``), the family and its first
    token end no later than that browser session, read in the same statement; a session
    that already ended gives a family revoked from the start. No session refresh or
    introspection then has to look the session up (OIDC Core §11).

    ``redeeming``: the grant is an authorization code's, and is inserted only if that code
    can be consumed, together with it: on PostgreSQL in one statement of its own, committed
    as it returns (whatever becomes of the caller's transaction); on SQLite in the caller's
    transaction (SQLite's single writer). False, and nothing written, when the code could
    not be consumed (used or expired meanwhile); True otherwise.
    """
    row: dict[str, Any] = {
        "id": grant_id,
        "client_id": client_id,
        "user_id": user_id,
        "scope": scope,
        "session_sid": session_sid,
        "created_at": utcnow(),
        "expires_at": expires_at,
        "dpop_jkt": dpop_jkt,
        "auth_time": auth_time,
        "acr": acr,
        "amr": amr or [],
        "head_generation": 1 if first_refresh_token else 0,
    }
    on_postgresql = session.get_bind().dialect.name == "postgresql"
    if redeeming is not None:
        if on_postgresql:
            return _redeem_in_one_statement(session, row, first_refresh_token, redeeming)
        if codes.consume(session, redeeming.code, redeeming.client_id, redeeming.dpop_jkt) is None:
            return False
    _insert(session, row, first_refresh_token, on_postgresql=on_postgresql)
    return True


def _insert(
    session: Session, row: dict[str, Any], first_refresh_token: tuple[str, datetime] | None, *, on_postgresql: bool
) -> None:
    connection = session.connection()
    if first_refresh_token is None:
        connection.execute(_INSERT_GRANT, row)
        return
    token, token_expires_at = first_refresh_token
    if on_postgresql:
        connection.execute(_INSERT_FAMILY, {**row, "token_digest": sha256(token), "token_expires_at": token_expires_at})
        return
    connection.execute(_INSERT_GRANT, row)
    if row["session_sid"] is not None:
        token_expires_at = min(token_expires_at, _family_end(session, row["id"]) or token_expires_at)
    refresh.insert_first(session, token, grant_id=row["id"], client_id=row["client_id"], expires_at=token_expires_at)


def _redeem_in_one_statement(
    session: Session, row: dict[str, Any], first_refresh_token: tuple[str, datetime] | None, redeeming: Redemption
) -> bool:
    # asyncpg takes a JSON parameter as its text (SQLAlchemy's dialect registers that codec)
    params = {**row, "amr": json.dumps(row["amr"])}
    params.update(codes.consumption_params(redeeming.code, redeeming.client_id, redeeming.dpop_jkt))
    statement = _REDEEM_GRANT
    if first_refresh_token is not None:
        token, token_expires_at = first_refresh_token
        params.update(token_digest=sha256(token), token_expires_at=token_expires_at)
        statement = _REDEEM_FAMILY
    return statement.fetchrow_beside(session, params) is not None


def _family_end(session: Session, grant_id: str) -> datetime | None:
    return session.execute(select(Grant.expires_at).where(Grant.id == grant_id)).scalar_one()


def revoke(session: Session, grant_id: str, reason: str) -> bool:
    """Revoke one grant; True if it was active."""
    result = session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .returning(Grant.id)
    )
    return result.first() is not None


def revoke_audited(
    session: Session, grant_id: str, reason: str, *, actor: str | None, user: str | None, client: str | None
) -> bool:
    """:func:`revoke`, and a ``grant.revoked`` audit event when it revoked it."""
    if not revoke(session, grant_id, reason):
        return False
    audit.record(
        session, "grant.revoked", actor=actor, user=user, client=client, subject=grant_id, details={"reason": reason}
    )
    return True


def revoke_for_session(session: Session, session_sid: str, reason: str) -> int:
    """Revoke every grant bound to a browser session; returns how many. Ending a session
    in :mod:`.sessions` calls this already."""
    result = session.execute(
        update(Grant)
        .where(Grant.session_sid == session_sid, Grant.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .returning(Grant.id)
    )
    return len(result.all())


def revoke_session_bound(session: Session, user_id: int, reason: str, *, keep_sid: str | None = None) -> int:
    """Revoke every session-bound grant of a user (those without ``offline_access``),
    except the ones bound to ``keep_sid``; returns how many."""
    kept = (Grant.session_sid != keep_sid,) if keep_sid is not None else ()
    result = session.execute(
        update(Grant)
        .where(Grant.user_id == user_id, Grant.session_sid.is_not(None), Grant.revoked_at.is_(None), *kept)
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


@dataclass(frozen=True, slots=True)
class StoredGrant:
    """A live authorization as an administrator sees it. ``session_sid`` is None for a
    family with ``offline_access`` (it outlives the browser session); ``expires_at`` is the
    family's absolute end (None: no end)."""

    grant_id: str
    client_id: str
    scope: str
    created_at: datetime
    session_sid: str | None
    expires_at: datetime | None
    auth_time: datetime | None


_LIVE_COLUMNS = (
    Grant.id.label("grant_id"),
    Grant.client_id,
    Grant.scope,
    Grant.created_at,
    Grant.session_sid,
    Grant.expires_at,
    Grant.auth_time,
)


def live_for_user(user_id: int) -> Any:
    """The user's grants still working now (not revoked, not past their end), as a query
    of :class:`StoredGrant`'s columns."""
    now = utcnow()
    return select(*_LIVE_COLUMNS).where(
        Grant.user_id == user_id,
        Grant.revoked_at.is_(None),
        or_(Grant.expires_at.is_(None), Grant.expires_at > now),
    )


def list_live_for_user(session: Session, user_id: int) -> list[StoredGrant]:
    """A user's grants that are neither revoked nor past their end, newest first (a family
    bound to a session that expired ends with it: its ``expires_at`` is capped at insert)."""
    rows = session.execute(live_for_user(user_id).order_by(Grant.created_at.desc(), Grant.id).limit(500))
    return [StoredGrant(**row._mapping) for row in rows]


def get_live_for_user(session: Session, user_id: int, grant_id: str) -> StoredGrant | None:
    """The live grant ``grant_id`` if it belongs to the user; None otherwise (no such grant,
    another user's, revoked or ended), so an administrator cannot end another's grant by id."""
    row = session.execute(live_for_user(user_id).where(Grant.id == grant_id)).one_or_none()
    return StoredGrant(**row._mapping) if row else None
