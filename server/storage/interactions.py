"""Interactions: authorization requests (or account sign-ins) waiting for the user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update

from . import Session
from .base import utcnow
from .models import Interaction


@dataclass(frozen=True, slots=True)
class StoredInteraction:
    browser_digest: bytes
    #: None for an account sign-in, which goes to ``return_to`` when done
    client_id: str | None
    params: tuple[tuple[str, str], ...]
    session_sid: str | None
    expires_at: datetime
    pending_user_id: int | None = None
    pending_credential: bytes | None = None
    return_to: str | None = None


def insert_interaction(
    session: Session,
    *,
    id_digest: bytes,
    browser_digest: bytes,
    client_id: str | None,
    params: list[tuple[str, str]],
    expires_at: datetime,
    session_sid: str | None = None,
    return_to: str | None = None,
    origin_digest: bytes | None = None,
) -> None:
    session.execute(
        insert(Interaction).values(
            id_digest=id_digest,
            browser_digest=browser_digest,
            origin_digest=origin_digest,
            client_id=client_id,
            params=[list(pair) for pair in params],
            session_sid=session_sid,
            return_to=return_to,
            created_at=utcnow(),
            expires_at=expires_at,
        )
    )


def make_room(session: Session, origin_digest: bytes, keep: int) -> int:
    """Leave at most ``keep`` pending interactions of one origin (a client address's keyed
    digest), evicting the oldest; its expired ones go too, as they are never counted.
    Returns how many rows went.

    Rows another transaction holds (one being evicted, or signed in on, at this moment) are
    skipped rather than waited for (PostgreSQL ``SKIP LOCKED``): concurrent requests of one
    address never wait on each other here, nor deadlock. They may leave a row or two over
    ``keep`` meanwhile, which the next request from that address evicts."""
    now = utcnow()
    mine = Interaction.origin_digest == origin_digest
    expired = select(Interaction.id_digest).where(mine, Interaction.expires_at <= now)
    overflow = (
        select(Interaction.id_digest)
        .where(mine, Interaction.completed_at.is_(None), Interaction.expires_at > now)
        .order_by(Interaction.created_at.desc(), Interaction.id_digest.desc())
        .offset(keep)
    )
    result = session.execute(
        delete(Interaction)
        .where(
            mine,
            Interaction.id_digest.in_(expired.with_for_update(skip_locked=True).scalar_subquery())
            | Interaction.id_digest.in_(overflow.with_for_update(skip_locked=True).scalar_subquery()),
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def get_open_interaction(session: Session, id_digest: bytes) -> StoredInteraction | None:
    """The interaction, unless it expired or was completed."""
    row = session.execute(
        select(
            Interaction.browser_digest,
            Interaction.client_id,
            Interaction.params,
            Interaction.session_sid,
            Interaction.expires_at,
            Interaction.pending_user_id,
            Interaction.pending_credential,
            Interaction.return_to,
        ).where(
            Interaction.id_digest == id_digest,
            Interaction.completed_at.is_(None),
            Interaction.expires_at > utcnow(),
        )
    ).one_or_none()
    if row is None:
        return None
    return StoredInteraction(
        browser_digest=row.browser_digest,
        client_id=row.client_id,
        params=tuple((str(k), str(v)) for k, v in row.params),
        session_sid=row.session_sid,
        expires_at=row.expires_at,
        pending_user_id=row.pending_user_id,
        pending_credential=row.pending_credential,
        return_to=row.return_to,
    )


def hold_for_second_factor(session: Session, id_digest: bytes, user_id: int, credential: bytes) -> None:
    """The password was right; the user still owes the second factor (no session yet)."""
    session.execute(
        update(Interaction)
        .where(Interaction.id_digest == id_digest)
        .values(pending_user_id=user_id, pending_credential=credential, session_sid=None)
    )


def record_login(session: Session, id_digest: bytes, session_sid: str, *, browser_digest: bytes) -> None:
    """The interaction signed ``session_sid`` in; it moves to the browser's new binding token."""
    session.execute(
        update(Interaction)
        .where(Interaction.id_digest == id_digest)
        .values(session_sid=session_sid, pending_user_id=None, pending_credential=None, browser_digest=browser_digest)
    )


def complete_interaction(session: Session, id_digest: bytes) -> bool:
    """Mark it completed; False if it already was (each interaction completes once)."""
    result = session.execute(
        update(Interaction)
        .where(Interaction.id_digest == id_digest, Interaction.completed_at.is_(None))
        .values(completed_at=utcnow())
        .returning(Interaction.id_digest)
    )
    return result.first() is not None
