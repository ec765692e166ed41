"""Refresh-token families (RFC 9700 §4.14.2), revocation (RFC 7009), introspection (RFC 7662)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text

from server.settings import Settings
from server.storage.engine import make_engine
from tests.flows.conftest import Live, SignIn
from tests.helpers import Client, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import REDIRECT_URI, Browser, Flow

pytestmark = pytest.mark.anyio


@dataclass
class Offline:
    signin: SignIn
    rp: Client

    @property
    def http(self) -> httpx.AsyncClient:
        return self.signin.http

    @property
    def auth(self) -> tuple[str, str]:
        return (self.rp.client_id, self.rp.client_secret)

    async def tokens(self, scope: str = "openid profile offline_access") -> dict[str, str]:
        return await SignIn(self.signin.live, self.rp, "alice", self.signin.browser).tokens(
            Flow.start(self.rp.client_id), scope=scope
        )

    async def refresh(self, token: str, *, auth: tuple[str, str] | None = None, **extra: str) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": token, **extra}
        return await self.http.post("/token", data=data, auth=auth or self.auth)

    async def introspect(self, token: str, *, auth: tuple[str, str] | None = None) -> dict[str, Any]:
        response = await self.http.post("/introspect", data={"token": token}, auth=auth or self.auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        return await run_sql(self.signin.live.settings, statement, **params)


async def run_sql(settings: Settings, statement: str, **params: Any) -> list[Any]:
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def make_offline(signin: SignIn) -> Offline:
    rp = await create_client(
        signin.live.settings,
        name="Notes app",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    return Offline(signin, rp)


@pytest.fixture
async def offline(signin: SignIn) -> Offline:
    return await make_offline(signin)


async def test_code_exchange_issues_an_opaque_refresh_token_stored_as_a_digest(offline: Offline) -> None:
    tokens = await offline.tokens()
    refresh = tokens["refresh_token"]
    assert len(refresh) >= 43 and refresh.count(".") == 0  # 256 bits, opaque
    rows = await offline.sql("SELECT token_digest FROM refresh_tokens")
    assert [bytes(r[0]) for r in rows] == [hashlib.sha256(refresh.encode()).digest()]


async def test_no_refresh_token_without_the_refresh_token_grant(signin: SignIn) -> None:
    tokens = await signin.tokens(Flow.start(signin.rp.client_id))
    assert "refresh_token" not in tokens


async def test_each_refresh_rotates_and_returns_new_tokens(offline: Offline) -> None:
    first = await offline.tokens()
    response = await offline.refresh(first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    original = jwt.decode(first["id_token"], options={"verify_signature": False})
    renewed = jwt.decode(second["id_token"], options={"verify_signature": False})
    assert renewed["sub"] == original["sub"] and renewed["auth_time"] == original["auth_time"]
    assert "nonce" not in renewed
    third = await offline.refresh(second["refresh_token"])
    assert third.status_code == 200
    rows = await offline.sql("SELECT generation, consumed_at IS NOT NULL FROM refresh_tokens ORDER BY generation")
    assert [(r[0], bool(r[1])) for r in rows] == [(1, True), (2, True), (3, False)]


async def test_reuse_revokes_the_whole_family_and_alerts_once(offline: Offline) -> None:
    first = await offline.tokens()
    second = (await offline.refresh(first["refresh_token"])).json()
    for _ in range(3):
        replay = await offline.refresh(first["refresh_token"])
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
    # The newest token of the family fails too, and its access tokens are inactive.
    assert (await offline.refresh(second["refresh_token"])).json()["error"] == "invalid_grant"
    assert await offline.introspect(second["access_token"]) == {"active": False}
    assert await offline.introspect(first["access_token"]) == {"active": False}
    userinfo = await offline.http.get("/userinfo", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert userinfo.status_code == 401
    events = await offline.sql("SELECT actor, details FROM audit_events WHERE kind = 'refresh_token.reuse'")
    assert len(events) == 1
    details = events[0][1] if isinstance(events[0][1], dict) else json.loads(events[0][1])
    assert details["client_id"] == offline.rp.client_id
    assert details["ip"] == "127.0.0.1" and "python-httpx" in details["user_agent"]
    mails = await offline.sql("SELECT recipient, template FROM mail_outbox")
    assert [tuple(m) for m in mails] == [("alice@example.com", "refresh_token_reuse")]


async def test_another_clients_token_is_refused_without_revoking_the_family(offline: Offline) -> None:
    tokens = await offline.tokens()
    thief = await create_client(
        offline.signin.live.settings,
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    stolen = await offline.refresh(tokens["refresh_token"], auth=(thief.client_id, thief.client_secret))
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    assert (await offline.refresh(tokens["refresh_token"])).status_code == 200


async def test_scope_can_be_narrowed_never_widened(offline: Offline) -> None:
    tokens = await offline.tokens(scope="openid offline_access")
    narrowed = await offline.refresh(tokens["refresh_token"], scope="openid")
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "openid"
    # The new refresh token keeps the family's scope (RFC 6749 §6).
    full = await offline.refresh(narrowed.json()["refresh_token"], scope="openid offline_access")
    assert full.status_code == 200
    widened = await offline.refresh(full.json()["refresh_token"], scope="openid profile offline_access")
    assert widened.status_code == 400 and widened.json()["error"] == "invalid_scope"


async def test_idle_and_absolute_lifetimes_end_tokens(offline: Offline) -> None:
    idle = await offline.tokens()
    await offline.sql("UPDATE refresh_tokens SET expires_at = :past", past=_past())
    assert (await offline.refresh(idle["refresh_token"])).json()["error"] == "invalid_grant"
    absolute = await offline.tokens()
    await offline.sql("UPDATE grants SET expires_at = :past", past=_past())
    assert (await offline.refresh(absolute["refresh_token"])).json()["error"] == "invalid_grant"
    # Expiry is not reuse: nothing was revoked, nobody alerted.
    assert await offline.sql("SELECT id FROM grants WHERE revoked_at IS NOT NULL") == []


def _past() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


async def test_sign_out_ends_session_bound_families_only(offline: Offline) -> None:
    bound = await offline.tokens(scope="openid profile")
    survives = await offline.tokens(scope="openid offline_access")
    id_token = bound["id_token"]
    out = await offline.http.get("/logout", params={"id_token_hint": id_token, "client_id": offline.rp.client_id})
    assert out.status_code == 200
    assert (await offline.refresh(bound["refresh_token"])).json()["error"] == "invalid_grant"
    assert (await offline.refresh(survives["refresh_token"])).status_code == 200


async def test_revoking_a_refresh_token_revokes_its_family(offline: Offline) -> None:
    tokens = await offline.tokens()
    revoked = await offline.http.post(
        "/revoke", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}, auth=offline.auth
    )
    assert revoked.status_code == 200
    assert (await offline.refresh(tokens["refresh_token"])).json()["error"] == "invalid_grant"
    assert await offline.introspect(tokens["access_token"]) == {"active": False}


async def test_revoking_an_access_token_denies_only_it(offline: Offline) -> None:
    tokens = await offline.tokens()
    renewed = (await offline.refresh(tokens["refresh_token"])).json()
    revoked = await offline.http.post("/revoke", data={"token": tokens["access_token"]}, auth=offline.auth)
    assert revoked.status_code == 200
    assert await offline.introspect(tokens["access_token"]) == {"active": False}
    info = await offline.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401
    assert (await offline.introspect(renewed["access_token"]))["active"] is True
    jtis = await offline.sql("SELECT jti FROM revoked_access_tokens")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert [r[0] for r in jtis] == [claims["jti"]]


async def test_revocation_answers_200_for_unknown_tokens_and_checks_the_hint(offline: Offline) -> None:
    assert (await offline.http.post("/revoke", data={"token": "no-such-token"}, auth=offline.auth)).status_code == 200
    bad_hint = await offline.http.post("/revoke", data={"token": "x", "token_type_hint": "id_token"}, auth=offline.auth)
    assert bad_hint.status_code == 400 and bad_hint.json()["error"] == "unsupported_token_type"
    unauthenticated = await offline.http.post("/revoke", data={"token": "x", "client_id": "nobody"})
    assert unauthenticated.status_code == 401


async def test_introspection_reports_standard_fields(offline: Offline) -> None:
    tokens = await offline.tokens()
    access = await offline.introspect(tokens["access_token"])
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["active"] is True and access["token_type"] == "Bearer"
    assert access["client_id"] == offline.rp.client_id
    assert access["sub"] == claims["sub"] and access["exp"] == claims["exp"] and access["jti"] == claims["jti"]
    assert access["scope"] == "openid profile offline_access"
    refresh = await offline.introspect(tokens["refresh_token"])
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    assert refresh["sub"] == claims["sub"] and refresh["exp"] > refresh["iat"]
    assert await offline.introspect("garbage") == {"active": False}


async def test_only_the_owner_or_a_resource_server_may_introspect(offline: Offline) -> None:
    tokens = await offline.tokens()
    settings = offline.signin.live.settings
    other = await create_client(settings, scopes=["x"])
    api = await create_client(settings, scopes=["x"], introspection=True)
    assert await offline.introspect(tokens["access_token"], auth=(other.client_id, other.client_secret)) == {
        "active": False
    }
    assert (await offline.introspect(tokens["access_token"], auth=(api.client_id, api.client_secret)))["active"]
    unauthenticated = await offline.http.post("/introspect", data={"token": tokens["access_token"]})
    assert unauthenticated.status_code == 401


async def test_client_credentials_never_get_a_refresh_token(live: Live) -> None:
    response = await live.http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(live.client.client_id, live.client.client_secret)
    )
    assert response.status_code == 200 and "refresh_token" not in response.json()


@pytest.fixture
async def graceful(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Offline]:
    settings = make_settings(database, tmp_path, refresh_reuse_grace_seconds=2)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await create_user(settings, "alice")
        live = Live(settings, base_url, http, await create_client(settings))
        yield await make_offline(SignIn(live, Client("", ""), "alice", Browser(http)))


async def test_grace_lets_the_latest_predecessor_mint_in_the_same_family(graceful: Offline) -> None:
    first = await graceful.tokens()
    second = (await graceful.refresh(first["refresh_token"])).json()  # response "lost"
    retry = await graceful.refresh(first["refresh_token"])
    assert retry.status_code == 200, retry.text
    third = retry.json()
    assert (await graceful.refresh(third["refresh_token"])).status_code == 200
    # first is now two generations back: reuse, the family is revoked.
    assert (await graceful.refresh(first["refresh_token"])).json()["error"] == "invalid_grant"
    assert (await graceful.refresh(second["refresh_token"])).json()["error"] == "invalid_grant"
    assert len(await graceful.sql("SELECT id FROM audit_events WHERE kind = 'refresh_token.reuse'")) == 1


@pytest.fixture
async def graceful_once(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Offline]:
    settings = make_settings(database, tmp_path, refresh_reuse_grace_seconds=30, refresh_reuse_grace_count=1)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await create_user(settings, "alice")
        live = Live(settings, base_url, http, await create_client(settings))
        yield await make_offline(SignIn(live, Client("", ""), "alice", Browser(http)))


async def test_a_refused_resource_does_not_hide_a_replay(graceful_once: Offline) -> None:
    """The token's own failure comes first, as Authlib orders its checks: a replay inside the
    window with a resource the client may not use is refused without replacing the head,
    and once its grace is used up, the same replay is reuse: the family is revoked."""
    first = await graceful_once.tokens()
    assert (await graceful_once.refresh(first["refresh_token"])).status_code == 200
    foreign = await graceful_once.refresh(first["refresh_token"], resource="https://api.example.com")
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_target"
    assert await graceful_once.sql("SELECT grace_uses FROM refresh_tokens WHERE grace_uses > 0") == []
    assert (await graceful_once.refresh(first["refresh_token"])).status_code == 200  # the one replacement
    replay = await graceful_once.refresh(first["refresh_token"], resource="https://api.example.com")
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert len(await graceful_once.sql("SELECT id FROM grants WHERE revoked_at IS NOT NULL")) == 1


async def test_grace_ends_with_its_window(graceful: Offline) -> None:
    first = await graceful.tokens()
    assert (await graceful.refresh(first["refresh_token"])).status_code == 200
    await asyncio.sleep(2.5)
    late = await graceful.refresh(first["refresh_token"])
    assert late.json()["error"] == "invalid_grant"
    assert len(await graceful.sql("SELECT id FROM grants WHERE revoked_reason = 'refresh_token_reuse'")) == 1


async def test_grace_does_not_apply_to_another_client(graceful: Offline) -> None:
    first = await graceful.tokens()
    assert (await graceful.refresh(first["refresh_token"])).status_code == 200
    other = await create_client(
        graceful.signin.live.settings,
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    replay = await graceful.refresh(first["refresh_token"], auth=(other.client_id, other.client_secret))
    assert replay.json()["error"] == "invalid_grant"
    assert await graceful.sql("SELECT id FROM grants WHERE revoked_at IS NOT NULL") == []


async def test_a_refused_refresh_leaves_the_token_unused(offline: Offline) -> None:
    """Every check comes before the token is consumed (on PostgreSQL the rotation commits
    ahead of the grant): a refusal for any reason but the token itself costs nothing."""
    tokens = await offline.tokens(scope="openid offline_access")
    token = tokens["refresh_token"]
    wrong_secret = await offline.refresh(token, auth=(offline.rp.client_id, "not-the-secret"))
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    widened = await offline.refresh(token, scope="openid profile")
    assert widened.status_code == 400 and widened.json()["error"] == "invalid_scope"
    foreign = await offline.refresh(token, resource="https://api.example.com")
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_target"
    assert await offline.sql("SELECT generation FROM refresh_tokens WHERE consumed_at IS NOT NULL") == []
    refreshed = await offline.refresh(token, scope="offline_access openid")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "offline_access openid"
    assert await offline.sql("SELECT id FROM grants WHERE revoked_at IS NOT NULL") == []


async def test_a_client_without_the_refresh_grant_cannot_consume_a_token(offline: Offline) -> None:
    tokens = await offline.tokens()
    codes_only = await create_client(
        offline.signin.live.settings,
        grant_types=["authorization_code"],
        scopes=["openid", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    refused = await offline.refresh(tokens["refresh_token"], auth=(codes_only.client_id, codes_only.client_secret))
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    assert (await offline.refresh(tokens["refresh_token"])).status_code == 200


@pytest.fixture(params=[0, 2], ids=["on-the-loop", "two-signing-threads"])
async def threaded(request: pytest.FixtureRequest, database: TestDatabase, tmp_path: Path) -> AsyncIterator[Offline]:
    settings = make_settings(database, tmp_path, signing_threads=request.param)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await create_user(settings, "alice")
        live = Live(settings, base_url, http, await create_client(settings))
        yield await make_offline(SignIn(live, Client("", ""), "alice", Browser(http)))


async def test_concurrent_refreshes_of_many_families_each_get_their_own(threaded: Offline) -> None:
    # On PostgreSQL each rotation commits on the event loop and its grant then runs on a
    # signing thread (or on the loop): the grant must answer with its own family's tokens.
    families = [await threaded.tokens(scope=scope) for scope in ("openid offline_access", "offline_access") * 3]
    responses = await asyncio.gather(*(threaded.refresh(tokens["refresh_token"]) for tokens in families))
    for tokens, response in zip(families, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        before = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        after = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert after["gid"] == before["gid"] and body["scope"] == tokens["scope"]
        assert ("id_token" in body) == ("openid" in tokens["scope"].split())
        assert (await threaded.refresh(body["refresh_token"])).status_code == 200
    assert (
        len({jwt.decode(r.json()["access_token"], options={"verify_signature": False})["gid"] for r in responses}) == 6
    )


async def test_refusals_are_the_same_on_a_signing_thread(threaded: Offline) -> None:
    # A refresh refused before its rotation (a scope never granted, another client's secret)
    # leaves the token unused, and one that rotates answers from the thread or the loop.
    tokens = await threaded.tokens(scope="offline_access")
    too_wide = await threaded.refresh(tokens["refresh_token"], scope="offline_access admin")
    assert too_wide.status_code == 400 and too_wide.json()["error"] == "invalid_scope"
    wrong_secret = await threaded.refresh(tokens["refresh_token"], auth=(threaded.auth[0], "not-the-secret"))
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    rotated = await threaded.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store" and rotated.headers["content-type"] == "application/json"
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
