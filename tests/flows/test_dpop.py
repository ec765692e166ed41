"""DPoP (RFC 9449) over real HTTP, on SQLite and PostgreSQL: proofs built with joserfc, tokens
bound at the token endpoint and honoured at ``/userinfo`` and ``/introspect``."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from server.settings import Settings
from tests.helpers import REPO_ROOT, Client, TestDatabase, create_client, create_user, served_with
from tests.oidc import REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

KEY = ECKey.generate_key("P-256")
OTHER = ECKey.generate_key("P-256")
RSA = RSAKey.generate_key(2048)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def proof(
    key: Key,
    method: str,
    uri: str,
    *,
    alg: str = "ES256",
    access_token: str | None = None,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    body: dict[str, Any] = {"jti": secrets.token_urlsafe(12), "htm": method, "htu": uri, "iat": int(time.time())}
    if access_token is not None:
        body["ath"] = b64(hashlib.sha256(access_token.encode()).digest())
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    protected = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False), **(header or {})}
    return jwt.encode(protected, body, key, algorithms=[alg])


@dataclass
class Ostiary:
    settings: Settings
    http: httpx.AsyncClient

    def uri(self, path: str) -> str:
        return self.settings.endpoint(path)

    async def client_credentials(self, client: Client, dpop: str | None, **headers: str) -> httpx.Response:
        if dpop is not None:
            headers["DPoP"] = dpop
        return await self.http.post(
            "/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret),
            headers=headers,
        )


async def _ostiary(database: TestDatabase, tmp_path: Path, **overrides: Any) -> AsyncIterator[Ostiary]:
    async with served_with(database, tmp_path, **overrides) as (settings, http):
        yield Ostiary(settings, http)


@pytest.fixture
async def ostiary(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Ostiary]:
    async for running in _ostiary(database, tmp_path):
        yield running


def thumbprint(key: Key) -> str:
    return key.thumbprint()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def dpop_error(response: httpx.Response, error: str = "invalid_dpop_proof") -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error


# The token endpoint.


async def test_a_proof_binds_the_access_token_to_the_key(ostiary: Ostiary) -> None:
    client = await create_client(ostiary.settings, introspection=True)
    response = await ostiary.client_credentials(client, proof(KEY, "POST", ostiary.uri("/token")))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": thumbprint(KEY)}

    introspected = await ostiary.http.post(
        "/introspect", data={"token": body["access_token"]}, auth=(client.client_id, client.client_secret)
    )
    assert introspected.json()["token_type"] == "DPoP"
    assert introspected.json()["cnf"] == {"jkt": thumbprint(KEY)}

    # without a proof, the same client gets a bearer token, as before
    plain = await ostiary.client_credentials(client, None)
    assert plain.json()["token_type"] == "Bearer" and "cnf" not in claims_of(plain.json()["access_token"])


async def test_rsa_and_ps256_proofs_are_accepted(ostiary: Ostiary) -> None:
    client = await create_client(ostiary.settings)
    for alg in ("RS256", "PS256"):
        response = await ostiary.client_credentials(client, proof(RSA, "POST", ostiary.uri("/token"), alg=alg))
        assert response.status_code == 200, response.text
        assert claims_of(response.json()["access_token"])["cnf"] == {"jkt": thumbprint(RSA)}


async def test_a_bad_proof_is_refused(ostiary: Ostiary) -> None:
    client = await create_client(ostiary.settings)
    uri = ostiary.uri("/token")
    cases = {
        "typ": lambda: proof(KEY, "POST", uri, header={"typ": "JWT"}),
        "alg-none": lambda: _unsigned(uri),
        "alg-hs256": lambda: _hmac(uri),
        "private-jwk": lambda: proof(KEY, "POST", uri, header={"jwk": KEY.as_dict(private=True)}),
        "htm": lambda: proof(KEY, "GET", uri),
        "htu": lambda: proof(KEY, "POST", ostiary.uri("/introspect")),
        "htu-path": lambda: proof(KEY, "POST", uri + "x?a=1"),
        "old": lambda: proof(KEY, "POST", uri, iat=int(time.time()) - 300),
        "future": lambda: proof(KEY, "POST", uri, iat=int(time.time()) + 300),
        "no-jti": lambda: proof(KEY, "POST", uri, jti=None),
        "signature": lambda: proof(KEY, "POST", uri, header={"jwk": OTHER.as_dict(private=False)}),
        "not-a-jwt": lambda: "nope",
        "nested-claims": lambda: _nested(uri),
        # an iat that is no time: a refusal, not a crash
        "iat-nan": lambda: proof(KEY, "POST", uri, iat=float("nan")),
        "iat-huge": lambda: proof(KEY, "POST", uri, iat=10**400),
        "iat-true": lambda: proof(KEY, "POST", uri, iat=True),
        "iat-text": lambda: proof(KEY, "POST", uri, iat="now"),
    }
    for case, made in cases.items():  # one server for every case: each is a request of its own
        response = await ostiary.client_credentials(client, made())
        assert (response.status_code, response.json()["error"]) == (400, "invalid_dpop_proof"), case


def _nested(uri: str) -> str:
    """A proof whose claims nest deeper than Python's JSON parser recurses."""
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.as_dict(private=False)}
    return jws.serialize_compact(header, b"[" * 5000 + b"]" * 5000, KEY)


