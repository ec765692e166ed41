"""Invitations one page at a time, newest first, for the admin API and the console: the
listing of :func:`server.storage.signups.list_invitations`, keyed on the id so that a page
stays put while new invitations are made."""

from __future__ import annotations

from sqlalchemy import select

from . import Session
from .models import Invitation
from .signups import _INVITATION, StoredInvitation, _live_invitation

#: the largest id an invitation can have (a 32-bit column: PostgreSQL refuses a larger number outright)
MAX_ID = 2**31 - 1


def invitations_page(
    session: Session, *, include_dead: bool, before_id: int | None, limit: int
) -> list[StoredInvitation]:
    """At most ``limit`` invitations with an id below ``before_id`` (all, without it), newest
    first; only the live ones unless ``include_dead``."""
    query = select(*_INVITATION).order_by(Invitation.id.desc()).limit(limit)
    if before_id is not None and before_id <= MAX_ID:
        query = query.where(Invitation.id < before_id)
    if not include_dead:
        query = query.where(*_live_invitation())
    return [StoredInvitation(**row._mapping) for row in session.execute(query)]
