"""The rotation of a refresh token: one call, one implementation per dialect.

:func:`rotate` consumes the presented token (unused, unexpired, this client's, of its
family's head generation, the family live and granted every requested scope, its user
enabled), inserts the successor as the next generation and advances the family head, and
returns everything the new tokens need. Two concurrent rotations of one token cannot both
match ``consumed_at IS NULL``: on PostgreSQL the second waits for the first's row lock,
then finds it consumed; on SQLite writers are serialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Table, Text, bindparam, exists, func, insert, literal, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import ARRAY

from .. import Session
from ..base import sha256, utcnow
from ..driver import DriverStatement
from ..models import Grant, RefreshToken, User
from .state import FAMILY, FAMILY_COLUMNS, LIVE_FAMILIES, TOKEN_COLUMNS, FamilyToken, family_from, insert_successor


def rotate(
    session: Session,
    token: str,
    client_id: str,
    successor: str,
    idle_expires_at: datetime,
    scopes: Sequence[str] = (),
    dpop_jkt: str | None = None,
) -> FamilyToken | None:
    """Rotate ``token`` of ``client_id`` to ``successor``, which expires at ``idle_expires_at``
    or with its family, whichever is first; None, and nothing written, when the token may
    not rotate (for the reason, see :func:`~server.storage.refresh.failures.diagnose`). A
    family bound to a DPoP key (RFC 9449 §5) rotates only with ``dpop_jkt``, that key's
    thumbprint.

    PostgreSQL: one statement of its own, committed as it returns, whatever becomes of the
    caller's transaction (for a refresh, nothing after it may refuse). SQLite (whose
    RETURNING cannot name the FROM tables and whose CTEs cannot write): four statements in
    the caller's transaction, atomic in SQLite's single writer.
    """
    if any(not scope or " " in scope for scope in scopes):
        return None  # a family's scope is words separated by spaces: never granted
    params = {
        "b_digest": sha256(token),
        "b_client_id": client_id,
        "b_now": utcnow(),
        "b_new_digest": sha256(successor),
        "b_idle_expires_at": idle_expires_at,
        "b_scopes": list(scopes),
        "b_jkt": dpop_jkt,
    }
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        # On a pooled connection of its own: call it before the session has used one, or a
        # request holds two, and a pool without overflow can run dry waiting on itself.
        record = _ROTATE.fetchrow_sync(bind.pool, params)  # type: ignore[union-attr]
        return family_from(record) if record is not None else None
    connection = session.connection()
    if connection.execute(_consume_sqlite(len(scopes)), _scope_params(params, scopes)).first() is None:
        return None
    family = family_from(connection.execute(FAMILY, params).one()._mapping)
    insert_successor(session, successor, family, idle_expires_at)
    connection.execute(_ADVANCE_HEAD, {"b_grant_id": family.grant_id, "b_generation": family.generation + 1})
    return family


#: the presented token, unused, unexpired, presented by the client it was issued to
_UNUSED = (
    RefreshToken.token_digest == bindparam("b_digest"),
    RefreshToken.client_id == bindparam("b_client_id"),
    RefreshToken.consumed_at.is_(None),
    RefreshToken.expires_at > bindparam("b_now"),
)
#: the family is bound to no DPoP key, or to the one of the request's proof
_KEY_HELD = or_(Grant.dpop_jkt.is_(None), Grant.dpop_jkt == bindparam("b_jkt", type_=String))
_tokens, _grants = cast(Table, RefreshToken.__table__), cast(Table, Grant.__table__)
_ADVANCE_HEAD = (
    update(_grants).where(_grants.c.id == bindparam("b_grant_id")).values(head_generation=bindparam("b_generation"))
)


def _postgresql_statement() -> Any:
    """Consume, insert the successor and advance the head in one data-modifying CTE."""
    scopes_granted = type_coerce(func.string_to_array(Grant.scope, literal(" ")), ARRAY(Text)).contains(
        bindparam("b_scopes", type_=ARRAY(Text))
    )
    consumed = (
        update(RefreshToken)
        .where(
            *_UNUSED,
            Grant.id == RefreshToken.grant_id,
            RefreshToken.generation == Grant.head_generation,
            Grant.revoked_at.is_(None),
            Grant.expires_at > bindparam("b_now"),
            User.id == Grant.user_id,
            User.disabled_at.is_(None),
            scopes_granted,
            _KEY_HELD,
        )
        .values(consumed_at=bindparam("b_now"))
        .returning(*FAMILY_COLUMNS)
        .cte("consumed")
    )
    successor = insert(_tokens).from_select(
        TOKEN_COLUMNS,
        select(
            bindparam("b_new_digest", type_=_tokens.c.token_digest.type),
            consumed.c.grant_id,
            consumed.c.client_id,
            consumed.c.generation + literal(1),
            bindparam("b_now", type_=_tokens.c.created_at.type),
            # LEAST skips NULL: a family without an end leaves the idle expiry
            func.least(bindparam("b_idle_expires_at", type_=_tokens.c.expires_at.type), consumed.c.family_expires_at),
        ),
    )
    head = (
        update(_grants)
        .where(_grants.c.id == consumed.c.grant_id)
        .values(head_generation=consumed.c.generation + literal(1))
    )
    return select(consumed).add_cte(successor.cte("successor"), head.cte("head"))


_ROTATE = DriverStatement(_postgresql_statement())

#: the token is of its family's head generation
_AT_HEAD = RefreshToken.generation == (
    select(Grant.head_generation).where(Grant.id == RefreshToken.grant_id).scalar_subquery()
)


def _consume_sqlite(scope_count: int) -> Any:
    """SQLite's consuming ``UPDATE``, its family granted ``scope_count`` scopes (``b_scope_<i>``)."""
    if scope_count == 0:
        return _CONSUME_SQLITE
    # exact words of the space-separated scope: instr() has no wildcards to escape
    spaced = literal(" ") + Grant.scope + literal(" ")
    granted = [func.instr(spaced, bindparam(f"b_scope_{i}")) > 0 for i in range(scope_count)]
    return _CONSUME_SQLITE.where(exists().where(Grant.id == RefreshToken.grant_id, *granted))


def _scope_params(params: dict[str, Any], scopes: Sequence[str]) -> dict[str, Any]:
    return params if not scopes else {**params, **{f"b_scope_{i}": f" {s} " for i, s in enumerate(scopes)}}


_CONSUME_SQLITE = (
    update(RefreshToken)
    .where(*_UNUSED, RefreshToken.grant_id.in_(LIVE_FAMILIES.where(_KEY_HELD)), _AT_HEAD)
    .values(consumed_at=bindparam("b_now"))
    .returning(RefreshToken.token_digest)
)
