"""Per-client signing algorithms: RS256 (the default), PS256 and ES256 for ID tokens
(``id_token_signed_response_alg``) and access tokens (``access_token_signed_response_alg``).

Every one of them has an active key from the first start, published in ``/jwks`` and
rotated by the same staged lifecycle; what a client is issued verifies, with a stock
library, against ``/jwks`` by ``kid``, and at our own endpoints (introspection, userinfo,
``id_token_hint``, logout).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from sqlalchemy import text

from tests.flows.conftest import Live, SignIn
from tests.helpers import (
    Client,
    TestDatabase,
    app_in_process,
    create_client,
    create_user,
    make_settings,
    ostiary_env,
    run_ostiary,
    serve_in_process,
)
from tests.mail import run_sql
from tests.oidc import LOGOUT_URI, REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

CLIENT_ALGS = ["RS256", "PS256", "ES256"]
SECRET = "k" * 40
#: key changes seen within a second; tokens (and so the hold of a retired key) of 5 s
FAST = {"keys_poll_interval": 1, "jwks_max_age": 1, "access_token_ttl": 5, "id_token_ttl": 5}


@pytest.fixture
async def fast(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Live]:
    settings = make_settings(database, tmp_path, keys_secret=SECRET, **FAST)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        client = await create_client(settings, introspection=True)
        yield Live(settings, base_url, http, client)


async def jwks(live: Live) -> dict[str, Any]:
    response = await live.http.get("/jwks")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def client_credentials(live: Live, client: Client) -> str:
    response = await live.http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, client.client_secret)
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def verify_with_pyjwt(live: Live, token: str, alg: str, typ: str, audience: str | None) -> dict[str, Any]:
    """As a resource server does: the key picked from ``/jwks`` by ``kid``, only ``alg`` allowed
    (``audience`` None: whichever the token names)."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg and header["typ"] == typ
    key = jwt.PyJWKSet.from_dict(await jwks(live))[header["kid"]]
    assert key.algorithm_name == alg  # the JWK names the algorithm it signs with
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key,
        algorithms=[alg],
        audience=audience,
        issuer=live.settings.issuer,
        options={"verify_aud": audience is not None},
    )
    return claims


async def introspect(live: Live, token: str, client: Client) -> dict[str, Any]:
    """RFC 7662, asked by the client the token was issued to."""
    response = await live.http.post("/introspect", data={"token": token}, auth=(client.client_id, client.client_secret))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until(predicate, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds * 10)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


async def test_every_client_algorithm_has_a_published_key_and_is_advertised(live: Live) -> None:
    keys = (await jwks(live))["keys"]
    assert sorted(key["alg"] for key in keys) == sorted(CLIENT_ALGS)
    by_alg = {key["alg"]: key for key in keys}
    assert by_alg["PS256"]["kty"] == by_alg["RS256"]["kty"] == "RSA"
    assert by_alg["PS256"]["n"] != by_alg["RS256"]["n"]  # one algorithm per RSA key
    assert by_alg["ES256"]["kty"] == "EC" and by_alg["ES256"]["crv"] == "P-256"
    metadata = (await live.http.get("/.well-known/openid-configuration")).json()
    assert metadata["id_token_signing_alg_values_supported"] == sorted(CLIENT_ALGS)


@pytest.mark.parametrize("alg", CLIENT_ALGS)
async def test_access_tokens_in_the_clients_registered_algorithm(live: Live, alg: str) -> None:
    client = await create_client(live.settings, audiences=["https://api.example.com"], access_token_alg=alg)
    token = await client_credentials(live, client)
    claims = await verify_with_pyjwt(live, token, alg, "at+jwt", "https://api.example.com")
    assert claims["client_id"] == client.client_id
    assert (await introspect(live, token, client))["active"] is True
    # a client that registered nothing gets RS256, the server's default
    assert jwt.get_unverified_header(await client_credentials(live, live.client))["alg"] == "RS256"


@pytest.mark.parametrize("alg", ["PS256", "ES256"])
async def test_the_server_default_for_access_tokens(database: TestDatabase, tmp_path: Path, alg: str) -> None:
    settings = make_settings(database, tmp_path, access_token_alg=alg)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        live = Live(settings, base_url, http, await create_client(settings, introspection=True))
        token = await client_credentials(live, live.client)
        jose_key_set = KeySet.import_key_set(await jwks(live))
        decoded = jose_jwt.decode(token, jose_key_set, algorithms=[alg])
        assert decoded.header["alg"] == alg and decoded.claims["client_id"] == live.client.client_id
        assert (await introspect(live, token, live.client))["active"] is True
        pinned = await create_client(settings, access_token_alg="RS256")
        assert jwt.get_unverified_header(await client_credentials(live, pinned))["alg"] == "RS256"


async def relying_party(live: Live, alg: str) -> SignIn:
    rp = await create_client(
        live.settings,
        grant_types=["authorization_code"],
        scopes=["openid", "profile"],
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[LOGOUT_URI],
        first_party=True,
        id_token_alg=alg,
        access_token_alg=alg,
    )
    await create_user(live.settings, "alice")
    return SignIn(live, rp, "alice", Browser(live.http))


