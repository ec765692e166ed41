"""Browser sessions (single sign-on). Looked up by the SHA-256 of the cookie token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from . import Session
from .base import utcnow
from .models import BrowserSession

_COLUMNS = (
    BrowserSession.sid,
    BrowserSession.user_id,
    BrowserSession.auth_time,
    BrowserSession.amr,
    BrowserSession.acr,
    BrowserSession.created_at,
    BrowserSession.expires_at,
)
_LIVE = select(*_COLUMNS).where(
    BrowserSession.token_digest == bindparam("digest"),
    BrowserSession.ended_at.is_(None),
    BrowserSession.expires_at > bindparam("now"),
)


@dataclass(frozen=True, slots=True)
class StoredSession:
    sid: str
    user_id: int
    auth_time: datetime
    amr: tuple[str, ...]
    acr: str
    created_at: datetime
    expires_at: datetime


def insert_session(
    session: Session,
    *,
    token_digest: bytes,
    sid: str,
    user_id: int,
    auth_time: datetime,
    amr: list[str],
    acr: str,
    expires_at: datetime,
) -> StoredSession:
    stored = StoredSession(
        sid=sid,
        user_id=user_id,
        auth_time=auth_time,
        amr=tuple(amr),
        acr=acr,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.execute(
        insert(BrowserSession).values(
            token_digest=token_digest,
            sid=sid,
            user_id=user_id,
            auth_time=auth_time,
            amr=amr,
            acr=acr,
            created_at=stored.created_at,
            expires_at=expires_at,
        )
    )
    return stored


def get_live_session(session: Session, token_digest: bytes) -> StoredSession | None:
    row = session.execute(_LIVE, {"digest": token_digest, "now": utcnow()}).one_or_none()
    return _stored(row) if row else None


def end_session(session: Session, token_digest: bytes) -> str | None:
    """End the live session with this token; returns its sid, or None if there was none."""
    result = session.execute(
        update(BrowserSession)
        .where(BrowserSession.token_digest == token_digest, BrowserSession.ended_at.is_(None))
        .values(ended_at=utcnow())
        .returning(BrowserSession.sid)
    )
    return result.scalar_one_or_none()


def end_user_sessions(session: Session, user_id: int) -> int:
    """End every live session of a user; returns how many."""
    result = session.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))
        .values(ended_at=utcnow())
        .returning(BrowserSession.sid)
    )
    return len(result.all())


def step_up(
    session: Session, old_digest: bytes, new_digest: bytes, *, amr: list[str], acr: str, auth_time: datetime
) -> StoredSession | None:
    """Raise a live session to a new authentication level under a new token (the old cookie
    stops working: no fixation across a privilege change). The sid stays, so ID tokens and
    grants already tied to it still are. None if the session ended meanwhile."""
    row = session.execute(
        update(BrowserSession)
        .where(
            BrowserSession.token_digest == old_digest,
            BrowserSession.ended_at.is_(None),
            BrowserSession.expires_at > utcnow(),
        )
        .values(token_digest=new_digest, amr=amr, acr=acr, auth_time=auth_time)
        .returning(*_COLUMNS)
    ).one_or_none()
    return _stored(row) if row else None


def list_live_sessions(session: Session, user_id: int) -> list[StoredSession]:
    """A user's live sessions, newest first (a user has a handful: no paging)."""
    rows = session.execute(
        select(*_COLUMNS)
        .where(
            BrowserSession.user_id == user_id,
            BrowserSession.ended_at.is_(None),
            BrowserSession.expires_at > utcnow(),
        )
        .order_by(BrowserSession.created_at.desc())
        .limit(100)
    )
    return [_stored(row) for row in rows]


def _stored(row: Any) -> StoredSession:
    return StoredSession(
        sid=row.sid,
        user_id=row.user_id,
        auth_time=row.auth_time,
        amr=tuple(row.amr),
        acr=row.acr,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )
