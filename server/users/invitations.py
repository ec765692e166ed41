"""Sign-up invitations as every edge shows them (the admin API, the console): their state,
their representation, and the lifetimes an administrator may give one.

An invitation's link is never part of its representation: only a creation hands it over,
once, and only its digest is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..storage.base import utcnow
from ..storage.signups import StoredInvitation

LIVE = "live"
USED = "used"
REVOKED = "revoked"
EXPIRED = "expired"
#: the shortest and longest lifetime of a new invitation, in seconds (those of ``OSTIARY_INVITATION_TTL``)
MIN_LIFETIME = 3600
MAX_LIFETIME = 90 * 86400


def state(invitation: StoredInvitation, now: datetime | None = None) -> str:
    """``live`` until it is used, revoked or expired; a used one stays ``used`` after expiry."""
    if invitation.used_at is not None:
        return USED
    if invitation.revoked_at is not None:
        return REVOKED
    return LIVE if invitation.live(now or utcnow()) else EXPIRED


def describe(invitation: StoredInvitation, now: datetime | None = None) -> dict[str, Any]:
    """The representation ``ostiary invitations list --json`` prints, without the link."""
    return {
        "id": invitation.id,
        "state": state(invitation, now),
        "email": invitation.email,
        "created_by": invitation.created_by,
        "created_at": invitation.created_at.isoformat(),
        "expires_at": invitation.expires_at.isoformat(),
    }
