"""Deleting what has expired, in bounded batches.

Each batch is ``DELETE ... WHERE pk IN (SELECT pk ... LIMIT n)`` in its own transaction,
on indexed columns: a backlog of millions never locks a table for long, never loads rows
into memory, and the hot paths keep running beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, text

from . import AsyncEngine, Session, async_sessionmaker
from .base import utcnow
from .models import (
    AuditEvent,
    AuthFailure,
    AuthorizationCode,
    BrowserSession,
    DeviceAuthorization,
    EmailVerification,
    Grant,
    Interaction,
    Invitation,
    MailOutbox,
    PasswordReset,
    PushedAuthorizationRequest,
    RateLimit,
    RefreshToken,
    RevokedAccessToken,
    UsedJti,
    WebAuthnChallenge,
)

BATCH = 1000
_LOCK_ID = 0x05_71A8
#: how long a used or expired code is kept, so a late replay still revokes its grant
CODE_RETENTION = timedelta(hours=1)
#: how long a revoked grant is kept (its tokens already fail: this is for the audit trail)
REVOKED_GRANT_RETENTION = timedelta(days=1)
SENT_MAIL_RETENTION = timedelta(days=7)
#: how long an invitation is listed (``ostiary invitations list --all``) past its expiry
INVITATION_RETENTION = timedelta(days=30)
#: the longest lockout window the settings allow
FAILURE_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class Target:
    name: str
    table: Any
    key: Any
    condition: Callable[[datetime], ColumnElement[bool]]


TARGETS = (
    Target(
        "authorization_codes",
        AuthorizationCode,
        AuthorizationCode.code_digest,
        lambda now: AuthorizationCode.expires_at < now - CODE_RETENTION,
    ),
    # as codes: kept a while past expiry, so a late poll hears expired_token and a replay is known
    Target(
        "device_authorizations",
        DeviceAuthorization,
        DeviceAuthorization.device_code_digest,
        lambda now: DeviceAuthorization.expires_at < now - CODE_RETENTION,
    ),
    Target("refresh_tokens", RefreshToken, RefreshToken.token_digest, lambda now: RefreshToken.expires_at < now),
    Target(
        "grants",
        Grant,
        Grant.id,
        lambda now: or_(Grant.expires_at < now, Grant.revoked_at < now - REVOKED_GRANT_RETENTION),
    ),
    Target("interactions", Interaction, Interaction.id_digest, lambda now: Interaction.expires_at < now),
    Target(
        "browser_sessions", BrowserSession, BrowserSession.token_digest, lambda now: BrowserSession.expires_at < now
    ),
    Target(
        "revoked_access_tokens",
        RevokedAccessToken,
        RevokedAccessToken.jti,
        lambda now: RevokedAccessToken.expires_at < now,
    ),
    # The lockout window is at most a day (settings): older failures count for nothing.
    Target("auth_failures", AuthFailure, AuthFailure.id, lambda now: AuthFailure.occurred_at < now - FAILURE_RETENTION),
    Target(
        "rate_limits",
        RateLimit,
        RateLimit.bucket,
        lambda now: RateLimit.window_start < int(now.timestamp() // 60) - FAILURE_RETENTION.total_seconds() // 60,
    ),
    Target(
        "password_resets",
        PasswordReset,
        PasswordReset.token_digest,
        lambda now: PasswordReset.expires_at < now - FAILURE_RETENTION,
    ),
    Target(
        "email_verifications",
        EmailVerification,
        EmailVerification.token_digest,
        lambda now: EmailVerification.expires_at < now,
    ),
    Target(
        "webauthn_challenges",
        WebAuthnChallenge,
        WebAuthnChallenge.digest,
        lambda now: WebAuthnChallenge.expires_at < now,
    ),
    Target("invitations", Invitation, Invitation.id, lambda now: Invitation.expires_at < now - INVITATION_RETENTION),
    # an id past its token's expiry cannot be replayed: the token is refused as expired
    Target("used_jtis", UsedJti, UsedJti.digest, lambda now: UsedJti.expires_at < now),
    Target(
        "pushed_authorization_requests",
        PushedAuthorizationRequest,
        PushedAuthorizationRequest.digest,
        lambda now: PushedAuthorizationRequest.expires_at < now,
    ),
    Target("mail_outbox", MailOutbox, MailOutbox.id, lambda now: MailOutbox.sent_at < now - SENT_MAIL_RETENTION),
)


def delete_batch(session: Session, target: Target, now: datetime, batch: int = BATCH) -> int:
    chosen = select(target.key).where(target.condition(now)).limit(batch).scalar_subquery()
    result = session.execute(delete(target.table).where(target.key.in_(chosen)))
    return int(result.rowcount)  # type: ignore[attr-defined]


def audit_target(retention_days: int) -> Target:
    """Audit events older than ``retention_days`` (``OSTIARY_AUDIT_RETENTION_DAYS``)."""
    kept = timedelta(days=retention_days)
    return Target("audit_events", AuditEvent, AuditEvent.id, lambda now: AuditEvent.occurred_at < now - kept)


async def sweep(
    sessionmaker: async_sessionmaker[Any], batch: int = BATCH, *, audit_retention_days: int = 0
) -> dict[str, int]:
    """Delete every expired row, and audit events past their retention (0: kept for ever);
    returns how many per table."""
    now = utcnow()
    counts: dict[str, int] = {}
    targets = (*TARGETS, audit_target(audit_retention_days)) if audit_retention_days > 0 else TARGETS
    for target in targets:
        total = 0
        while True:
            async with sessionmaker() as session, session.begin():
                deleted = await session.run_sync(delete_batch, target, now, batch)
            total += deleted
            if deleted < batch:
                break
        counts[target.name] = total
    return counts


async def sweep_if_alone(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[Any], *, audit_retention_days: int = 0
) -> dict[str, int] | None:
    """:func:`sweep`, unless another process is sweeping the same PostgreSQL right now."""
    if engine.dialect.name != "postgresql":
        return await sweep(sessionmaker, audit_retention_days=audit_retention_days)
    async with engine.connect() as connection:
        locked = (await connection.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": _LOCK_ID})).scalar()
        await connection.commit()
        if not locked:
            return None
        try:
            return await sweep(sessionmaker, audit_retention_days=audit_retention_days)
        finally:
            await connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
            await connection.commit()
