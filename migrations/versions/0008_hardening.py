"""Hardening: client secret rotation, re-authentication, pending-interaction caps, Message-IDs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

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
