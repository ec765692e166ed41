"""``private_key_jwt`` client authentication (RFC 7523 §2.2, OpenID Connect Core §9) over
real HTTP, on SQLite and PostgreSQL: assertions built with joserfc and with Authlib's own
client, keys registered inline or served at a ``jwks_uri`` by a small local JWKS server."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jws, jwt
from joserfc.jwk import ECKey, Key, RSAKey

from server.clients import service
from server.clients.errors import ClientRegistrationError
from server.clients.jwks import REFETCH_INTERVAL
from server.settings import Settings
from server.storage.engine import create_sessionmaker, make_engine
from tests.helpers import Client, Db, TestDatabase, create_client, create_user, served_with
from tests.oidc import REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, another key


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def key_set(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def assertion(key: Key, client_id: str, audience: str, *, alg: str = "RS256", lifetime: int = 60, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + lifetime}
    body["jti"] = secrets.token_urlsafe(16)
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode({"alg": alg, "kid": key.kid}, body, key, algorithms=[alg])


@dataclass
class JwksServer:
    """A JWK Set on a loopback port: its answer, headers and delay set by the test, its
    requests counted."""

    document: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: {"Cache-Control": "max-age=300"})
    status: int = 200
    delay: float = 0.0
    hits: int = 0
    url: str = ""


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    served = JwksServer(key_set(RSA))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.hits += 1
            time.sleep(served.delay)
            body = json.dumps(served.document).encode()
            self.send_response(served.status)
            self.send_header("Content-Type", "application/json")
            for name, value in served.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    served.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Ostiary:
    settings: Settings
    http: httpx.AsyncClient

    @property
    def token_endpoint(self) -> str:
        return self.settings.endpoint("/token")

    async def client(self, **options: Any) -> Client:
        options.setdefault("token_endpoint_auth_method", "private_key_jwt")
        options.setdefault("audiences", ["https://api.example.com"])
        return await create_client(self.settings, **options)

    async def token(self, client_id: str | None, signed: str, **extra: str) -> httpx.Response:
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
        if client_id is not None:
            form["client_id"] = client_id
        return await self.http.post("/token", data={**form, **extra})


async def _ostiary(database: TestDatabase, tmp_path: Path, **overrides: Any) -> AsyncIterator[Ostiary]:
    async with served_with(database, tmp_path, **overrides) as (settings, http):
        yield Ostiary(settings, http)


@pytest.fixture
async def ostiary(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Ostiary]:
    """Ostiary that may fetch a client's keys from loopback (the JWKS server of these tests);
    no client cache, so that a change to a client is seen at once."""
    async for running in _ostiary(database, tmp_path, jwks_uri_allow_private=True, client_cache_ttl=0):
        yield running


@pytest.fixture
async def guarded(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Ostiary]:
    """Ostiary with the default: no fetch from the server's own networks."""
    async for running in _ostiary(database, tmp_path, client_cache_ttl=0):
        yield running


def refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


# Inline keys.


async def test_a_client_authenticates_with_an_assertion_signed_by_its_key(ostiary: Ostiary) -> None:
    client = await ostiary.client(jwks=key_set(RSA))
    for audience in (ostiary.settings.issuer, ostiary.token_endpoint):
        signed = assertion(RSA, client.client_id, audience)
        response = await ostiary.token(None, signed, scope="api:read")
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]
    assert client.client_secret == ""  # no secret was made for it


async def test_authlibs_own_client_authenticates_unmodified(ostiary: Ostiary) -> None:
    client = await ostiary.client(jwks=key_set(RSA))
    async with AsyncOAuth2Client(
        client.client_id,
        RSA.as_dict(private=True),
        token_endpoint_auth_method=PrivateKeyJWT(ostiary.token_endpoint),
    ) as oauth:
        token = await oauth.fetch_token(ostiary.token_endpoint, grant_type="client_credentials", scope="api:read")
    assert token["token_type"].lower() == "bearer" and token["access_token"]


async def test_an_ec_key_with_its_registered_algorithm(ostiary: Ostiary) -> None:
    client = await ostiary.client(jwks=key_set(RSA, EC), token_endpoint_auth_signing_alg="ES256")

    accepted = await ostiary.token(
        client.client_id, assertion(EC, client.client_id, ostiary.token_endpoint, alg="ES256")
    )
    assert accepted.status_code == 200, accepted.text
    # the client registered ES256: an RS256 assertion, though signed by one of its keys, is refused
    refused(await ostiary.token(client.client_id, assertion(RSA, client.client_id, ostiary.token_endpoint)))


