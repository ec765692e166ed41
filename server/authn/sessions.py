"""Browser sessions: started at each login (a new id every time: no fixation), shared by
every client (single sign-on), recording when and how the user authenticated.

Ending a session ends the refresh-token families bound to it (those without
``offline_access``, OIDC Core §11): the storage layer does both at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..storage import Session, audit, sessions as session_store, users as user_store
from ..storage.base import sha256 as digest, utcnow
from ..storage.sessions import StoredSession
from .secrets import new_sid, new_token

#: why families bound to a session ended, by how the session ended
LOGOUT = "logout"
REPLACED = "signed_in_again"


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
    """A new session for ``user_id`` under a new token (no fixation). The browser's previous
    session (``replaces``) ends when it was another user's, with its families and a logout
    notice to its clients; when it is the same user's, it goes on, signed in anew: its sid,
    its families and the clients told of its end stay (the ID tokens they hold name it)."""
    token = new_token()
    now = utcnow()
    expires_at = now + timedelta(seconds=ttl)
    if replaces and len(replaces) <= 128:
        current = session_store.get_live_session(db, digest(replaces))
        if current is not None and current.user_id == user_id:
            again = session_store.step_up(
                db, digest(replaces), digest(token), amr=amr, acr=acr, auth_time=auth_time or now, expires_at=expires_at
            )
            if again is not None:
                return StartedSession(token, again)
        session_store.end_session(db, digest(replaces), REPLACED)
    stored = session_store.insert_session(
        db,
        token_digest=digest(token),
        sid=new_sid(),
        user_id=user_id,
        auth_time=auth_time or now,
        amr=amr,
        acr=acr,
        expires_at=expires_at,
    )
    return StartedSession(token, stored)


def load(db: Session, token: str | None) -> StoredSession | None:
    if not token or len(token) > 128:
        return None
    return session_store.get_live_session(db, digest(token))


def end(db: Session, token: str | None) -> str | None:
    """Sign the browser out: its session ends, and the families bound to it; returns its sid."""
    current = load(db, token)
    if current is None:
        return None
    sid = session_store.end_session(db, digest(token or ""), LOGOUT)
    if sid is not None:
        user = user_store.get_user(db, current.user_id)
        sub = user.sub if user else None
        audit.record(db, "session.ended", actor=sub, user=sub, details={"sid": sid, "reason": LOGOUT})
    return sid


def renew(db: Session, token: str | None) -> StartedSession | None:
    """The same session (sid, level, authentication time, end) under a new token: after a
    change of credentials, the old cookie value stops working. None if it is not live."""
    current = load(db, token)
    if current is None or token is None:
        return None
    new = new_token()
    stored = session_store.step_up(
        db, digest(token), digest(new), amr=list(current.amr), acr=current.acr, auth_time=current.auth_time
    )
    return StartedSession(new, stored) if stored else None


def step_up(db: Session, token: str | None, *, amr: list[str], acr: str) -> StartedSession | None:
    """Raise the browser's session to ``acr``/``amr`` now, under a new token (same sid)."""
    if not token or len(token) > 128:
        return None
    new = new_token()
    stored = session_store.step_up(db, digest(token), digest(new), amr=amr, acr=acr, auth_time=utcnow())
    return StartedSession(new, stored) if stored else None
