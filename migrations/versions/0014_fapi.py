"""FAPI 2.0's parts: private_key_jwt client keys, used JWT ids, pushed authorization requests.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.base import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("jwks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("jwks_uri", sa.Text(), nullable=True))
        batch.add_column(sa.Column("token_endpoint_auth_signing_alg", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("require_pushed_authorization_requests", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "used_jtis",
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("purpose", "digest"),
    )
    op.create_index("ix_used_jtis_expires_at", "used_jtis", ["expires_at"])
    op.create_table(
        "pushed_authorization_requests",
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_pushed_authorization_requests_expires_at", "pushed_authorization_requests", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_pushed_authorization_requests_expires_at", "pushed_authorization_requests")
    op.drop_table("pushed_authorization_requests")
    op.drop_index("ix_used_jtis_expires_at", "used_jtis")
    op.drop_table("used_jtis")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("require_pushed_authorization_requests")
        batch.drop_column("token_endpoint_auth_signing_alg")
        batch.drop_column("jwks_uri")
        batch.drop_column("jwks")
