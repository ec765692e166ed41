"""Refresh tokens in families: rotate atomically, classify failures.

The hot path on PostgreSQL is one statement (:func:`rotate`, or :func:`rotate_ahead`
outside a transaction): a data-modifying CTE that consumes the presented token (``UPDATE
refresh_tokens ... FROM grants, users WHERE <unused, unexpired, this client's, family and
user active> RETURNING``), inserts its successor and advances the family head, and returns
everything the new tokens need. Two concurrent refreshes of one token cannot both match
``consumed_at IS NULL``: on PostgreSQL the second waits for the first's row lock, then
finds it consumed and inserts nothing; on SQLite writers are serialised and the same steps
run as separate statements.

Only a token of the family's head generation rotates, so a family has one chain. A replay of
the head's predecessor inside the grace window (:func:`use_grace`) does not fork it: the new
token replaces the head, whose tokens are marked consumed, so whichever of them comes back
later is reuse.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, Text, bindparam, func, insert, literal, select, type_coerce, update
from sqlalchemy.dialects.postgresql import ARRAY

from . import AsyncEngine, Session
from .base import insert_row, sha256, utcnow
from .driver import DriverStatement
from .models import Client, Grant, RefreshToken, User
from .users import USER_COLUMNS, StoredUser, user_from


@dataclass(frozen=True, slots=True)
class FamilyToken:
    """A refresh token with its family's grant and user: what a refresh needs."""

    grant_id: str
    client_id: str
    generation: int
    scope: str
    session_sid: str | None
    auth_time: datetime | None
    acr: str | None
    amr: tuple[str, ...]
    family_expires_at: datetime | None
    user: StoredUser

    # Authlib's token contract
    def check_client(self, client: object) -> bool:
        return getattr(client, "get_client_id", lambda: None)() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    # What a refreshed ID token repeats from the original authentication (OIDC Core §12.2)
    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> int | None:
        return int(self.auth_time.timestamp()) if self.auth_time else None

    def get_acr(self) -> str | None:
        return self.acr

    def get_amr(self) -> list[str]:
        return list(self.amr)


_FAMILY_COLUMNS = (
    RefreshToken.client_id,
    RefreshToken.generation,
    Grant.id.label("grant_id"),
    Grant.scope,
    Grant.session_sid,
    Grant.auth_time,
    Grant.acr,
    Grant.amr,
    Grant.expires_at.label("family_expires_at"),
    *USER_COLUMNS,
)

#: the presented token, unused, unexpired, presented by the client it was issued to
_UNUSED = (
    RefreshToken.token_digest == bindparam("b_digest"),
    RefreshToken.client_id == bindparam("b_client_id"),
    RefreshToken.consumed_at.is_(None),
    RefreshToken.expires_at > bindparam("b_now"),
)

_CONSUME = (
    update(RefreshToken)
    .where(
        *_UNUSED,
        Grant.id == RefreshToken.grant_id,
        RefreshToken.generation == Grant.head_generation,
        Grant.revoked_at.is_(None),
        Grant.expires_at > bindparam("b_now"),
        User.id == Grant.user_id,
        User.disabled_at.is_(None),
    )
    .values(consumed_at=bindparam("b_now"))
    .returning(*_FAMILY_COLUMNS)
)
#: PostgreSQL: every requested scope (b_scopes, empty for none) was granted to the family
_SCOPES_GRANTED = type_coerce(func.string_to_array(Grant.scope, literal(" ")), ARRAY(Text)).contains(
    bindparam("b_scopes", type_=ARRAY(Text))
)


def _family_token(row: object) -> FamilyToken:
    return _family_from(row._mapping)  # type: ignore[attr-defined]


def _family_from(r: Mapping[str, Any]) -> FamilyToken:
    """A family token from a row (or asyncpg record) holding ``_FAMILY_COLUMNS``."""
    return FamilyToken(
        grant_id=r["grant_id"],
        client_id=r["client_id"],
        generation=r["generation"],
        scope=r["scope"],
        session_sid=r["session_sid"],
        auth_time=r["auth_time"],
        acr=r["acr"],
        amr=tuple(r["amr"] or ()),
        family_expires_at=r["family_expires_at"],
        user=user_from(r),
    )


