"""RFC 8628 device authorizations: stored as digests, decided once, redeemed once.

The device code and the user code are kept only as SHA-256 digests (the user code in its
canonical form: eight letters, no dash). A person's decision is one conditional
``UPDATE`` (pending and unexpired), and so is the redemption (approved, unexpired, not yet
consumed): of two polls racing with one approved code, exactly one gets tokens. A redeemed
row stays until cleanup, so a replayed device code is recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from . import Session
from .base import insert_row, sha256, utcnow
from .models import DeviceAuthorization

PENDING, APPROVED, DENIED = "pending", "approved", "denied"


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """A device authorization as the token endpoint reads it: its state, its polling, and
    (once approved) the sign-in its grant descends from."""

    key: bytes
    client_id: str
    scope: str
    interval: int
    expires_at: datetime
    last_polled_at: datetime | None
    status: str
    user_id: int | None
    grant_id: str
    session_sid: str | None
    auth_time: datetime | None
    acr: str | None
    amr: tuple[str, ...]
    consumed_at: datetime | None


@dataclass(frozen=True, slots=True)
class PendingDevice:
    """A device authorization waiting for its person, as the ``/device`` page shows it."""

    key: bytes
    client_id: str
    scope: str
    expires_at: datetime


_INSERT = insert_row(DeviceAuthorization)


def insert(
    session: Session,
    *,
    device_code: str,
    user_code: str,
    client_id: str,
    scope: str,
    interval: int,
    expires_at: datetime,
) -> None:
    """``user_code`` in its canonical form (what :func:`pending_by_user_code` is given)."""
    session.connection().execute(
        _INSERT,
        {
            "device_code_digest": sha256(device_code),
            "user_code_digest": sha256(user_code),
            "client_id": client_id,
            "scope": scope,
            "interval": interval,
            "created_at": utcnow(),
            "expires_at": expires_at,
            "status": PENDING,
            "amr": [],
        },
    )


def find(session: Session, device_code: str) -> StoredDevice | None:
    """The authorization of ``device_code`` in any state (expired, decided, redeemed)."""
    row = session.execute(
        select(DeviceAuthorization).where(DeviceAuthorization.device_code_digest == sha256(device_code))
    ).scalar_one_or_none()
    if row is None:
        return None
    return StoredDevice(
        key=row.device_code_digest,
        client_id=row.client_id,
        scope=row.scope,
        interval=row.interval,
        expires_at=row.expires_at,
        last_polled_at=row.last_polled_at,
        status=row.status,
        user_id=row.user_id,
        grant_id=row.grant_id or "",
        session_sid=row.session_sid,
        auth_time=row.auth_time,
        acr=row.acr,
        amr=tuple(row.amr or ()),
        consumed_at=row.consumed_at,
    )


def pending_by_user_code(session: Session, user_code: str) -> PendingDevice | None:
    """The undecided, unexpired authorization of ``user_code`` (canonical form), if any."""
    row = session.execute(
        select(
            DeviceAuthorization.device_code_digest,
            DeviceAuthorization.client_id,
            DeviceAuthorization.scope,
            DeviceAuthorization.expires_at,
        ).where(
            DeviceAuthorization.user_code_digest == sha256(user_code),
            DeviceAuthorization.status == PENDING,
            DeviceAuthorization.expires_at > utcnow(),
        )
    ).one_or_none()
    if row is None:
        return None
    return PendingDevice(
        key=row.device_code_digest, client_id=row.client_id, scope=row.scope, expires_at=row.expires_at
    )


def approve(
    session: Session,
    key: bytes,
    *,
    user_id: int,
    grant_id: str,
    auth_time: datetime,
    acr: str | None,
    amr: tuple[str, ...],
) -> bool:
    """Approve a pending, unexpired authorization for ``user_id``; False if it no longer is one."""
    return _decide(
        session,
        key,
        status=APPROVED,
        user_id=user_id,
        grant_id=grant_id,
        auth_time=auth_time,
        acr=acr,
        amr=list(amr),
    )


def deny(session: Session, key: bytes, *, user_id: int) -> bool:
    """Deny a pending, unexpired authorization; False if it no longer is one."""
    return _decide(session, key, status=DENIED, user_id=user_id)


def _decide(session: Session, key: bytes, **values: object) -> bool:
    now = utcnow()
    result = session.execute(
        update(DeviceAuthorization)
        .where(
            DeviceAuthorization.device_code_digest == key,
            DeviceAuthorization.status == PENDING,
            DeviceAuthorization.expires_at > now,
        )
        .values(decided_at=now, **values)
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def redeem(session: Session, key: bytes) -> bool:
    """Mark an approved, unexpired, unredeemed authorization redeemed; False if it is not one
    (another poll redeemed it first)."""
    now = utcnow()
    result = session.execute(
        update(DeviceAuthorization)
        .where(
            DeviceAuthorization.device_code_digest == key,
            DeviceAuthorization.status == APPROVED,
            DeviceAuthorization.consumed_at.is_(None),
            DeviceAuthorization.expires_at > now,
        )
        .values(consumed_at=now)
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def record_poll(session: Session, key: bytes, polled_at: datetime, interval: int) -> None:
    """A poll at ``polled_at``; ``interval``: the polling interval from now on (RFC 8628 §3.5)."""
    session.execute(
        update(DeviceAuthorization)
        .where(DeviceAuthorization.device_code_digest == key)
        .values(last_polled_at=polled_at, interval=interval)
    )


def user_code_taken(session: Session, user_code: str) -> bool:
    """Whether a stored authorization (in any state) has ``user_code`` (canonical form)."""
    found = session.execute(
        select(DeviceAuthorization.device_code_digest).where(DeviceAuthorization.user_code_digest == sha256(user_code))
    ).first()
    return found is not None
