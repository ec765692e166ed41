"""Row locks for read-check-write changes: an admin update that checks ``If-Match`` against
the row it is about to change must not let a concurrent change slip in between.

On PostgreSQL ``SELECT ... FOR UPDATE`` holds the row until the transaction ends; SQLite
has no row locks (SQLAlchemy leaves the clause out) and runs one writer at a time anyway.
"""

from __future__ import annotations

from sqlalchemy import select

from . import Session
from .models import Client, User


def lock_client(session: Session, client_id: str) -> None:
    session.execute(select(Client.client_id).where(Client.client_id == client_id).with_for_update())


def lock_user(session: Session, sub: str) -> None:
    session.execute(select(User.id).where(User.sub == sub).with_for_update())
