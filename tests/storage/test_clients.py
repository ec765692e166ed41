"""Client rows: registered once, the secret kept only as a digest."""

from __future__ import annotations

import hashlib

import pytest

from server.clients.errors import ClientRegistrationError
from server.clients.service import register_client
from server.storage import clients as client_store
from server.storage.engine import create_sessionmaker, make_engine
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio


async def test_register_get_and_list(database: TestDatabase) -> None:
    engine = make_engine(database.url)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            stored, secret = await session.run_sync(
                lambda s: register_client(
                    s,
                    name="  Billing  ",
                    grant_types=["client_credentials"],
                    scopes=["b:read a:write", "b:read"],
                    audiences=["https://api.example.com"],
                )
            )
        async with sessionmaker() as session:
            loaded = await session.run_sync(client_store.get_client, stored.client_id)
            listed = await session.run_sync(client_store.list_clients)
            missing = await session.run_sync(client_store.get_client, "nope")
            from sqlalchemy import select

            from server.storage.models import AuditEvent, Client

            digests = (await session.execute(select(Client.secret_digest))).scalars().all()
            events = (await session.execute(select(AuditEvent.kind, AuditEvent.subject))).all()
    finally:
        await engine.dispose()
    assert loaded == stored
    assert listed == [stored]
    assert missing is None
    assert stored.name == "Billing"
    assert stored.scopes == ("b:read", "a:write")
    assert stored.created_at.tzinfo is not None
    assert digests == [hashlib.sha256(secret.encode()).digest()]
    assert secret.encode() not in b"".join(digests)
    assert events == [("client.created", stored.client_id)]


async def test_invalid_registration_writes_nothing(database: TestDatabase) -> None:
    engine = make_engine(database.url)
    try:
        sessionmaker = create_sessionmaker(engine)
        with pytest.raises(ClientRegistrationError, match="--redirect-uri"):
            async with sessionmaker.begin() as session:
                await session.run_sync(
                    lambda s: register_client(
                        s,
                        name="x",
                        grant_types=["client_credentials"],
                        scopes=[],
                        redirect_uris=["http://evil.example.com/cb"],
                    )
                )
        async with sessionmaker() as session:
            assert await session.run_sync(client_store.list_clients) == []
    finally:
        await engine.dispose()
