"""Authorization codes: stored as digests, consumed atomically, never deleted on use.

An exchange reads its code (:func:`find`), and consumes it only once every check has
passed, by one conditional ``UPDATE`` in the statement that inserts the grant
(:func:`consumption`, used by :func:`server.storage.grants.insert_grant`): two concurrent
redemptions of one code cannot both succeed (Authlib's default read-then-delete is not
atomic), and an exchange never consumes its code without writing its grant. A consumed
row stays until cleanup, so a replay is recognised and can revoke the grant it created.

A code bound to a DPoP key (RFC 9449 §10, ``dpop_jkt``) is consumed only by a redemption
that proves that key: the key is part of the same condition, so a redemption without it
writes nothing and the code stays for its client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CTE, bindparam, or_, select, update

from . import Session, logout_notices
from .base import insert_row, sha256, utcnow
from .driver import DriverStatement
from .models import AuthorizationCode, User
from .users import USER_COLUMNS, StoredUser, user_from


@dataclass(frozen=True, slots=True)
class StoredCode:
    """A code's binding: the client, redirect URI, PKCE challenge and DPoP key it was issued
    for, and the sign-in its grant descends from."""

    client_id: str
    user_id: int
    grant_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    session_sid: str | None
    auth_time: datetime
    acr: str | None
    amr: tuple[str, ...]
    #: RFC 9449 §10: the thumbprint (RFC 7638) of the DPoP key the code is redeemed with only
    dpop_jkt: str | None = None
    #: the code's user, when the statement that consumed the code read it too
    user: StoredUser | None = None


_RETURNED = (
    AuthorizationCode.client_id,
    AuthorizationCode.user_id,
    AuthorizationCode.grant_id,
    AuthorizationCode.redirect_uri,
    AuthorizationCode.scope,
    AuthorizationCode.nonce,
    AuthorizationCode.code_challenge,
    AuthorizationCode.code_challenge_method,
    AuthorizationCode.session_sid,
    AuthorizationCode.auth_time,
    AuthorizationCode.acr,
    AuthorizationCode.amr,
    AuthorizationCode.dpop_jkt,
)


_INSERT_CODE = insert_row(AuthorizationCode)
#: the client's code, not used yet and not expired
_USABLE = (
    AuthorizationCode.code_digest == bindparam("b_digest"),
    AuthorizationCode.client_id == bindparam("b_client_id"),
    AuthorizationCode.consumed_at.is_(None),
    AuthorizationCode.expires_at > bindparam("b_now"),
)
# One conditional UPDATE: of two exchanges of one code, exactly one gets the row back.
_UNUSED = (
    *_USABLE,
    # the key is checked in the condition rather than after it: a refused redemption then
    # writes nothing at all (no consumption to roll back, no row lock held until then), and
    # whoever holds a stolen bound code without its key cannot spend it (RFC 9449 §10).
    # With b_jkt NULL the comparison is NULL, so a bound code needs a proof.
    or_(AuthorizationCode.dpop_jkt.is_(None), AuthorizationCode.dpop_jkt == bindparam("b_jkt")),
)
_CONSUME = update(AuthorizationCode).where(*_UNUSED).values(consumed_at=bindparam("b_now")).returning(*_RETURNED)
# PostgreSQL: the usable code and its user, read on a connection of its own (no session)
_FIND_WITH_USER = DriverStatement(
    select(*(column for column in _RETURNED if column.key != "user_id"), *USER_COLUMNS)
    .join_from(AuthorizationCode, User, User.id == AuthorizationCode.user_id)
    .where(*_UNUSED)
)
_FIND = select(*_RETURNED).where(*_UNUSED)


def insert_code(session: Session, code: str, stored: StoredCode, *, expires_at: datetime) -> None:
    row = {
        "code_digest": sha256(code),
        "client_id": stored.client_id,
        "user_id": stored.user_id,
        "grant_id": stored.grant_id,
        "redirect_uri": stored.redirect_uri,
        "scope": stored.scope,
        "nonce": stored.nonce,
        "code_challenge": stored.code_challenge,
        "code_challenge_method": stored.code_challenge_method,
        "session_sid": stored.session_sid,
        "auth_time": stored.auth_time,
        "acr": stored.acr,
        "amr": list(stored.amr),
        "dpop_jkt": stored.dpop_jkt,
        "created_at": utcnow(),
        "expires_at": expires_at,
    }
    session.connection().execute(_INSERT_CODE, row)
    if stored.session_sid is not None:
        logout_notices.remember_client(session, stored.session_sid, stored.client_id)


def consumption_params(code: str, client_id: str, dpop_jkt: str | None) -> dict[str, Any]:
    """The parameters of :func:`consume`'s condition, as :func:`consumption` names them."""
    return {"b_digest": sha256(code), "b_client_id": client_id, "b_now": utcnow(), "b_jkt": dpop_jkt}


