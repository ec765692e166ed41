"""Revoked access tokens (by ``jti``), until they would have expired anyway."""

from __future__ import annotations

from datetime import datetime

from . import Session
from .dialect import upsert_insert
from .models import RevokedAccessToken


def revoke(session: Session, jti: str, expires_at: datetime) -> None:
    statement = upsert_insert(session, RevokedAccessToken).values(jti=jti, expires_at=expires_at)
    session.execute(statement.on_conflict_do_nothing(index_elements=["jti"]))