async def test_ps256_is_accepted(ostiary: Ostiary) -> None:
    client = await ostiary.client(jwks=key_set(RSA), token_endpoint_auth_signing_alg="PS256")
    signed = assertion(RSA, client.client_id, ostiary.token_endpoint, alg="PS256")
    assert (await ostiary.token(client.client_id, signed)).status_code == 200


async def test_an_assertion_is_accepted_once(ostiary: Ostiary) -> None:
    client = await ostiary.client(jwks=key_set(RSA))
    signed = assertion(RSA, client.client_id, ostiary.token_endpoint)

    assert (await ostiary.token(client.client_id, signed)).status_code == 200
    refused(await ostiary.token(client.client_id, signed))
    # another assertion with the same jti is the same replay
    again = assertion(RSA, client.client_id, ostiary.token_endpoint, jti=jwt.decode(signed, RSA).claims["jti"])
    refused(await ostiary.token(client.client_id, again))


#: claims each assertion changes, by case
BAD_CLAIMS: dict[str, dict[str, Any]] = {
    "aud": {"aud": "https://elsewhere.example.com"},
    "no-aud": {"aud": None},
    "no-exp": {"exp": None},
    "expired": {"lifetime": -120},  # beyond the minute of leeway
    "too-long": {"lifetime": 7200},  # valid for longer than OSTIARY_CLIENT_ASSERTION_MAX_LIFETIME
    "not-yet": {"nbf_in": 600},  # valid only from ten minutes on
    "huge-exp": {"exp": 10**400},  # a number no float holds
    "nan-exp": {"exp": float("nan")},
    "no-jti": {"jti": None},
    "long-jti": {"jti": "x" * 300},
    "iss": {"iss": "someone-else"},
}


async def test_an_assertion_with_bad_claims_is_refused(ostiary: Ostiary) -> None:
    client = await ostiary.client(jwks=key_set(RSA))
    # the lifetime refused is one the setting would allow if it were raised: only the bound refuses it
    assert ostiary.settings.client_assertion_max_lifetime < 7200
    for case, change in BAD_CLAIMS.items():  # one server for every case: each is a request of its own
        change = dict(change)
        audience = change.pop("aud", ostiary.token_endpoint)
        lifetime = change.pop("lifetime", 60)
        if "nbf_in" in change:
            change["nbf"] = int(time.time()) + change.pop("nbf_in")
        signed = assertion(RSA, client.client_id, audience, lifetime=lifetime, **change)
        response = await ostiary.token(client.client_id, signed)
        assert response.status_code == 401, case
        refused(response)


async def test_a_signature_by_another_key_is_refused(ostiary: Ostiary) -> None:
    client = await ostiary.client(jwks=key_set(RSA))
    refused(await ostiary.token(client.client_id, assertion(OTHER, client.client_id, ostiary.token_endpoint)))
    # an unsigned one (alg none)
    claims = {"iss": client.client_id, "sub": client.client_id, "aud": ostiary.token_endpoint}
    claims |= {"exp": int(time.time()) + 60, "jti": "x1"}
    unsigned = ".".join(_b64(part) for part in ({"alg": "none"}, claims)) + "."
    refused(await ostiary.token(client.client_id, unsigned))


async def test_who_may_not_authenticate_this_way(ostiary: Ostiary) -> None:
    keyed = await ostiary.client(jwks=key_set(RSA))
    with_secret = await create_client(ostiary.settings)
    endpoint = ostiary.token_endpoint

    # a client registered for a secret cannot switch to an assertion, even a valid-looking one
    refused(await ostiary.token(with_secret.client_id, assertion(RSA, with_secret.client_id, endpoint)))
    # nor the keyed client to a secret it does not have, nor to an assertion naming another client
    refused(await ostiary.http.post("/token", data={"grant_type": "client_credentials"}, auth=(keyed.client_id, "x")))
    refused(await ostiary.token(with_secret.client_id, assertion(RSA, keyed.client_id, endpoint)))
    # two methods at once (RFC 6749 §2.3)
    two = await ostiary.http.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(RSA, keyed.client_id, endpoint),
        },
        auth=(with_secret.client_id, with_secret.client_secret),
    )
    assert two.status_code == 400 and two.json()["error"] == "invalid_request", two.text
    # an unknown client, and garbage
    refused(await ostiary.token(None, assertion(RSA, "no-such-client", endpoint)))
    refused(await ostiary.token(None, "not.a.jwt"))
    nested = jws.serialize_compact({"alg": "RS256", "kid": RSA.kid}, b"[" * 5000 + b"]" * 5000, RSA)
    refused(await ostiary.token(None, nested))
    refused(await ostiary.token(None, "%%%"))


