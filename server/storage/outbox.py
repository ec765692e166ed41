"""The mail outbox: messages are queued in the transaction that causes them, and a
background sender in every server process delivers them (``server.mail.sender``).

A message is *claimed* for a lease (:mod:`.leases`), so two processes never send the same
message at once; a sender that dies mid-send leaves it to be retried after the lease.

Each row carries the unique left part of its ``Message-ID`` (RFC 5322 3.6.4), chosen when
it is queued; the sender adds our issuer's host and sends the same header on every
attempt: delivery is at least once (a reply lost after DATA means a second attempt), and a
mail client recognises the second copy by that header.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import func, insert, select, update

from .. import i18n
from . import Session, leases
from .base import utcnow
from .models import MailOutbox


@dataclass(frozen=True, slots=True)
class QueuedMail:
    id: int
    recipient: str
    template: str
    context: dict[str, Any]
    attempts: int
    secret_enc: bytes | None
    wrapping_key_id: str | None
    #: the Message-ID's left part; None on rows queued before the column existed (the sender
    #: derives one from the id)
    message_id: str | None
    created_at: datetime


_COLUMNS = (
    MailOutbox.id,
    MailOutbox.recipient,
    MailOutbox.template,
    MailOutbox.context,
    MailOutbox.attempts,
    MailOutbox.secret_enc,
    MailOutbox.wrapping_key_id,
    MailOutbox.message_id,
    MailOutbox.created_at,
)


def enqueue(
    session: Session,
    recipient: str,
    template: str,
    context: dict[str, Any],
    *,
    secret_enc: bytes | None = None,
    wrapping_key_id: str | None = None,
) -> int:
    """Queue a message; a secret it must carry (a link with a token) goes in encrypted."""
    return _insert(session, recipient, template, context, secret_enc, wrapping_key_id, None)


def enqueue_claimed(
    session: Session,
    recipient: str,
    template: str,
    context: dict[str, Any],
    *,
    lease: timedelta,
    secret_enc: bytes | None = None,
    wrapping_key_id: str | None = None,
) -> QueuedMail:
    """Queue a message already claimed for ``lease`` by the caller (a sender that sends it
    next): no other sender takes it meanwhile, and it is retried as any other if not sent."""
    mail_id = _insert(session, recipient, template, context, secret_enc, wrapping_key_id, lease)
    row = session.execute(select(*_COLUMNS).where(MailOutbox.id == mail_id)).one()
    return QueuedMail(**row._mapping)


def _insert(
    session: Session,
    recipient: str,
    template: str,
    context: dict[str, Any],
    secret_enc: bytes | None,
    wrapping_key_id: str | None,
    lease: timedelta | None,
) -> int:
    now = utcnow()
    locale = i18n.chosen()  # the language of the page's request that queues it, if any
    if locale is not None and "locale" not in context:
        context = {**context, "locale": locale}
    result = session.execute(
        insert(MailOutbox)
        .values(
            recipient=recipient,
            template=template,
            message_id=uuid4().hex,
            context=context,
            created_at=now,
            next_attempt_at=now if lease is None else now + lease,
            attempts=0 if lease is None else 1,
            secret_enc=secret_enc,
            wrapping_key_id=wrapping_key_id,
        )
        .returning(MailOutbox.id)
    )
    return int(result.scalar_one())


def claim_due(session: Session, *, limit: int, lease: timedelta) -> list[QueuedMail]:
    """Take up to ``limit`` messages due now, oldest first, for ``lease``."""
    rows = leases.claim_due(
        session, MailOutbox, pending=(MailOutbox.sent_at.is_(None),), returning=_COLUMNS, limit=limit, lease=lease
    )
    return sorted((QueuedMail(**row._mapping) for row in rows), key=lambda mail: mail.id)


def backlog(session: Session) -> tuple[int, datetime | None]:
    """How many messages are unsent, and when the oldest of them was queued (for metrics)."""
    row = session.execute(
        select(func.count(), func.min(MailOutbox.created_at)).where(MailOutbox.sent_at.is_(None))
    ).one()
    return int(row[0]), row[1]


def release(session: Session, mail_ids: list[int]) -> None:
    """Hand claims back unused: due now, the claim's attempt not counted."""
    leases.release(session, MailOutbox, mail_ids, pending=(MailOutbox.sent_at.is_(None),))


def mark_sent(session: Session, mail_id: int) -> None:
    """Delivered (or, for a row that asked for work, done): the secret it carried is erased."""
    session.execute(
        update(MailOutbox).where(MailOutbox.id == mail_id).values(sent_at=utcnow(), secret_enc=None, last_error=None)
    )


def retry_later(session: Session, mail_id: int, at: datetime, error: str) -> None:
    session.execute(
        update(MailOutbox).where(MailOutbox.id == mail_id).values(next_attempt_at=at, last_error=error[:500])
    )
