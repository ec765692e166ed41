"""Failed authentication attempts, for lockout over a sliding window."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select

from . import Session
from .base import utcnow
from .models import AuthFailure, User


def lock_user(session: Session, user_id: int) -> None:
    """Serialise attempts on one account for the rest of the transaction (PostgreSQL row
    lock; SQLite transactions here are already serial), so that concurrent wrong guesses
    from several processes cannot all slip under the threshold."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update())


def recent(
    session: Session, user_id: int, factor: str, since: datetime, device: bytes | None, limit: int
) -> list[datetime]:
    """When the failures since ``since`` happened, oldest first (at most ``limit``).

    ``device`` None counts the failures of every browser not known to the account;
    a device digest counts that device's own failures only."""
    query = (
        select(AuthFailure.occurred_at)
        .where(
            AuthFailure.user_id == user_id,
            AuthFailure.factor == factor,
            AuthFailure.occurred_at > since,
            AuthFailure.device_digest.is_(None) if device is None else AuthFailure.device_digest == device,
        )
        .order_by(AuthFailure.occurred_at.desc())
        .limit(limit)
    )
    return sorted(session.execute(query).scalars())


def record(session: Session, user_id: int, factor: str, device: bytes | None) -> None:
    session.execute(
        insert(AuthFailure).values(user_id=user_id, factor=factor, device_digest=device, occurred_at=utcnow())
    )


def clear(
    session: Session, user_id: int, factor: str, device: bytes | None = None, *, every_device: bool = False
) -> None:
    """Forget failures: of one device (or the shared counter, ``device`` None), or all of them."""
    query = delete(AuthFailure).where(AuthFailure.user_id == user_id, AuthFailure.factor == factor)
    if not every_device:
        query = query.where(
            AuthFailure.device_digest.is_(None) if device is None else AuthFailure.device_digest == device
        )
    session.execute(query)
