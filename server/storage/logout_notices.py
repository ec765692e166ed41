"""OpenID Connect Back-Channel Logout 1.0: which clients a browser session signed in to,
and the notices still to be delivered to them when it ends (an outbox, as
:mod:`.outbox` is for mail).

A client is remembered for a session when it is given an authorization code in it
(:func:`remember_client`). Ending a session (:mod:`.sessions`) queues, in the same
transaction, one notice per remembered client that registered a
``backchannel_logout_uri`` (:func:`queue`); a background sender in every server process
claims due notices with a lease (:mod:`.leases`), posts them,
and deletes each once the client has taken it or it has been given up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import uuid4

from sqlalchemy import delete, func, insert, literal, select, update

from . import Session, leases
from .base import UTCDateTime, utcnow
from .dialect import upsert_insert
from .models import BrowserSession, Client, LogoutNotice, SessionClient, User


@dataclass(frozen=True, slots=True)
class SignedInClient:
    """A client a session signed in to, for the logout page: told (it registered a
    back-channel logout URI) or not."""

    client_id: str
    name: str
    notified: bool


@dataclass(frozen=True, slots=True)
class DueNotice:
    """A claimed notice with what its delivery needs; ``uri`` is None when the client is
    gone, disabled, or no longer asks for notices (the notice is then dropped)."""

    id: int
    client_id: str
    sub: str
    sid: str | None
    jti: str
    attempts: int
    created_at: datetime
    uri: str | None
    id_token_alg: str | None


def remember_client(session: Session, sid: str, client_id: str) -> None:
    """``client_id`` signed in through session ``sid`` (idempotent), if it is still live.

    On PostgreSQL the session's row is locked (``FOR SHARE``) until this transaction ends:
    a sign-out ending the session meanwhile waits for it, and then finds the client to tell."""
    live = select(BrowserSession.sid, literal(client_id), literal(utcnow(), UTCDateTime())).where(
        BrowserSession.sid == sid, BrowserSession.ended_at.is_(None)
    )
    if session.get_bind().dialect.name == "postgresql":
        live = live.with_for_update(read=True)
    statement = upsert_insert(session, SessionClient).from_select(["sid", "client_id", "created_at"], live)
    session.execute(statement.on_conflict_do_nothing(index_elements=["sid", "client_id"]))


def signed_in_clients(session: Session, sid: str) -> list[SignedInClient]:
    """The clients session ``sid`` signed in to, by name."""
    rows = session.execute(
        select(Client.client_id, Client.name, Client.backchannel_logout_uri)
        .join(SessionClient, SessionClient.client_id == Client.client_id)
        .where(SessionClient.sid == sid, Client.disabled_at.is_(None))
        .order_by(Client.name, Client.client_id)
    )
    return [SignedInClient(row.client_id, row.name, row.backchannel_logout_uri is not None) for row in rows]


def queue(session: Session, sids: list[str]) -> int:
    """Queue a notice to every client of the sessions ``sids`` (just ended) that asks for
    one; returns how many."""
    if not sids:
        return 0
    rows = session.execute(
        select(SessionClient.client_id, SessionClient.sid, User.sub)
        .join(Client, Client.client_id == SessionClient.client_id)
        .join(BrowserSession, BrowserSession.sid == SessionClient.sid)
        .join(User, User.id == BrowserSession.user_id)
        .where(
            SessionClient.sid.in_(sids),
            Client.backchannel_logout_uri.is_not(None),
            Client.disabled_at.is_(None),
        )
    ).all()
    if not rows:
        return 0
    now = utcnow()
    session.execute(
        insert(LogoutNotice),
        [
            {
                "client_id": row.client_id,
                "sub": row.sub,
                "sid": row.sid,
                "jti": uuid4().hex,
                "created_at": now,
                "next_attempt_at": now,
            }
            for row in rows
        ],
    )
    return len(rows)


def claim_due(session: Session, *, limit: int, lease: timedelta) -> list[DueNotice]:
    """Take up to ``limit`` notices due now, oldest first, for ``lease``."""
    claimed = leases.claim_due(session, LogoutNotice, returning=(LogoutNotice.id,), limit=limit, lease=lease)
    return _with_clients(session, [row.id for row in claimed])


def release(session: Session, notice_ids: list[int]) -> None:
    """Hand claims back unused (the sender stopping)."""
    leases.release(session, LogoutNotice, notice_ids)


def _with_clients(session: Session, ids: list[int]) -> list[DueNotice]:
    if not ids:
        return []
    rows = session.execute(
        select(
            LogoutNotice.id,
            LogoutNotice.client_id,
            LogoutNotice.sub,
            LogoutNotice.sid,
            LogoutNotice.jti,
            LogoutNotice.attempts,
            LogoutNotice.created_at,
            Client.backchannel_logout_uri,
            Client.id_token_alg,
            Client.disabled_at,
        )
        .outerjoin(Client, Client.client_id == LogoutNotice.client_id)
        .where(LogoutNotice.id.in_(ids))
        .order_by(LogoutNotice.id)
    )
    return [
        DueNotice(
            id=row.id,
            client_id=row.client_id,
            sub=row.sub,
            sid=row.sid,
            jti=row.jti,
            attempts=row.attempts,
            created_at=row.created_at,
            uri=row.backchannel_logout_uri if row.disabled_at is None else None,
            id_token_alg=row.id_token_alg,
        )
        for row in rows
    ]


def done(session: Session, notice_id: int) -> None:
    """Delivered, or given up: the notice is gone."""
    session.execute(delete(LogoutNotice).where(LogoutNotice.id == notice_id))


def retry_later(session: Session, notice_id: int, at: datetime, error: str) -> None:
    session.execute(
        update(LogoutNotice).where(LogoutNotice.id == notice_id).values(next_attempt_at=at, last_error=error[:500])
    )


def backlog(session: Session) -> tuple[int, datetime | None]:
    """How many notices are pending, and when the oldest was queued (for metrics)."""
    row = session.execute(select(func.count(), func.min(LogoutNotice.created_at))).one()
    return int(row[0]), row[1]
