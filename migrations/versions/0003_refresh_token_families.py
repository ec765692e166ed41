"""Refresh-token families, the access-token deny list, the mail outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 14:03:36.090297
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.storage.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("created_at", server.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", server.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sent_at", server.storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_outbox_next_attempt_at"), ["next_attempt_at"], unique=False)

    op.create_table(
        "revoked_access_tokens",
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("expires_at", server.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_access_tokens")),
    )
    with op.batch_alter_table("revoked_access_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revoked_access_tokens_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "refresh_tokens",
        sa.Column("token_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", server.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", server.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", server.storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("grace_uses", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_refresh_tokens_grant_id_grants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_digest", name=op.f("pk_refresh_tokens")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refresh_tokens_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_refresh_tokens_grant_id"), ["grant_id"], unique=False)

    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("introspection", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", server.storage.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("auth_time", server.storage.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("acr", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("amr", sa.JSON(), server_default=sa.text("'[]'"), nullable=False))
        batch_op.add_column(sa.Column("head_generation", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch_op.create_index(batch_op.f("ix_grants_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_expires_at"))
        batch_op.drop_column("head_generation")
        batch_op.drop_column("amr")
        batch_op.drop_column("acr")
        batch_op.drop_column("auth_time")
        batch_op.drop_column("expires_at")

    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("introspection")

    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_grant_id"))
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_expires_at"))

    op.drop_table("refresh_tokens")
    with op.batch_alter_table("revoked_access_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revoked_access_tokens_expires_at"))

    op.drop_table("revoked_access_tokens")
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_outbox_next_attempt_at"))

    op.drop_table("mail_outbox")
