"""Second-factor storage: TOTP credentials (encrypted secrets, the replay guard) and backup codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, or_, select, update

from . import Session
from .base import utcnow
from .models import BackupCode, TotpCredential


@dataclass(frozen=True, slots=True)
class StoredTotp:
    user_id: int
    secret_enc: bytes
    wrapping_key_id: str
    created_at: datetime
    confirmed_at: datetime | None
    last_step: int | None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


_COLUMNS = (
    TotpCredential.user_id,
    TotpCredential.secret_enc,
    TotpCredential.wrapping_key_id,
    TotpCredential.created_at,
    TotpCredential.confirmed_at,
    TotpCredential.last_step,
)
_BY_USER = select(*_COLUMNS).where(TotpCredential.user_id == bindparam("user_id"))
# The replay guard (RFC 6238 §5.2): one conditional UPDATE, so of two processes that check
# the same code at once exactly one moves ``last_step`` forward and the other is refused.
_ADVANCE = (
    update(TotpCredential)
    .where(
        TotpCredential.user_id == bindparam("uid"),
        TotpCredential.confirmed_at.is_not(None),
        or_(TotpCredential.last_step.is_(None), TotpCredential.last_step < bindparam("step")),
    )
    .values(last_step=bindparam("step"))
    .returning(TotpCredential.user_id)
)
_USE_CODE = (
    update(BackupCode)
    .where(
        BackupCode.code_digest == bindparam("digest"),
        BackupCode.user_id == bindparam("uid"),
        BackupCode.used_at.is_(None),
    )
    .values(used_at=bindparam("now"))
    .returning(BackupCode.user_id)
)


def get_totp(session: Session, user_id: int) -> StoredTotp | None:
    row = session.execute(_BY_USER, {"user_id": user_id}).one_or_none()
    return StoredTotp(**row._mapping) if row else None


def has_confirmed_totp(session: Session, user_id: int) -> bool:
    query = select(TotpCredential.user_id).where(
        TotpCredential.user_id == user_id, TotpCredential.confirmed_at.is_not(None)
    )
    return session.execute(query).first() is not None


def put_pending_totp(session: Session, user_id: int, secret_enc: bytes, wrapping_key_id: str) -> bool:
    """Store a new unconfirmed secret, replacing an earlier unconfirmed one. False (nothing
    written) when the user already has a confirmed credential: that one must be disabled first."""
    existing = get_totp(session, user_id)
    if existing is not None and existing.confirmed:
        return False
    session.execute(delete(TotpCredential).where(TotpCredential.user_id == user_id))
    session.execute(
        insert(TotpCredential).values(
            user_id=user_id, secret_enc=secret_enc, wrapping_key_id=wrapping_key_id, created_at=utcnow()
        )
    )
    return True


def confirm_totp(session: Session, user_id: int, step: int) -> bool:
    """Enable a pending credential whose first code (at ``step``) was right; False if it was
    not pending any more (confirmed in another tab, or replaced)."""
    result = session.execute(
        update(TotpCredential)
        .where(TotpCredential.user_id == user_id, TotpCredential.confirmed_at.is_(None))
        .values(confirmed_at=utcnow(), last_step=step)
        .returning(TotpCredential.user_id)
    )
    return result.first() is not None


def advance_step(session: Session, user_id: int, step: int) -> bool:
    """Accept the code of ``step``: True only if no code of this or a later step was accepted before."""
    return session.execute(_ADVANCE, {"uid": user_id, "step": step}).first() is not None


def rewrap_totp(session: Session, user_id: int, secret_enc: bytes, wrapping_key_id: str) -> None:
    session.execute(
        update(TotpCredential)
        .where(TotpCredential.user_id == user_id)
        .values(secret_enc=secret_enc, wrapping_key_id=wrapping_key_id)
    )


def list_totp_not_wrapped_by(session: Session, wrapping_key_id: str) -> list[StoredTotp]:
    rows = session.execute(select(*_COLUMNS).where(TotpCredential.wrapping_key_id != wrapping_key_id))
    return [StoredTotp(**row._mapping) for row in rows]


def count_wrapped_by_others(session: Session, key_ids: tuple[str, ...]) -> int:
    """How many secrets are encrypted under none of ``key_ids`` (startup check)."""
    query = select(func.count()).where(TotpCredential.wrapping_key_id.not_in(key_ids))
    return int(session.execute(query).scalar_one())


def delete_totp(session: Session, user_id: int, *, keep_codes: bool = False) -> bool:
    """Remove the credential and, unless ``keep_codes`` (another second factor stays), every
    backup code; True if there was a confirmed credential."""
    result = session.execute(
        delete(TotpCredential).where(TotpCredential.user_id == user_id).returning(TotpCredential.confirmed_at)
    )
    confirmed = any(at is not None for (at,) in result.all())
    if not keep_codes:
        delete_backup_codes(session, user_id)
    return confirmed


def delete_backup_codes(session: Session, user_id: int) -> None:
    session.execute(delete(BackupCode).where(BackupCode.user_id == user_id))


def replace_backup_codes(session: Session, user_id: int, digests: list[bytes]) -> None:
    """The new set replaces every earlier code, used or not."""
    session.execute(delete(BackupCode).where(BackupCode.user_id == user_id))
    now = utcnow()
    session.execute(insert(BackupCode), [{"code_digest": d, "user_id": user_id, "created_at": now} for d in digests])


def use_backup_code(session: Session, user_id: int, digest: bytes) -> bool:
    """Spend one code: True only for an unused code of this user (one conditional UPDATE)."""
    return session.execute(_USE_CODE, {"digest": digest, "uid": user_id, "now": utcnow()}).first() is not None


def count_unused_backup_codes(session: Session, user_id: int) -> int:
    query = select(func.count()).where(BackupCode.user_id == user_id, BackupCode.used_at.is_(None))
    return int(session.execute(query).scalar_one())
