"""Key changes as a running server sees them: revocation, algorithms, JWKS revalidation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from tests.flows.conftest import Live, SignIn
from tests.helpers import (
    TestDatabase,
    create_client,
    create_user,
    make_settings,
    ostiary_env,
    run_ostiary,
    serve_in_process,
)
from tests.oidc import REDIRECT_URI, Browser, Flow

pytestmark = pytest.mark.anyio

FAST = {"keys_poll_interval": 1, "jwks_max_age": 1}


@pytest.fixture
async def fast(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Live]:
    """A server whose processes pick up key changes within a second."""
    settings = make_settings(database, tmp_path, keys_secret="k" * 40, **FAST)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        client = await create_client(settings, introspection=True)
        yield Live(settings, base_url, http, client)


async def ostiary(live: Live, *args: str) -> str:
    env = ostiary_env(live.settings, OSTIARY_KEYS_SECRET="k" * 40)
    result = await asyncio.to_thread(run_ostiary, list(args), env, live.settings.keys_dir.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def token(live: Live) -> str:
    response = await live.http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(live.client.client_id, live.client.client_secret)
    )
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value


async def until(predicate, seconds: float = 8.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds * 10)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


async def kids(live: Live) -> list[str]:
    return [k["kid"] for k in (await live.http.get("/jwks")).json()["keys"]]


async def test_revoking_the_signing_key_makes_its_tokens_inactive_at_once(fast: Live) -> None:
    old = await token(fast)
    old_kid = jwt.get_unverified_header(old)["kid"]
    auth = (fast.client.client_id, fast.client.client_secret)
    assert (await fast.http.post("/introspect", data={"token": old}, auth=auth)).json()["active"] is True
    etag = (await fast.http.get("/jwks")).headers["etag"]

    output = await ostiary(fast, "keys", "revoke", old_kid)
    assert "signs from now on" in output
    await until(lambda: _without(fast, old_kid))
    assert (await fast.http.post("/introspect", data={"token": old}, auth=auth)).json() == {"active": False}
    changed = await fast.http.get("/jwks", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    fresh = await token(fast)
    assert jwt.get_unverified_header(fresh)["kid"] != old_kid
    assert (await fast.http.post("/introspect", data={"token": fresh}, auth=auth)).json()["active"] is True


async def _without(live: Live, kid: str) -> bool:
    return kid not in await kids(live)


async def test_a_staged_key_is_published_before_it_signs(fast: Live) -> None:
    before = await kids(fast)  # the first RS256, PS256 and ES256 keys
    signing = jwt.get_unverified_header(await token(fast))["kid"]
    await ostiary(fast, "keys", "rotate")
    await until(lambda: _count(fast, len(before) + 1))
    (staged,) = set(await kids(fast)) - set(before)
    assert jwt.get_unverified_header(await token(fast))["kid"] == signing  # still the old key signing
    # Staging delay: max-age 1 s + 2 polls of 1 s = 3 s, then the new key signs.
    await until(lambda: _signs_with(fast, staged), seconds=10)
    assert set(await kids(fast)) == {*before, staged}  # the old key stays published, retired


async def _count(live: Live, n: int) -> bool:
    return len(await kids(live)) == n


async def _signs_with(live: Live, kid: str) -> bool:
    return jwt.get_unverified_header(await token(live))["kid"] == kid


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
async def test_id_tokens_in_the_clients_registered_algorithm(fast: Live, alg: str) -> None:
    await ostiary(fast, "keys", "rotate", "--alg", alg, "--now")
    await until(lambda: _advertises(fast, alg))
    rp = await create_client(
        fast.settings,
        grant_types=["authorization_code"],
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
        first_party=True,
        id_token_alg=alg,
    )
    await create_user(fast.settings, "alice")
    signin = SignIn(fast, rp, "alice", Browser(fast.http))
    tokens = await signin.tokens(Flow.start(rp.client_id), scope="openid")
    header = jwt.get_unverified_header(tokens["id_token"])
    assert header["alg"] == alg
    jwks = KeySet.import_key_set((await fast.http.get("/jwks")).json())
    decoded = jose_jwt.decode(tokens["id_token"], jwks, algorithms=[alg])
    assert decoded.claims["aud"] == rp.client_id
    # Access tokens stay RS256 unless configured.
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "RS256"


async def _advertises(live: Live, alg: str) -> bool:
    metadata = (await live.http.get("/.well-known/openid-configuration")).json()
    return alg in metadata["id_token_signing_alg_values_supported"]


async def test_access_tokens_in_the_configured_algorithm(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, access_token_alg="ES256")
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        client = await create_client(settings)
        live = Live(settings, base_url, http, client)
        access = await token(live)
        assert jwt.get_unverified_header(access)["alg"] == "ES256"
        jwks = KeySet.import_key_set((await http.get("/jwks")).json())
        assert jose_jwt.decode(access, jwks, algorithms=["ES256"]).claims["client_id"] == client.client_id
        auth = (client.client_id, client.client_secret)
        assert (await http.post("/introspect", data={"token": access}, auth=auth)).json()["active"] is True


async def test_jwks_cache_control_matches_the_staging_delay(fast: Live) -> None:
    response = await fast.http.get("/jwks")
    assert response.headers["cache-control"] == "public, max-age=1"
    listed = await ostiary(fast, "keys", "rotate", "--alg", "RS256")
    assert "it signs from" in listed
