"""Per-client access-token algorithm, DPoP-bound clients (RFC 9449 §5.2) and the DPoP key
a public client's refresh-token family is bound to.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("access_token_alg", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("dpop_bound_access_tokens", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("dpop_jkt")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("dpop_bound_access_tokens")
        batch.drop_column("access_token_alg")
