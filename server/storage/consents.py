"""Remembered consent per (user, client)."""

from __future__ import annotations

from sqlalchemy import select

from . import Session
from .base import utcnow
from .dialect import upsert_insert
from .models import Consent


def granted_scopes(session: Session, user_id: int, client_id: str) -> frozenset[str]:
    scopes = session.execute(
        select(Consent.scopes).where(Consent.user_id == user_id, Consent.client_id == client_id)
    ).scalar_one_or_none()
    return frozenset(scopes or ())


def remember(session: Session, user_id: int, client_id: str, scopes: frozenset[str]) -> None:
    """Add ``scopes`` to what the user has granted the client."""
    merged = sorted(granted_scopes(session, user_id, client_id) | scopes)
    statement = upsert_insert(session, Consent).values(
        user_id=user_id, client_id=client_id, scopes=merged, updated_at=utcnow()
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id", "client_id"],
            set_={"scopes": statement.excluded.scopes, "updated_at": statement.excluded.updated_at},
        )
    )
