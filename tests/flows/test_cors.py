"""CORS on the endpoints a browser app calls itself (``/token``, ``/revoke``,
``/introspect``, ``/userinfo``): readable by the pages of the origins the calling client
registered and no others; discovery and the JWKS readable from anywhere. And the shorter
idle lifetime of a public client's refresh tokens. (The whole flow in Chromium is
``test_cors_in_browser.py``.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.settings import Settings
from server.storage.base import utcnow
from tests.flows.conftest import Live, SignIn
from tests.flows.test_refresh_tokens import run_sql
from tests.helpers import Client, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import REDIRECT_URI, Browser, Flow

pytestmark = pytest.mark.anyio

APP = "https://photos.example.com"
ELSEWHERE = "https://evil.example.net"


async def spa(signin: SignIn, **options: object) -> Client:
    return await spa_client(signin.live.settings, **options)


async def spa_client(settings: Settings, **options: object) -> Client:
    return await create_client(
        settings,
        name="Photos (browser app)",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
        redirect_uris=[REDIRECT_URI],
        allowed_cors_origins=[APP],
        public=True,
        **options,
    )


async def tokens_for(signin: SignIn, client: Client, **headers: str) -> httpx.Response:
    flow = Flow.start(client.client_id)
    code = await SignIn(signin.live, client, signin.username, signin.browser).code(
        flow, scope="openid profile offline_access"
    )
    return await signin.http.post(
        "/token", data={**flow.token_form(code), "client_id": client.client_id}, headers=headers
    )


async def refresh(signin: SignIn, client_id: str, token: str, origin: str | None = None) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await signin.http.post("/token", data=data, headers={"Origin": origin} if origin else {})


def readable_by(response: httpx.Response, origin: str) -> bool:
    assert "origin" in response.headers.get("vary", "").lower()
    return response.headers.get("access-control-allow-origin") == origin


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect", "/par", "/userinfo"])
async def test_a_preflight_says_what_the_endpoint_takes(signin: SignIn, path: str) -> None:
    preflight = await signin.http.options(
        path,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "dpop"} <= allowed
    assert int(preflight.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in preflight.headers
    plain = await signin.http.options(path)
    assert plain.status_code == 204 and "POST" in plain.headers["allow"]


async def test_a_public_clients_tokens_are_readable_by_its_origin_only(signin: SignIn) -> None:
    client = await spa(signin)
    mine = await tokens_for(signin, client, Origin=APP)
    assert mine.status_code == 200, mine.text
    assert readable_by(mine, APP)
    assert "www-authenticate" in mine.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-credentials" not in mine.headers

    theirs = await tokens_for(signin, client, Origin=ELSEWHERE)
    assert theirs.status_code == 200  # sent, as a form could be; but the page cannot read it
    assert not readable_by(theirs, ELSEWHERE) and "access-control-allow-origin" not in theirs.headers

    refreshed = await refresh(signin, client.client_id, mine.json()["refresh_token"], origin=APP)
    assert refreshed.status_code == 200 and readable_by(refreshed, APP)
    access = refreshed.json()["access_token"]
    userinfo = await signin.http.get("/userinfo", headers={"Authorization": f"Bearer {access}", "Origin": APP})
    assert userinfo.status_code == 200 and readable_by(userinfo, APP)
    foreign = await signin.http.get("/userinfo", headers={"Authorization": f"Bearer {access}", "Origin": ELSEWHERE})
    assert foreign.status_code == 200 and not readable_by(foreign, ELSEWHERE)

    flow = Flow.start(client.client_id)
    pushed = await signin.http.post("/par", data=flow.params(scope="openid"), headers={"Origin": APP})
    assert pushed.status_code == 201 and readable_by(pushed, APP)
    revoked = await signin.http.post(
        "/revoke",
        data={"token": refreshed.json()["refresh_token"], "client_id": client.client_id},
        headers={"Origin": APP},
    )
    assert revoked.status_code == 200 and readable_by(revoked, APP)
    # an error of the authenticated client is readable too: the app must see invalid_grant
    replayed = await refresh(signin, client.client_id, mine.json()["refresh_token"], origin=APP)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    assert readable_by(replayed, APP)


async def test_a_client_that_registered_no_origin_is_readable_by_none(signin: SignIn) -> None:
    client = await create_client(
        signin.live.settings,
        name="Server-side app",
        grant_types=["authorization_code"],
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
    )
    flow = Flow.start(client.client_id)
    code = await SignIn(signin.live, client, signin.username, signin.browser).code(flow, scope="openid")
    response = await signin.http.post(
        "/token", data=flow.token_form(code), auth=(client.client_id, client.client_secret), headers={"Origin": APP}
    )
    assert response.status_code == 200 and not readable_by(response, APP)


async def test_an_unauthenticated_request_is_readable_by_no_origin(signin: SignIn) -> None:
    client = await spa(signin)
    wrong = await signin.http.post(
        "/token",
        data={"grant_type": "client_credentials", "client_id": client.client_id},
        auth=(client.client_id, "not-a-secret"),
        headers={"Origin": APP},
    )
    assert wrong.status_code in (400, 401)
    assert "access-control-allow-origin" not in wrong.headers


async def test_discovery_and_the_jwks_are_readable_from_any_origin(signin: SignIn) -> None:
    for path in ("/.well-known/openid-configuration", "/jwks"):
        response = await signin.http.get(path, headers={"Origin": ELSEWHERE})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        etag = response.headers["etag"]
        unchanged = await signin.http.get(path, headers={"Origin": APP, "If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.headers["access-control-allow-origin"] == "*"


def expires_in(rows: list[Any]) -> timedelta:
    """How long until the one row's ``expires_at`` (SQLite gives raw SQL its text)."""
    ((value,),) = rows
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (at if at.tzinfo else at.replace(tzinfo=UTC)) - utcnow()