def _unsigned(uri: str) -> str:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": KEY.as_dict(private=False)}
    claims = {"jti": "x", "htm": "POST", "htu": uri, "iat": int(time.time())}
    return ".".join(b64(json.dumps(part).encode()) for part in (header, claims)) + "."


def _hmac(uri: str) -> str:
    import hmac

    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": KEY.as_dict(private=False)}
    claims = {"jti": "y", "htm": "POST", "htu": uri, "iat": int(time.time())}
    signing_input = ".".join(b64(json.dumps(part).encode()) for part in (header, claims))
    signature = hmac.new(b"k", signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_a_proof_is_accepted_once_and_htu_is_normalised(ostiary: Ostiary) -> None:
    client = await create_client(ostiary.settings)
    # scheme and host in another case, the default port spelled out: the same URI (RFC 3986 §6.2.3)
    uri = ostiary.uri("/token").replace("http://127.0.0.1", "HTTP://127.0.0.1")
    made = proof(KEY, "POST", uri + "?ignored=1")
    assert (await ostiary.client_credentials(client, made)).status_code == 200
    dpop_error(await ostiary.client_credentials(client, made))


async def test_two_proofs_in_one_request_are_refused(ostiary: Ostiary) -> None:
    client = await create_client(ostiary.settings)
    uri = ostiary.uri("/token")
    headers = [("DPoP", proof(KEY, "POST", uri)), ("DPoP", proof(KEY, "POST", uri))]
    response = await ostiary.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
        headers=httpx.Headers(headers),
    )
    dpop_error(response)


async def test_a_dpop_bound_client_must_send_a_proof(ostiary: Ostiary) -> None:
    client = await create_client(ostiary.settings, dpop_bound_access_tokens=True)
    refused = await ostiary.client_credentials(client, None)
    dpop_error(refused)
    bound = await ostiary.client_credentials(client, proof(KEY, "POST", ostiary.uri("/token")))
    assert bound.status_code == 200 and bound.json()["token_type"] == "DPoP"


# A user's tokens: the code flow, refresh and userinfo.


async def _signed_in(ostiary: Ostiary, *, public: bool, key: Key | None = KEY) -> tuple[Client, dict[str, Any]]:
    options: dict[str, Any] = {"public": True} if public else {}
    rp = await create_client(
        ostiary.settings,
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
        redirect_uris=[REDIRECT_URI],
        **options,
    )
    await create_user(ostiary.settings, "alice")
    browser, flow = Browser(ostiary.http), Flow.start(rp.client_id)
    page = await browser.sign_in(await browser.authorize(**flow.params(scope="openid profile offline_access")), "alice")
    if 'name="decision"' in page.text:
        page = await browser.submit(page, decision="allow")
    code = query_of(page.headers["location"])["code"]
    headers = {"DPoP": proof(key, "POST", ostiary.uri("/token"))} if key is not None else {}
    form = flow.token_form(code, client_id=rp.client_id) if public else flow.token_form(code)
    auth = None if public else (rp.client_id, rp.client_secret)
    response = await ostiary.http.post("/token", data=form, headers=headers, auth=auth)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return rp, response.json()


async def _refresh(ostiary: Ostiary, rp: Client, token: str, key: Key | None, public: bool = True) -> httpx.Response:
    headers = {"DPoP": proof(key, "POST", ostiary.uri("/token"))} if key is not None else {}
    form = {"grant_type": "refresh_token", "refresh_token": token}
    if public:
        return await ostiary.http.post("/token", data={**form, "client_id": rp.client_id}, headers=headers)
    return await ostiary.http.post("/token", data=form, headers=headers, auth=(rp.client_id, rp.client_secret))


