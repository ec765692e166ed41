"""Audit events: append-only, never a secret in them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from .base import utcnow
from .models import AuditEvent


def record(
    session: Session,
    kind: str,
    *,
    actor: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.execute(
        insert(AuditEvent).values(occurred_at=utcnow(), kind=kind, actor=actor, subject=subject, details=details or {})
    )
