"""The mail outbox: messages are queued in the transaction that causes them.

Delivery is not built yet: messages wait here (nothing is lost) until a background sender
with retries is added, so that a slow or absent mail server will never slow or fail a request.
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