async def test_a_disabled_client_is_refused(ostiary: Ostiary) -> None:
    client = await ostiary.client(jwks=key_set(RSA))
    engine = make_engine(ostiary.settings.database_url)
    try:
        await Db(create_sessionmaker(engine))(lambda db: service.set_disabled(db, client.client_id, True, actor="test"))
    finally:
        await engine.dispose()
    refused(await ostiary.token(client.client_id, assertion(RSA, client.client_id, ostiary.token_endpoint)))


async def test_introspection_and_revocation_take_assertions(ostiary: Ostiary) -> None:
    resource_server = await ostiary.client(jwks=key_set(EC), introspection=True)
    app = await ostiary.client(jwks=key_set(RSA))
    issued = await ostiary.token(app.client_id, assertion(RSA, app.client_id, ostiary.token_endpoint))
    access_token = issued.json()["access_token"]

    introspect = ostiary.settings.endpoint("/introspect")
    answer = await ostiary.http.post(
        "/introspect",
        data={
            "token": access_token,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(EC, resource_server.client_id, introspect, alg="ES256"),
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["active"] is True

    revoke = await ostiary.http.post(
        "/revoke",
        data={
            "token": access_token,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(RSA, app.client_id, ostiary.settings.issuer),
        },
    )
    assert revoke.status_code == 200, revoke.text


async def test_a_pushed_authorization_request_takes_an_assertion(ostiary: Ostiary) -> None:
    rp = await ostiary.client(
        jwks=key_set(EC), grant_types=["authorization_code"], scopes=["openid"], redirect_uris=[REDIRECT_URI]
    )
    flow = Flow.start(rp.client_id)
    for audience in (ostiary.settings.endpoint("/par"), ostiary.settings.issuer):
        signed = assertion(EC, rp.client_id, audience, alg="ES256")
        proof = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
        pushed = await ostiary.http.post("/par", data={**flow.params(scope="openid"), **proof})
        assert pushed.status_code == 201, pushed.text
        assert pushed.json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
        replayed = await ostiary.http.post("/par", data={**flow.params(scope="openid"), **proof})
        refused(replayed)


# Keys at a jwks_uri.


async def test_keys_are_fetched_from_the_jwks_uri_and_cached(ostiary: Ostiary, jwks_server: JwksServer) -> None:
    client = await ostiary.client(jwks_uri=jwks_server.url)
    for _ in range(3):
        signed = assertion(RSA, client.client_id, ostiary.token_endpoint)
        assert (await ostiary.token(client.client_id, signed)).status_code == 200
    assert jwks_server.hits == 1


async def test_a_new_kid_fetches_the_keys_again(ostiary: Ostiary, jwks_server: JwksServer) -> None:
    client = await ostiary.client(jwks_uri=jwks_server.url)
    assert (await ostiary.token(None, assertion(RSA, client.client_id, ostiary.token_endpoint))).status_code == 200

    # the client rotates to an EC key; right after a fetch, kids the set lacks (anyone may send
    # them) do not make the server fetch again for each request
    jwks_server.document = key_set(EC)
    for _ in range(3):
        signed = assertion(EC, client.client_id, ostiary.token_endpoint, alg="ES256")
        refused(await ostiary.token(None, signed))
    assert jwks_server.hits == 1

    # once the interval has passed, the unknown kid fetches the set again, once
    await asyncio.sleep(REFETCH_INTERVAL)
    for _ in range(2):
        signed = assertion(EC, client.client_id, ostiary.token_endpoint, alg="ES256")
        assert (await ostiary.token(None, signed)).status_code == 200
    assert jwks_server.hits == 2


async def test_a_bad_jwks_answer_authenticates_nobody(ostiary: Ostiary, jwks_server: JwksServer) -> None:
    troubles: dict[str, tuple[int, dict[str, Any]]] = {
        "status": (500, key_set(RSA)),
        "not-json": (200, {"keys": "nope"}),
        "private-key": (200, {"keys": [RSA.as_dict(private=True)]}),
        "too-big": (200, {"keys": [RSA.as_dict(private=False)], "padding": "x" * 70_000}),
    }
    for case, (status, document) in troubles.items():
        jwks_server.status, jwks_server.document, hits = status, document, jwks_server.hits
        client = await ostiary.client(jwks_uri=f"{jwks_server.url}?case={case}")  # a URI, and a cache entry, each
        signed = assertion(RSA, client.client_id, ostiary.token_endpoint)
        refused(await ostiary.token(client.client_id, signed))
        # a failed fetch is not tried again at once: a client's broken URI costs one fetch a while
        refused(await ostiary.token(client.client_id, assertion(RSA, client.client_id, ostiary.token_endpoint)))
        assert jwks_server.hits == hits + 1, case


async def test_a_jwks_uri_that_does_not_answer_is_cut_off(ostiary: Ostiary, jwks_server: JwksServer) -> None:
    jwks_server.delay = 8
    client = await ostiary.client(jwks_uri=jwks_server.url)
    started = time.monotonic()
    refused(await ostiary.token(client.client_id, assertion(RSA, client.client_id, ostiary.token_endpoint)))
    assert time.monotonic() - started < 7.5


async def test_by_default_the_server_fetches_nothing_from_its_own_networks(
    guarded: Ostiary, jwks_server: JwksServer
) -> None:
    client = await guarded.client(jwks_uri=jwks_server.url)
    refused(await guarded.token(client.client_id, assertion(RSA, client.client_id, guarded.token_endpoint)))
    assert jwks_server.hits == 0


# Discovery.


async def test_discovery_advertises_the_method_and_its_algorithms(ostiary: Ostiary) -> None:
    document = (await ostiary.http.get("/.well-known/openid-configuration")).json()
    for endpoint in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        assert "private_key_jwt" in document[f"{endpoint}_auth_methods_supported"]
        assert document[f"{endpoint}_auth_signing_alg_values_supported"] == ["RS256", "PS256", "ES256"]


# A user's sign-in: the code and refresh grants.


async def test_a_relying_party_redeems_its_code_and_refreshes_with_assertions(ostiary: Ostiary) -> None:
    rp = await ostiary.client(
        jwks=key_set(EC),
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "offline_access"],
        redirect_uris=[REDIRECT_URI],
        audiences=[],
    )
    await create_user(ostiary.settings, "alice")
    browser, flow = Browser(ostiary.http), Flow.start(rp.client_id)
    page = await browser.sign_in(await browser.authorize(**flow.params(scope="openid offline_access")), "alice")
    if 'name="decision"' in page.text:
        page = await browser.submit(page, decision="allow")
    code = query_of(page.headers["location"])["code"]

    def proof() -> dict[str, str]:
        signed = assertion(EC, rp.client_id, ostiary.token_endpoint, alg="ES256")
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}

    redeemed = await ostiary.http.post("/token", data={**flow.token_form(code), **proof()})
    assert redeemed.status_code == 200, redeemed.text
    refreshed = await ostiary.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": redeemed.json()["refresh_token"], **proof()},
    )
    assert refreshed.status_code == 200, refreshed.text
    # without its assertion the client is not authenticated, so the refresh token does not rotate
    bare = {
        "grant_type": "refresh_token",
        "refresh_token": refreshed.json()["refresh_token"],
        "client_id": rp.client_id,
    }
    refused(await ostiary.http.post("/token", data=bare))