_LIVE_FAMILIES = select(Grant.id).where(
    Grant.revoked_at.is_(None),
    Grant.expires_at > bindparam("b_now"),
    Grant.user_id.in_(select(User.id).where(User.disabled_at.is_(None))),
)
#: the token is of its family's head generation
_AT_HEAD = RefreshToken.generation == (
    select(Grant.head_generation).where(Grant.id == RefreshToken.grant_id).scalar_subquery()
)
_CONSUME_SQLITE = (
    update(RefreshToken)
    .where(*_UNUSED, RefreshToken.grant_id.in_(_LIVE_FAMILIES), _AT_HEAD)
    .values(consumed_at=bindparam("b_now"))
    .returning(RefreshToken.token_digest)
)
_FAMILY = (
    select(*_FAMILY_COLUMNS)
    .join(Grant, Grant.id == RefreshToken.grant_id)
    .join(User, User.id == Grant.user_id)
    .where(RefreshToken.token_digest == bindparam("b_digest"))
)


def _insert_successor(session: Session, successor: str, family: FamilyToken, idle_expires_at: datetime) -> None:
    """``successor`` as the next generation of ``family``, expiring when idle or with the family."""
    family_end = family.family_expires_at
    expires_at = min(idle_expires_at, family_end) if family_end else idle_expires_at
    _insert_token(session, successor, family.grant_id, family.client_id, family.generation + 1, expires_at)


def rotate(
    session: Session, token: str, client_id: str, successor: str, idle_expires_at: datetime
) -> FamilyToken | None:
    """Consume an unused, unexpired token of ``client_id`` in a live family and make
    ``successor`` the family's new head; None (and nothing written) otherwise.

    The successor expires at ``idle_expires_at`` or with its family, whichever is first.
    PostgreSQL: one statement, one round trip. SQLite (whose RETURNING cannot name the
    FROM tables and whose CTEs cannot write): a conditional UPDATE, a read, the INSERT and
    the head's UPDATE, atomic all the same in one serialised write transaction.
    """
    params = _rotation_params(token, client_id, successor, idle_expires_at, ())
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        row = connection.execute(_ROTATE, params).one_or_none()
        return _family_token(row) if row is not None else None
    if connection.execute(_CONSUME_SQLITE, params).first() is None:
        return None
    family = _family_token(connection.execute(_FAMILY, params).one())
    _insert_successor(session, successor, family, idle_expires_at)
    connection.execute(_ADVANCE_HEAD, {"b_grant_id": family.grant_id, "b_generation": family.generation + 1})
    return family


async def rotate_ahead(
    engine: AsyncEngine,
    token: str,
    client_id: str,
    successor: str,
    idle_expires_at: datetime,
    scopes: Sequence[str],
) -> FamilyToken | None:
    """:func:`rotate` on PostgreSQL, as one statement on its own (committed as it
    returns), refusing also a family that was not granted every one of ``scopes``.

    For a refresh whose other checks all passed beforehand: once this returns a token, the
    rotation is committed, and nothing left in the request may refuse it. None means
    nothing was written; the caller then runs the refresh the ordinary way, which finds out
    why (reuse, expiry, a scope not granted) and answers accordingly.
    """
    params = _rotation_params(token, client_id, successor, idle_expires_at, scopes)
    record = await _ROTATE_AHEAD.fetchrow(engine, params)
    return _family_from(record) if record is not None else None


def _rotation_params(
    token: str, client_id: str, successor: str, idle_expires_at: datetime, scopes: Sequence[str]
) -> dict[str, Any]:
    return {
        "b_digest": sha256(token),
        "b_client_id": client_id,
        "b_now": utcnow(),
        "b_new_digest": sha256(successor),
        "b_idle_expires_at": idle_expires_at,
        "b_scopes": list(scopes),
    }


#: ``grace_uses`` of a token a grace replacement superseded: it was never rotated, so it
#: has no successor to have lost, and presenting it is reuse even inside the window
SUPERSEDED = -1


class Failure(enum.Enum):
    UNKNOWN = "unknown"  # no such token: invalid_grant
    OTHER_CLIENT = "other_client"  # another client's token: invalid_grant, its family untouched
    INACTIVE = "inactive"  # expired token, ended family or disabled user: invalid_grant
    REUSE = "reuse"  # a consumed token presented again: revoke the family
    GRACE = "grace"  # the family head's predecessor, again, inside the grace window


