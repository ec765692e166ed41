"""The FAPI 2.0 Security Profile per client, and authorization codes bound to a DPoP key
(RFC 9449 §10).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("fapi2", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("authorization_codes") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorization_codes") as batch:
        batch.drop_column("dpop_jkt")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("fapi2")
