"""RFC 7591 initial access tokens: stored as digests, each use counted by one conditional
``UPDATE``, so that concurrent registrations can never together exceed ``max_uses``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, or_, select, update

from . import Session
from .base import insert_row
from .models import RegistrationToken


@dataclass(frozen=True, slots=True)
class StoredRegistrationToken:
    """One token's bookkeeping; never its value."""

    id: str
    created_at: datetime
    expires_at: datetime | None
    max_uses: int | None
    uses: int
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "used up"
        return "usable"


_COLUMNS = (
    RegistrationToken.id,
    RegistrationToken.created_at,
    RegistrationToken.expires_at,
    RegistrationToken.max_uses,
    RegistrationToken.uses,
    RegistrationToken.revoked_at,
)
_INSERT = insert_row(RegistrationToken)
# One statement: of two registrations racing for the last use, exactly one gets the row.
_USE = (
    update(RegistrationToken)
    .where(
        RegistrationToken.token_digest == bindparam("digest"),
        RegistrationToken.revoked_at.is_(None),
        or_(RegistrationToken.expires_at.is_(None), RegistrationToken.expires_at > bindparam("now")),
        or_(RegistrationToken.max_uses.is_(None), RegistrationToken.uses < RegistrationToken.max_uses),
    )
    .values(uses=RegistrationToken.uses + 1)
    .returning(RegistrationToken.id)
)


def insert(
    session: Session, *, token_id: str, digest: bytes, now: datetime, expires_at: datetime | None, max_uses: int | None
) -> None:
    session.connection().execute(
        _INSERT,
        {
            "id": token_id,
            "token_digest": digest,
            "created_at": now,
            "expires_at": expires_at,
            "max_uses": max_uses,
            "uses": 0,
            "revoked_at": None,
        },
    )


def use(session: Session, digest: bytes, now: datetime) -> str | None:
    """Count one use of the token whose digest is ``digest``; its id, or None when no such
    token is usable (unknown, revoked, expired or used up)."""
    row = session.connection().execute(_USE, {"digest": digest, "now": now}).first()
    return row[0] if row else None


def list_tokens(session: Session) -> list[StoredRegistrationToken]:
    query = select(*_COLUMNS).order_by(RegistrationToken.created_at, RegistrationToken.id)
    return [StoredRegistrationToken(*row) for row in session.execute(query)]


def revoke(session: Session, token_id: str, now: datetime) -> bool:
    """Revoke a token not revoked yet; False when there is no such token (or it already was)."""
    result = session.execute(
        update(RegistrationToken)
        .where(RegistrationToken.id == token_id, RegistrationToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(RegistrationToken.id)
    )
    return result.first() is not None


def exists(session: Session, token_id: str) -> bool:
    return session.execute(select(RegistrationToken.id).where(RegistrationToken.id == token_id)).first() is not None
