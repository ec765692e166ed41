"""Revoked access tokens (by ``jti``), until they would have expired anyway."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select

from . import Session
from .dialect import upsert_insert
from .models import RevokedAccessToken

_IS_REVOKED = select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == bindparam("jti"))


def revoke(session: Session, jti: str, expires_at: datetime) -> None:
    statement = upsert_insert(session, RevokedAccessToken).values(jti=jti, expires_at=expires_at)
    session.execute(statement.on_conflict_do_nothing(index_elements=["jti"]))


def is_revoked(session: Session, jti: str) -> bool:
    return session.execute(_IS_REVOKED, {"jti": jti}).first() is not None
