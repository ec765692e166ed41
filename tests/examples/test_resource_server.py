"""examples/resource-server, started by its one command, verifies Ostiary's access tokens
offline against /jwks: it serves a token for its audience with its scope and refuses, with
RFC 6750's challenge, every other one; after a key rotated in at once it fetches the key set
again for the new kid, although its copy is still fresh by Cache-Control."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from server.keys.ring import build_keyring
from server.keys.signer import CompactSigner
from server.keys.wrapping import KeyWrapper, KeyWrappers
from server.settings import Settings
from server.storage import keys as key_store
from server.storage.engine import create_sessionmaker, make_engine
from tests.examples.running import running
from tests.helpers import (
    Client,
    TestDatabase,
    create_client,
    free_port,
    make_settings,
    ostiary_env,
    run_ostiary,
    serve_in_process,
)

pytestmark = pytest.mark.anyio

SECRET = "k" * 40  # the key-encryption secret: the test signs with Ostiary's own key too
OTHER_API = "https://other.example.com"


@dataclass
class Setup:
    settings: Settings
    issuer: str
    api: str
    client: Client
    http: httpx.AsyncClient

    async def token(self, scope: str = "reports:read", **extra: str) -> str:
        response = await self.http.post(
            self.issuer + "/token",
            data={"grant_type": "client_credentials", "scope": scope, **extra},
            auth=(self.client.client_id, self.client.client_secret),
        )
        assert response.status_code == 200, response.text
        value: str = response.json()["access_token"]
        return value

    async def call(self, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.http.get(self.api + "/reports", headers=headers)


@asynccontextmanager
async def api_and_ostiary(database: TestDatabase, tmp_path: Path, **overrides: Any) -> AsyncIterator[Setup]:
    settings = make_settings(database, tmp_path, keys_secret=SECRET, **overrides)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    command = [sys.executable, "examples/resource-server/api.py", "--issuer", settings.issuer, "--port", str(port)]
    async with (
        serve_in_process(settings) as issuer,
        running(command, ostiary_env(settings), api + "/reports", tmp_path / "api.log") as example,
        httpx.AsyncClient(timeout=15) as http,
    ):
        client = await create_client(
            settings, scopes=["reports:read", "reports:write"], audiences=[api, OTHER_API], name="reports"
        )
        try:
            yield Setup(settings, issuer, api, client, http)
        except BaseException:
            print(example.output())  # shown with the failure
            raise


def challenge(response: httpx.Response) -> str:
    value: str = response.headers["www-authenticate"]
    return value


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and claims, unverified."""
    header, payload, _ = token.split(".")
    return segment(header), segment(payload)


def segment(part: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


async def ostiary_signer(settings: Settings) -> CompactSigner:
    """Ostiary's active RS256 key, as the server signs with it."""
    engine = make_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            stored = await session.run_sync(key_store.list_keys)
    finally:
        await engine.dispose()
    return build_keyring(stored, KeyWrappers(KeyWrapper(SECRET))).signer("RS256")


async def test_the_api_serves_its_tokens_and_refuses_every_other(database: TestDatabase, tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with api_and_ostiary(database, tmp_path) as setup:
            good = await setup.token()
            served = await setup.call(good)
            assert served.status_code == 200, served.text
            assert served.json()["client_id"] == setup.client.client_id
            assert served.json()["scope"] == ["reports:read"]

            missing = await setup.call(None)
            assert missing.status_code == 401 and challenge(missing) == 'Bearer realm="reports"'

            narrow = await setup.call(await setup.token("reports:write"))
            assert narrow.status_code == 403, narrow.text
            assert 'error="insufficient_scope"' in challenge(narrow) and 'scope="reports:read"' in challenge(narrow)

            elsewhere = await setup.call(await setup.token(resource=OTHER_API))  # RFC 8707: aud is the other API
            assert elsewhere.status_code == 401 and 'error="invalid_token"' in challenge(elsewhere)
            assert "aud claim" in challenge(elsewhere)

            header, payload, signature = good.split(".")
            flipped = signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]
            tampered = await setup.call(f"{header}.{payload}.{flipped}")
            assert tampered.status_code == 401 and "signature does not verify" in challenge(tampered)

            # Ostiary's own key signs the variations, so each is refused for its one change.
            signer = await ostiary_signer(setup.settings)
            good_header, claims = parts(good)
            assert signer.kid == good_header["kid"]
            assert (await setup.call(signer.sign(claims, typ="at+jwt"))).status_code == 200  # the unchanged claims
            now = int(time.time())
            expired = await setup.call(signer.sign({**claims, "iat": now - 7200, "exp": now - 3600}, typ="at+jwt"))
            assert expired.status_code == 401 and "has expired" in challenge(expired)
            id_token_like = await setup.call(signer.sign(claims, typ="JWT"))
            assert id_token_like.status_code == 401 and "not an access token" in challenge(id_token_like)

            stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
            forged = jwt.encode({"alg": "RS256", "kid": "not-published", "typ": "at+jwt"}, claims, stranger)
            refused = await setup.call(forged)
            assert refused.status_code == 401 and "does not publish" in challenge(refused)


async def test_a_key_rotated_in_at_once_is_fetched_for_its_new_kid(database: TestDatabase, tmp_path: Path) -> None:
    # /jwks says max-age=600: without the early fetch for an unknown kid, the API would
    # refuse the new key's tokens for ten minutes.
    with anyio.fail_after(120):
        async with api_and_ostiary(database, tmp_path, keys_poll_interval=1, jwks_max_age=600) as setup:
            before = await setup.token()
            assert (await setup.call(before)).status_code == 200  # the API has the key set now

            env = ostiary_env(setup.settings, OSTIARY_KEYS_SECRET=SECRET)
            result = await asyncio.to_thread(run_ostiary, ["keys", "rotate", "--now"], env, tmp_path)
            assert result.returncode == 0, result.stderr
            old_kid = parts(before)[0]["kid"]
            after = await setup.token()
            while parts(after)[0]["kid"] == old_kid:  # the server follows within a poll interval
                await asyncio.sleep(0.2)
                after = await setup.token()

            served = await setup.call(after)
            assert served.status_code == 200, served.text
            assert (await setup.call(before)).status_code == 200  # the retired key is still published
