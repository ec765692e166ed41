"""The migrations build the models' schema, on SQLite and PostgreSQL, with no drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, select

from server.bootstrap import StartupError, ensure_schema
from server.storage import migrate
from server.storage.engine import make_engine
from server.storage.models import Base, BrowserSession, Grant, User
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
    return list(compare_metadata(context, Base.metadata))


async def test_upgrade_from_empty_reaches_head_without_drift(empty_database: TestDatabase) -> None:
    engine = make_engine(empty_database.url)
    try:
        assert (await migrate.schema_state(engine))[0] is migrate.SchemaState.EMPTY
        await migrate.upgrade(engine)
        state, revision = await migrate.schema_state(engine)
        assert state is migrate.SchemaState.CURRENT
        assert revision == migrate.head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"clients", "signing_keys", "audit_events"} <= tables
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent_and_downgrade_round_trips(empty_database: TestDatabase) -> None:
    engine = make_engine(empty_database.url)
    try:
        await migrate.upgrade(engine)
        await migrate.upgrade(engine)
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to_base)
        assert (await migrate.schema_state(engine))[0] is migrate.SchemaState.EMPTY
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _downgrade_to_base(connection: Connection) -> None:
    from alembic import command

    config = migrate.alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")
    connection.exec_driver_sql("DROP TABLE alembic_version")


async def test_ensure_schema_migrates_only_an_empty_database(empty_database: TestDatabase) -> None:
    engine = make_engine(empty_database.url)
    try:
        await ensure_schema(engine)
        assert (await migrate.schema_state(engine))[0] is migrate.SchemaState.CURRENT
        async with engine.begin() as connection:
            await connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffffffff'")
        with pytest.raises(StartupError, match="not Ostiary's, or a schema newer"):
            await ensure_schema(engine)
    finally:
        await engine.dispose()


async def test_foreign_tables_are_not_migrated_over(empty_database: TestDatabase) -> None:
    engine = make_engine(empty_database.url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE someone_elses (id integer primary key)")
        with pytest.raises(StartupError, match="OSTIARY_DATABASE_URL"):
            await ensure_schema(engine)
    finally:
        await engine.dispose()


async def test_the_upgrade_ends_families_of_ended_sessions_and_caps_the_rest(empty_database: TestDatabase) -> None:
    engine = make_engine(empty_database.url)
    now = datetime.now(UTC)
    family_end = now + timedelta(days=90)
    try:
        await migrate.upgrade(engine, "0007")
        async with engine.begin() as connection:
            await connection.execute(
                insert(User).values(id=1, sub="s", username="a", username_key="a", created_at=now, updated_at=now)
            )
            sessions = [("live", None), ("ended", now - timedelta(minutes=1)), ("expired", None)]
            for sid, ended_at in sessions:
                expires_at = now - timedelta(minutes=1) if sid == "expired" else now + timedelta(hours=1)
                await connection.execute(
                    insert(BrowserSession).values(
                        token_digest=sid.encode().ljust(32, b"-"), sid=sid, user_id=1, auth_time=now, amr=[], acr="x",
                        created_at=now, expires_at=expires_at, ended_at=ended_at,
                    )
                )  # fmt: skip
            for grant_id, sid in [("on-live", "live"), ("on-ended", "ended"), ("on-expired", "expired"),
                                  ("on-gone", "swept-away"), ("offline", None)]:  # fmt: skip
                await connection.execute(
                    insert(Grant).values(
                        id=grant_id, client_id="c", user_id=1, scope="openid", session_sid=sid, created_at=now,
                        expires_at=family_end, amr=[], head_generation=1,
                    )
                )  # fmt: skip

        await migrate.upgrade(engine)

        async with engine.connect() as connection:
            rows = await connection.execute(select(Grant.id, Grant.expires_at, Grant.revoked_reason))
            after = {row.id: (row.expires_at, row.revoked_reason) for row in rows}
        assert after["on-live"] == (now + timedelta(hours=1), None)
        assert after["offline"] == (family_end, None)
        for ended in ("on-ended", "on-expired", "on-gone"):
            assert after[ended][1] == "session_ended"
    finally:
        await engine.dispose()