@pytest.mark.parametrize("alg", CLIENT_ALGS)
async def test_id_tokens_and_access_tokens_of_the_code_flow(live: Live, alg: str) -> None:
    signin = await relying_party(live, alg)
    tokens = await signin.tokens(Flow.start(signin.rp.client_id), scope="openid profile")

    # the ID token, as a relying party verifies it with joserfc and with PyJWT
    jose_key_set = KeySet.import_key_set(await jwks(live))
    decoded = jose_jwt.decode(tokens["id_token"], jose_key_set, algorithms=[alg])
    assert decoded.header["alg"] == alg and decoded.claims["aud"] == signin.rp.client_id
    claims = await verify_with_pyjwt(live, tokens["id_token"], alg, "JWT", signin.rp.client_id)
    assert claims["at_hash"]  # OIDC Core §3.1.3.6, the hash of the same family as alg
    access = await verify_with_pyjwt(live, tokens["access_token"], alg, "at+jwt", None)
    assert access["client_id"] == signin.rp.client_id and access["sub"] == claims["sub"]

    # and our own endpoints accept what they issued
    userinfo = await live.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 200 and userinfo.json()["preferred_username"] == "alice"
    flow = Flow.start(signin.rp.client_id)
    silent = await signin.browser.authorize(
        **flow.params(scope="openid", prompt="none", id_token_hint=tokens["id_token"])
    )
    assert silent.status_code == 302 and "code" in query_of(silent.headers["location"]), silent.text
    logout = await live.http.get(
        "/logout", params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_URI, "state": "s"}
    )
    assert logout.status_code == 302 and logout.headers["location"] == LOGOUT_URI + "?state=s", logout.text


async def ostiary(live: Live, *args: str) -> str:
    env = ostiary_env(live.settings, OSTIARY_KEYS_SECRET=SECRET)
    result = await asyncio.to_thread(run_ostiary, list(args), env, live.settings.keys_dir.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_a_ps256_key_rotates_by_the_staged_lifecycle(fast: Live) -> None:
    client = await create_client(fast.settings, access_token_alg="PS256")
    first = await jwks(fast)
    old = await client_credentials(fast, client)
    old_kid = jwt.get_unverified_header(old)["kid"]
    others = {key["kid"] for key in first["keys"] if key["alg"] != "PS256"}

    await ostiary(fast, "keys", "rotate", "--alg", "PS256")

    async def published(n: int) -> bool:
        return len((await jwks(fast))["keys"]) == n

    await until(lambda: published(len(first["keys"]) + 1))
    (staged,) = {key["kid"] for key in (await jwks(fast))["keys"]} - {key["kid"] for key in first["keys"]}
    assert {key["kid"]: key["alg"] for key in (await jwks(fast))["keys"]}[staged] == "PS256"
    # publish first: the staged key is in /jwks while the old one still signs
    assert jwt.get_unverified_header(await client_credentials(fast, client))["kid"] == old_kid

    last_of_the_old_key = [old]

    async def signs_with_the_staged_key() -> bool:
        token = await client_credentials(fast, client)
        if jwt.get_unverified_header(token)["kid"] == old_kid:
            last_of_the_old_key[0] = token
        return jwt.get_unverified_header(token)["kid"] == staged

    await until(signs_with_the_staged_key)  # staging delay: max-age 1 s + 2 polls of 1 s
    new = await client_credentials(fast, client)
    assert (await verify_with_pyjwt(fast, new, "PS256", "at+jwt", None))["client_id"] == client.client_id
    # keep until expired: the retired key still verifies the tokens it signed
    (last,) = last_of_the_old_key
    assert (await verify_with_pyjwt(fast, last, "PS256", "at+jwt", None))["client_id"] == client.client_id
    assert (await introspect(fast, last, client))["active"] is True

    async def old_key_removed() -> bool:
        return old_kid not in {key["kid"] for key in (await jwks(fast))["keys"]}

    await until(old_key_removed, seconds=15)  # the hold: 5 s tokens + 2 polls
    # the RS256 and ES256 keys were left alone
    assert {key["kid"] for key in (await jwks(fast))["keys"]} == others | {staged}
    states = {key["kid"]: key["state"] for key in json.loads(await ostiary(fast, "keys", "list", "--json"))}
    assert states[old_kid] == "removed" and states[staged] == "active"


@pytest.mark.parametrize("alg", ["PS256", "ES256"])
async def test_readiness_wants_an_active_key_for_every_client_algorithm(
    database: TestDatabase, tmp_path: Path, alg: str
) -> None:
    settings = make_settings(database, tmp_path, mail_poll_interval=0, keys_poll_interval=1)
    async with app_in_process(settings) as (http, _):
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["keys"] == "ok"
        await run_sql(
            database.url, text(f"UPDATE signing_keys SET state = 'retired' WHERE state = 'active' AND alg = '{alg}'")
        )
        for _ in range(100):
            response = await http.get("/readyz")
            if response.status_code == 503:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["failing"] == ["keys"]
        assert body["checks"]["keys"] == f"no active signing key for {alg}"
