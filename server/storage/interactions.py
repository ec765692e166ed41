"""Interactions: authorization requests waiting for the user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from . import Session
from .base import utcnow
from .models import Interaction


@dataclass(frozen=True, slots=True)
class StoredInteraction:
    browser_digest: bytes
    client_id: str
    params: tuple[tuple[str, str], ...]
    session_sid: str | None
    expires_at: datetime


def insert_interaction(
    session: Session,
    *,
    id_digest: bytes,
    browser_digest: bytes,
    client_id: str,
    params: list[tuple[str, str]],
    expires_at: datetime,
    session_sid: str | None = None,
) -> None:
    session.execute(
        insert(Interaction).values(
            id_digest=id_digest,
            browser_digest=browser_digest,
            client_id=client_id,
            params=[list(pair) for pair in params],
            session_sid=session_sid,
            created_at=utcnow(),
            expires_at=expires_at,
        )
    )


def get_open_interaction(session: Session, id_digest: bytes) -> StoredInteraction | None:
    """The interaction, unless it expired or was completed."""
    row = session.execute(
        select(
            Interaction.browser_digest,
            Interaction.client_id,
            Interaction.params,
            Interaction.session_sid,
            Interaction.expires_at,
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
    )


def record_login(session: Session, id_digest: bytes, session_sid: str) -> None:
    session.execute(update(Interaction).where(Interaction.id_digest == id_digest).values(session_sid=session_sid))


def complete_interaction(session: Session, id_digest: bytes) -> bool:
    """Mark it completed; False if it already was (each interaction completes once)."""
    result = session.execute(
        update(Interaction)
        .where(Interaction.id_digest == id_digest, Interaction.completed_at.is_(None))
        .values(completed_at=utcnow())
        .returning(Interaction.client_id)
    )
    return result.first() is not None
