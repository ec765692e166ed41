"""Password-reset tokens: stored as SHA-256, used once, void once a newer one exists or the
password changes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, update

from . import Session
from .base import utcnow
from .models import PasswordReset


def replace_reset(session: Session, user_id: int, token_digest: bytes, expires_at: datetime) -> None:
    """A new token for the user; every earlier unused one stops working."""
    now = utcnow()
    void_resets(session, user_id)
    session.execute(
        insert(PasswordReset).values(token_digest=token_digest, user_id=user_id, created_at=now, expires_at=expires_at)
    )


def peek_reset(session: Session, token_digest: bytes) -> int | None:
    """The user of a live (unused, unexpired) token, without using it."""
    row = session.execute(
        PasswordReset.__table__.select()
        .with_only_columns(PasswordReset.user_id)
        .where(
            PasswordReset.token_digest == token_digest,
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > utcnow(),
        )
    ).first()
    return int(row[0]) if row else None


def use_reset(session: Session, token_digest: bytes) -> int | None:
    """Spend a live token (one conditional UPDATE: of two uses at once, one wins); its user."""
    row = session.execute(
        update(PasswordReset)
        .where(
            PasswordReset.token_digest == token_digest,
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > utcnow(),
        )
        .values(used_at=utcnow())
        .returning(PasswordReset.user_id)
    ).first()
    return int(row[0]) if row else None


def void_resets(session: Session, user_id: int) -> int:
    """Every unused token of the user stops working (a newer link, or the password
    changed: a link mailed for the old password must not outlive it); returns how many."""
    result = session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user_id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
        .returning(PasswordReset.token_digest)
    )
    return len(result.all())
