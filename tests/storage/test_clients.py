"""Client rows: registered once, the secret kept only as a digest."""

from __future__ import annotations

import hashlib
from typing import Any

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
            events = (await session.execute(select(AuditEvent.kind, AuditEvent.client_id))).all()
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


async def _two_clients_with_a_user_grant(session: Any) -> tuple[str, str]:
    """Two code-flow clients, each with alice's grant (and its first refresh token) and consent."""
    from datetime import timedelta

    from server.storage import consents, grants as grant_store, users as user_store
    from server.storage.base import utcnow

    def setup(s: Any) -> tuple[str, str]:
        user = user_store.insert_user(s, sub="sub-alice", username="alice", email=None, name=None, password_hash=None)
        ids = []
        for name in ("kept", "deleted"):
            client, _ = register_client(
                s,
                name=name,
                grant_types=["authorization_code", "refresh_token"],
                scopes=["openid"],
                redirect_uris=["https://rp.example.com/cb"],
            )
            expires = utcnow() + timedelta(days=1)
            grant_store.insert_grant(
                s,
                grant_id=f"grant-{name}",
                client_id=client.client_id,
                user_id=user.id,
                scope="openid",
                session_sid=None,
                expires_at=expires,
                first_refresh_token=(f"refresh-{name}", expires),
            )
            consents.remember(s, user.id, client.client_id, frozenset({"openid"}))
            ids.append(client.client_id)
        return ids[0], ids[1]

    return await session.run_sync(setup)  # type: ignore[no-any-return]


async def test_deleting_a_client_deletes_its_grants_tokens_and_consents_only(database: TestDatabase) -> None:
    from sqlalchemy import func, select

    from server.clients import service as client_service
    from server.storage.models import Consent, Grant, RefreshToken

    engine = make_engine(database.url)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            kept, deleted = await _two_clients_with_a_user_grant(session)
        async with sessionmaker.begin() as session:
            await session.run_sync(lambda s: client_service.delete(s, deleted, actor="test"))
        async with sessionmaker() as session:
            remaining = [
                (await session.execute(select(column).distinct())).scalars().all()
                for column in (Grant.client_id, RefreshToken.client_id, Consent.client_id)
            ]
            count = (await session.execute(select(func.count()).select_from(Grant))).scalar()
            gone = await session.run_sync(client_store.get_client, deleted)
    finally:
        await engine.dispose()
    assert remaining == [[kept], [kept], [kept]]
    assert count == 1
    assert gone is None


async def test_an_update_is_validated_as_a_whole_and_writes_nothing_when_refused(database: TestDatabase) -> None:
    from server.clients import service as client_service

    engine = make_engine(database.url)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            stored, _ = await session.run_sync(
                lambda s: register_client(s, name="Billing", grant_types=["client_credentials"], scopes=["b:read"])
            )
        # refresh_token needs authorization_code, which needs a redirect URI: refused as a whole
        with pytest.raises(ClientRegistrationError, match="--grant-type"):
            async with sessionmaker.begin() as session:
                changes = {"name": "Renamed", "grant_types": ("refresh_token",)}
                await session.run_sync(lambda s: client_service.update(s, stored.client_id, changes, actor="test"))
        async with sessionmaker.begin() as session:
            updated = await session.run_sync(
                lambda s: client_service.update(
                    s, stored.client_id, {"name": "  Billing v2 ", "scopes": ("b:read b:write",)}, actor="test"
                )
            )
        async with sessionmaker() as session:
            loaded = await session.run_sync(client_store.get_client, stored.client_id)
    finally:
        await engine.dispose()
    assert updated == loaded
    assert loaded is not None and loaded.name == "Billing v2" and loaded.scopes == ("b:read", "b:write")
    assert loaded.secret_digest == stored.secret_digest and loaded.created_at == stored.created_at
