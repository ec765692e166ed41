"""The mail outbox: messages are queued in the transaction that causes them.

A background sender (the mail transport) delivers them with retries; until then they wait
here, so a slow or absent mail server never slows or fails a request, and nothing is lost.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from . import Session
from .base import utcnow
from .models import MailOutbox


def enqueue(session: Session, recipient: str, template: str, context: dict[str, Any]) -> None:
    now = utcnow()
    session.execute(
        insert(MailOutbox).values(
            recipient=recipient, template=template, context=context, created_at=now, next_attempt_at=now
        )
    )
