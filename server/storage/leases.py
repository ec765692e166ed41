"""Outbox tables (``mail_outbox``, ``logout_notices``) are worked through by a sender in
every server process. A sender *claims* due rows by moving their next attempt a lease into
the future, in one statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two processes
never work on the same row at once, and one that dies leaves its rows to be retried when
the lease ends. A failed attempt is retried after :func:`backoff`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, select, update

from . import Session
from .base import utcnow

FIRST_RETRY = 30
LAST_RETRY = 3600


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, 1 min, 2 min ... at most an hour."""
    return timedelta(seconds=min(LAST_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1)))


def claim_due(
    session: Session,
    table: Any,
    *,
    pending: Sequence[ColumnElement[bool]] = (),
    returning: Sequence[Any],
    limit: int,
    lease: timedelta,
) -> list[Row[Any]]:
    """Claim up to ``limit`` rows of ``table`` (a model with ``id``, ``next_attempt_at`` and
    ``attempts``) that are due now and ``pending``, oldest first, for ``lease``; returns
    ``returning`` of each, in no particular order."""
    now = utcnow()
    due = select(table.id).where(*pending, table.next_attempt_at <= now).order_by(table.next_attempt_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = session.execute(
        update(table)
        .where(table.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=now + lease, attempts=table.attempts + 1)
        .returning(*returning)
    )
    return list(rows)


def release(session: Session, table: Any, ids: Sequence[int], *, pending: Sequence[ColumnElement[bool]] = ()) -> None:
    """Hand claims back unused: due now, the claim's attempt not counted."""
    if ids:
        session.execute(
            update(table)
            .where(table.id.in_(ids), *pending)
            .values(next_attempt_at=utcnow(), attempts=table.attempts - 1)
        )
