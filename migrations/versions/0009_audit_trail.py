"""Audit trail readable by user and by client: ``user_sub`` and ``client_id`` columns with
indexes by time, filled in for the events already recorded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_events = sa.table(
    "audit_events",
    sa.column("kind", sa.String),
    sa.column("actor", sa.String),
    sa.column("subject", sa.String),
    sa.column("user_sub", sa.String),
    sa.column("client_id", sa.String),
    sa.column("details", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_sub", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_audit_events_user_sub_occurred_at", ["user_sub", "occurred_at"], unique=False)
        batch_op.create_index("ix_audit_events_client_id_occurred_at", ["client_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_audit_events_kind_occurred_at", ["kind", "occurred_at"], unique=False)
    _fill_in()


def _fill_in() -> None:
    """Move the user and the client of the events recorded so far out of ``actor``/``subject``
    into their columns, as events are recorded from now on (``subject`` is left for what is
    neither, so it is emptied where it held the user or the client)."""
    kind, e = _events.c.kind, _events.c
    # the user in subject: account changes, second factor, sessions, admin revocations
    about_user = sa.or_(kind.like("user.%"), kind.like("mfa.%"), kind.like("session.%"), kind == "grants.revoked")
    op.execute(_events.update().where(about_user).values(user_sub=e.subject, subject=None))
    # the user acted on a client: sign-ins and consent
    signed_in = sa.or_(kind.like("login.%"), kind.like("consent.%"))
    op.execute(_events.update().where(signed_in).values(user_sub=e.actor, client_id=e.subject, subject=None))
    op.execute(_events.update().where(kind.like("client.%")).values(client_id=e.subject, subject=None))
    # an administrator revoked a user's grants, for one client (kept in details) or all
    revoked = kind == "grants.revoked"
    op.execute(_events.update().where(revoked).values(client_id=e.details["client_id"].as_string()))
    # a client replayed a user's refresh token
    op.execute(
        _events.update()
        .where(kind == "refresh_token.reuse")
        .values(user_sub=e.subject, client_id=e.actor, subject=None)
    )


def downgrade() -> None:
    """Put the user and the client back where 0008's code kept them, then drop the columns."""
    kind, e = _events.c.kind, _events.c
    clients_first = sa.or_(kind.like("login.%"), kind.like("consent.%"), kind.like("client.%"))
    op.execute(_events.update().where(clients_first, e.client_id.is_not(None)).values(subject=e.client_id))
    op.execute(_events.update().where(e.subject.is_(None), e.user_sub.is_not(None)).values(subject=e.user_sub))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_kind_occurred_at")
        batch_op.drop_index("ix_audit_events_client_id_occurred_at")
        batch_op.drop_index("ix_audit_events_user_sub_occurred_at")
        batch_op.drop_column("client_id")
        batch_op.drop_column("user_sub")
