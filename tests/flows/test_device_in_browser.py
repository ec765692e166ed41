"""The device flow as it happens: a device polls /token over real HTTP, honouring its
interval and ``slow_down``, while a person in Chromium enters the user code at /device,
signs in and allows (or denies) it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from playwright.async_api import Browser as Chromium, Page

from tests.flows.test_device_flow import DEVICE_GRANT, Device, make_device
from tests.helpers import TestDatabase
from tests.oidc import PASSWORD

pytestmark = pytest.mark.anyio


@pytest.fixture
async def device(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Device]:
    async for made in make_device(database, tmp_path):
        yield made


@dataclass
class Poller:
    """A device's polling loop (RFC 8628 §3.4-3.5), as a device library runs it."""

    http: httpx.AsyncClient
    auth: httpx.Auth
    device_code: str
    interval: int
    answers: list[str] = field(default_factory=list)

    async def run(self, deadline: float = 60) -> httpx.Response:
        """Poll until an answer that is not "wait": tokens or a final error."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + deadline
        while loop.time() < ends:
            response = await self.poll()
            if response.status_code == 200 or self.answers[-1] not in ("authorization_pending", "slow_down"):
                return response
            await asyncio.sleep(self.interval)
        raise TimeoutError("the device was never answered")

    async def poll(self) -> httpx.Response:
        """One poll; ``slow_down`` raises the interval by 5 s (RFC 8628 §3.5)."""
        form = {"grant_type": DEVICE_GRANT, "device_code": self.device_code}
        response = await self.http.post("/token", data=form, auth=self.auth)
        if response.status_code != 200:
            error = response.json()["error"]
            self.answers.append(error)
            if error == "slow_down":
                self.interval += 5
        return response


async def _start(device: Device, *, hasty: bool = False) -> tuple[dict[str, Any], Poller, asyncio.Task[httpx.Response]]:
    codes = await device.authorize(scope="openid profile email")
    auth = httpx.BasicAuth(device.tv.client_id, device.tv.client_secret)
    poller = Poller(device.http, auth, codes["device_code"], codes["interval"])
    if hasty:  # a device that sends its first poll twice, at once
        await poller.poll()
    return codes, poller, asyncio.create_task(poller.run())


async def _sign_in(page: Page) -> None:
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")


async def test_a_person_in_chromium_approves_a_polling_device(device: Device, chromium: Chromium) -> None:
    codes, poller, polling = await _start(device)
    context = await chromium.new_context()
    try:
        page = await context.new_page()
        # the person types the code they read on the TV, as they would: lower case, no dash
        await page.goto(codes["verification_uri"])
        await page.fill("#user_code", codes["user_code"].lower().replace("-", ""))
        await page.click("button[type=submit]")
        await page.wait_for_selector("#password")
        assert "Living Room TV" in await page.content()
        await _sign_in(page)
        await page.wait_for_selector("button[name=decision][value=allow]")
        assert await page.text_content("#page-title") == "Connect Living Room TV?"
        assert await page.text_content("#device-user-code") == codes["user_code"]
        assert await page.locator(".scope-name").all_text_contents() == ["openid", "profile", "email"]
        await asyncio.sleep(1.5)  # let the device poll while the person reads
        await page.click("button[name=decision][value=allow]")
        await page.wait_for_selector("text=Device connected")
    finally:
        await context.close()
    response = await asyncio.wait_for(polling, 30)
    assert response.status_code == 200, response.text
    assert poller.answers and set(poller.answers) == {"authorization_pending"}  # never too fast
    tokens = response.json()
    keys = await device.jwks()
    access = jwt.decode(tokens["access_token"], keys, algorithms=["RS256"])
    identity = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
    assert access.claims["client_id"] == device.tv.client_id
    assert identity.claims["aud"] == device.tv.client_id
    assert identity.claims["iss"] == device.settings.issuer
    assert identity.claims["email"] == "alice@example.com"
    assert "sid" not in identity.claims
    userinfo = await device.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.json()["preferred_username"] == "alice"


async def test_a_person_in_chromium_denies_a_device_from_the_complete_link(device: Device, chromium: Chromium) -> None:
    codes, poller, polling = await _start(device)
    context = await chromium.new_context()
    try:
        page = await context.new_page()
        await page.goto(codes["verification_uri_complete"])  # the QR code's link: the code prefilled
        await _sign_in(page)
        await page.wait_for_selector("button[name=decision][value=deny]")
        await page.click("button[name=decision][value=deny]")
        await page.wait_for_selector("text=Device not connected")
    finally:
        await context.close()
    response = await asyncio.wait_for(polling, 30)
    assert response.status_code == 400
    assert response.json()["error"] == "access_denied"
    assert "slow_down" not in poller.answers


async def test_a_device_that_polled_too_fast_slows_down_and_is_served(device: Device, chromium: Chromium) -> None:
    codes, poller, polling = await _start(device, hasty=True)
    context = await chromium.new_context()
    try:
        page = await context.new_page()
        await page.goto(codes["verification_uri_complete"])
        await _sign_in(page)
        await page.click("button[name=decision][value=allow]")
        await page.wait_for_selector("text=Device connected")
    finally:
        await context.close()
    response = await asyncio.wait_for(polling, 30)
    assert response.status_code == 200, response.text
    # one hasty poll was slowed down; at the interval raised by 5 s the device was served
    assert poller.answers[:2] == ["authorization_pending", "slow_down"]
    assert poller.interval == codes["interval"] + 5
    assert poller.answers.count("slow_down") == 1