@dataclass(frozen=True, slots=True)
class Diagnosis:
    failure: Failure
    grant_id: str | None = None
    client_id: str | None = None
    user_id: int | None = None


def diagnose(session: Session, token: str, client_id: str, *, grace_seconds: int) -> Diagnosis:
    """Why :func:`consume` found nothing (one indexed read, on the failure path only)."""
    row = session.execute(
        select(
            RefreshToken.client_id,
            RefreshToken.generation,
            RefreshToken.consumed_at,
            RefreshToken.expires_at,
            Grant.id,
            Grant.revoked_at,
            Grant.expires_at.label("family_expires_at"),
            Grant.head_generation,
            Grant.user_id,
            RefreshToken.grace_uses,
        )
        .join(Grant, Grant.id == RefreshToken.grant_id)
        .where(RefreshToken.token_digest == sha256(token))
    ).one_or_none()
    if row is None:
        return Diagnosis(Failure.UNKNOWN)
    found = Diagnosis(Failure.INACTIVE, row.id, row.client_id, row.user_id)
    if row.client_id != client_id:
        return Diagnosis(Failure.OTHER_CLIENT, row.id, row.client_id, row.user_id)
    now = utcnow()
    if row.revoked_at is not None or (row.family_expires_at is not None and row.family_expires_at <= now):
        return found
    if row.consumed_at is None:
        if row.expires_at > now and row.generation < row.head_generation:
            # An unused token behind the head: a second chain (left by an older version's
            # grace, which forked families). Using it is using a chain that is not the one.
            return Diagnosis(Failure.REUSE, row.id, row.client_id, row.user_id)
        return found  # unused but expired (idle timeout), or its user is disabled
    recent = grace_seconds > 0 and (now - row.consumed_at).total_seconds() <= grace_seconds
    if recent and row.generation == row.head_generation - 1 and row.grace_uses != SUPERSEDED:
        return Diagnosis(Failure.GRACE, row.id, row.client_id, row.user_id)
    return Diagnosis(Failure.REUSE, row.id, row.client_id, row.user_id)


def use_grace(
    session: Session, token: str, client_id: str, successor: str, idle_expires_at: datetime, *, max_uses: int
) -> FamilyToken | None:
    """The head's predecessor presented again inside the grace window (a lost response):
    ``successor`` replaces the family's head. Every unused, unexpired token of the head
    generation is marked consumed and :data:`SUPERSEDED`, and ``successor`` joins that
    generation, so the family keeps one chain and the predecessor stays the head's
    predecessor (a further replay in the window replaces again). None, with the caller's
    transaction to roll back, when ``max_uses`` replacements (0: no limit) were made
    already or the head moved on meanwhile: then the replay is reuse.

    Concurrency: the first statement (counting the use on the predecessor's row) is the
    lock that serialises replacements of one predecessor; on PostgreSQL each later
    statement sees what the previous replacement committed. Locks are taken token rows
    first, as the rotation takes them (its token, then its grant), so the two cannot
    deadlock. A rotation of the head that commits before the superseding ``UPDATE`` (or
    that it waits for) has moved the head, which the check after it sees: refused. One
    that comes after finds its token consumed: reuse. Never two live chains.
    """
    limit = () if max_uses <= 0 else (RefreshToken.grace_uses < max_uses,)
    params = {"b_digest": sha256(token), "b_now": utcnow()}
    counted = session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_digest == bindparam("b_digest"),
            RefreshToken.client_id == client_id,
            RefreshToken.consumed_at.is_not(None),
            RefreshToken.expires_at > bindparam("b_now"),  # an expired token mints nothing, grace or not
            RefreshToken.grace_uses >= 0,  # superseded: never rotated
            *limit,
            RefreshToken.grant_id.in_(_LIVE_FAMILIES),
        )
        .values(grace_uses=RefreshToken.grace_uses + 1)
        .returning(RefreshToken.token_digest)
        .execution_options(synchronize_session=False),
        params,
    ).first()
    if counted is None:
        return None
    family = _family_token(session.execute(_FAMILY, params).one())
    head = {"b_grant_id": family.grant_id, "b_generation": family.generation + 1, "b_now": params["b_now"]}
    session.execute(_SUPERSEDE, head)
    if session.execute(_HEAD, head).scalar_one_or_none() != family.generation + 1:
        return None  # the head was rotated meanwhile: this predecessor is two generations back
    _insert_successor(session, successor, family, idle_expires_at)
    return family