async def test_a_public_clients_refresh_tokens_idle_out_sooner(signin: SignIn) -> None:
    settings = signin.live.settings
    public = await spa(signin)
    response = await tokens_for(signin, public)
    assert response.status_code == 200, response.text
    rows = await run_sql(
        settings, "SELECT expires_at FROM refresh_tokens WHERE client_id = :client", client=public.client_id
    )
    expected = timedelta(seconds=settings.refresh_token_idle_ttl_public)
    assert settings.refresh_token_idle_ttl_public < settings.refresh_token_idle_ttl
    assert abs(expires_in(rows) - expected) < timedelta(minutes=5)

    refreshed = await refresh(signin, public.client_id, response.json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    rows = await run_sql(
        settings,
        "SELECT expires_at FROM refresh_tokens WHERE client_id = :client AND consumed_at IS NULL",
        client=public.client_id,
    )
    assert abs(expires_in(rows) - expected) < timedelta(minutes=5)


async def test_an_expired_access_token_is_told_to_its_app(database: TestDatabase, tmp_path: Path) -> None:
    # The app must read the invalid_token challenge to know it should refresh.
    settings = make_settings(database, tmp_path, access_token_ttl=1)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await create_user(settings, "alice")
        live = Live(settings, base_url, http, await create_client(settings))
        signin = SignIn(live, await spa_client(settings), "alice", Browser(http))
        response = await tokens_for(signin, signin.rp, Origin=APP)
        assert response.status_code == 200, response.text
        await asyncio.sleep(2)
        expired = await http.get(
            "/userinfo", headers={"Authorization": f"Bearer {response.json()['access_token']}", "Origin": APP}
        )
        forged = await http.get("/userinfo", headers={"Authorization": "Bearer not.a.token", "Origin": APP})
    assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["www-authenticate"]
    assert readable_by(expired, APP)
    assert forged.status_code == 401 and "access-control-allow-origin" not in forged.headers
