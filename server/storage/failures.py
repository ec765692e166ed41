"""Failed authentication attempts, for lockout over a sliding window.

A counter's *subject* is an account (its user id) or, for a username that has no account,
the SHA-256 of the name (bytes): both are counted the same way.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, insert, select

from . import Session
from .base import utcnow
from .models import AuthFailure, User

Subject = int | bytes


def lock_subject(session: Session, subject: Subject) -> None:
    """Serialise attempts on one account for the rest of the transaction (PostgreSQL row
    lock; SQLite transactions here are already serial), so that concurrent wrong guesses
    from several processes cannot all slip under the threshold. A name without an account
    has no row to lock: its count may overshoot by the attempts that race, which is harmless."""
    if isinstance(subject, int):
        session.execute(select(User.id).where(User.id == subject).with_for_update())


def recent(
    session: Session, subject: Subject, factor: str, since: datetime, device: bytes | None, limit: int
) -> list[datetime]:
    """When the failures since ``since`` happened, oldest first (at most ``limit``).

    ``device`` None counts the failures of every browser not known to the account;
    a device digest counts that device's own failures only."""
    query = (
        select(AuthFailure.occurred_at)
        .where(*_counter(subject, factor, device), AuthFailure.occurred_at > since)
        .order_by(AuthFailure.occurred_at.desc())
        .limit(limit)
    )
    return sorted(session.execute(query).scalars())


def record(session: Session, subject: Subject, factor: str, device: bytes | None) -> None:
    account = {"user_id": subject} if isinstance(subject, int) else {"name_digest": subject}
    session.execute(insert(AuthFailure).values(**account, factor=factor, device_digest=device, occurred_at=utcnow()))


def clear(
    session: Session, subject: Subject, factor: str, device: bytes | None = None, *, every_device: bool = False
) -> None:
    """Forget failures: of one device (or the shared counter, ``device`` None), or all of them."""
    conditions = _counter(subject, factor, device)
    session.execute(delete(AuthFailure).where(*(conditions[:2] if every_device else conditions)))


def _counter(subject: Subject, factor: str, device: bytes | None) -> list[ColumnElement[bool]]:
    who = AuthFailure.user_id == subject if isinstance(subject, int) else AuthFailure.name_digest == subject
    which = AuthFailure.device_digest.is_(None) if device is None else AuthFailure.device_digest == device
    return [who, AuthFailure.factor == factor, which]
