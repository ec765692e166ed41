"""The admin API's ``/clients`` (issue 22), over real HTTP with a real admin token, on SQLite
and PostgreSQL: register, read, list by pages, change under ``If-Match``, disable/enable,
rotate the secret with an overlap, delete; every refusal changes nothing; every change is
audited naming the calling client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from joserfc.jwk import ECKey

from server.admin.resources.clients import METADATA_KINDS
from server.clients import metadata
from tests.admin import API, AdminApi, assert_problem
from tests.helpers import Client

pytestmark = pytest.mark.anyio

SERVICE = {"client_name": "billing sync", "grant_types": ["client_credentials"], "scope": "api:read"}
#: every field of a client's representation (never a secret)
SHAPE = {
    "client_id",
    "client_id_issued_at",
    "client_name",
    "redirect_uris",
    "post_logout_redirect_uris",
    "grant_types",
    "response_types",
    "token_endpoint_auth_method",
    "scope",
    "allowed_cors_origins",
    "audiences",
    "first_party",
    "fapi2",
    "introspection",
    "id_token_signed_response_alg",
    "require_mfa",
    "public",
    "self_registered",
    "created_at",
    "disabled",
}


async def create(api: AdminApi, token: str | None = None, **fields: Any) -> dict[str, Any]:
    response = await api.call("POST", "/clients", json={**SERVICE, **fields}, token=token)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def client_count(api: AdminApi) -> int:
    return len((await api.ok("GET", "/clients?limit=200"))["items"])


async def token_status(api: AdminApi, client_id: str, secret: str) -> int:
    response = await api.http.post(
        "/token", data={"grant_type": "client_credentials", "scope": "api:read"}, auth=(client_id, secret)
    )
    return response.status_code


def fields_of(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem["errors"]}


def test_the_body_speaks_every_rfc_7591_name() -> None:
    assert set(METADATA_KINDS) == set(metadata.NAMES)


async def test_create_answers_the_client_its_secret_once_and_where_it_lives(admin_api: AdminApi) -> None:
    response = await admin_api.call(
        "POST", "/clients", json={**SERVICE, "audiences": ["https://api.example.com"], "introspection": True}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    client_id, secret = created.pop("client_id"), created.pop("client_secret")
    assert set(created) | {"client_id"} == SHAPE
    assert created["client_name"] == "billing sync" and created["scope"] == "api:read"
    assert created["grant_types"] == ["client_credentials"] and created["response_types"] == []
    assert created["audiences"] == ["https://api.example.com"] and created["introspection"] is True
    assert created["public"] is False and created["disabled"] is False
    assert response.headers["location"] == f"{API}/clients/{client_id}"
    shown = await admin_api.call("GET", f"/clients/{client_id}")
    assert shown.status_code == 200 and "client_secret" not in shown.json()
    assert shown.json() == {**created, "client_id": client_id}
    assert shown.headers["etag"] == response.headers["etag"]
    assert await token_status(admin_api, client_id, secret) == 200
    assert secret not in (await admin_api.call("GET", "/clients")).text


async def test_a_public_client_gets_no_secret(admin_api: AdminApi) -> None:
    created = await create(
        admin_api,
        client_name="photo app",
        grant_types=["authorization_code"],
        redirect_uris=["com.example.photos:/callback", "http://127.0.0.1:8400/cb"],
        token_endpoint_auth_method="none",
        scope="openid",
    )
    assert "client_secret" not in created and created["public"] is True
    assert created["response_types"] == ["code"]
    rotated = await admin_api.call("POST", f"/clients/{created['client_id']}/rotate-secret")
    assert_problem(rotated, 409)


async def test_a_client_with_its_own_keys_gets_no_secret(admin_api: AdminApi) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    jwks = {"keys": [key.as_dict(private=False)]}
    created = await create(
        admin_api, token_endpoint_auth_method="private_key_jwt", jwks=jwks, token_endpoint_auth_signing_alg="ES256"
    )
    assert "client_secret" not in created and created["public"] is False
    assert created["jwks"] == jwks and created["token_endpoint_auth_signing_alg"] == "ES256"
    rotated = await admin_api.call("POST", f"/clients/{created['client_id']}/rotate-secret")
    assert_problem(rotated, 409)
    both = await admin_api.call(
        "POST",
        "/clients",
        json={
            **SERVICE,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks,
            "jwks_uri": "https://x.example",
        },
    )
    assert_problem(both, 422)
    assert "jwks_uri" in both.text


async def test_the_list_pages_through_every_client_once(admin_api: AdminApi) -> None:
    made = [(await create(admin_api, client_name=f"batch {n}"))["client_id"] for n in range(3)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await admin_api.ok("GET", "/clients?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page["items"]) <= 2
        assert all(set(item) == SHAPE for item in page["items"])
        seen += [item["client_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # the fixture's two clients (the live server's and the provisioning one), then these
    assert len(seen) == len(set(seen)) == 5 and seen[-3:] == made
    assert admin_api.client.client_id in seen
    problem = assert_problem(await admin_api.call("GET", "/clients?limit=500&cursor=%%%"), 422)
    assert fields_of(problem) == {"limit", "cursor"}


async def test_an_update_under_if_match_refuses_a_stale_version(admin_api: AdminApi) -> None:
    client_id = (await create(admin_api))["client_id"]
    read = await admin_api.call("GET", f"/clients/{client_id}")
    etag = read.headers["etag"]
    changed = await admin_api.call(
        "PATCH",
        f"/clients/{client_id}",
        json={"client_name": "renamed", "audiences": ["https://billing.example.com"]},
        headers={"If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        **read.json(),
        "client_name": "renamed",
        "audiences": ["https://billing.example.com"],
    }  # merge: what the body left out stays
    assert changed.headers["etag"] != etag
    stale = await admin_api.call(
        "PATCH", f"/clients/{client_id}", json={"client_name": "lost update"}, headers={"If-Match": etag}
    )
    assert assert_problem(stale, 412)["type"] == "urn:ostiary:problem:precondition-failed"
    now = await admin_api.call("GET", f"/clients/{client_id}")
    assert now.json()["client_name"] == "renamed" and now.headers["etag"] == changed.headers["etag"]
    # without If-Match the change is unconditional
    assert (await admin_api.ok("PATCH", f"/clients/{client_id}", json={"scope": "api:write"}))["scope"] == "api:write"
    read_only = await admin_api.call("PATCH", f"/clients/{client_id}", json={"client_id": "x", "client_secret": "y"})
    assert fields_of(assert_problem(read_only, 422)) == {"client_id", "client_secret"}
    assert_problem(await admin_api.call("PATCH", "/clients/no-such-client", json={"client_name": "x"}), 404)
    assert_problem(await admin_api.call("GET", "/clients/no-such-client"), 404)


async def test_bad_bodies_name_each_field_and_store_nothing(admin_api: AdminApi) -> None:
    before = await client_count(admin_api)
    wrong = await admin_api.call(
        "POST", "/clients", json={"client_name": 5, "colour": "red", "redirect_uris": "https://a.example", "public": 1}
    )
    assert fields_of(assert_problem(wrong, 422)) == {"client_name", "colour", "redirect_uris", "public"}
    assert fields_of(assert_problem(await admin_api.call("POST", "/clients", json={"scope": "a"}), 422)) == {
        "client_name"
    }
    for uri in ("https://app.example.com/cb#frag", "http://app.example.com/cb", "relative/cb"):
        body = {"client_name": "web app", "grant_types": ["authorization_code"], "redirect_uris": [uri]}
        problem = assert_problem(await admin_api.call("POST", "/clients", json=body), 422)
        assert fields_of(problem) == {"redirect_uris"}, uri
    for body, field in (
        ({"audiences": ["https://api.example.com#x"]}, "audiences"),
        ({"id_token_signed_response_alg": "none"}, "id_token_signed_response_alg"),
        ({"grant_types": ["password"]}, "grant_types"),
        ({"client_name": "   "}, "client_name"),
    ):
        problem = assert_problem(await admin_api.call("POST", "/clients", json={**SERVICE, **body}), 422)
        assert fields_of(problem) == {field}
    assert await client_count(admin_api) == before
    client_id = (await create(admin_api))["client_id"]
    version = (await admin_api.call("GET", f"/clients/{client_id}")).json()
    refused = await admin_api.call("PATCH", f"/clients/{client_id}", json={"redirect_uris": ["http://evil.example"]})
    assert fields_of(assert_problem(refused, 422)) == {"redirect_uris"}
    assert (await admin_api.ok("GET", f"/clients/{client_id}")) == version


async def test_oversize_and_non_json_bodies_are_refused(admin_api: AdminApi) -> None:
    before = await client_count(admin_api)
    headers = {"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"}
    name = "x" * (admin_api.live.settings.max_body_bytes + 1)
    big = await admin_api.http.post(
        API + "/clients", content=b'{"client_name": "' + name.encode() + b'"}', headers=headers
    )
    assert big.status_code == 413  # refused as it streams in, before the API reads it
    typed = await admin_api.http.post(
        API + "/clients", content=b'{"client_name": "x"}', headers={**headers, "Content-Type": "text/plain"}
    )
    assert_problem(typed, 415)
    assert await client_count(admin_api) == before


async def test_a_disabled_client_is_refused_at_the_token_endpoint_until_enabled(admin_api: AdminApi) -> None:
    created = await create(admin_api)
    client_id, secret = created["client_id"], created["client_secret"]
    disabled = await admin_api.call("POST", f"/clients/{client_id}/disable")
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True and disabled.headers["etag"]
    assert await token_status(admin_api, client_id, secret) == 401
    assert (await admin_api.ok("POST", f"/clients/{client_id}/disable"))["disabled"] is True  # idempotent
    assert (await admin_api.ok("POST", f"/clients/{client_id}/enable"))["disabled"] is False
    # the server may serve its cached (disabled) copy for OSTIARY_CLIENT_CACHE_TTL seconds
    deadline = time.monotonic() + admin_api.live.settings.client_cache_ttl + 5
    while await token_status(admin_api, client_id, secret) != 200:
        assert time.monotonic() < deadline, "the enabled client is still refused"
        await asyncio.sleep(0.5)


async def test_a_rotated_secret_overlaps_with_the_old_one(admin_api: AdminApi) -> None:
    created = await create(admin_api)
    client_id, old = created["client_id"], created["client_secret"]
    rotated = await admin_api.ok("POST", f"/clients/{client_id}/rotate-secret", json={"keep_old_for": 300})
    assert set(rotated) == {"client_id", "client_secret", "keep_old_for"}
    assert rotated["client_id"] == client_id and rotated["keep_old_for"] == 300
    new = rotated["client_secret"]
    assert new != old
    assert await token_status(admin_api, client_id, old) == 200
    assert await token_status(admin_api, client_id, new) == 200
    assert await token_status(admin_api, client_id, "not-the-secret") == 401
    for keep in (-1, "300", 10**12):
        refused = await admin_api.call("POST", f"/clients/{client_id}/rotate-secret", json={"keep_old_for": keep})
        assert fields_of(assert_problem(refused, 422)) == {"keep_old_for"}


async def test_a_secret_rotated_without_overlap_replaces_the_old_one(admin_api: AdminApi) -> None:
    created = await create(admin_api)
    client_id, old = created["client_id"], created["client_secret"]
    new = (await admin_api.ok("POST", f"/clients/{client_id}/rotate-secret"))["client_secret"]
    assert await token_status(admin_api, client_id, old) == 401
    assert await token_status(admin_api, client_id, new) == 200


async def test_a_deleted_client_is_gone(admin_api: AdminApi) -> None:
    created = await create(admin_api)
    client_id = created["client_id"]
    deleted = await admin_api.call("DELETE", f"/clients/{client_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_problem(await admin_api.call("GET", f"/clients/{client_id}"), 404)
    assert_problem(await admin_api.call("DELETE", f"/clients/{client_id}"), 404)
    assert_problem(await admin_api.call("POST", f"/clients/{client_id}/enable"), 404)
    assert await token_status(admin_api, client_id, created["client_secret"]) == 401


async def test_a_users_token_cannot_reach_clients(admin_api: AdminApi) -> None:
    token = await admin_api.token_for(admin_api.client, "ostiary:admin:users")
    response = await admin_api.call("GET", "/clients", token=token)
    assert_problem(response, 403)
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="ostiary:admin:clients"' in challenge
    assert_problem(await admin_api.call("POST", "/clients", json=SERVICE, token=token), 403)


async def test_a_clients_token_grants_no_admin_scope_it_lacks(admin_api: AdminApi) -> None:
    token = await admin_api.token_for(admin_api.client, "ostiary:admin:clients")
    before = await client_count(admin_api)
    for scope in ("ostiary:admin", "api:read ostiary:admin:users"):
        refused = await admin_api.call("POST", "/clients", json={**SERVICE, "scope": scope}, token=token)
        assert_problem(refused, 403)
        assert "insufficient_scope" in refused.headers["www-authenticate"]
    assert await client_count(admin_api) == before
    # what it holds itself it may grant
    own = await create(admin_api, token, scope="ostiary:admin:clients")
    assert own["scope"] == "ostiary:admin:clients"
    plain = await create(admin_api, token)
    raised = await admin_api.call(
        "PATCH", f"/clients/{plain['client_id']}", json={"scope": "ostiary:admin"}, token=token
    )
    assert_problem(raised, 403)
    # nor may it take over a client that holds more than it does
    provisioning = admin_api.client.client_id
    for method, path in (
        ("POST", f"/clients/{provisioning}/rotate-secret"),
        ("POST", f"/clients/{provisioning}/disable"),
        ("PATCH", f"/clients/{provisioning}"),
        ("DELETE", f"/clients/{provisioning}"),
    ):
        body = {"client_name": "mine"} if method == "PATCH" else None
        assert_problem(await admin_api.call(method, path, json=body, token=token), 403)
    assert await token_status_for(admin_api, admin_api.client) == 200


async def token_status_for(api: AdminApi, client: Client) -> int:
    response = await api.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "ostiary:admin"},
        auth=(client.client_id, client.client_secret),
    )
    return response.status_code


async def test_every_change_is_audited_naming_the_calling_client(admin_api: AdminApi) -> None:
    client_id = (await create(admin_api))["client_id"]
    await admin_api.ok("PATCH", f"/clients/{client_id}", json={"client_name": "audited"})
    await admin_api.ok("POST", f"/clients/{client_id}/disable")
    await admin_api.ok("POST", f"/clients/{client_id}/enable")
    await admin_api.ok("POST", f"/clients/{client_id}/rotate-secret", json={"keep_old_for": 60})
    await admin_api.call("DELETE", f"/clients/{client_id}")
    events = (await admin_api.ok("GET", f"/audit?client={client_id}"))["items"]
    assert [event["kind"] for event in events] == [
        "client.deleted",
        "client.secret_rotated",
        "client.enabled",
        "client.disabled",
        "client.updated",
        "client.created",
    ]
    assert {event["actor"] for event in events} == {f"client:{admin_api.client.client_id}"}
    assert events[4]["details"] == {"changed": ["name"]}
    assert events[1]["details"] == {"keep_old_for": 60}


async def test_a_field_name_that_is_not_text_is_a_problem_not_a_crash(admin_api: AdminApi) -> None:
    headers = {"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"}
    before = await client_count(admin_api)
    for body, field in (
        (b'{"client_name": "x", "\\ud800": 1}', "\\ud800"),
        (
            b'{"client_name": "x", "grant_types": ["client_credentials"], "redirect_uris": ["https://a.example/\\udfff"]}',
            "redirect_uris",
        ),
    ):
        response = await admin_api.http.post(API + "/clients", content=body, headers=headers)
        assert response.status_code == 422
        assert fields_of(response.json()) == {field}
    assert await client_count(admin_api) == before


@pytest.mark.parametrize("client_id", ["%00", "a%00b", "%ED%A0%80", "x" * 300, "%FF"])
async def test_an_id_that_cannot_be_a_client_s_is_not_found(admin_api: AdminApi, client_id: str) -> None:
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/disable"), ("POST", "/rotate-secret")):
        body = {"client_name": "x"} if method == "PATCH" else None
        response = await admin_api.call(method, f"/clients/{client_id}{path}", json=body)
        assert response.status_code == 404, (method, path)
