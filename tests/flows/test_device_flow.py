"""The device authorization grant (RFC 8628) over real HTTP: a device asks for codes, a
person enters the user code at /device (signing in, stepping up, confirming), and the
device polls /token until it has tokens, or hears why not.

The person's browser here is the cookie-keeping HTTP client of tests/oidc.py; Chromium
does the same in test_device_in_browser.py."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from server.settings import Settings
from tests.flows.test_audit_trail import events
from tests.helpers import Client, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.mfa import enrol
from tests.oidc import REDIRECT_URI, Browser

pytestmark = pytest.mark.anyio

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


@dataclass
class Device:
    """Ostiary, a person (alice) with a browser, and a TV registered for the device grant."""

    settings: Settings
    base_url: str
    http: httpx.AsyncClient
    tv: Client
    browser: Browser

    async def authorize(self, client: Client | None = None, **form: str) -> dict[str, Any]:
        client = client or self.tv
        response = await self.http.post(
            "/device/authorize", data={"scope": "openid profile", **form}, auth=_auth(client)
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def poll(self, device_code: str, client: Client | None = None) -> httpx.Response:
        client = client or self.tv
        form = {"grant_type": DEVICE_GRANT, "device_code": device_code}
        return await self.http.post("/token", data=form, auth=_auth(client))

    async def approve(self, user_code: str, decision: str = "allow") -> httpx.Response:
        """Enter ``user_code`` as a person would type it, sign in, and decide."""
        page = await self.browser.http.get("/device", params={"user_code": user_code.lower().replace("-", " ")})
        if 'name="password"' in page.text:
            page = await self.browser.sign_in(page, "alice")
            assert page.status_code == 303, page.text
            page = await self.browser.http.get(page.headers["location"])
        assert page.status_code == 200, page.text
        assert 'action="/device/confirm"' in page.text, page.text
        return await self.browser.submit(page, decision=decision)

    async def jwks(self) -> KeySet:
        return KeySet.import_key_set((await self.http.get("/jwks")).json())


def _auth(client: Client) -> httpx.Auth | None:
    return httpx.BasicAuth(client.client_id, client.client_secret) if client.client_secret else None


async def make_device(database: TestDatabase, tmp_path: Path, **overrides: Any) -> AsyncIterator[Device]:
    settings = make_settings(database, tmp_path, device_code_interval=1, **overrides)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        tv = await create_client(
            settings,
            name="Living Room TV",
            grant_types=["authorization_code", DEVICE_GRANT, "refresh_token"],
            scopes=["openid", "profile", "email", "offline_access"],
            redirect_uris=[REDIRECT_URI],
        )
        await create_user(settings, "alice")
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as person:
            yield Device(settings, base_url, http, tv, Browser(person))


@pytest.fixture
async def device(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Device]:
    async for made in make_device(database, tmp_path):
        yield made


def _error(response: httpx.Response, status: int = 400) -> str:
    """The RFC 6749 §5.2 error code of ``response``, checked to be one."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    error: str = response.json()["error"]
    return error


async def test_device_authorization_response(device: Device) -> None:
    response = await device.http.post("/device/authorize", data={"scope": "openid"}, auth=_auth(device.tv))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    assert set(data) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert USER_CODE.match(data["user_code"]), data["user_code"]
    assert len(data["device_code"]) >= 40
    assert data["verification_uri"] == device.base_url + "/device"
    assert data["verification_uri_complete"] == f"{device.base_url}/device?user_code={data['user_code']}"
    assert data["expires_in"] == device.settings.device_code_ttl == 600
    assert data["interval"] == 1
    # each request its own codes
    other = await device.authorize()
    assert other["device_code"] != data["device_code"] and other["user_code"] != data["user_code"]


