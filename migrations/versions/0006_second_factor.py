"""TOTP second factor: credentials, backup codes, failure counters; clients may require MFA;
an interaction may hold a password-checked user waiting for the second factor.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.base import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("require_mfa", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.alter_column("client_id", existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column("pending_user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pending_credential", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("return_to", sa.String(length=200), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_interactions_pending_user_id_users"),
            "users",
            ["pending_user_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.create_table(
        "totp_credentials",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("wrapping_key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_totp_credentials_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_totp_credentials")),
    )
    op.create_table(
        "backup_codes",
        sa.Column("code_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_backup_codes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("code_digest", name=op.f("pk_backup_codes")),
    )
    op.create_index(op.f("ix_backup_codes_user_id"), "backup_codes", ["user_id"], unique=False)
    op.create_table(
        "auth_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("name_digest", sa.LargeBinary(length=32), nullable=True),
        sa.Column("factor", sa.String(length=16), nullable=False),
        sa.Column("device_digest", sa.LargeBinary(length=32), nullable=True),
        sa.Column("occurred_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_auth_failures_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_failures")),
    )
    op.create_index(op.f("ix_auth_failures_occurred_at"), "auth_failures", ["occurred_at"], unique=False)
    op.create_index(
        "ix_auth_failures_user_factor_time", "auth_failures", ["user_id", "factor", "occurred_at"], unique=False
    )
    op.create_index(
        "ix_auth_failures_name_factor_time", "auth_failures", ["name_digest", "factor", "occurred_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_auth_failures_name_factor_time", table_name="auth_failures")
    op.drop_index("ix_auth_failures_user_factor_time", table_name="auth_failures")
    op.drop_index(op.f("ix_auth_failures_occurred_at"), table_name="auth_failures")
    op.drop_table("auth_failures")
    op.drop_index(op.f("ix_backup_codes_user_id"), table_name="backup_codes")
    op.drop_table("backup_codes")
    op.drop_table("totp_credentials")
    # Account sign-ins have no client: they cannot exist under the old schema.
    op.execute("DELETE FROM interactions WHERE client_id IS NULL")
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_interactions_pending_user_id_users"), type_="foreignkey")
        batch_op.drop_column("return_to")
        batch_op.drop_column("pending_credential")
        batch_op.drop_column("pending_user_id")
        batch_op.alter_column("client_id", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("require_mfa")
