"""The watcher each process runs: the automatic schedule, and a ring that follows the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from server.bootstrap import prepare
from server.keys.holder import KeyRingHolder
from server.keys.ring import KeyRing, build_keyring
from server.keys.watcher import refresh_once
from server.keys.wrapping import KeyWrapper, KeyWrappers
from server.storage import keys as key_store
from server.storage.engine import create_sessionmaker, make_engine
from tests.helpers import TestDatabase, make_settings

pytestmark = pytest.mark.anyio

SECRET = "w" * 40


async def test_the_schedule_stages_then_activates_and_every_ring_follows(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path, keys_secret=SECRET, keys_rotate_every=3600, jwks_max_age=0)
    await prepare(settings)
    wrappers = KeyWrappers(KeyWrapper(SECRET))
    engine = make_engine(database.url)
    changes: list[KeyRing] = []
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            holder = KeyRingHolder(build_keyring(await session.run_sync(key_store.list_keys), wrappers))
        first = holder.current.signer("RS256").kid
        # The active key is older than the rotation period: a key is due to be staged.
        async with engine.begin() as connection:
            past = datetime.now(UTC) - timedelta(hours=2)
            await connection.execute(text("UPDATE signing_keys SET activated_at = :t, created_at = :t"), {"t": past})
        await refresh_once(sessionmaker, wrappers, settings, holder, changes.append)
        async with sessionmaker() as session:
            keys = await session.run_sync(key_store.list_keys)
        # each algorithm with an active key (RS256, PS256, ES256) is due, and staged
        assert sorted((k.alg, k.state) for k in keys) == sorted(
            (alg, state) for alg in ("RS256", "PS256", "ES256") for state in ("active", "next")
        )
        states = {k.kid: k.state for k in keys if k.alg == "RS256"}
        assert len(changes) == 1  # the staged key is published at once
        assert holder.current.signer("RS256").kid == first  # but does not sign yet
        # After the staging delay (max-age 0 + 2 polls of 5 s here) it signs.
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE signing_keys SET created_at = :t WHERE state = 'next'"),
                {"t": datetime.now(UTC) - timedelta(seconds=11)},
            )
        await refresh_once(sessionmaker, wrappers, settings, holder, changes.append)
        new = holder.current.signer("RS256").kid
        assert new != first and states[new] == "next"
        async with sessionmaker() as session:
            after = {k.kid: k.state for k in await session.run_sync(key_store.list_keys) if k.alg == "RS256"}
        assert after == {first: "retired", new: "active"}
        assert len(changes) == 2
    finally:
        await engine.dispose()