async def test_approved_device_gets_tokens_once(device: Device) -> None:
    codes = await device.authorize()
    assert _error(await device.poll(codes["device_code"])) == "authorization_pending"
    done = await device.approve(codes["user_code"])
    assert done.status_code == 200, done.text
    assert "Device connected" in done.text
    await asyncio.sleep(1.05)  # the interval
    response = await device.poll(codes["device_code"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "openid profile"
    keys = await device.jwks()
    access = jwt.decode(tokens["access_token"], keys, algorithms=["RS256"])
    assert access.header["typ"] == "at+jwt"
    assert access.claims["client_id"] == device.tv.client_id
    assert access.claims["iss"] == device.settings.issuer
    identity = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
    assert identity.claims["aud"] == device.tv.client_id
    assert identity.claims["preferred_username"] == "alice"
    assert identity.claims["sub"] == access.claims["sub"]
    assert identity.claims["amr"] == ["pwd"]
    assert "auth_time" in identity.claims
    # not bound to the browser session that approved it
    assert "sid" not in identity.claims
    # the refresh token works
    refreshed = await device.http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=_auth(device.tv)
    )
    assert refreshed.status_code == 200, refreshed.text
    # the code is redeemed once: presented again it is refused, and the grant is revoked
    await asyncio.sleep(1.05)
    assert _error(await device.poll(codes["device_code"])) == "invalid_grant"
    again = await device.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]},
        auth=_auth(device.tv),
    )
    assert _error(again) == "invalid_grant"
    # the page no longer knows the code
    page = await device.browser.http.get("/device", params={"user_code": codes["user_code"]})
    assert page.status_code == 400
    assert "not valid" in page.text
    # the trail: the person signed in for the TV, approved it; the replay revoked the grant
    trail = [(e.kind, e.user_sub, e.client_id) for e in await events(device.settings)]
    sub, tv = identity.claims["sub"], device.tv.client_id
    assert [entry for entry in trail if entry[0].split(".")[0] not in ("key", "client", "user")] == [
        ("login.succeeded", sub, tv),
        ("device.approved", sub, tv),
        ("grant.revoked", None, tv),
    ]
    (revoked,) = await events(device.settings, "grant.revoked")
    assert revoked.details == {"reason": "device_code_replay"}
    assert revoked.subject == access.claims["gid"]