async def test_userinfo_wants_the_keys_proof_with_a_bound_token(ostiary: Ostiary) -> None:
    _, tokens = await _signed_in(ostiary, public=True)
    access = tokens["access_token"]
    uri = ostiary.uri("/userinfo")

    async def userinfo(authorization: str, dpop: str | None = None) -> httpx.Response:
        headers = {"Authorization": authorization, **({"DPoP": dpop} if dpop else {})}
        return await ostiary.http.get("/userinfo", headers=headers)

    made = proof(KEY, "GET", uri, access_token=access)
    answered = await userinfo(f"DPoP {access}", made)
    assert answered.status_code == 200, answered.text
    assert answered.json()["sub"]

    def refused(response: httpx.Response, error: str) -> None:
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith(f'DPoP error="{error}"')

    refused(await userinfo(f"Bearer {access}"), "invalid_token")  # a bound token is no bearer token
    refused(await userinfo(f"DPoP {access}", made), "invalid_dpop_proof")  # replayed proof
    refused(await userinfo(f"DPoP {access}", proof(KEY, "GET", uri)), "invalid_dpop_proof")  # no ath
    refused(await userinfo(f"DPoP {access}", proof(KEY, "POST", uri, access_token=access)), "invalid_dpop_proof")
    refused(await userinfo(f"DPoP {access}", proof(OTHER, "GET", uri, access_token=access)), "invalid_token")


async def test_an_unbound_token_is_a_bearer_token_only(ostiary: Ostiary) -> None:
    _, tokens = await _signed_in(ostiary, public=False, key=None)
    access = tokens["access_token"]
    assert tokens["token_type"] == "Bearer"
    uri = ostiary.uri("/userinfo")
    as_bearer = await ostiary.http.get("/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert as_bearer.status_code == 200
    as_dpop = await ostiary.http.get(
        "/userinfo", headers={"Authorization": f"DPoP {access}", "DPoP": proof(KEY, "GET", uri, access_token=access)}
    )
    assert as_dpop.status_code == 401


async def test_a_public_clients_refresh_tokens_are_bound_to_its_key(ostiary: Ostiary) -> None:
    rp, tokens = await _signed_in(ostiary, public=True)
    token = tokens["refresh_token"]

    # without the key's proof, or with another key's, the token does not rotate, and nothing
    # is revoked: whoever lacks the key cannot use it
    for key in (None, OTHER):
        refused = await _refresh(ostiary, rp, token, key)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text

    rotated = await _refresh(ostiary, rp, token, KEY)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["token_type"] == "DPoP"
    assert claims_of(rotated.json()["access_token"])["cnf"] == {"jkt": thumbprint(KEY)}
    again = await _refresh(ostiary, rp, rotated.json()["refresh_token"], KEY)
    assert again.status_code == 200, again.text


async def test_a_confidential_clients_refresh_tokens_stay_unbound(ostiary: Ostiary) -> None:
    rp, tokens = await _signed_in(ostiary, public=False)
    assert tokens["token_type"] == "DPoP"
    # its authentication constrains its refresh tokens already (RFC 9449 §5)
    unbound = await _refresh(ostiary, rp, tokens["refresh_token"], None, public=False)
    assert unbound.status_code == 200, unbound.text
    assert unbound.json()["token_type"] == "Bearer"
    rebound = await _refresh(ostiary, rp, unbound.json()["refresh_token"], OTHER, public=False)
    assert claims_of(rebound.json()["access_token"])["cnf"] == {"jkt": thumbprint(OTHER)}


# Server nonces.


async def test_a_nonce_is_asked_for_and_then_accepted(database: TestDatabase, tmp_path: Path) -> None:
    async for ostiary in _ostiary(database, tmp_path, dpop_require_nonce=True):
        client = await create_client(ostiary.settings)
        asked = await ostiary.client_credentials(client, proof(KEY, "POST", ostiary.uri("/token")))
        dpop_error(asked, "use_dpop_nonce")
        nonce = asked.headers["dpop-nonce"]
        stale = await ostiary.client_credentials(client, proof(KEY, "POST", ostiary.uri("/token"), nonce="stale"))
        dpop_error(stale, "use_dpop_nonce")
        accepted = await ostiary.client_credentials(client, proof(KEY, "POST", ostiary.uri("/token"), nonce=nonce))
        assert accepted.status_code == 200, accepted.text


async def test_userinfo_asks_for_a_nonce_too(database: TestDatabase, tmp_path: Path) -> None:
    async for ostiary in _ostiary(database, tmp_path, dpop_require_nonce=True):
        rp = await create_client(ostiary.settings, scopes=["openid"], grant_types=["client_credentials"])
        asked = await ostiary.client_credentials(rp, proof(KEY, "POST", ostiary.uri("/token")))
        current = asked.headers["dpop-nonce"]
        made = proof(KEY, "POST", ostiary.uri("/token"), nonce=current)
        access = (await ostiary.client_credentials(rp, made)).json()["access_token"]
        uri = ostiary.uri("/userinfo")
        answered = await ostiary.http.get(
            "/userinfo",
            headers={"Authorization": f"DPoP {access}", "DPoP": proof(KEY, "GET", uri, access_token=access)},
        )
        # a token is checked for its key before anything else: the proof lacks the nonce
        assert answered.status_code == 401
        assert answered.headers["www-authenticate"].startswith('DPoP error="use_dpop_nonce"')
        assert answered.headers["dpop-nonce"] == current


async def test_discovery_lists_the_proof_algorithms(ostiary: Ostiary) -> None:
    document = (await ostiary.http.get("/.well-known/openid-configuration")).json()
    assert document["dpop_signing_alg_values_supported"] == ["RS256", "PS256", "ES256"]


# The resource server's recipe in docs/dpop.md, run as written.


def documented_recipe() -> Any:
    text = (REPO_ROOT / "docs" / "dpop.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/dpop.md", "exec"), namespace)
    return namespace["verify_dpop_request"]


