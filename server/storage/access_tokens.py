"""Is a JWT access token still good? One statement per check, on the hot read paths.

An access token verifies offline, but introspection and userinfo also honour revocation
and disabling: the token's ``jti`` must not be on the deny list, its client must exist and
not be disabled and, for a user's token, its grant (``gid``) must not be revoked and its
user not disabled. Each check is one statement of indexed reads (primary keys).

The checks come in two forms: over the caller's session, and as a read of their own
(``*_alone``) for an endpoint that needs nothing else from the database. On PostgreSQL a
read of its own is its one statement on a pooled connection (:mod:`.driver`), with no
session around it; elsewhere it is a read-only session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, exists, select

from . import AsyncSession, Session, async_sessionmaker, transactions
from .driver import DriverStatement
from .models import Client, Grant, RevokedAccessToken, User
from .users import USER_COLUMNS, StoredUser, to_user, user_from

T = TypeVar("T")

_NOT_DENIED = ~exists().where(RevokedAccessToken.jti == bindparam("b_jti"))
_CLIENT_ENABLED = exists().where(Client.client_id == bindparam("b_client_id"), Client.disabled_at.is_(None))
#: the grant is live, and neither its user nor its client is disabled
_GRANT_LIVE = (
    exists()
    .where(Grant.id == bindparam("b_gid"), Grant.revoked_at.is_(None))
    .where(User.id == Grant.user_id, User.disabled_at.is_(None))
    .where(Client.client_id == Grant.client_id, Client.disabled_at.is_(None))
)
_CLIENT_TOKEN_ACTIVE = select(and_(_NOT_DENIED, _CLIENT_ENABLED).label("active"))
_USER_TOKEN_ACTIVE = select(and_(_NOT_DENIED, _GRANT_LIVE).label("active"))
_TOKEN_USER = (
    select(*USER_COLUMNS)
    .join_from(Grant, User, User.id == Grant.user_id)
    .join(Client, Client.client_id == Grant.client_id)
    .where(
        Grant.id == bindparam("b_gid"),
        Grant.revoked_at.is_(None),
        User.sub == bindparam("b_sub"),
        User.disabled_at.is_(None),
        Client.disabled_at.is_(None),
        _NOT_DENIED,
    )
)


def is_active(session: Session, jti: str, grant_id: str | None, client_id: str) -> bool:
    """Not on the deny list, its client enabled and, for a user's token (``grant_id``), its
    grant not revoked and its user enabled. One statement either way."""
    if grant_id is None:
        params = {"b_jti": jti, "b_client_id": client_id}
        return bool(session.connection().execute(_CLIENT_TOKEN_ACTIVE, params).scalar())
    return bool(session.connection().execute(_USER_TOKEN_ACTIVE, {"b_jti": jti, "b_gid": grant_id}).scalar())


def active_user(session: Session, jti: str, grant_id: str, sub: str) -> StoredUser | None:
    """The enabled user ``sub`` of a token not on the deny list, whose grant is live and
    whose client is enabled."""
    row = session.connection().execute(_TOKEN_USER, {"b_jti": jti, "b_gid": grant_id, "b_sub": sub}).first()
    return to_user(row) if row is not None else None


_CLIENT_TOKEN_ACTIVE_ALONE = DriverStatement(_CLIENT_TOKEN_ACTIVE)
_USER_TOKEN_ACTIVE_ALONE = DriverStatement(_USER_TOKEN_ACTIVE)
_TOKEN_USER_ALONE = DriverStatement(_TOKEN_USER)


async def is_active_alone(
    sessionmaker: async_sessionmaker[AsyncSession], jti: str, grant_id: str | None, client_id: str
) -> bool:
    """:func:`is_active` as a read of its own."""
    if grant_id is None:
        statement, params = _CLIENT_TOKEN_ACTIVE_ALONE, {"b_jti": jti, "b_client_id": client_id}
    else:
        statement, params = _USER_TOKEN_ACTIVE_ALONE, {"b_jti": jti, "b_gid": grant_id}
    return await _alone(
        sessionmaker,
        statement,
        params,
        lambda row: row is not None and bool(row["active"]),
        lambda db: is_active(db, jti, grant_id, client_id),
    )


async def active_user_alone(
    sessionmaker: async_sessionmaker[AsyncSession], jti: str, grant_id: str, sub: str
) -> StoredUser | None:
    """:func:`active_user` as a read of its own."""
    return await _alone(
        sessionmaker,
        _TOKEN_USER_ALONE,
        {"b_jti": jti, "b_gid": grant_id, "b_sub": sub},
        lambda row: None if row is None else user_from(row),
        lambda db: active_user(db, jti, grant_id, sub),
    )


async def _alone(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: DriverStatement,
    params: dict[str, Any],
    from_row: Callable[[Mapping[str, Any] | None], T],
    in_session: Callable[[Session], T],
) -> T:
    """On PostgreSQL, ``statement``'s first row (None for none) through ``from_row``;
    elsewhere ``in_session`` in a read-only session. The same answer either way: the
    statement is the one ``in_session`` runs."""
    engine = sessionmaker.kw["bind"]
    if engine.dialect.name == "postgresql":
        return from_row(await statement.fetchrow(engine, params))
    return await transactions.run(sessionmaker, in_session, read_only=True)
