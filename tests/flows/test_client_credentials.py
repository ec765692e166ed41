"""``grant_type=client_credentials`` at ``/token``: RFC 6749 §4.4 with RFC 9068 JWT access tokens."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import jwt
import pytest

from tests.flows.conftest import Live
from tests.helpers import TestDatabase, create_client, make_settings, serve_in_process

pytestmark = pytest.mark.anyio


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def verify(live: Live, token: str, audience: str) -> dict[str, object]:
    """Verify as a resource server does: signature against /jwks, then the RFC 9068 checks."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    key = jwt.PyJWKSet.from_dict(await live.jwks())[header["kid"]]
    claims: dict[str, object] = jwt.decode(
        token,
        key=key,
        algorithms=["RS256"],
        audience=audience,
        issuer=live.settings.issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]},
    )
    return claims


async def test_basic_auth_issues_a_verifiable_rfc9068_token(live: Live) -> None:
    response = await live.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "api:read", "resource": "https://api.example.com"},
        headers=basic(live.client.client_id, live.client.client_secret),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == live.settings.access_token_ttl
    assert body["scope"] == "api:read"
    assert "refresh_token" not in body
    claims = await verify(live, body["access_token"], "https://api.example.com")
    assert claims["sub"] == live.client.client_id
    assert claims["client_id"] == live.client.client_id
    assert claims["scope"] == "api:read"
    assert claims["exp"] == claims["iat"] + live.settings.access_token_ttl  # type: ignore[operator]
    assert abs(int(claims["iat"]) - time.time()) < 60  # type: ignore[call-overload]


async def test_post_auth_works_and_each_token_has_its_own_jti(live: Live) -> None:
    client = await create_client(live.settings, token_endpoint_auth_method="client_secret_post")
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
    }
    first = await live.http.post("/token", data=form)
    second = await live.http.post("/token", data=form)
    assert first.status_code == second.status_code == 200
    one = jwt.decode(first.json()["access_token"], options={"verify_signature": False})
    two = jwt.decode(second.json()["access_token"], options={"verify_signature": False})
    assert one["jti"] != two["jti"]
    assert len(one["jti"]) >= 22


async def test_omitted_scope_grants_the_registered_scopes_and_audiences(live: Live) -> None:
    response = await live.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers=basic(live.client.client_id, live.client.client_secret),
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "api:read api:write"
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == ["https://api.example.com", "https://billing.example.com"]


async def test_client_without_audiences_gets_itself_as_audience(live: Live) -> None:
    from tests.helpers import create_client

    client = await create_client(live.settings, scopes=["x"])
    response = await live.http.post(
        "/token", data={"grant_type": "client_credentials"}, headers=basic(client.client_id, client.client_secret)
    )
    assert response.status_code == 200
    claims = await verify(live, response.json()["access_token"], client.client_id)
    assert claims["aud"] == client.client_id


async def test_secret_with_reserved_characters_in_basic_is_form_decoded(live: Live) -> None:
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    raw = f"{live.client.client_id}:{live.client.client_secret}".replace("-", "%2D").encode()
    response = await live.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
    )
    assert response.status_code == 200, response.text


