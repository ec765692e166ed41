"""Browser sessions (single sign-on). Looked up by the SHA-256 of the cookie token.

Ending a session here also revokes, in the same transaction, the refresh-token families
bound to it (issued without ``offline_access``, OIDC Core §11), and queues the
back-channel logout notices of the clients it signed in to (:mod:`.logout_notices`): no
caller can end one without the others. A session that expires needs nothing: its
families were inserted ending with it, and its clients' own sessions end by their clocks
(no notice is sent for an expiry, as in Keycloak).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update

from . import Session, grants as grant_store, logout_notices
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
    BrowserSession.reauthenticated_at,
    BrowserSession.user_agent,
    BrowserSession.address,
    BrowserSession.last_seen_at,
)
#: the longest User-Agent kept (the column's size); browsers send a few hundred characters
USER_AGENT_LIMIT = 512
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
    #: the last time the user typed their password again in this session (``auth_time`` counts too)
    reauthenticated_at: datetime | None = None
    #: the browser's User-Agent and the client address at sign-in (None: not known)
    user_agent: str | None = None
    address: str | None = None
    #: when the session was last used (kept to within a few minutes); None: not known
    last_seen_at: datetime | None = None

    @property
    def proved_at(self) -> datetime:
        """When the user last proved who they are in this session: signing in or re-authenticating."""
        return max(self.auth_time, self.reauthenticated_at or self.auth_time)


@dataclass(frozen=True, slots=True)
class SeenFrom:
    """What a sign-in came from: the browser's ``User-Agent`` header and the client
    address (after the trusted proxies), both as sent; stored cut to the columns' sizes."""

    user_agent: str | None
    address: str | None

    def values(self) -> dict[str, str | None]:
        return {
            "user_agent": self.user_agent[:USER_AGENT_LIMIT] if self.user_agent else None,
            "address": self.address[:64] if self.address else None,
        }


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
    seen_from: SeenFrom | None = None,
) -> StoredSession:
    now = utcnow()
    device = (seen_from or SeenFrom(None, None)).values()
    stored = StoredSession(
        sid=sid,
        user_id=user_id,
        auth_time=auth_time,
        amr=tuple(amr),
        acr=acr,
        created_at=now,
        expires_at=expires_at,
        last_seen_at=now,
        user_agent=device["user_agent"],
        address=device["address"],
    )
    session.execute(
        insert(BrowserSession).values(
            token_digest=token_digest,
            sid=sid,
            user_id=user_id,
            auth_time=auth_time,
            amr=amr,
            acr=acr,
            created_at=now,
            expires_at=expires_at,
            last_seen_at=now,
            **device,
        )
    )
    return stored


def get_live_session(session: Session, token_digest: bytes) -> StoredSession | None:
    row = session.execute(_LIVE, {"digest": token_digest, "now": utcnow()}).one_or_none()
    return _stored(row) if row else None


def end_session(session: Session, token_digest: bytes, reason: str) -> str | None:
    """End the live session with this token and revoke its families (``reason``); returns
    its sid, or None if there was none."""
    return _end_one(session, BrowserSession.token_digest == token_digest, reason)


def end_session_by_sid(session: Session, sid: str, reason: str, *, user_id: int | None = None) -> bool:
    """End the live session ``sid`` (an administrator ending it; with ``user_id``, only if
    it is that user's: the user ending one of their own) and revoke its families; True if
    it was live (and theirs)."""
    which = BrowserSession.sid == sid
    if user_id is not None:
        which = and_(which, BrowserSession.user_id == user_id)
    return _end_one(session, which, reason) is not None


def _end_one(session: Session, which: Any, reason: str) -> str | None:
    row = session.execute(
        update(BrowserSession)
        .where(which, BrowserSession.ended_at.is_(None))
        .values(ended_at=utcnow())
        .returning(BrowserSession.sid, BrowserSession.user_id)
    ).one_or_none()
    if row is None:
        return None
    logout_notices.queue(session, [row.sid])
    grant_store.revoke_for_session(session, row.sid, reason)
    return str(row.sid)


def end_user_sessions(session: Session, user_id: int, reason: str, *, keep_sid: str | None = None) -> int:
    """End every live session of a user but ``keep_sid``, and revoke the families bound to
    them (``reason``); returns how many sessions ended. Families with ``offline_access``
    stay: ending them is the caller's decision."""
    kept = (BrowserSession.sid != keep_sid,) if keep_sid is not None else ()
    result = session.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None), *kept)
        .values(ended_at=utcnow())
        .returning(BrowserSession.sid)
    )
    ended = [row.sid for row in result]
    logout_notices.queue(session, ended)
    grant_store.revoke_session_bound(session, user_id, reason, keep_sid=keep_sid)
    return len(ended)


def step_up(
    session: Session,
    old_digest: bytes,
    new_digest: bytes,
    *,
    amr: list[str],
    acr: str,
    auth_time: datetime,
    expires_at: datetime | None = None,
    seen_from: SeenFrom | None = None,
) -> StoredSession | None:
    """Raise a live session to a new authentication level under a new token (the old cookie
    stops working: no fixation across a privilege change), and to ``expires_at`` if given
    (a new sign-in, ``seen_from`` where it came from). The sid stays, so ID tokens and
    grants already tied to it still are. None if the session ended meanwhile."""
    extended: dict[str, Any] = {"expires_at": expires_at} if expires_at is not None else {}
    if seen_from is not None:
        extended.update(seen_from.values(), last_seen_at=utcnow())
    row = session.execute(
        update(BrowserSession)
        .where(
            BrowserSession.token_digest == old_digest,
            BrowserSession.ended_at.is_(None),
            BrowserSession.expires_at > utcnow(),
        )
        .values(token_digest=new_digest, amr=amr, acr=acr, auth_time=auth_time, **extended)
        .returning(*_COLUMNS)
    ).one_or_none()
    return _stored(row) if row else None


def mark_seen(session: Session, sid: str, *, unless_since: timedelta) -> None:
    """The live session ``sid`` is in use now: ``last_seen_at`` becomes now, unless it was
    set within ``unless_since`` (the condition is in the statement, so processes that see
    the same session at once write it once)."""
    now = utcnow()
    session.execute(
        update(BrowserSession)
        .where(
            BrowserSession.sid == sid,
            BrowserSession.ended_at.is_(None),
            or_(BrowserSession.last_seen_at.is_(None), BrowserSession.last_seen_at <= now - unless_since),
        )
        .values(last_seen_at=now)
    )


def mark_reauthenticated(session: Session, sid: str) -> None:
    """The user of live session ``sid`` has just proved a factor again (sudo mode)."""
    session.execute(
        update(BrowserSession)
        .where(BrowserSession.sid == sid, BrowserSession.ended_at.is_(None))
        .values(reauthenticated_at=utcnow())
    )


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
        reauthenticated_at=row.reauthenticated_at,
        user_agent=row.user_agent,
        address=row.address,
        last_seen_at=row.last_seen_at,
    )
