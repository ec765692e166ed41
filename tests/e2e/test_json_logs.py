"""``OSTIARY_LOG_FORMAT=json`` under ``ostiary serve``: one JSON object per line, each with
the request's id (echoed as ``X-Request-ID``, the proxy's when a trusted proxy sent one),
client and user where known; and no secret of a whole session of use in any line, even at
DEBUG."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.settings import Settings
from tests.e2e.process import serving
from tests.helpers import TestDatabase, create_client, create_user, free_port, make_settings
from tests.mail import RESET_LINK, Mailbox, forgot, link_in, smtp_server
from tests.mfa import enrol
from tests.oidc import PASSWORD, REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase for alice"
WRONG_PASSWORD = "not alice's passphrase at all"


async def code_flow(browser: Browser, flow: Flow, password: str, scope: str) -> str:
    """Sign in (once with a wrong password first), consent; returns the code."""
    page = await browser.authorize(**flow.params(scope=scope))
    refused = await browser.sign_in(page, "alice", WRONG_PASSWORD)
    assert refused.status_code == 200 and 'name="password"' in refused.text
    page = await browser.sign_in(refused, "alice", password)
    if page.status_code == 200 and 'name="decision"' in page.text:
        page = await browser.submit(page, decision="allow")
    assert page.status_code in (302, 303), page.text
    return query_of(page.headers["location"])["code"]


async def use_everything(settings: Settings, base: str, mailbox: Mailbox, secrets: list[str]) -> dict[str, str]:
    """A session of use that handles every kind of secret; each is added to ``secrets``.
    Returns the request ids sent by the proxy and echoed, by what they were sent with."""
    client = await create_client(
        settings,
        name="Photo Prints",
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        scopes=["openid", "profile", "email", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    secrets.append(client.client_secret)
    auth = (client.client_id, client.client_secret)
    echoed: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        browser = Browser(http)
        flow = Flow.start(client.client_id)
        code = await code_flow(browser, flow, PASSWORD, "openid profile email offline_access")
        secrets += [code, flow.verifier]
        tokens = (await http.post("/token", data=flow.token_form(code), auth=auth)).json()
        secrets += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
        refreshed = await http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=auth,
            headers={"X-Request-ID": "proxy-refresh-1"},
        )
        assert refreshed.status_code == 200, refreshed.text
        echoed["proxy-refresh-1"] = refreshed.headers["x-request-id"]
        secrets += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
        # the consumed refresh token replayed: the family is revoked
        replay = await http.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth
        )
        assert replay.status_code == 400
        introspected = await http.post("/introspect", data={"token": tokens["access_token"]}, auth=auth)
        assert introspected.status_code == 200
        userinfo = await http.get("/userinfo", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
        assert userinfo.status_code in (200, 401)
        revoked = await http.post("/revoke", data={"token": refreshed.json()["refresh_token"]}, auth=auth)
        assert revoked.status_code == 200
        # a bad Basic header: the secret it carries is not logged either
        bad = await http.post("/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, "wr0ng!"))
        assert bad.status_code == 401
        secrets.append("wr0ng!")
        enrolled = await enrol(browser, "alice")
        secrets += [enrolled.app.secret, *enrolled.backup_codes]

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        browser = Browser(http)
        assert (await forgot(browser, "alice@example.com")).status_code == 200
        link = await reset_link_in(mailbox)
        match = RESET_LINK.fullmatch(link)
        assert match
        secrets += [link, match.group(1)]
        page = await http.get(link)
        chosen = await browser.submit(page, {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
        assert chosen.status_code in (200, 303), chosen.text
    secrets += [PASSWORD, NEW_PASSWORD, WRONG_PASSWORD]
    return echoed


async def reset_link_in(mailbox: Mailbox, timeout: float = 20) -> str:
    """The reset link of the first reset mail (security alerts arrive too)."""
    deadline = time.monotonic() + timeout
    while True:
        for message in list(mailbox.messages):
            plain = message.get_body(preferencelist=("plain",))
            if plain is not None and RESET_LINK.search(plain.get_content()):
                return link_in(message)
        assert time.monotonic() < deadline, f"no reset mail among {len(mailbox.messages)}"
        await asyncio.sleep(0.1)


def lines_of(log: list[str]) -> list[dict[str, Any]]:
    records = []
    for line in log:
        if not line.startswith("{"):
            continue  # uvicorn's own start-up lines before logging is configured, if any
        records.append(json.loads(line))
    return records


async def test_json_lines_carry_request_ids_and_no_secret_of_a_whole_session(
    database: TestDatabase, tmp_path: Path
) -> None:
    smtp_port = free_port()
    settings = make_settings(database, tmp_path)
    env = {
        "OSTIARY_LOG_FORMAT": "json",
        "OSTIARY_LOG_LEVEL": "DEBUG",
        "OSTIARY_ACCESS_LOG": "true",
        "OSTIARY_TRUSTED_PROXIES": "127.0.0.1",  # the test stands in for the proxy
        "OSTIARY_SMTP_HOST": "127.0.0.1",
        "OSTIARY_SMTP_PORT": str(smtp_port),
        "OSTIARY_SMTP_SECURITY": "none",
        "OSTIARY_MAIL_POLL_INTERVAL": "1",
    }
    secrets: list[str] = []
    with smtp_server(smtp_port) as mailbox, serving(settings, tmp_path, **env) as (base, log):
        await create_user(settings, "alice", PASSWORD)
        echoed = await use_everything(settings, base, mailbox, secrets)
        plain = httpx.get(base + "/jwks")
    assert echoed == {"proxy-refresh-1": "proxy-refresh-1"}
    generated = plain.headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0

    records = lines_of(log)
    assert len(records) > 20
    unparsed = [line for line in log if not line.startswith("{")]
    assert unparsed == [], unparsed
    for record in records:
        assert {"time", "level", "logger", "event"} <= record.keys(), record
    access = [record for record in records if record["logger"] == "ostiary.access"]
    assert all(record["request_id"] for record in access)
    (refresh,) = [record for record in access if record["request_id"] == "proxy-refresh-1"]
    assert refresh["path"] == "/token" and refresh["status"] == 200 and refresh["method"] == "POST"
    assert refresh["client_id"] and refresh["user_id"], "the token request's client and user are known"
    assert any(record["request_id"] == generated and record["path"] == "/jwks" for record in access)
    text = "\n".join(log)
    for secret in secrets:
        assert secret and secret not in text, f"a secret reached the log: {secret[:12]}..."
        if secret.count(".") == 2:  # a JWT: not its payload either
            assert secret.split(".")[1] not in text
