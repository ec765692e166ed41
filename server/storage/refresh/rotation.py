"""The use of a refresh token: rotated, or not. Two calls, one implementation per dialect
each, sharing their conditions.

:func:`rotate` consumes the presented token (unused, unexpired, this client's, of its
family's head generation, the family live and granted every requested scope, its user
enabled), inserts the successor as the next generation and advances the family head, and
returns everything the new tokens need. Two concurrent rotations of one token cannot both
match ``consumed_at IS NULL``: on PostgreSQL the second waits for the first's row lock,
then finds it consumed; on SQLite writers are serialised.

:func:`use` accepts exactly the tokens :func:`rotate` accepts, but leaves the token unused
and inserts nothing: it only slides the token's idle expiry. For clients that must not
rotate (FAPI 2.0 Security Profile §5.3.2.1); two concurrent uses of one token both succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    String,
    Table,
    Text,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from .. import Session
from ..base import sha256, utcnow
from ..driver import DriverStatement
from ..models import Grant, RefreshToken, User
from .state import (
    FAMILY,
    FAMILY_COLUMNS,
    FAMILY_LIVE,
    LIVE_FAMILIES,
    TOKEN_COLUMNS,
    FamilyToken,
    family_from,
    insert_successor,
)


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
    params = _params(token, client_id, idle_expires_at, scopes, dpop_jkt)
    if params is None:
        return None
    params["b_new_digest"] = sha256(successor)
    if session.get_bind().dialect.name == "postgresql":
        return _fetch_family(_ROTATE, session, params)
    connection = session.connection()
    if connection.execute(_granted_sqlite(_CONSUME_SQLITE, scopes), _scope_params(params, scopes)).first() is None:
        return None
    family = family_from(connection.execute(FAMILY, params).one()._mapping)
    insert_successor(session, successor, family, idle_expires_at)
    connection.execute(_ADVANCE_HEAD, {"b_grant_id": family.grant_id, "b_generation": family.generation + 1})
    return family


def use(
    session: Session,
    token: str,
    client_id: str,
    idle_expires_at: datetime,
    scopes: Sequence[str] = (),
    dpop_jkt: str | None = None,
) -> FamilyToken | None:
    """Use ``token`` of ``client_id`` without rotating it (FAPI 2.0 Security Profile §5.3.2.1:
    no refresh token rotation): a token that :func:`rotate` would accept, on the same
    conditions, stays unused and of its generation, no successor is inserted, and its expiry
    slides to ``idle_expires_at`` or its family's end, whichever is first. None, and nothing
    written, when the token may not be used (for the reason, see
    :func:`~server.storage.refresh.failures.diagnose`). Nothing is consumed, so any number
    of uses of one token, concurrent or not, succeed.

    PostgreSQL: one statement of its own, committed as it returns, as :func:`rotate`'s.
    SQLite: two statements in the caller's transaction.
    """
    params = _params(token, client_id, idle_expires_at, scopes, dpop_jkt)
    if params is None:
        return None
    if session.get_bind().dialect.name == "postgresql":
        return _fetch_family(_USE, session, params)
    connection = session.connection()
    if connection.execute(_granted_sqlite(_SLIDE_SQLITE, scopes), _scope_params(params, scopes)).first() is None:
        return None
    return family_from(connection.execute(FAMILY, params).one()._mapping)


def _params(
    token: str, client_id: str, idle_expires_at: datetime, scopes: Sequence[str], dpop_jkt: str | None
) -> dict[str, Any] | None:
    """The parameters of a use of ``token``; None when a requested scope cannot have been granted."""
    if any(not scope or " " in scope for scope in scopes):
        return None  # a family's scope is words separated by spaces: never granted
    return {
        "b_digest": sha256(token),
        "b_client_id": client_id,
        "b_now": utcnow(),
        "b_idle_expires_at": idle_expires_at,
        "b_scopes": list(scopes),
        "b_jkt": dpop_jkt,
    }


def _fetch_family(statement: DriverStatement, session: Session, params: dict[str, Any]) -> FamilyToken | None:
    # On a pooled connection of its own, before the session has used one
    record = statement.fetchrow_beside(session, params)
    return family_from(record) if record is not None else None


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
_IDLE_END = bindparam("b_idle_expires_at", type_=_tokens.c.expires_at.type)
_ADVANCE_HEAD = (
    update(_grants).where(_grants.c.id == bindparam("b_grant_id")).values(head_generation=bindparam("b_generation"))
)


def _usable_postgresql(**values: Any) -> Any:
    """``UPDATE refresh_tokens SET values FROM grants, users`` of the presented token, if
    it may be used, ``RETURNING`` :data:`FAMILY_COLUMNS`: what both calls run on PostgreSQL."""
    scopes_granted = type_coerce(func.string_to_array(Grant.scope, literal(" ")), ARRAY(Text)).contains(
        bindparam("b_scopes", type_=ARRAY(Text))
    )
    return (
        update(RefreshToken)
        .where(
            *_UNUSED,
            Grant.id == RefreshToken.grant_id,
            RefreshToken.generation == Grant.head_generation,
            User.id == Grant.user_id,
            *FAMILY_LIVE,
            scopes_granted,
            _KEY_HELD,
        )
        .values(**values)
        .returning(*FAMILY_COLUMNS)
    )


def _rotate_postgresql() -> Any:
    """Consume, insert the successor and advance the head in one data-modifying CTE."""
    consumed = _usable_postgresql(consumed_at=bindparam("b_now")).cte("consumed")
    successor = insert(_tokens).from_select(
        TOKEN_COLUMNS,
        select(
            bindparam("b_new_digest", type_=_tokens.c.token_digest.type),
            consumed.c.grant_id,
            consumed.c.client_id,
            consumed.c.generation + literal(1),
            bindparam("b_now", type_=_tokens.c.created_at.type),
            # LEAST skips NULL: a family without an end leaves the idle expiry
            func.least(_IDLE_END, consumed.c.family_expires_at),
        ),
    )
    head = (
        update(_grants)
        .where(_grants.c.id == consumed.c.grant_id)
        .values(head_generation=consumed.c.generation + literal(1))
    )
    return select(consumed).add_cte(successor.cte("successor"), head.cte("head"))


_ROTATE = DriverStatement(_rotate_postgresql())
# A DriverStatement, as _ROTATE, rather than the session: one round trip on a connection of
# its own, so a refresh on PostgreSQL begins no transaction in its session (no BEGIN, no
# COMMIT) and skips SQLAlchemy's per-call execution work. Committed at once whatever
# becomes of the request, which a slid expiry can afford: the token is as usable as before.
# A concurrent use waits for this row's lock, then finds it still unused and slides again.
_USE = DriverStatement(_usable_postgresql(expires_at=func.least(_IDLE_END, Grant.expires_at)))

#: the token is of its family's head generation
_AT_HEAD = RefreshToken.generation == (
    select(Grant.head_generation).where(Grant.id == RefreshToken.grant_id).scalar_subquery()
)


def _granted_sqlite(statement: Any, scopes: Sequence[str]) -> Any:
    """SQLite's ``statement`` (an ``UPDATE`` of the presented token), its family granted
    every one of ``scopes`` (bound as ``b_scope_<i>``)."""
    if not scopes:
        return statement
    # exact words of the space-separated scope: instr() has no wildcards to escape
    spaced = literal(" ") + Grant.scope + literal(" ")
    granted = [func.instr(spaced, bindparam(f"b_scope_{i}")) > 0 for i in range(len(scopes))]
    return statement.where(exists().where(Grant.id == RefreshToken.grant_id, *granted))


def _scope_params(params: dict[str, Any], scopes: Sequence[str]) -> dict[str, Any]:
    return params if not scopes else {**params, **{f"b_scope_{i}": f" {s} " for i, s in enumerate(scopes)}}


def _usable_sqlite(**values: Any) -> Any:
    """``UPDATE refresh_tokens SET values`` of the presented token, if it may be used
    (subqueries only: SQLite's RETURNING cannot name FROM tables): what both calls run on
    SQLite, before :func:`_granted_sqlite`."""
    return (
        update(RefreshToken)
        .where(*_UNUSED, RefreshToken.grant_id.in_(LIVE_FAMILIES.where(_KEY_HELD)), _AT_HEAD)
        .values(**values)
        .returning(RefreshToken.token_digest)
    )


_CONSUME_SQLITE = _usable_sqlite(consumed_at=bindparam("b_now"))
_family_end = select(Grant.expires_at).where(Grant.id == RefreshToken.grant_id).scalar_subquery()
# CASE, as SQLite's min() of a NULL is NULL: a family without an end leaves the idle expiry
_SLIDE_SQLITE = _usable_sqlite(expires_at=case((_family_end < _IDLE_END, _family_end), else_=_IDLE_END))
