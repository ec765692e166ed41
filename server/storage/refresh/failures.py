"""Why a refresh token did not rotate, and the one failure that still mints: a lost response.

Only a token of the family's head generation rotates, so a family has one chain. A replay of
the head's predecessor inside the grace window (:func:`use_grace`) does not fork it: the new
token replaces the head, whose tokens are marked consumed, so whichever of them comes back
later is reuse.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from .. import Session
from ..base import sha256, utcnow
from ..models import Grant, RefreshToken, User
from .state import FAMILY, LIVE_FAMILIES, FamilyToken, family_from, insert_successor

#: ``grace_uses`` of a token a grace replacement superseded: it was never rotated, so it
#: has no successor to have lost, and presenting it is reuse even inside the window
SUPERSEDED = -1


class Failure(enum.Enum):
    UNKNOWN = "unknown"  # no such token: invalid_grant
    OTHER_CLIENT = "other_client"  # another client's token: invalid_grant, its family untouched
    INACTIVE = "inactive"  # expired token, ended family or disabled user: invalid_grant
    REUSE = "reuse"  # a consumed token presented again: revoke the family
    GRACE = "grace"  # the family head's predecessor, again, inside the grace window
    SCOPE = "scope"  # a token that would rotate, asked for a scope its family was not granted
    KEY = "key"  # a DPoP-bound family's token without its key's proof: invalid_grant, untouched
    USABLE = "usable"  # nothing wrong with the token: it would rotate


@dataclass(frozen=True, slots=True)
class Diagnosis:
    failure: Failure
    grant_id: str | None = None
    client_id: str | None = None
    user_id: int | None = None


def diagnose(
    session: Session,
    token: str,
    client_id: str,
    *,
    grace_seconds: int,
    scopes: Sequence[str] = (),
    dpop_jkt: str | None = None,
) -> Diagnosis:
    """Why :func:`~server.storage.refresh.rotation.rotate` found nothing (one indexed read,
    on the failure path only)."""
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
            Grant.scope,
            User.disabled_at.label("user_disabled_at"),
            RefreshToken.grace_uses,
            Grant.dpop_jkt,
        )
        .join(Grant, Grant.id == RefreshToken.grant_id)
        .join(User, User.id == Grant.user_id)
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
    if row.dpop_jkt is not None and row.dpop_jkt != dpop_jkt:
        # whoever lacks the key cannot use the token, consumed or not: no reuse to answer
        return Diagnosis(Failure.KEY, row.id, row.client_id, row.user_id)
    if row.consumed_at is None:
        return _unused(row, found, now, scopes)
    recent = grace_seconds > 0 and (now - row.consumed_at).total_seconds() <= grace_seconds
    if recent and row.generation == row.head_generation - 1 and row.grace_uses != SUPERSEDED:
        return Diagnosis(Failure.GRACE, row.id, row.client_id, row.user_id)
    return Diagnosis(Failure.REUSE, row.id, row.client_id, row.user_id)


def _unused(row: Any, found: Diagnosis, now: datetime, scopes: Sequence[str]) -> Diagnosis:
    """Why a token that was never used did not rotate."""
    if row.expires_at > now and row.generation < row.head_generation:
        # An unused token behind the head: a second chain (left by an older version's
        # grace, which forked families). Using it is using a chain that is not the one.
        return Diagnosis(Failure.REUSE, row.id, row.client_id, row.user_id)
    if row.expires_at > now and row.user_disabled_at is None:
        usable = set(scopes) <= set(row.scope.split())
        return Diagnosis(Failure.USABLE if usable else Failure.SCOPE, row.id, row.client_id, row.user_id)
    return found  # unused but expired (idle timeout), or its user is disabled


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
            RefreshToken.grant_id.in_(LIVE_FAMILIES),
        )
        .values(grace_uses=RefreshToken.grace_uses + 1)
        .returning(RefreshToken.token_digest)
        .execution_options(synchronize_session=False),
        params,
    ).first()
    if counted is None:
        return None
    family = family_from(session.execute(FAMILY, params).one()._mapping)
    head = {"b_grant_id": family.grant_id, "b_generation": family.generation + 1, "b_now": params["b_now"]}
    session.execute(_SUPERSEDE, head)
    if session.execute(_HEAD, head).scalar_one_or_none() != family.generation + 1:
        return None  # the head was rotated meanwhile: this predecessor is two generations back
    insert_successor(session, successor, family, idle_expires_at)
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
