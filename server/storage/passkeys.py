"""Passkeys (WebAuthn credentials) and the challenges of their ceremonies.

A challenge is spent by one conditional DELETE: of two answers to it at once, one wins, and
a replayed answer finds nothing. A passkey's counter only moves forward (``record_use``
refuses a count that is not above the stored one, unless the authenticator keeps none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update

from . import Session
from .base import utcnow
from .models import Passkey, WebAuthnChallenge

REGISTER = "register"
AUTHENTICATE = "authenticate"


@dataclass(frozen=True)
class StoredPasskey:
    id: int
    user_id: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    device_type: str
    transports: list[str]
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class StoredChallenge:
    purpose: str
    user_id: int | None
    interaction: bytes | None


_COLUMNS = (
    Passkey.id,
    Passkey.user_id,
    Passkey.credential_id,
    Passkey.public_key,
    Passkey.sign_count,
    Passkey.aaguid,
    Passkey.device_type,
    Passkey.transports,
    Passkey.name,
    Passkey.created_at,
    Passkey.last_used_at,
)


def _passkey(row: object) -> StoredPasskey:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values["credential_id"] = bytes(values["credential_id"])
    values["public_key"] = bytes(values["public_key"])
    return StoredPasskey(**values)


def add_passkey(
    session: Session,
    *,
    user_id: int,
    credential_id: bytes,
    public_key: bytes,
    sign_count: int,
    aaguid: str,
    device_type: str,
    transports: list[str],
    name: str,
) -> StoredPasskey:
    row = session.execute(
        insert(Passkey)
        .values(
            user_id=user_id,
            credential_id=credential_id,
            public_key=public_key,
            sign_count=sign_count,
            aaguid=aaguid,
            device_type=device_type,
            transports=transports,
            name=name,
            created_at=utcnow(),
        )
        .returning(*_COLUMNS)
    ).one()
    return _passkey(row)


def credential_taken(session: Session, credential_id: bytes) -> bool:
    return session.execute(select(Passkey.id).where(Passkey.credential_id == credential_id)).first() is not None


def list_passkeys(session: Session, user_id: int) -> list[StoredPasskey]:
    rows = session.execute(select(*_COLUMNS).where(Passkey.user_id == user_id).order_by(Passkey.id))
    return [_passkey(row) for row in rows]


def count_passkeys(session: Session, user_id: int) -> int:
    return int(session.execute(select(func.count(Passkey.id)).where(Passkey.user_id == user_id)).scalar_one())


def get_by_credential(session: Session, credential_id: bytes) -> StoredPasskey | None:
    row = session.execute(select(*_COLUMNS).where(Passkey.credential_id == credential_id)).first()
    return _passkey(row) if row is not None else None


def record_use(session: Session, passkey_id: int, *, old_count: int, new_count: int) -> bool:
    """The passkey signed in now, reporting ``new_count``: stored only while the stored count
    is still ``old_count`` (two uses at once cannot both move it)."""
    row = session.execute(
        update(Passkey)
        .where(Passkey.id == passkey_id, Passkey.sign_count == old_count)
        .values(sign_count=new_count, last_used_at=utcnow())
        .returning(Passkey.id)
    ).first()
    return row is not None


def delete_passkey(session: Session, user_id: int, passkey_id: int) -> StoredPasskey | None:
    row = session.execute(
        delete(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user_id).returning(*_COLUMNS)
    ).first()
    return _passkey(row) if row is not None else None


def delete_all(session: Session, user_id: int) -> int:
    """Every passkey of the user goes (an administrator's reset of the second factor)."""
    return len(session.execute(delete(Passkey).where(Passkey.user_id == user_id).returning(Passkey.id)).all())


def add_challenge(
    session: Session,
    digest: bytes,
    *,
    purpose: str,
    expires_at: datetime,
    user_id: int | None = None,
    interaction: bytes | None = None,
) -> None:
    session.execute(
        insert(WebAuthnChallenge).values(
            digest=digest, purpose=purpose, user_id=user_id, interaction=interaction, expires_at=expires_at
        )
    )


def take_challenge(session: Session, digest: bytes, purpose: str) -> StoredChallenge | None:
    """Spend a live challenge of ``purpose``; what it was handed out for, or None."""
    row = session.execute(
        delete(WebAuthnChallenge)
        .where(
            WebAuthnChallenge.digest == digest,
            WebAuthnChallenge.purpose == purpose,
            WebAuthnChallenge.expires_at > utcnow(),
        )
        .returning(WebAuthnChallenge.purpose, WebAuthnChallenge.user_id, WebAuthnChallenge.interaction)
    ).first()
    if row is None:
        return None
    return StoredChallenge(row.purpose, row.user_id, bytes(row.interaction) if row.interaction is not None else None)
