"""Cleanup deletes what expired, in bounded batches, and nothing that still matters."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from server.storage.cleanup import sweep
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import (
    AuthorizationCode,
    Grant,
    Interaction,
    RefreshToken,
    RevokedAccessToken,
    User,
)
from tests.helpers import TestDatabase, make_settings, ostiary_env, run_ostiary, serve_in_process

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=3)
LATER = NOW + timedelta(days=3)


def _digest(i: int, kind: str) -> bytes:
    return hashlib.sha256(f"{kind}{i}".encode()).digest()


def _code(i: int, expires: datetime) -> dict[str, object]:
    return {
        "code_digest": _digest(i, "code"),
        "client_id": "c",
        "user_id": 1,
        "grant_id": f"g{i}",
        "redirect_uri": "https://rp/cb",
        "scope": "openid",
        "nonce": None,
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
        "session_sid": None,
        "auth_time": NOW,
        "acr": None,
        "amr": [],
        "created_at": NOW,
        "expires_at": expires,
    }


async def _seed(url: str, expired_codes: int) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as db:
            await db.execute(
                insert(User).values(id=1, sub="s", username="u", username_key="u", created_at=NOW, updated_at=NOW)
            )
            await db.execute(insert(AuthorizationCode), [_code(i, LONG_AGO) for i in range(expired_codes)])
            await db.execute(insert(AuthorizationCode), [_code(10_000 + i, LATER) for i in range(3)])
            grants = [
                ("live", None, LATER),
                ("ended", None, LONG_AGO),
                ("revoked-long-ago", LONG_AGO, LATER),
                ("revoked-just-now", NOW, LATER),
            ]
            await db.execute(
                insert(Grant),
                [
                    {
                        "id": gid,
                        "client_id": "c",
                        "user_id": 1,
                        "scope": "openid",
                        "created_at": NOW,
                        "revoked_at": revoked,
                        "expires_at": expires,
                    }
                    for gid, revoked, expires in grants
                ],
            )
            await db.execute(
                insert(RefreshToken),
                [
                    {
                        "token_digest": _digest(i, gid),
                        "grant_id": gid,
                        "client_id": "c",
                        "generation": i,
                        "created_at": NOW,
                        "expires_at": expires,
                    }
                    for gid, _, _ in grants
                    for i, expires in enumerate((LATER, LATER))
                ],
            )
            await db.execute(
                insert(RefreshToken).values(
                    token_digest=_digest(0, "idle"),
                    grant_id="live",
                    client_id="c",
                    generation=9,
                    created_at=NOW,
                    expires_at=LONG_AGO,
                )
            )
            await db.execute(
                insert(Interaction),
                [
                    {
                        "id_digest": _digest(i, "i"),
                        "browser_digest": b"b" * 32,
                        "client_id": "c",
                        "params": [],
                        "created_at": NOW,
                        "expires_at": expires,
                    }
                    for i, expires in enumerate((LONG_AGO, LATER))
                ],
            )
            await db.execute(
                insert(RevokedAccessToken),
                [{"jti": "old", "expires_at": LONG_AGO}, {"jti": "current", "expires_at": LATER}],
            )
    finally:
        await engine.dispose()


async def _count(url: str, column: object) -> list[object]:
    engine = make_engine(url)
    try:
        async with engine.connect() as db:
            return list((await db.execute(select(column))).scalars())
    finally:
        await engine.dispose()


async def test_sweep_deletes_the_expired_in_batches_and_keeps_the_rest(database: TestDatabase) -> None:
    await _seed(database.url, expired_codes=2500)
    engine = make_engine(database.url)
    try:
        counts = await sweep(create_sessionmaker(engine), batch=1000)
        again = await sweep(create_sessionmaker(engine))
    finally:
        await engine.dispose()
    assert counts["authorization_codes"] == 2500
    assert counts["grants"] == 2  # the ended family and the long-revoked one (their tokens go with them)
    assert counts["refresh_tokens"] == 1  # the idle-expired one
    assert counts["interactions"] == 1 and counts["revoked_access_tokens"] == 1
    assert len(await _count(database.url, AuthorizationCode.code_digest)) == 3
    assert sorted(await _count(database.url, Grant.id)) == ["live", "revoked-just-now"]
    assert len(await _count(database.url, RefreshToken.token_digest)) == 4
    assert await _count(database.url, RevokedAccessToken.jti) == ["current"]
    assert not any(again.values())


async def test_the_command_cleans_up(database: TestDatabase, tmp_path: Path) -> None:
    await _seed(database.url, expired_codes=5)
    settings = make_settings(database, tmp_path)
    result = await asyncio.to_thread(run_ostiary, ["db", "cleanup"], ostiary_env(settings), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "authorization_codes: 5 deleted" in result.stdout


async def test_the_server_sweeps_by_itself(database: TestDatabase, tmp_path: Path) -> None:
    await _seed(database.url, expired_codes=5)
    settings = make_settings(database, tmp_path, cleanup_interval=1)
    async with serve_in_process(settings):
        for _ in range(100):
            if len(await _count(database.url, AuthorizationCode.code_digest)) == 3:
                break
            await asyncio.sleep(0.1)
    assert len(await _count(database.url, AuthorizationCode.code_digest)) == 3
