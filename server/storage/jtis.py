"""JWT ids that may be accepted only once, across every process (``used_jtis``).

A client assertion (RFC 7523 §3, point 7) or a DPoP proof (RFC 9449 §11.1) carries a
``jti``; the first request to present it records it here, and the primary key refuses a
second one in whichever process it arrives. A row is kept until the token it came from
expires: after that the token itself is refused, so the row can go (the cleanup sweeps it).
"""

from __future__ import annotations

from datetime import datetime

from . import Session
from .base import sha256
from .dialect import upsert_insert
from .models import UsedJti

#: what a jti was used for; each is a namespace of its own
CLIENT_ASSERTION = "client_assertion"
DPOP = "dpop"
#: the longest ``jti`` accepted
MAX_JTI = 256


def remember(session: Session, purpose: str, issuer: str, jti: str, expires_at: datetime, now: datetime) -> bool:
    """Record ``jti`` of ``issuer`` (a client id, a key's thumbprint) as used until
    ``expires_at``; True the first time, False when it was used before.

    An id whose earlier token has expired but whose row the cleanup has not reached yet is
    accepted again (the row takes the new expiry): only a live token's id counts as used.
    """
    digest = sha256(f"{issuer}\x00{jti}")
    statement = upsert_insert(session, UsedJti).values(purpose=purpose, digest=digest, expires_at=expires_at)
    statement = statement.on_conflict_do_update(
        index_elements=[UsedJti.purpose, UsedJti.digest],
        set_={"expires_at": statement.excluded.expires_at},
        where=UsedJti.expires_at < now,
    ).returning(UsedJti.digest)
    return session.execute(statement).first() is not None