async def test_requested_resources_become_the_audience(live: Live) -> None:
    response = await live.http.post(
        "/token",
        content="grant_type=client_credentials&resource=https%3A%2F%2Fapi.example.com"
        "&resource=https%3A%2F%2Fbilling.example.com",
        headers={
            **basic(live.client.client_id, live.client.client_secret),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == ["https://api.example.com", "https://billing.example.com"]


@pytest.mark.parametrize(
    "resource", ["https://evil.example.com", "relative/path", "https://api.example.com#frag", "https://[::1"]
)
async def test_resource_not_registered_is_invalid_target(live: Live, resource: str) -> None:
    response = await live.http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": resource},
        headers=basic(live.client.client_id, live.client.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


async def test_scope_beyond_the_registration_is_invalid_scope(live: Live) -> None:
    response = await live.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "api:read admin"},
        headers=basic(live.client.client_id, live.client.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "headers, form",
    [
        pytest.param("wrong-secret", {}, id="basic-wrong-secret"),
        pytest.param("unknown-client", {}, id="basic-unknown-client"),
        pytest.param({"Authorization": "Basic !!!notbase64"}, {}, id="basic-malformed"),
        pytest.param({"Authorization": "Bearer abc"}, {}, id="other-scheme"),
        pytest.param({"Authorization": "Basic " + base64.b64encode(b"id%FF:secret").decode()}, {}, id="bad-escape"),
        pytest.param({}, {}, id="no-credentials"),
        pytest.param({}, {"client_id": "unknown", "client_secret": "x" * 43}, id="post-unknown-client"),
        pytest.param({}, "post-wrong-secret", id="post-wrong-secret"),
        pytest.param({}, "post-no-secret", id="post-no-secret"),
    ],
)
async def test_failed_client_authentication_is_401_invalid_client(
    live: Live, headers: dict[str, str] | str, form: dict[str, str] | str
) -> None:
    if headers == "wrong-secret":
        secret = live.client.client_secret
        headers = basic(live.client.client_id, ("y" if secret[0] == "x" else "x") + secret[1:])  # 1 char off
    elif headers == "unknown-client":
        headers = basic("unknown", live.client.client_secret)
    if form == "post-wrong-secret":
        form = {"client_id": live.client.client_id, "client_secret": "nope"}
    elif form == "post-no-secret":
        form = {"client_id": live.client.client_id}
    assert isinstance(headers, dict) and isinstance(form, dict)
    response = await live.http.post("/token", data={"grant_type": "client_credentials", **form}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["cache-control"] == "no-store"


async def test_two_authentication_methods_at_once_is_invalid_request(live: Live) -> None:
    response = await live.http.post(
        "/token",
        data={"grant_type": "client_credentials", "client_secret": live.client.client_secret},
        headers=basic(live.client.client_id, live.client.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "form, error",
    [
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}, "unsupported_grant_type"),
        ({"grant_type": 'quote"back\\slash\u00e9'}, "unsupported_grant_type"),
        ({"scope": "api:read"}, "invalid_request"),
        ({"grant_type": ""}, "invalid_request"),
    ],
)
async def test_unknown_or_missing_grant_type(live: Live, form: dict[str, str], error: str) -> None:
    headers = {**basic(live.client.client_id, live.client.client_secret)}
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = await live.http.post("/token", content=urlencode(form), headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == error


async def test_repeated_parameter_is_invalid_request(live: Live) -> None:
    response = await live.http.post(
        "/token",
        content="grant_type=client_credentials&scope=api:read&scope=api:write",
        headers={
            **basic(live.client.client_id, live.client.client_secret),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body == {"error": "invalid_request", "error_description": "The parameter scope is repeated."}


@pytest.mark.parametrize(
    "content, content_type",
    [
        pytest.param(b"grant_type=client_credentials&scope=%FF%FE", "application/x-www-form-urlencoded", id="bad-utf8"),
        pytest.param(b"grant_type=client_credentials\xff", "application/x-www-form-urlencoded", id="raw-non-utf8"),
        pytest.param(b"grant_type=client_credentials&scope=a%00b", "application/x-www-form-urlencoded", id="nul"),
        pytest.param(b'{"grant_type": "client_credentials"}', "application/json", id="json"),
        pytest.param(b"grant_type=client_credentials", None, id="no-content-type"),
        pytest.param(
            b'--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nclient_credentials\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
            id="multipart",
        ),
        pytest.param(
            b"grant_type=client_credentials", "application/x-www-form-urlencoded; charset=latin-1", id="latin1"
        ),
        pytest.param(b"&".join(b"p%d=1" % i for i in range(200)), "application/x-www-form-urlencoded", id="too-many"),
    ],
)
async def test_malformed_bodies_are_invalid_request(live: Live, content: bytes, content_type: str | None) -> None:
    headers = basic(live.client.client_id, live.client.client_secret)
    if content_type:
        headers["Content-Type"] = content_type
    response = await live.http.post("/token", content=content, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"


async def test_oversized_body_is_refused_without_reading_it(live: Live) -> None:
    big = b"grant_type=client_credentials&pad=" + b"a" * (live.settings.max_body_bytes + 1)
    response = await live.http.post(
        "/token", content=big, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


async def test_oversized_chunked_body_is_refused_while_streaming(live: Live) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(live.settings.max_body_bytes // 1024 + 2):
            yield b"a" * 1024

    response = await live.http.post(
        "/token", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413


async def test_get_on_token_endpoint_is_405_json(live: Live) -> None:
    response = await live.http.get("/token")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "invalid_request"


async def test_unknown_path_is_json_404(live: Live) -> None:
    response = await live.http.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_responses_carry_security_headers(live: Live) -> None:
    response = await live.http.post("/token", data={})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_transport_is_real_http(live: Live) -> None:
    # The fixture serves through uvicorn on a loopback port, not an in-memory transport.
    async with httpx.AsyncClient() as other:
        response = await other.get(live.base_url + "/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("threads", [0, 2])
async def test_concurrent_grants_each_get_their_own_audience_and_scope(
    database: TestDatabase, tmp_path: Path, threads: int
) -> None:
    # With signing threads, each grant runs on a thread with a copy of its request's context:
    # many at once must not see each other's resource or scope. Without, on the event loop.
    settings = make_settings(database, tmp_path, signing_threads=threads)
    audiences = ["https://api.example.com", "https://billing.example.com"]
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        client = await create_client(settings, audiences=audiences)
        live = Live(settings, base_url, http, client)
        asked = [(audiences[i % 2], ("api:read", "api:write")[(i // 2) % 2]) for i in range(40)]
        responses = await asyncio.gather(
            *(
                http.post(
                    "/token",
                    data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
                    headers=basic(client.client_id, client.client_secret),
                )
                for resource, scope in asked
            )
        )
        seen_jti = set()
        for (resource, scope), response in zip(asked, responses, strict=True):
            assert response.status_code == 200, response.text
            claims = await verify(live, response.json()["access_token"], resource)
            assert (claims["aud"], claims["scope"]) == (resource, scope)
            seen_jti.add(claims["jti"])
        assert len(seen_jti) == len(asked)


@pytest.mark.parametrize("threads", [0, 2])
async def test_refusals_are_the_same_on_a_signing_thread(database: TestDatabase, tmp_path: Path, threads: int) -> None:
    # The grant and its HTTP response are built on a signing thread when there is one, on
    # the event loop otherwise: an error must come back the same either way.
    settings = make_settings(database, tmp_path, signing_threads=threads)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        client = await create_client(settings)
        wrong_secret = await http.post(
            "/token", data={"grant_type": "client_credentials"}, headers=basic(client.client_id, "not-the-secret")
        )
        assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
        assert wrong_secret.headers["www-authenticate"].startswith("Basic ")
        assert wrong_secret.headers["cache-control"] == "no-store"
        not_granted = await http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            headers=basic(client.client_id, client.client_secret),
        )
        assert not_granted.status_code == 400 and not_granted.json()["error"] == "invalid_scope"
        assert not_granted.headers["cache-control"] == "no-store"
        granted = await http.post(
            "/token", data={"grant_type": "client_credentials"}, headers=basic(client.client_id, client.client_secret)
        )
        assert granted.status_code == 200 and granted.headers["cache-control"] == "no-store"
        assert granted.headers["content-type"] == "application/json"