def consumption() -> CTE:
    """:func:`consume`'s update as a CTE (``consumed``) returning the code's grant id, for a
    statement that writes the code's grant only when it consumed the code."""
    return (
        update(AuthorizationCode)
        .where(*_UNUSED)
        .values(consumed_at=bindparam("b_now"))
        .returning(AuthorizationCode.grant_id)
        .cte("consumed")
    )


def consume(session: Session, code: str, client_id: str, dpop_jkt: str | None = None) -> StoredCode | None:
    """Mark the code used and return it, if it is unused, unexpired, ``client_id``'s and,
    when it is bound to a DPoP key, bound to ``dpop_jkt`` (the thumbprint of the key the
    redemption proved). A code exchange consumes its code as it inserts the grant
    (:func:`server.storage.grants.insert_grant`); this spends one whose exchange failed."""
    row = session.connection().execute(_CONSUME, consumption_params(code, client_id, dpop_jkt)).one_or_none()
    return None if row is None else _stored(row._mapping, with_user=False)


def find(session: Session, code: str, client_id: str, dpop_jkt: str | None = None) -> StoredCode | None:
    """The code as :func:`consume` would consume it, left unused: the redemption consumes it
    when it inserts its grant (:func:`server.storage.grants.insert_grant`). On PostgreSQL
    with its ``user``, in one statement on a pooled connection of its own (call it before
    the session has used one)."""
    params = consumption_params(code, client_id, dpop_jkt)
    if session.get_bind().dialect.name == "postgresql":
        record = _FIND_WITH_USER.fetchrow_beside(session, params)
        return None if record is None else _stored(record, with_user=True)
    row = session.execute(_FIND, params).one_or_none()
    return None if row is None else _stored(row._mapping, with_user=False)


def _stored(r: Any, *, with_user: bool) -> StoredCode:
    return StoredCode(
        **{column.key: r[column.key] for column in _RETURNED if column.key != "amr"},
        amr=tuple(r["amr"]),
        user=user_from(r) if with_user else None,
    )


def replayed_grant(session: Session, code: str, client_id: str, dpop_jkt: str | None = None) -> tuple[str, str] | None:
    """(grant id, user sub) of the grant a code created, if it was already consumed by
    ``client_id`` (a replay). A code bound to a DPoP key is replayed only with a proof of
    that key (``dpop_jkt``): whoever saw the code without holding the key cannot have the
    grant revoked by presenting it."""
    row = session.execute(
        select(AuthorizationCode.grant_id, User.sub)
        .join(User, User.id == AuthorizationCode.user_id)
        .where(
            AuthorizationCode.code_digest == sha256(code),
            AuthorizationCode.client_id == client_id,
            AuthorizationCode.consumed_at.is_not(None),
            or_(AuthorizationCode.dpop_jkt.is_(None), AuthorizationCode.dpop_jkt == dpop_jkt),
        )
    ).one_or_none()
    return None if row is None else (row.grant_id, row.sub)


def bound_to_another_key(session: Session, code: str, client_id: str, dpop_jkt: str | None) -> bool:
    """The code is ``client_id``'s, unused, unexpired, and bound to a DPoP key other than
    ``dpop_jkt`` (or to one, when ``dpop_jkt`` is None): why :func:`consume` refused it."""
    params = {"b_digest": sha256(code), "b_client_id": client_id, "b_now": utcnow()}
    bound = session.execute(select(AuthorizationCode.dpop_jkt).where(*_USABLE), params).scalar_one_or_none()
    return bound is not None and bound != dpop_jkt


def nonce_used(session: Session, client_id: str, nonce: str) -> bool:
    return (
        session.execute(
            select(AuthorizationCode.code_digest).where(
                AuthorizationCode.client_id == client_id, AuthorizationCode.nonce == nonce
            )
        ).first()
        is not None
    )
