"""What happens when a consumed refresh token comes back (RFC 9700 §4.14.2).

Either the legitimate client or an attacker holds a copy; the server cannot tell which,
so the whole family is revoked: every refresh token in it, and (through the ``gid``
claim) every access token it issued. The revocation is committed on its own, after the
failed request rolls back. It is recorded once per family as an audit event, and the
user is alerted through the mail outbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import Session, audit, grants as grant_store, outbox, users as user_store
from ..storage.refresh import Diagnosis


@dataclass(frozen=True)
class ReuseReport:
    diagnosis: Diagnosis
    client_ip: str | None
    user_agent: str | None


def revoke_for_reuse(db: Session, report: ReuseReport) -> None:
    diagnosis = report.diagnosis
    assert diagnosis.grant_id is not None and diagnosis.user_id is not None
    if not grant_store.revoke(db, diagnosis.grant_id, "refresh_token_reuse"):
        return  # already revoked: one alert per family, however many replays
    user = user_store.get_user(db, diagnosis.user_id)
    details = {
        "grant_id": diagnosis.grant_id,
        "client_id": diagnosis.client_id,
        "user_id": diagnosis.user_id,
        "ip": report.client_ip,
        "user_agent": (report.user_agent or "")[:300],
    }
    audit.record(
        db, "refresh_token.reuse", actor=diagnosis.client_id, subject=user.sub if user else None, details=details
    )
    if user is not None and user.email:
        outbox.enqueue(
            db,
            user.email,
            "refresh_token_reuse",
            {"username": user.username, "client_id": diagnosis.client_id, "ip": report.client_ip},
        )
