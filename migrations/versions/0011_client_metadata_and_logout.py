"""Clients carry the rest of their RFC 7591 metadata (token endpoint authentication
method, response types, back-channel logout, logo, policy and terms pages, the RFC 7592
registration access token); sessions remember the clients they signed in to, and back-
channel logout notices wait in their own outbox.

Existing clients keep authenticating as before: public ones get ``none``, confidential ones
``client_secret_basic`` (a client that sends its secret in the form body needs
``ostiary clients update ID --token-endpoint-auth-method client_secret_post``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.base import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_clients = sa.table(
    "clients",
    sa.column("client_id", sa.String),
    sa.column("secret_digest", sa.LargeBinary),
    sa.column("grant_types", sa.JSON),
    sa.column("token_endpoint_auth_method", sa.String),
    sa.column("response_types", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "token_endpoint_auth_method",
                sa.String(length=32),
                server_default=sa.text("'client_secret_basic'"),
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("response_types", sa.JSON(), server_default=sa.text("'[\"code\"]'"), nullable=False)
        )
        batch_op.add_column(sa.Column("backchannel_logout_uri", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("backchannel_logout_session_required", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("logo_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("policy_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("tos_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("registration_token_digest", sa.LargeBinary(length=32), nullable=True))
        batch_op.create_unique_constraint("uq_clients_registration_token_digest", ["registration_token_digest"])
    public = _clients.c.secret_digest.is_(None)
    op.execute(_clients.update().where(public).values(token_endpoint_auth_method="none"))  # noqa: S106 (a method's name)
    # the code response type only for clients of the code flow, as a registration now says
    connection = op.get_bind()
    for client_id, grant_types in connection.execute(sa.select(_clients.c.client_id, _clients.c.grant_types)).all():
        if "authorization_code" not in grant_types:
            connection.execute(_clients.update().where(_clients.c.client_id == client_id).values(response_types=[]))

    op.create_table(
        "session_clients",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sid"], ["browser_sessions.sid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sid", "client_id"),
    )
    op.create_table(
        "logout_notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("sub", sa.String(length=64), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=True),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_logout_notices_next_attempt_at", "logout_notices", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_logout_notices_next_attempt_at", table_name="logout_notices")
    op.drop_table("logout_notices")
    op.drop_table("session_clients")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_constraint("uq_clients_registration_token_digest", type_="unique")
        for column in (
            "registration_token_digest",
            "tos_uri",
            "policy_uri",
            "logo_uri",
            "backchannel_logout_session_required",
            "backchannel_logout_uri",
            "response_types",
            "token_endpoint_auth_method",
        ):
            batch_op.drop_column(column)
