"""Disabled users and clients, and a client secret rotated with an overlap.

A disabled user cannot sign in, refresh or call userinfo, and introspection answers
``active: false`` for their tokens. A disabled client is ``invalid_client`` at every
endpoint, ``/authorize`` shows an error page instead of redirecting to it, and its tokens
introspect inactive. Enabling either gives back what had not expired meanwhile.

The servers here run with ``OSTIARY_CLIENT_CACHE_TTL=0``: with the cache on, a change to
a client reaches each process within that many seconds instead (server/clients/cache.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from server.clients import service as client_service
from server.storage import Session, clients as client_store
from server.storage.engine import create_sessionmaker, make_engine
from server.users import admin
from tests.flows.conftest import Live, SignIn
from tests.helpers import Client, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import PASSWORD, REDIRECT_URI, Browser, Flow

pytestmark = pytest.mark.anyio

T = TypeVar("T")


async def as_admin(live: Live, work: Callable[[Session], T]) -> T:
    """Run an administration call in its own committed transaction, as the CLI does."""
    engine = make_engine(live.settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await session.run_sync(work)
    finally:
        await engine.dispose()


@pytest.fixture
async def live(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Live]:
    settings = make_settings(database, tmp_path, client_cache_ttl=0)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        client = await create_client(settings, audiences=["https://api.example.com"])
        yield Live(settings, base_url, http, client)


@pytest.fixture
async def app(live: Live) -> SignIn:
    """A relying party with refresh tokens, and alice."""
    rp = await create_client(
        live.settings,
        name="Notes app",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    await create_user(live.settings, "alice")
    return SignIn(live, rp, "alice", Browser(live.http))


@pytest.fixture
async def resource_server(live: Live) -> Client:
    """A client registered to introspect every token (RFC 7662)."""
    return await create_client(live.settings, name="API", introspection=True)


def auth(client: Client) -> tuple[str, str]:
    return (client.client_id, client.client_secret)


async def introspect(live: Live, token: str, by: Client) -> dict[str, Any]:
    response = await live.http.post("/introspect", data={"token": token}, auth=auth(by))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(app: SignIn, token: str) -> httpx.Response:
    return await app.http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": token}, auth=auth(app.rp)
    )


async def userinfo(live: Live, access_token: str) -> httpx.Response:
    return await live.http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


async def client_credentials(live: Live, client: Client) -> httpx.Response:
    return await live.http.post("/token", data={"grant_type": "client_credentials"}, auth=auth(client))


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].lower().startswith("basic")


# Disabled users.


async def test_a_disabled_user_cannot_sign_in_refresh_or_use_userinfo(app: SignIn, resource_server: Client) -> None:
    live = app.live
    tokens = await app.tokens(Flow.start(app.rp.client_id), scope="openid profile offline_access")
    assert (await introspect(live, tokens["access_token"], resource_server))["active"] is True

    await as_admin(live, lambda db: admin.set_disabled(db, "alice", True, actor="test"))

    assert (await introspect(live, tokens["access_token"], resource_server)) == {"active": False}
    assert (await introspect(live, tokens["refresh_token"], resource_server)) == {"active": False}
    assert (await introspect(live, tokens["access_token"], app.rp)) == {"active": False}
    info = await userinfo(live, tokens["access_token"])
    assert info.status_code == 401
    assert 'error="invalid_token"' in info.headers["www-authenticate"]
    refused = await refresh(app, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"

    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as fresh:
        browser = Browser(fresh)
        login = await browser.authorize(**Flow.start(app.rp.client_id).params(scope="openid profile"))
        assert login.status_code == 200, login.headers.get("location")
        answer = await browser.sign_in(login, "alice", PASSWORD)
        assert answer.status_code == 200 and "location" not in answer.headers
        assert "do not match" in answer.text


async def test_enabling_a_user_again_gives_back_their_offline_tokens(app: SignIn, resource_server: Client) -> None:
    """Disabling suspends: it revokes nothing that ``offline_access`` keeps beyond a session."""
    live = app.live
    tokens = await app.tokens(Flow.start(app.rp.client_id), scope="openid profile offline_access")
    await as_admin(live, lambda db: admin.set_disabled(db, "alice", True, actor="test"))
    await as_admin(live, lambda db: admin.set_disabled(db, "alice", False, actor="test"))

    assert (await introspect(live, tokens["access_token"], resource_server))["active"] is True
    assert (await userinfo(live, tokens["access_token"])).status_code == 200
    assert (await refresh(app, tokens["refresh_token"])).status_code == 200


async def test_disabling_a_user_ends_their_browser_sessions(app: SignIn) -> None:
    await app.tokens(Flow.start(app.rp.client_id), scope="openid")
    assert (await app.http.get("/account")).status_code == 200
    await as_admin(app.live, lambda db: admin.set_disabled(db, "alice", True, actor="test"))
    await as_admin(app.live, lambda db: admin.set_disabled(db, "alice", False, actor="test"))

    page = await app.browser.authorize(**Flow.start(app.rp.client_id).params(scope="openid", prompt="none"))
    assert page.status_code in (302, 303)
    assert "error=login_required" in page.headers["location"]


# Disabled clients.


async def test_a_disabled_client_is_invalid_client_at_every_endpoint(app: SignIn) -> None:
    live = app.live
    tokens = await app.tokens(Flow.start(app.rp.client_id), scope="openid profile offline_access")
    await as_admin(live, lambda db: client_service.set_disabled(db, app.rp.client_id, True, actor="test"))

    assert_invalid_client(await refresh(app, tokens["refresh_token"]))
    assert_invalid_client(
        await live.http.post("/introspect", data={"token": tokens["access_token"]}, auth=auth(app.rp))
    )
    assert_invalid_client(await live.http.post("/revoke", data={"token": tokens["refresh_token"]}, auth=auth(app.rp)))

    page = await app.browser.authorize(**Flow.start(app.rp.client_id).params(scope="openid"))
    assert page.status_code == 400
    assert "location" not in page.headers
    assert REDIRECT_URI not in page.text


async def test_a_disabled_clients_tokens_introspect_inactive(app: SignIn, resource_server: Client) -> None:
    live = app.live
    tokens = await app.tokens(Flow.start(app.rp.client_id), scope="openid profile offline_access")
    machine = (await client_credentials(live, live.client)).json()["access_token"]
    assert (await introspect(live, machine, resource_server))["active"] is True
    assert (await introspect(live, tokens["refresh_token"], resource_server))["active"] is True

    for client in (app.rp, live.client):
        await as_admin(live, lambda db, c=client: client_service.set_disabled(db, c.client_id, True, actor="test"))

    assert (await introspect(live, tokens["access_token"], resource_server)) == {"active": False}
    assert (await introspect(live, tokens["refresh_token"], resource_server)) == {"active": False}
    assert (await introspect(live, machine, resource_server)) == {"active": False}
    assert (await userinfo(live, tokens["access_token"])).status_code == 401
    assert_invalid_client(await client_credentials(live, live.client))

    await as_admin(live, lambda db: client_service.set_disabled(db, live.client.client_id, False, actor="test"))
    assert (await introspect(live, machine, resource_server))["active"] is True
    assert (await client_credentials(live, live.client)).status_code == 200


async def test_a_deleted_clients_tokens_end(app: SignIn, resource_server: Client) -> None:
    live = app.live
    tokens = await app.tokens(Flow.start(app.rp.client_id), scope="openid profile offline_access")
    machine = (await client_credentials(live, live.client)).json()["access_token"]
    for client in (app.rp, live.client):
        await as_admin(live, lambda db, c=client: client_service.delete(db, c.client_id, actor="test"))

    for token in (tokens["access_token"], tokens["refresh_token"], machine):
        assert (await introspect(live, token, resource_server)) == {"active": False}
    assert (await userinfo(live, tokens["access_token"])).status_code == 401
    assert_invalid_client(await refresh(app, tokens["refresh_token"]))


# Secret rotation.


async def test_a_rotated_secret_and_the_old_one_both_work_until_the_overlap_ends(live: Live) -> None:
    old = live.client
    secret = await as_admin(
        live, lambda db: client_service.rotate_secret(db, old.client_id, keep_old_for=2, actor="test")
    )
    new = Client(old.client_id, secret)
    assert secret != old.client_secret
    assert (await client_credentials(live, new)).status_code == 200
    assert (await client_credentials(live, old)).status_code == 200

    stored = await as_admin(live, lambda db: client_store.get_client(db, old.client_id))
    assert stored is not None and stored.previous_secret_expires_at is not None
    while client_service.utcnow() <= stored.previous_secret_expires_at:
        await asyncio.sleep(0.2)

    assert_invalid_client(await client_credentials(live, old))
    assert (await client_credentials(live, new)).status_code == 200


async def test_without_an_overlap_the_old_secret_stops_at_once(live: Live) -> None:
    old = live.client
    secret = await as_admin(
        live, lambda db: client_service.rotate_secret(db, old.client_id, keep_old_for=0, actor="test")
    )
    assert_invalid_client(await client_credentials(live, old))
    assert (await client_credentials(live, Client(old.client_id, secret))).status_code == 200

    poster = await create_client(live.settings, token_endpoint_auth_method="client_secret_post")
    secret = await as_admin(
        live, lambda db: client_service.rotate_secret(db, poster.client_id, keep_old_for=0, actor="test")
    )
    form = {"grant_type": "client_credentials", "client_id": poster.client_id, "client_secret": poster.client_secret}
    assert_invalid_client(await live.http.post("/token", data=form))
    assert (await live.http.post("/token", data={**form, "client_secret": secret})).status_code == 200