async def test_signing_out_of_the_browser_leaves_the_device_signed_in(device: Device) -> None:
    codes = await device.authorize(scope="openid profile")
    await device.approve(codes["user_code"])
    tokens = (await device.poll(codes["device_code"])).json()
    page = await device.browser.http.get("/logout")
    signed_out = await device.browser.submit(page, confirm="yes")
    assert signed_out.status_code == 200, signed_out.text
    assert 'name="password"' in (await device.browser.http.get("/account")).text  # the browser is signed out
    refreshed = await device.http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=_auth(device.tv)
    )
    assert refreshed.status_code == 200, refreshed.text
    userinfo = await device.http.get(
        "/userinfo", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    assert userinfo.status_code == 200, userinfo.text


async def test_denied_device_hears_access_denied(device: Device) -> None:
    codes = await device.authorize()
    done = await device.approve(codes["user_code"], decision="deny")
    assert done.status_code == 200
    assert "Device not connected" in done.text
    assert _error(await device.poll(codes["device_code"])) == "access_denied"
    await asyncio.sleep(1.05)
    assert _error(await device.poll(codes["device_code"])) == "access_denied"
    (denied,) = await events(device.settings, "device.denied")
    assert denied.client_id == device.tv.client_id and denied.user_sub is not None


async def test_polling_faster_than_the_interval_slows_the_device_down(device: Device) -> None:
    codes = await device.authorize()
    assert _error(await device.poll(codes["device_code"])) == "authorization_pending"
    assert _error(await device.poll(codes["device_code"])) == "slow_down"
    # the interval is now 1 + 5 s: a poll after 1 s is still too fast
    await asyncio.sleep(1.05)
    assert _error(await device.poll(codes["device_code"])) == "slow_down"


async def test_a_public_client_polls_with_its_client_id(device: Device) -> None:
    tv = await create_client(
        device.settings, name="Public TV", grant_types=[DEVICE_GRANT], scopes=["openid"], public=True
    )
    response = await device.http.post("/device/authorize", data={"client_id": tv.client_id})
    assert response.status_code == 200, response.text
    codes = response.json()
    await device.approve(codes["user_code"])
    form = {"grant_type": DEVICE_GRANT, "device_code": codes["device_code"], "client_id": tv.client_id}
    tokens = await device.http.post("/token", data=form)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "openid"  # omitted: the registered scopes
    assert "refresh_token" not in tokens.json()  # not registered for refresh_token


@pytest.fixture
async def short_lived(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Device]:
    async for made in make_device(database, tmp_path, device_code_ttl=2):
        yield made


async def test_expired_device_code(short_lived: Device) -> None:
    codes = await short_lived.authorize()
    assert codes["expires_in"] == 2
    await asyncio.sleep(2.1)
    assert _error(await short_lived.poll(codes["device_code"])) == "expired_token"
    page = await short_lived.browser.http.get("/device", params={"user_code": codes["user_code"]})
    assert page.status_code == 400
    assert "not valid" in page.text


async def test_a_client_without_the_grant_is_refused(device: Device) -> None:
    other = await create_client(device.settings, name="Back office", grant_types=["client_credentials"])
    response = await device.http.post("/device/authorize", data={"scope": "api:read"}, auth=_auth(other))
    assert _error(response) == "unauthorized_client"
    codes = await device.authorize()
    assert _error(await device.poll(codes["device_code"], other)) == "unauthorized_client"


async def test_bad_requests_get_rfc6749_errors(device: Device) -> None:
    http, tv = device.http, device.tv
    codes = await device.authorize()
    # no client authentication, a wrong secret
    assert _error(await http.post("/device/authorize", data={"scope": "openid"}), 401) == "invalid_client"
    wrong = httpx.BasicAuth(tv.client_id, "not-the-secret")
    assert _error(await http.post("/device/authorize", data={}, auth=wrong, headers=_FORM), 401) == "invalid_client"
    # a scope the client may not have
    response = await http.post("/device/authorize", data={"scope": "openid admin"}, auth=_auth(tv))
    assert _error(response) == "invalid_scope"
    # a repeated parameter, a body that is not a form
    response = await http.post("/device/authorize", content="scope=a&scope=b", auth=_auth(tv), headers=_FORM)
    assert _error(response) == "invalid_request"
    response = await http.post("/device/authorize", json={"scope": "openid"}, auth=_auth(tv))
    assert _error(response) == "invalid_request"
    # polls: no device code, an unknown one, another client's
    assert _error(await http.post("/token", data={"grant_type": DEVICE_GRANT}, auth=_auth(tv))) == "invalid_request"
    assert _error(await device.poll("x" * 43)) == "invalid_grant"
    assert _error(await device.poll("x" * 5000)) == "invalid_grant"
    other = await create_client(device.settings, name="Other TV", grant_types=[DEVICE_GRANT], scopes=["openid"])
    assert _error(await device.poll(codes["device_code"], other)) == "invalid_grant"
    # nothing of that disturbed the real one
    assert _error(await device.poll(codes["device_code"])) == "authorization_pending"


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_the_device_page_explains_bad_codes_and_forms(device: Device) -> None:
    http = device.browser.http
    page = await http.get("/device")
    assert page.status_code == 200
    assert 'name="user_code"' in page.text
    for typed in ("nope", "AAAA-AAAA", "BCDF-GHJK-LMNP", "\u0000"):
        page = await http.get("/device", params={"user_code": typed})
        assert page.status_code == 400, typed
        assert "8 letters" in page.text
    page = await http.get("/device", params={"user_code": "BCDF-GHJK"})
    assert page.status_code == 400
    assert "not valid" in page.text
    # the confirmation refuses a post without this browser's CSRF token
    codes = await device.authorize()
    response = await http.post("/device/confirm", data={"user_code": codes["user_code"], "decision": "allow"})
    assert response.status_code == 403
    assert "This form has expired" in response.text
    assert _error(await device.poll(codes["device_code"])) == "authorization_pending"


@pytest.fixture
async def limited(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Device]:
    trusted = (ipaddress.ip_network("127.0.0.0/8"),)
    async for made in make_device(database, tmp_path, rate_limit_device=3, trusted_proxies=trusted):
        yield made


async def _wait_for_a_fresh_minute() -> None:
    """The limits count in fixed one-minute windows: start well inside one."""
    if time.time() % 60 > 50:
        await asyncio.sleep(61 - time.time() % 60)


async def test_guessing_user_codes_is_rate_limited_per_address(limited: Device) -> None:
    await _wait_for_a_fresh_minute()
    codes = await limited.authorize()
    http = limited.browser.http
    for guess in ("BCDF-GHJK", "BCDF-GHJL", "BCDF-GHJM"):
        page = await http.get("/device", params={"user_code": guess})
        assert page.status_code == 400
    page = await http.get("/device", params={"user_code": codes["user_code"]})
    assert page.status_code == 429
    assert int(page.headers["retry-after"]) >= 1
    assert "Too many codes" in page.text
    # another address may still enter its code
    other = await http.get(
        "/device", params={"user_code": codes["user_code"]}, headers={"X-Forwarded-For": "192.0.2.7"}
    )
    assert other.status_code == 200
    assert 'name="password"' in other.text


async def test_one_code_is_rate_limited_from_every_address(limited: Device) -> None:
    await _wait_for_a_fresh_minute()
    http = limited.browser.http
    for n in range(3):
        page = await http.get("/device", params={"user_code": "BCDF-GHJK"}, headers={"X-Forwarded-For": f"192.0.2.{n}"})
        assert page.status_code == 400
    page = await http.get("/device", params={"user_code": "bcdfghjk"}, headers={"X-Forwarded-For": "192.0.2.99"})
    assert page.status_code == 429


async def test_device_authorizations_are_rate_limited_per_address(limited: Device) -> None:
    await _wait_for_a_fresh_minute()
    for _ in range(3):
        await limited.authorize()
    response = await limited.http.post("/device/authorize", data={"scope": "openid"}, auth=_auth(limited.tv))
    assert _error(response, 429) == "temporarily_unavailable"
    assert int(response.headers["retry-after"]) >= 1
    other = await limited.http.post(
        "/device/authorize",
        data={"scope": "openid"},
        auth=_auth(limited.tv),
        headers={"X-Forwarded-For": "192.0.2.7"},
    )
    assert other.status_code == 200, other.text


async def test_a_client_that_requires_mfa_steps_the_person_up(device: Device) -> None:
    enrolled = await enrol(device.browser, "alice")
    tv = await create_client(
        device.settings,
        name="Bank TV",
        grant_types=["authorization_code", DEVICE_GRANT],
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
        require_mfa=True,
    )
    # a fresh browser: password, then the second factor, then the confirmation
    async with httpx.AsyncClient(base_url=device.base_url, timeout=10) as fresh:
        browser = Browser(fresh)
        codes = await device.authorize(tv, scope="openid", client_id=tv.client_id)
        page = await fresh.get("/device", params={"user_code": codes["user_code"]})
        assert "Bank TV" in page.text
        page = await browser.sign_in(page, "alice")
        assert 'name="code"' in page.text, page.text
        page = await browser.submit(page, {"code": await enrolled.app.code()})
        assert page.status_code == 303, page.text
        page = await fresh.get(page.headers["location"])
        assert "Connect Bank TV?" in page.text
        done = await browser.submit(page, decision="allow")
        assert "Device connected" in done.text
    tokens = (await device.poll(codes["device_code"], tv)).json()
    identity = jwt.decode(tokens["id_token"], await device.jwks(), algorithms=["RS256"])
    assert identity.claims["acr"] == "urn:ostiary:acr:mfa"
    assert identity.claims["amr"] == ["pwd", "otp", "mfa"]


async def test_a_client_that_requires_mfa_refuses_a_person_without_one(device: Device) -> None:
    tv = await create_client(
        device.settings,
        name="Bank TV",
        grant_types=["authorization_code", DEVICE_GRANT],
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
        require_mfa=True,
    )
    codes = await device.authorize(tv, scope="openid")
    page = await device.browser.http.get("/device", params={"user_code": codes["user_code"]})
    page = await device.browser.sign_in(page, "alice")
    page = await device.browser.http.get(page.headers["location"])
    assert page.status_code == 400
    assert "A second factor is needed" in page.text
    assert "decision" not in page.text
    assert _error(await device.poll(codes["device_code"], tv)) == "authorization_pending"


async def test_a_self_registered_device_client_is_shown_as_unverified(database: TestDatabase, tmp_path: Path) -> None:
    async for device in make_device(database, tmp_path, registration="open"):
        registered = await device.http.post(
            "/register",
            json={
                "client_name": "Totally Your Bank TV",
                "grant_types": [DEVICE_GRANT],
                "token_endpoint_auth_method": "none",
                "scope": "openid",
            },
        )
        assert registered.status_code == 201, registered.text
        tv = Client(registered.json()["client_id"], "")
        codes = await device.authorize(tv, scope="openid", client_id=tv.client_id)
        page = await device.browser.http.get("/device", params={"user_code": codes["user_code"]})
        page = await device.browser.sign_in(page, "alice")
        page = await device.browser.http.get(page.headers["location"])
        assert 'action="/device/confirm"' in page.text, page.text
        assert 'id="client-unverified"' in page.text and "registered itself" in page.text
        # the administrator's TV carries no such mark
        ours = await device.browser.http.get("/device", params={"user_code": (await device.authorize())["user_code"]})
        assert 'action="/device/confirm"' in ours.text and 'id="client-unverified"' not in ours.text
