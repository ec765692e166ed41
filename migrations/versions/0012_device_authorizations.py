"""RFC 8628 device authorizations.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.base import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_authorizations",
        sa.Column("device_code_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("user_code_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_polled_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.Column("session_sid", sa.String(length=64), nullable=True),
        sa.Column("auth_time", UTCDateTime(timezone=True), nullable=True),
        sa.Column("acr", sa.String(length=64), nullable=True),
        sa.Column("amr", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("decided_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("consumed_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_code_digest"),
        sa.UniqueConstraint("user_code_digest"),
    )
    op.create_index("ix_device_authorizations_expires_at", "device_authorizations", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_device_authorizations_expires_at", table_name="device_authorizations")
    op.drop_table("device_authorizations")
