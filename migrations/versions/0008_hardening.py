"""Hardening: client secret rotation, re-authentication, pending-interaction caps, Message-IDs,
and refresh families bound to a session ending with it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from server.storage.base import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_secret_digest", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("previous_secret_expires_at", UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("browser_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reauthenticated_at", UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin_digest", sa.LargeBinary(length=32), nullable=True))
        batch_op.create_index("ix_interactions_origin_expires", ["origin_digest", "expires_at"], unique=False)
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.String(length=200), nullable=True))
    _end_session_bound_families()


def _end_session_bound_families() -> None:
    """Families issued without ``offline_access`` (``session_sid`` set) end with their
    session from now on: a new one is inserted ending when its session does, and ending a
    session revokes its families. Bring the existing ones to the same state: those whose
    session has ended, expired or gone are revoked; the others end when their session does.
    """
    grants = sa.table(
        "grants",
        sa.column("session_sid", sa.String),
        sa.column("expires_at", UTCDateTime(timezone=True)),
        sa.column("revoked_at", UTCDateTime(timezone=True)),
        sa.column("revoked_reason", sa.String),
    )
    sessions = sa.table(
        "browser_sessions",
        sa.column("sid", sa.String),
        sa.column("expires_at", UTCDateTime(timezone=True)),
        sa.column("ended_at", UTCDateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    bound = (grants.c.session_sid.is_not(None), grants.c.revoked_at.is_(None))
    live_session = sa.exists().where(
        sessions.c.sid == grants.c.session_sid, sessions.c.ended_at.is_(None), sessions.c.expires_at > now
    )
    op.execute(grants.update().where(*bound, ~live_session).values(revoked_at=now, revoked_reason="session_ended"))
    session_end = sa.select(sessions.c.expires_at).where(sessions.c.sid == grants.c.session_sid).scalar_subquery()
    op.execute(
        grants.update()
        .where(*bound, sa.or_(grants.c.expires_at.is_(None), grants.c.expires_at > session_end))
        .values(expires_at=session_end)
    )


def downgrade() -> None:
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_column("message_id")
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_index("ix_interactions_origin_expires")
        batch_op.drop_column("origin_digest")
    with op.batch_alter_table("browser_sessions", schema=None) as batch_op:
        batch_op.drop_column("reauthenticated_at")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("previous_secret_expires_at")
        batch_op.drop_column("previous_secret_digest")
