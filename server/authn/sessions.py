"""Browser sessions: started at each login (a new id every time: no fixation), shared by
every client (single sign-on), recording when and how the user authenticated.

Ending a session ends the refresh-token families bound to it (those without
``offline_access``, OIDC Core §11): the storage layer does both at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..storage import Session, audit, sessions as session_store, users as user_store
from ..storage.base import sha256 as digest, utcnow
from ..storage.sessions import SeenFrom as SeenFrom, StoredSession
from .secrets import new_sid, new_token

#: why families bound to a session ended, by how the session ended
LOGOUT = "logout"
REPLACED = "signed_in_again"
#: the user ended this session from the account page (its own browser's or another's)
ENDED_BY_USER = "ended_by_user"
#: ``last_seen_at`` is written at most this often per session. Every page view and
#: authorization uses the session; writing the row each time would put a write (and on
#: PostgreSQL a row lock and a dead tuple) on requests that otherwise only read it, for a
#: time the account page shows to the minute at best.
LAST_SEEN_EVERY = timedelta(minutes=5)


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
    seen_from: SeenFrom | None = None,
) -> StartedSession:
    """A new session for ``user_id`` under a new token (no fixation). The browser's previous
    session (``replaces``) ends when it was another user's, with its families and a logout
    notice to its clients; when it is the same user's, it goes on, signed in anew: its sid,
    its families and the clients told of its end stay (the ID tokens they hold name it).
    ``seen_from``: the browser and address the sign-in came from, shown on the account page."""
    token = new_token()
    now = utcnow()
    expires_at = now + timedelta(seconds=ttl)
    if replaces and len(replaces) <= 128:
        current = session_store.get_live_session(db, digest(replaces))
        if current is not None and current.user_id == user_id:
            again = session_store.step_up(
                db,
                digest(replaces),
                digest(token),
                amr=amr,
                acr=acr,
                auth_time=auth_time or now,
                expires_at=expires_at,
                seen_from=seen_from,
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
        seen_from=seen_from,
    )
    return StartedSession(token, stored)


def load(db: Session, token: str | None) -> StoredSession | None:
    if not token or len(token) > 128:
        return None
    return session_store.get_live_session(db, digest(token))


def seen(db: Session, session: StoredSession) -> None:
    """``session`` is being used: its ``last_seen_at`` moves to now, at most once per
    :data:`LAST_SEEN_EVERY` (no write at all while the stored time is recent enough)."""
    if session.last_seen_at is not None and utcnow() - session.last_seen_at < LAST_SEEN_EVERY:
        return
    session_store.mark_seen(db, session.sid, unless_since=LAST_SEEN_EVERY)


def end_own(db: Session, user_id: int, sid: str, *, actor: str) -> bool:
    """End the live session ``sid`` if it is ``user_id``'s, the way a sign-out ends it (its
    bound families revoked, its clients' back-channel logout notices queued); audited.
    False when the user has no such live session: nothing is ended."""
    if len(sid) > 64 or not session_store.end_session_by_sid(db, sid, ENDED_BY_USER, user_id=user_id):
        return False
    audit.record(db, "session.ended", actor=actor, user=actor, details={"sid": sid, "reason": ENDED_BY_USER})
    return True


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