async def test_the_documented_resource_server_recipe_verifies_a_bound_token(ostiary: Ostiary) -> None:
    verify = documented_recipe()
    audience = "https://api.example.com"
    client = await create_client(ostiary.settings, audiences=[audience])
    issued = await ostiary.client_credentials(client, proof(KEY, "POST", ostiary.uri("/token")))
    access = issued.json()["access_token"]
    jwks = KeySet.import_key_set((await ostiary.http.get("/jwks")).json())
    url = "https://api.example.com/photos?page=2"
    issuer = ostiary.settings.issuer

    made = proof(KEY, "GET", "https://api.example.com/photos", access_token=access)
    claims = verify(jwks, issuer, audience, f"DPoP {access}", made, "GET", url)
    assert claims["client_id"] == client.client_id

    for authorization, made in (
        (f"Bearer {access}", proof(KEY, "GET", "https://api.example.com/photos", access_token=access)),
        (f"DPoP {access}", proof(OTHER, "GET", "https://api.example.com/photos", access_token=access)),
        (f"DPoP {access}", proof(KEY, "POST", "https://api.example.com/photos", access_token=access)),
        (f"DPoP {access}", proof(KEY, "GET", "https://api.example.com/photos", access_token="another")),
    ):
        with pytest.raises(ValueError):
            verify(jwks, issuer, audience, authorization, made, "GET", url)


# What a review found.


async def test_the_admin_api_holds_a_bound_token_to_its_key(ostiary: Ostiary) -> None:
    admin = await create_client(ostiary.settings, scopes=["ostiary:admin"])
    issued = await ostiary.client_credentials(admin, proof(KEY, "POST", ostiary.uri("/token")))
    access = issued.json()["access_token"]
    uri = ostiary.uri("/admin/api/v1/clients")
    as_bearer = await ostiary.http.get("/admin/api/v1/clients", headers={"Authorization": f"Bearer {access}"})
    assert as_bearer.status_code == 401, as_bearer.text
    assert as_bearer.headers["www-authenticate"].startswith("DPoP")
    made = proof(KEY, "GET", uri, access_token=access)
    proven = await ostiary.http.get("/admin/api/v1/clients", headers={"Authorization": f"DPoP {access}", "DPoP": made})
    assert proven.status_code == 200, proven.text
    replayed = await ostiary.http.get(
        "/admin/api/v1/clients", headers={"Authorization": f"DPoP {access}", "DPoP": made}
    )
    assert replayed.status_code == 401


async def test_a_public_browser_app_can_read_the_nonce_it_must_use(database: TestDatabase, tmp_path: Path) -> None:
    async for ostiary in _ostiary(database, tmp_path, dpop_require_nonce=True):
        app = "https://photos.example.com"
        spa = await create_client(
            ostiary.settings,
            grant_types=["authorization_code", "refresh_token"],
            scopes=["openid"],
            redirect_uris=[REDIRECT_URI],
            allowed_cors_origins=[app],
            public=True,
        )
        form = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": spa.client_id}
        headers = {"Origin": app, "DPoP": proof(KEY, "POST", ostiary.uri("/token"))}
        asked = await ostiary.http.post("/token", data=form, headers=headers)
        dpop_error(asked, "use_dpop_nonce")
        assert asked.headers["access-control-allow-origin"] == app
        assert "dpop-nonce" in asked.headers["access-control-expose-headers"].lower()


async def test_a_push_checks_its_proof(ostiary: Ostiary) -> None:
    rp = await create_client(
        ostiary.settings, grant_types=["authorization_code"], scopes=["openid"], redirect_uris=[REDIRECT_URI]
    )
    params = Flow.start(rp.client_id).params(scope="openid")
    auth = (rp.client_id, rp.client_secret)
    wrong = await ostiary.http.post(
        "/par", data=params, auth=auth, headers={"DPoP": proof(KEY, "GET", ostiary.uri("/token"))}
    )
    dpop_error(wrong)
    fine = await ostiary.http.post(
        "/par", data=params, auth=auth, headers={"DPoP": proof(KEY, "POST", ostiary.uri("/par"))}
    )
    assert fine.status_code == 201, fine.text
