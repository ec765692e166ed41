"""Audit events are kept for ``OSTIARY_AUDIT_RETENTION_DAYS`` (0: for ever): the cleanup
deletes older ones in bounded batches, by ``sweep``, by ``ostiary db cleanup`` and by the
server's own sweeper."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from server.storage.cleanup import sweep
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import AuditEvent
from tests.helpers import TestDatabase, make_settings, ostiary_env, run_ostiary, serve_in_process

pytestmark = pytest.mark.anyio


async def _seed(url: str, ages_in_days: list[float]) -> None:
    """One ``test.event`` per age, its subject the age (``"45"``, ``"29.5"``)."""
    now = datetime.now(UTC)
    engine = make_engine(url)
    try:
        async with engine.begin() as db:
            await db.execute(
                insert(AuditEvent),
                [
                    {
                        "occurred_at": now - timedelta(days=age),
                        "kind": "test.event",
                        "actor": "test",
                        "subject": f"{age:g}",
                        "details": {},
                    }
                    for age in ages_in_days
                ],
            )
    finally:
        await engine.dispose()


async def _ages_left(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as db:
            query = select(AuditEvent.subject).where(AuditEvent.kind == "test.event").order_by(AuditEvent.id)
            return [subject for subject in (await db.execute(query)).scalars() if subject is not None]
    finally:
        await engine.dispose()


async def _sweep(url: str, batch: int, retention_days: int) -> dict[str, int]:
    engine = make_engine(url)
    try:
        return await sweep(create_sessionmaker(engine), batch, audit_retention_days=retention_days)
    finally:
        await engine.dispose()


async def test_events_older_than_the_retention_are_deleted_in_batches(database: TestDatabase) -> None:
    old = [31.0 + day for day in range(6)]
    await _seed(database.url, [400.0, *old, 30.5, 29.5, 1.0, 0.0])

    counts = await _sweep(database.url, batch=3, retention_days=30)

    assert counts["audit_events"] == 8  # three batches: 3, 3, 2
    assert await _ages_left(database.url) == ["29.5", "1", "0"]
    again = await _sweep(database.url, batch=3, retention_days=30)
    assert again["audit_events"] == 0
    assert await _ages_left(database.url) == ["29.5", "1", "0"]


async def test_a_batch_as_large_as_the_backlog_still_deletes_it_all(database: TestDatabase) -> None:
    await _seed(database.url, [10.0, 11.0, 12.0, 13.0, 2.0])

    counts = await _sweep(database.url, batch=4, retention_days=5)

    assert counts["audit_events"] == 4
    assert await _ages_left(database.url) == ["2"]


async def test_a_retention_of_zero_keeps_every_event(database: TestDatabase) -> None:
    await _seed(database.url, [3650.0, 400.0, 91.0, 0.0])

    counts = await _sweep(database.url, batch=2, retention_days=0)

    assert "audit_events" not in counts
    assert await _ages_left(database.url) == ["3650", "400", "91", "0"]


async def test_the_cleanup_command_honours_the_setting(database: TestDatabase, tmp_path: Path) -> None:
    await _seed(database.url, [120.0, 45.0, 10.0])
    settings = make_settings(database, tmp_path)

    def cleanup(**env: str) -> str:
        result = run_ostiary(["db", "cleanup"], ostiary_env(settings, **env), tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    kept_for_ever = await asyncio.to_thread(cleanup, OSTIARY_AUDIT_RETENTION_DAYS="0")
    assert "audit_events" not in kept_for_ever
    assert await _ages_left(database.url) == ["120", "45", "10"]

    by_default = await asyncio.to_thread(cleanup)  # 90 days
    assert "audit_events: 1 deleted" in by_default.splitlines()
    assert await _ages_left(database.url) == ["45", "10"]

    shorter = await asyncio.to_thread(cleanup, OSTIARY_AUDIT_RETENTION_DAYS="30")
    assert "audit_events: 1 deleted" in shorter.splitlines()
    assert await _ages_left(database.url) == ["10"]


async def test_a_bad_retention_is_refused_by_name(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    env = ostiary_env(settings, OSTIARY_AUDIT_RETENTION_DAYS="-1")

    result = await asyncio.to_thread(run_ostiary, ["db", "cleanup"], env, tmp_path)

    assert result.returncode != 0
    assert "OSTIARY_AUDIT_RETENTION_DAYS" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_server_sweeps_old_events_by_itself(database: TestDatabase, tmp_path: Path) -> None:
    await _seed(database.url, [40.0, 5.0])
    settings = make_settings(database, tmp_path, cleanup_interval=1, audit_retention_days=30)
    async with serve_in_process(settings):
        for _ in range(100):
            if await _ages_left(database.url) == ["5"]:
                break
            await asyncio.sleep(0.1)
    assert await _ages_left(database.url) == ["5"]
