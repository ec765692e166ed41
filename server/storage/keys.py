"""Signing-key storage: the rows every server process reads to build its key ring."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from .base import utcnow
from .dialect import upsert_insert
from .models import SigningKey


@dataclass(frozen=True, slots=True)
class StoredKey:
    kid: str
    alg: str
    state: str
    public_jwk: dict[str, Any]
    private_key_enc: bytes
    wrapping_key_id: str
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    removed_at: datetime | None = None


_COLUMNS = (
    SigningKey.kid,
    SigningKey.alg,
    SigningKey.state,
    SigningKey.public_jwk,
    SigningKey.private_key_enc,
    SigningKey.wrapping_key_id,
    SigningKey.created_at,
    SigningKey.activated_at,
    SigningKey.retired_at,
    SigningKey.removed_at,
)


def list_keys(session: Session, states: Iterable[str] | None = None) -> list[StoredKey]:
    query = select(*_COLUMNS).order_by(SigningKey.created_at, SigningKey.kid)
    if states is not None:
        query = query.where(SigningKey.state.in_(list(states)))
    return [StoredKey(**row._mapping) for row in session.execute(query)]


def count_keys(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(SigningKey)).scalar_one())


def insert_key(session: Session, key: StoredKey) -> None:
    session.execute(
        insert(SigningKey).values(
            kid=key.kid,
            alg=key.alg,
            state=key.state,
            public_jwk=key.public_jwk,
            private_key_enc=key.private_key_enc,
            wrapping_key_id=key.wrapping_key_id,
            created_at=key.created_at,
            activated_at=key.activated_at,
            retired_at=key.retired_at,
            removed_at=key.removed_at,
        )
    )


def insert_active_key_unless_exists(session: Session, key: StoredKey) -> bool:
    """Insert ``key`` as active unless its algorithm already has an active key.

    One statement, ``INSERT ... ON CONFLICT DO NOTHING`` on the partial unique index, so two
    processes racing at first start cannot both succeed and neither fails.
    """
    values = {
        "kid": key.kid,
        "alg": key.alg,
        "state": "active",
        "public_jwk": key.public_jwk,
        "private_key_enc": key.private_key_enc,
        "wrapping_key_id": key.wrapping_key_id,
        "created_at": key.created_at,
        "activated_at": key.activated_at,
    }
    statement = (
        upsert_insert(session, SigningKey)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["alg"], index_where=text("state = 'active'"))
    )
    result = session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def get_key(session: Session, kid: str) -> StoredKey | None:
    row = session.execute(select(*_COLUMNS).where(SigningKey.kid == kid)).one_or_none()
    return StoredKey(**row._mapping) if row else None


def lock(session: Session) -> None:
    """Serialise key-set changes across processes (PostgreSQL; SQLite writers are serial)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})


_LOCK_ID = 0x05_71A9


def retire_active(session: Session, alg: str) -> list[str]:
    result = session.execute(
        update(SigningKey)
        .where(SigningKey.alg == alg, SigningKey.state == "active")
        .values(state="retired", retired_at=utcnow())
        .returning(SigningKey.kid)
    )
    return list(result.scalars())


def activate(session: Session, kid: str) -> bool:
    result = session.execute(
        update(SigningKey)
        .where(SigningKey.kid == kid, SigningKey.state == "next")
        .values(state="active", activated_at=utcnow())
        .returning(SigningKey.kid)
    )
    return result.first() is not None


def remove(session: Session, kid: str) -> bool:
    result = session.execute(
        update(SigningKey)
        .where(SigningKey.kid == kid, SigningKey.state != "removed")
        .values(state="removed", removed_at=utcnow())
        .returning(SigningKey.kid)
    )
    return result.first() is not None


def rewrap(session: Session, kid: str, private_key_enc: bytes, wrapping_key_id: str) -> None:
    session.execute(
        update(SigningKey)
        .where(SigningKey.kid == kid)
        .values(private_key_enc=private_key_enc, wrapping_key_id=wrapping_key_id)
    )
