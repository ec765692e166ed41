"""Signing keys in the database: created once, encrypted at rest, checked against the secret."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.bootstrap import StartupError, prepare
from server.keys import service as key_service
from server.keys.errors import KeyMaterialError
from server.keys.material import new_key
from server.keys.ring import build_keyring
from server.keys.wrapping import KeyWrapper, KeyWrappers
from server.storage import keys as key_store
from server.storage.engine import create_sessionmaker, make_engine
from tests.helpers import TestDatabase, make_settings

pytestmark = pytest.mark.anyio

SECRET = "s" * 40


async def _keys(url: str) -> list[key_store.StoredKey]:
    engine = make_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await session.run_sync(key_store.list_keys)
    finally:
        await engine.dispose()


async def test_first_start_creates_one_encrypted_key_per_client_algorithm(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path, keys_secret=SECRET)
    await prepare(settings)
    await prepare(settings)  # a restart creates nothing new
    rows = await _keys(database.url)
    assert sorted(r.alg for r in rows) == ["ES256", "PS256", "RS256"]
    assert all(r.state == "active" and r.wrapping_key_id == KeyWrapper(SECRET).key_id for r in rows)
    (row,) = [r for r in rows if r.alg == "RS256"]
    (pss,) = [r for r in rows if r.alg == "PS256"]
    assert set(pss.public_jwk) == {"kty", "n", "e"} and pss.public_jwk["n"] != row.public_jwk["n"]  # a key of its own
    assert row.state == "active" and row.alg == "RS256"
    assert row.activated_at is not None
    assert row.wrapping_key_id == KeyWrapper(SECRET).key_id
    assert b"PRIVATE KEY" not in row.private_key_enc
    assert set(row.public_jwk) == {"kty", "n", "e"}
    ring = build_keyring([row], KeyWrappers(KeyWrapper(SECRET)))
    key = ring.signer("RS256").key
    assert key.kid == row.kid == key.thumbprint()  # RFC 7638
    assert key.as_dict(private=False)["n"] == row.public_jwk["n"]
    assert len(__import__("base64").urlsafe_b64decode(row.public_jwk["n"] + "==")) * 8 >= 2048


async def test_concurrent_first_starts_create_exactly_one_active_key(database: TestDatabase) -> None:
    wrappers = KeyWrappers(KeyWrapper(SECRET))
    engine = make_engine(database.url)
    try:
        sessionmaker = create_sessionmaker(engine)

        async def one() -> str | None:
            async with sessionmaker.begin() as session:
                return await session.run_sync(lambda s: key_service.ensure_active_key(s, wrappers, bits=2048))

        created = await asyncio.gather(*(one() for _ in range(4)))
    finally:
        await engine.dispose()
    assert sum(kid is not None for kid in created) >= 1
    rows = await _keys(database.url)
    assert len([r for r in rows if r.state == "active"]) == 1
    assert len(rows) == 1


async def test_wrong_secret_stops_startup_and_makes_no_key(database: TestDatabase, tmp_path: Path) -> None:
    await prepare(make_settings(database, tmp_path, keys_secret=SECRET))
    with pytest.raises(StartupError, match="OSTIARY_KEYS_SECRET") as caught:
        await prepare(make_settings(database, tmp_path, keys_secret="t" * 40))
    assert "was encrypted under key-encryption secret" in str(caught.value)
    assert len(await _keys(database.url)) == 3  # RS256, PS256, ES256: nothing new


async def test_missing_embedded_secret_for_existing_keys_stops_startup(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    await prepare(settings)  # generates keys/secret
    secret_file = settings.keys_dir / "secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret_file.unlink()
    with pytest.raises(StartupError, match="signing keys exist in the database"):
        await prepare(settings)
    assert not secret_file.exists()
    assert len(await _keys(database.url)) == 3  # RS256, PS256, ES256: nothing new


async def test_corrupt_key_row_is_reported_by_kid(database: TestDatabase, tmp_path: Path) -> None:
    await prepare(make_settings(database, tmp_path, keys_secret=SECRET))
    (row,) = [r for r in await _keys(database.url) if r.alg == "PS256"]
    engine = make_engine(database.url)
    try:
        async with engine.begin() as connection:
            from sqlalchemy import update

            from server.storage.models import SigningKey

            corrupt = row.private_key_enc[:-1] + b"\x00"
            await connection.execute(
                update(SigningKey).where(SigningKey.kid == row.kid).values(private_key_enc=corrupt)
            )
    finally:
        await engine.dispose()
    with pytest.raises(StartupError, match=row.kid):
        await prepare(make_settings(database, tmp_path, keys_secret=SECRET))


def test_keyring_publishes_public_members_only() -> None:
    wrapper = KeyWrapper(SECRET)
    row = new_key(wrapper, alg="RS256", rsa_bits=2048, state="active")
    ring = build_keyring([row], KeyWrappers(wrapper))
    import json

    (published,) = json.loads(ring.jwks_json)["keys"]
    assert set(published) == {"kty", "n", "e", "kid", "alg", "use"}
    with pytest.raises(KeyMaterialError, match="no active RS256"):
        build_keyring([new_key(wrapper, alg="RS256", rsa_bits=2048, state="retired")], KeyWrappers(wrapper))
