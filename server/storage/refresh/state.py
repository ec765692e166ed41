"""What a refresh token is: a member of a family (a grant), one generation after another.

A family's ``head_generation`` is the generation that may rotate; each rotation inserts
the next generation and advances the head, so a family has one chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select

from .. import Session
from ..base import insert_row, sha256, utcnow
from ..models import Client, Grant, RefreshToken, User
from ..users import USER_COLUMNS, StoredUser, user_from


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


FAMILY_COLUMNS = (
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


def family_from(r: Mapping[Any, Any]) -> FamilyToken:
    """A family token from a row mapping (or asyncpg record) holding :data:`FAMILY_COLUMNS`."""
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


#: a family still in use, on ``grants`` joined with its user: not revoked, not ended (a
#: NULL ``expires_at`` has no end), its user enabled
FAMILY_LIVE = (
    Grant.revoked_at.is_(None),
    or_(Grant.expires_at.is_(None), Grant.expires_at > bindparam("b_now")),
    User.disabled_at.is_(None),
)
#: families still in use (:data:`FAMILY_LIVE`)
LIVE_FAMILIES = select(Grant.id).join(User, User.id == Grant.user_id).where(*FAMILY_LIVE)
#: the family token of the refresh token whose digest is ``b_digest``
FAMILY = (
    select(*FAMILY_COLUMNS)
    .join(Grant, Grant.id == RefreshToken.grant_id)
    .join(User, User.id == Grant.user_id)
    .where(RefreshToken.token_digest == bindparam("b_digest"))
)

_INSERT_TOKEN = insert_row(RefreshToken)
#: the columns a new refresh token is inserted with (``INSERT ... SELECT`` statements)
TOKEN_COLUMNS = ["token_digest", "grant_id", "client_id", "generation", "created_at", "expires_at"]


def insert_token(
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


def insert_successor(session: Session, successor: str, family: FamilyToken, idle_expires_at: datetime) -> None:
    """``successor`` as the next generation of ``family``, expiring when idle or with the family."""
    family_end = family.family_expires_at
    expires_at = min(idle_expires_at, family_end) if family_end else idle_expires_at
    insert_token(session, successor, family.grant_id, family.client_id, family.generation + 1, expires_at)


def insert_first(session: Session, token: str, *, grant_id: str, client_id: str, expires_at: datetime) -> None:
    """The first refresh token of a new family (generation 1, its head)."""
    insert_token(session, token, grant_id, client_id, 1, expires_at)


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


_LOOKUP = (
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
)


def lookup(session: Session, token: str) -> TokenState | None:
    """The token as introspection and revocation see it: active while unused, unexpired, its
    family live, its user enabled and its client not disabled (one statement; deleting a
    client deletes its families)."""
    row = session.execute(_LOOKUP.where(RefreshToken.token_digest == sha256(token))).one_or_none()
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