#: the unused, unexpired tokens of a family's generation ``b_generation``, superseded
_SUPERSEDE = (
    update(RefreshToken)
    .where(
        RefreshToken.grant_id == bindparam("b_grant_id"),
        RefreshToken.generation == bindparam("b_generation"),
        RefreshToken.consumed_at.is_(None),
        RefreshToken.expires_at > bindparam("b_now"),
    )
    .values(consumed_at=bindparam("b_now"), grace_uses=SUPERSEDED)
    .execution_options(synchronize_session=False)
)
_HEAD = select(Grant.head_generation).where(Grant.id == bindparam("b_grant_id"))


_tokens, _grants = cast(Table, RefreshToken.__table__), cast(Table, Grant.__table__)
_INSERT_TOKEN = insert_row(RefreshToken)
#: the columns a new refresh token is inserted with (``INSERT ... SELECT`` statements)
TOKEN_COLUMNS = ["token_digest", "grant_id", "client_id", "generation", "created_at", "expires_at"]
_ADVANCE_HEAD = (
    update(_grants).where(_grants.c.id == bindparam("b_grant_id")).values(head_generation=bindparam("b_generation"))
)


def _insert_token(
    session: Session, token: str, grant_id: str, client_id: str, generation: int, expires_at: datetime
) -> None:
    row = {
        "token_digest": sha256(token),
        "grant_id": grant_id,
        "client_id": client_id,
        "generation": generation,
        "created_at": utcnow(),
        "expires_at": expires_at,
    }
    session.connection().execute(_INSERT_TOKEN, row)


def insert_first(session: Session, token: str, *, grant_id: str, client_id: str, expires_at: datetime) -> None:
    """The first refresh token of a new family (generation 1, its head)."""
    _insert_token(session, token, grant_id, client_id, 1, expires_at)


def _rotate_statement() -> Any:
    """PostgreSQL's one-statement rotation: consume, insert the successor, advance the head."""
    consumed = _CONSUME.where(_SCOPES_GRANTED).cte("consumed")
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


_ROTATE = _rotate_statement()
_ROTATE_AHEAD = DriverStatement(_ROTATE)


@dataclass(frozen=True, slots=True)
class TokenState:
    """A refresh token as introspection and revocation see it."""

    grant_id: str
    client_id: str
    scope: str
    user_sub: str
    created_at: datetime
    expires_at: datetime
    active: bool

    def check_client(self, client: object) -> bool:
        return getattr(client, "get_client_id", lambda: None)() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return not self.active

    def is_revoked(self) -> bool:
        return not self.active


def lookup(session: Session, token: str) -> TokenState | None:
    """The token as introspection and revocation see it: active while unused, unexpired, its
    family live, its user enabled and its client not disabled (one statement; deleting a
    client deletes its families)."""
    row = session.execute(
        select(
            RefreshToken.grant_id,
            RefreshToken.client_id,
            RefreshToken.created_at,
            RefreshToken.expires_at,
            RefreshToken.consumed_at,
            Grant.scope,
            Grant.revoked_at,
            Grant.expires_at.label("family_expires_at"),
            User.sub,
            User.disabled_at,
            Client.disabled_at.label("client_disabled_at"),
        )
        .join(Grant, Grant.id == RefreshToken.grant_id)
        .join(User, User.id == Grant.user_id)
        .outerjoin(Client, Client.client_id == RefreshToken.client_id)
        .where(RefreshToken.token_digest == sha256(token))
    ).one_or_none()
    if row is None:
        return None
    now = utcnow()
    active = (
        row.consumed_at is None
        and row.expires_at > now
        and row.revoked_at is None
        and (row.family_expires_at is None or row.family_expires_at > now)
        and row.disabled_at is None
        and row.client_disabled_at is None
    )
    expires_at = min(row.expires_at, row.family_expires_at) if row.family_expires_at else row.expires_at
    return TokenState(row.grant_id, row.client_id, row.scope, row.sub, row.created_at, expires_at, active)