# Changing how a client authenticates.


async def test_a_client_moving_to_its_own_keys_gives_its_secret_up(ostiary: Ostiary) -> None:
    client = await create_client(ostiary.settings)
    basic = {"grant_type": "client_credentials"}
    secret = (client.client_id, client.client_secret)
    assert (await ostiary.http.post("/token", data=basic, auth=secret)).status_code == 200
    changes = {"token_endpoint_auth_method": "private_key_jwt", "jwks": key_set(RSA)}
    engine = make_engine(ostiary.settings.database_url)
    try:
        db = Db(create_sessionmaker(engine))
        await db(lambda s: service.update(s, client.client_id, changes, actor="test"))
        with pytest.raises(ClientRegistrationError, match="no secret to rotate"):
            await db(lambda s: service.rotate_secret(s, client.client_id, keep_old_for=0, actor="test"))
    finally:
        await engine.dispose()
    refused(await ostiary.http.post("/token", data=basic, auth=secret))
    signed = assertion(RSA, client.client_id, ostiary.token_endpoint)
    assert (await ostiary.token(client.client_id, signed)).status_code == 200


async def test_a_client_registers_itself_with_its_keys(database: TestDatabase, tmp_path: Path) -> None:
    async for running in _ostiary(database, tmp_path, registration="open"):
        document = {
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": key_set(EC),
            "token_endpoint_auth_signing_alg": "ES256",
        }
        registered = await running.http.post("/register", json=document)
        assert registered.status_code == 201, registered.text
        body = registered.json()
        assert "client_secret" not in body and "client_secret_expires_at" not in body
        assert body["jwks"] == key_set(EC) and body["token_endpoint_auth_signing_alg"] == "ES256"

        # a self-registered client's keys are fetched by the server: never from its own networks
        near = {**document, "jwks": None, "jwks_uri": "https://127.0.0.1/jwks.json"}
        refused_uri = await running.http.post("/register", json=near)
        assert refused_uri.status_code == 400, refused_uri.text
        assert refused_uri.json()["error"] == "invalid_client_metadata"
        assert refused_uri.json()["error_description"].startswith("jwks_uri:")
