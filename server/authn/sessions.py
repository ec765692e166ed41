"""Browser sessions: started at each login (a new id every time: no fixation), shared by
every client (single sign-on), recording when and how the user authenticated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..storage import Session, sessions as session_store
from ..storage.base import sha256 as digest, utcnow
from ..storage.sessions import StoredSession
from .secrets import new_token


@dataclass(frozen=True)
class StartedSession:
    token: str  # goes into the cookie, never stored
    session: StoredSession


def start(
    db: Session,
    *,
    user_id: int,
    amr: list[str],
    acr: str,
    ttl: int,
    replaces: str | None,
    auth_time: datetime | None = None,
) -> StartedSession:
    """A new session for ``user_id``; the browser's previous session (``replaces``) ends."""
    if replaces:
        session_store.end_session(db, digest(replaces))
    token = new_token()
    now = utcnow()
    stored = session_store.insert_session(
        db,
        token_digest=digest(token),
        sid=new_token()[:32],
        user_id=user_id,
        auth_time=auth_time or now,
        amr=amr,
        acr=acr,
        expires_at=now + timedelta(seconds=ttl),
    )
    return StartedSession(token, stored)


def load(db: Session, token: str | None) -> StoredSession | None:
    if not token or len(token) > 128:
        return None
    return session_store.get_live_session(db, digest(token))


def end(db: Session, token: str | None) -> str | None:
    """End the browser's session; returns its sid."""
    if not token or len(token) > 128:
        return None
    return session_store.end_session(db, digest(token))


def step_up(db: Session, token: str | None, *, amr: list[str], acr: str) -> StartedSession | None:
    """Raise the browser's session to ``acr``/``amr`` now, under a new token (same sid)."""
    if not token or len(token) > 128:
        return None
    new = new_token()
    stored = session_store.step_up(db, digest(token), digest(new), amr=amr, acr=acr, auth_time=utcnow())
    return StartedSession(new, stored) if stored else None
