"""Revision 0009 moves the user and the client of the audit events recorded before it into
``user_sub`` and ``client_id``, from where the old code kept them (``actor`` or ``subject``,
by kind), and empties ``subject`` where it held one of them; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.storage import migrate
from server.storage.engine import make_engine
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio

USER = "sub-alice"
CLIENT = "client-reports"
KID = "kid-2026"
NOW = datetime.now(UTC)

# audit_events as revision 0008 left it: no user_sub, no client_id.
OLD_EVENTS = sa.table(
    "audit_events",
    sa.column("id", sa.Integer),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("kind", sa.String),
    sa.column("actor", sa.String),
    sa.column("subject", sa.String),
    sa.column("details", sa.JSON),
)

# (kind, actor, subject, details) as the code before 0009 wrote them, and the
# (user_sub, client_id) the upgrade should find in each.
WRITTEN_BEFORE: list[tuple[str, str | None, str | None, dict[str, Any], tuple[str | None, str | None]]] = [
    ("user.created", "admin", USER, {"username": "alice"}, (USER, None)),
    ("user.disabled", "cli", USER, {}, (USER, None)),
    ("user.password_reset", USER, USER, {}, (USER, None)),
    ("mfa.enabled", USER, USER, {"method": "totp"}, (USER, None)),
    ("mfa.reset", "admin", USER, {"had_second_factor": True}, (USER, None)),
    ("session.ended", "cli", USER, {"sid": "s1"}, (USER, None)),
    ("login.succeeded", USER, CLIENT, {"amr": ["pwd"]}, (USER, CLIENT)),
    ("consent.granted", USER, CLIENT, {"scope": "openid"}, (USER, CLIENT)),
    ("consent.denied", USER, CLIENT, {}, (USER, CLIENT)),
    ("client.created", "admin", CLIENT, {"name": "reports"}, (None, CLIENT)),
    ("client.secret_rotated", "cli", CLIENT, {"keep_old_for": 0}, (None, CLIENT)),
    ("refresh_token.reuse", CLIENT, USER, {"ip": "127.0.0.1"}, (USER, CLIENT)),
    ("key.created", "system", KID, {"alg": "RS256", "state": "active"}, (None, None)),
    ("key.revoked", "admin", KID, {"alg": "RS256", "was": "active"}, (None, None)),
    ("keys.rewrapped", "admin", None, {"kids": [KID]}, (None, None)),
]


async def _upgraded_rows(url: str, rows: list[dict[str, Any]]) -> dict[int, sa.Row[Any]]:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine, "0008")
        async with engine.begin() as connection:
            await connection.execute(sa.insert(OLD_EVENTS), rows)
        await migrate.upgrade(engine)
        assert (await migrate.schema_state(engine))[1] == migrate.head_revision()
        events = sa.table(
            "audit_events",
            *(sa.column(name) for name in ("id", "kind", "actor", "subject", "user_sub", "client_id")),
        )
        async with engine.connect() as connection:
            return {row.id: row for row in await connection.execute(sa.select(events))}
    finally:
        await engine.dispose()


async def test_the_upgrade_fills_in_the_user_and_the_client_of_older_events(empty_database: TestDatabase) -> None:
    rows = [
        {
            "id": number,
            "occurred_at": NOW - timedelta(minutes=number),
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "details": details,
        }
        for number, (kind, actor, subject, details, _) in enumerate(WRITTEN_BEFORE, start=1)
    ]

    after = await _upgraded_rows(empty_database.url, rows)

    assert sorted(after) == [row["id"] for row in rows]
    for number, (kind, actor, subject, _, expected) in enumerate(WRITTEN_BEFORE, start=1):
        row = after[number]
        assert (row.kind, row.actor) == (kind, actor)
        assert (row.user_sub, row.client_id) == expected, kind
        moved = expected != (None, None)
        assert row.subject == (None if moved else subject), kind


async def test_grants_revoked_by_an_admin_name_the_user_and_the_client(empty_database: TestDatabase) -> None:
    # The old `ostiary grants revoke` kept the user in subject and the client only in details.
    everything = {
        "id": 2,
        "occurred_at": NOW,
        "kind": "grants.revoked",
        "actor": "admin",
        "subject": USER,
        "details": {"client_id": None, "count": 5},
    }
    row = {
        "id": 1,
        "occurred_at": NOW,
        "kind": "grants.revoked",
        "actor": "admin",
        "subject": USER,
        "details": {"client_id": CLIENT, "count": 2},
    }

    after = await _upgraded_rows(empty_database.url, [row, everything])

    assert after[1].user_sub == USER
    assert after[1].client_id == CLIENT
    assert after[1].subject is None
    assert after[2].user_sub == USER
    assert after[2].client_id is None  # every client's grants: no client to name
