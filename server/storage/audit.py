"""Audit events: append-only, never a secret in them; read by user, client, kind and time,
newest first (the cleanup deletes them after ``OSTIARY_AUDIT_RETENTION_DAYS``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from .base import utcnow
from .models import AuditEvent


def record(
    session: Session,
    kind: str,
    *,
    actor: str | None = None,
    user: str | None = None,
    client: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """``actor`` did ``kind``; ``user`` (a ``sub``) and ``client`` (a client id) name whom
    it concerns, ``subject`` anything else (a key id, a grant id)."""
    session.execute(
        insert(AuditEvent).values(
            occurred_at=utcnow(),
            kind=kind,
            actor=actor,
            user_sub=user,
            client_id=client,
            subject=subject,
            details=details or {},
        )
    )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    occurred_at: datetime
    kind: str
    actor: str | None
    user_sub: str | None
    client_id: str | None
    subject: str | None
    details: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "occurred_at": self.occurred_at.isoformat(),
            "kind": self.kind,
            "actor": self.actor,
            "user_sub": self.user_sub,
            "client_id": self.client_id,
            "subject": self.subject,
            "details": self.details,
        }


@dataclass(frozen=True)
class EventFilter:
    """Which events to read: each field set narrows them. ``kind`` matches itself and the
    kinds under it (``login`` matches ``login.failed``); ``since`` and ``until`` bound the
    time (inclusive, exclusive); ``before_id`` is the cursor of the next page: the ``id`` of
    the last event of the previous one (ids grow in the order written, so a page never
    repeats or skips an event, however many are written meanwhile)."""

    user_sub: str | None = None
    client_id: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None


_COLUMNS = (
    AuditEvent.id,
    AuditEvent.occurred_at,
    AuditEvent.kind,
    AuditEvent.actor,
    AuditEvent.user_sub,
    AuditEvent.client_id,
    AuditEvent.subject,
    AuditEvent.details,
)


def events(session: Session, where: EventFilter, *, limit: int) -> list[StoredEvent]:
    """At most ``limit`` events matching ``where``, newest first (by id, the order written)."""
    query = select(*_COLUMNS).order_by(AuditEvent.id.desc()).limit(limit)
    if where.user_sub is not None:
        query = query.where(AuditEvent.user_sub == where.user_sub)
    if where.client_id is not None:
        query = query.where(AuditEvent.client_id == where.client_id)
    if where.kind is not None:
        query = query.where(
            or_(AuditEvent.kind == where.kind, AuditEvent.kind.startswith(where.kind + ".", autoescape=True))
        )
    if where.since is not None:
        query = query.where(AuditEvent.occurred_at >= where.since)
    if where.until is not None:
        query = query.where(AuditEvent.occurred_at < where.until)
    if where.before_id is not None:
        query = query.where(AuditEvent.id < where.before_id)
    return [StoredEvent(**row._mapping) for row in session.execute(query)]


def moment(raw: str) -> datetime:
    """A point in time for :class:`EventFilter`, from ISO 8601 / RFC 3339 text (UTC when it
    names no offset); ValueError for text that is not one, or one out of range in UTC."""
    parsed = datetime.fromisoformat(raw)
    try:
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{raw!r} is out of range") from None
