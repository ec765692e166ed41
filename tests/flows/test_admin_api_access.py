"""Who may call the admin API (issue 22): a bearer token Ostiary issued with an admin scope
its client is still registered for; everything else is refused with a challenge. Also the
keys and audit resources, the per-token rate limit and the shape of the problems."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
import jwt
import pytest

from server.storage import transactions
from server.storage.engine import create_sessionmaker, make_engine
from tests.admin import API, AdminApi, assert_problem
from tests.flows.conftest import Live
from tests.helpers import TestDatabase, create_client, make_settings, serve_in_process

pytestmark = pytest.mark.anyio


async def test_no_token_gets_a_bare_bearer_challenge(admin_api: AdminApi) -> None:
    response = await admin_api.http.get(API + "/keys")
    problem = assert_problem(response, 401)
    assert problem["type"] == "about:blank"
    assert response.headers["www-authenticate"] == 'Bearer realm="ostiary-admin"'
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("token", ["not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
async def test_a_token_not_ours_is_invalid(admin_api: AdminApi, token: str) -> None:
    response = await admin_api.call("GET", "/keys", token=token)
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_token_without_an_admin_scope_is_not_for_the_admin_api(admin_api: AdminApi) -> None:
    plain = admin_api.live.client  # registered for api:read api:write only
    token = await admin_api.token_for(plain, "api:read")
    response = await admin_api.call("GET", "/audit", token=token)
    assert_problem(response, 401)  # its audience is another resource server
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_finer_scope_opens_its_own_area_only(admin_api: AdminApi) -> None:
    token = await admin_api.token_for(admin_api.client, "ostiary:admin:audit")
    assert (await admin_api.call("GET", "/audit", token=token)).status_code == 200
    response = await admin_api.call("GET", "/keys", token=token)
    assert_problem(response, 403)
    assert 'scope="ostiary:admin:keys"' in response.headers["www-authenticate"]


async def test_a_client_cannot_ask_for_admin_scopes_it_was_not_registered_for(admin_api: AdminApi) -> None:
    plain = admin_api.live.client
    response = await admin_api.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "ostiary:admin"},
        auth=(plain.client_id, plain.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


async def test_a_disabled_client_s_token_stops_working(admin_api: AdminApi) -> None:
    other = await create_client(admin_api.live.settings, name="automation", scopes=["ostiary:admin:keys"])
    token = await admin_api.token_for(other, "ostiary:admin:keys")
    assert (await admin_api.call("GET", "/keys", token=token)).status_code == 200
    await admin_api.ok("POST", f"/clients/{other.client_id}/disable")
    response = await admin_api.call("GET", "/keys", token=token)
    assert_problem(response, 401)


async def test_taking_the_scope_away_from_the_client_takes_effect_at_once(admin_api: AdminApi) -> None:
    other = await create_client(admin_api.live.settings, name="automation", scopes=["ostiary:admin:keys", "api:read"])
    token = await admin_api.token_for(other, "ostiary:admin:keys")
    await admin_api.ok("PATCH", f"/clients/{other.client_id}", json={"scope": "api:read"})
    assert_problem(await admin_api.call("GET", "/keys", token=token), 403)


async def test_keys_list_rotate_and_revoke(admin_api: AdminApi) -> None:
    before = (await admin_api.ok("GET", "/keys"))["items"]
    # the first key of each algorithm a client may register for
    assert [(key["alg"], key["state"]) for key in before] == [
        ("RS256", "active"),
        ("PS256", "active"),
        ("ES256", "active"),
    ]
    assert "private" not in str(before).lower() and not any("d" in key for key in before)
    staged = await admin_api.call("POST", "/keys/rotate", json={"alg": "ES256"})
    assert staged.status_code == 201, staged.text
    assert staged.json()["state"] == "next" and staged.json()["alg"] == "ES256"
    assert staged.json()["activates_at"]
    states = {key["kid"]: key["state"] for key in (await admin_api.ok("GET", "/keys"))["items"]}
    assert states[staged.json()["kid"]] == "next"
    revoked = await admin_api.ok("POST", f"/keys/{staged.json()['kid']}/revoke")
    assert revoked == {"kid": staged.json()["kid"], "state": "removed", "replaced_by": None}
    assert_problem(await admin_api.call("POST", f"/keys/{staged.json()['kid']}/revoke"), 404)
    events = (await admin_api.ok("GET", "/audit?type=key"))["items"]
    assert [e["kind"] for e in events][:2] == ["key.revoked", "key.staged"]
    assert {e["actor"] for e in events[:2]} == {f"client:{admin_api.client.client_id}"}


async def test_an_emergency_rotation_signs_at_once(admin_api: AdminApi) -> None:
    rotated = await admin_api.call("POST", "/keys/rotate", json={"now": True})
    assert rotated.status_code == 201 and rotated.json()["state"] == "active"
    rs256 = [key for key in (await admin_api.ok("GET", "/keys"))["items"] if key["alg"] == "RS256"]
    assert sorted(key["state"] for key in rs256) == ["active", "retired"]  # the default algorithm's


async def test_bad_bodies_are_problems_listing_each_field(admin_api: AdminApi) -> None:
    response = await admin_api.call("POST", "/keys/rotate", json={"alg": 5, "now": "yes", "size": 4096})
    problem = assert_problem(response, 422)
    assert problem["type"] == "urn:ostiary:problem:validation"
    assert {e["field"] for e in problem["errors"]} == {"alg", "now", "size"}
    assert_problem(await admin_api.call("POST", "/keys/rotate", json={"alg": "HS256"}), 422)
    assert_problem(await admin_api.call("POST", "/keys/rotate", json=[1]), 400)
    raw = await admin_api.call("POST", "/keys/rotate", headers={"Content-Type": "text/plain"})
    assert raw.status_code == 201  # no body: an action with its defaults
    typed = await admin_api.http.post(
        API + "/keys/rotate",
        content=b'{"alg": "RS256"}',
        headers={"Authorization": f"Bearer {admin_api.token}", "Content-Type": "text/plain"},
    )
    assert_problem(typed, 415)
    broken = await admin_api.http.post(
        API + "/keys/rotate",
        content=b'{"alg": ',
        headers={"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"},
    )
    assert_problem(broken, 400)
    big = await admin_api.http.post(
        API + "/keys/rotate",
        content=b'{"alg": "' + b"x" * (admin_api.live.settings.max_body_bytes + 1) + b'"}',
        headers={"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"},
    )
    assert big.status_code == 413
    # the first RS256, PS256 and ES256 keys, and only the body-less rotation
    assert len((await admin_api.ok("GET", "/keys"))["items"]) == 4


async def test_unknown_paths_and_methods_are_problems(admin_api: AdminApi) -> None:
    assert_problem(await admin_api.call("GET", "/nothing/here"), 404)
    response = await admin_api.call("DELETE", "/keys")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


async def test_audit_filters_and_cursor_paging(admin_api: AdminApi) -> None:
    for _ in range(3):
        await admin_api.ok("POST", "/keys/rotate")
    first = await admin_api.ok("GET", "/audit?type=key.staged&limit=2")
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = await admin_api.ok("GET", f"/audit?type=key.staged&limit=2&cursor={first['next_cursor']}")
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert len(second["items"]) == 1 and ids == sorted(ids, reverse=True) and len(set(ids)) == 3
    assert second["next_cursor"] is None
    newest = first["items"][0]["occurred_at"]
    assert (await admin_api.ok("GET", f"/audit?type=key.staged&since={quote(newest)}"))["items"][0]["id"] == ids[0]
    until = await admin_api.ok("GET", "/audit?type=key.staged&until=2000-01-01T00:00:00Z")
    assert until["items"] == []
    problem = assert_problem(await admin_api.call("GET", "/audit?since=yesterday&limit=0&cursor=zz"), 422)
    assert {e["field"] for e in problem["errors"]} == {"limit", "cursor", "since"}


async def test_the_rate_limit_counts_per_token(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, rate_limit_admin=3)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        client = await create_client(settings, name="provisioning", scopes=["ostiary:admin"])
        api = AdminApi(Live(settings, base_url, http, client), client, "")
        api.token = await api.token_for(client, "ostiary:admin")
        # A fixed window of a minute: eight calls put four in one window, even across its end.
        answers = [await api.call("GET", "/keys") for _ in range(8)]
        assert {answer.status_code for answer in answers} == {200, 429}
        limited = next(answer for answer in answers if answer.status_code == 429)
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        fresh = await api.token_for(client, "ostiary:admin")
        assert (await api.call("GET", "/keys", token=fresh)).status_code == 200


async def test_a_revoked_token_stops_working(admin_api: AdminApi) -> None:
    response = await admin_api.http.post(
        "/revoke",
        data={"token": admin_api.token},
        auth=(admin_api.client.client_id, admin_api.client.client_secret),
    )
    assert response.status_code == 200
    assert_problem(await admin_api.call("GET", "/keys"), 401)


async def test_self_registration_cannot_obtain_admin_scopes(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, registration="open")
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.post(
            "/register",
            json={"client_name": "sneaky", "grant_types": ["client_credentials"], "scope": "ostiary:admin"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_client_metadata"
    engine = make_engine(settings.database_url)
    try:
        from server.storage import clients as client_store

        names = [c.name for c in await transactions.run(create_sessionmaker(engine), client_store.list_clients)]
    finally:
        await engine.dispose()
    assert "sneaky" not in names


@pytest.mark.parametrize("path", ["/users/a%00b", "/users/a%00b/sessions", "/keys/%0a/revoke", "/users/" + "x" * 300])
async def test_ids_that_cannot_exist_are_not_found(admin_api: AdminApi, path: str) -> None:
    method = "POST" if path.endswith("revoke") else "GET"
    assert_problem(await admin_api.call(method, path), 404)


async def test_query_values_must_be_text(admin_api: AdminApi) -> None:
    problem = assert_problem(await admin_api.call("GET", "/users?q=a%00b"), 422)
    assert problem["errors"] == [{"field": "q", "detail": "must be printable text"}]
    problem = assert_problem(await admin_api.call("GET", "/audit?type=%1b"), 422)
    assert problem["errors"][0]["field"] == "type"


async def test_a_field_name_that_is_not_text_is_named_not_crashed_on(admin_api: AdminApi) -> None:
    response = await admin_api.http.post(
        API + "/keys/rotate",
        content=b'{"\\ud800": 1}',
        headers={"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"},
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "\ud800"


async def test_an_admin_token_is_for_the_admin_api_alone(admin_api: AdminApi) -> None:
    """Its ``aud`` is the admin API; one bound to another resource (RFC 8707) is refused
    there, so a resource server given it cannot replay it as an administrator."""
    claims = jwt.decode(admin_api.token, options={"verify_signature": False})
    assert claims["aud"] == admin_api.live.settings.issuer + API
    other = await create_client(
        admin_api.live.settings, name="both", scopes=["ostiary:admin:keys"], audiences=["https://api.example.com"]
    )
    response = await admin_api.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "ostiary:admin:keys", "resource": "https://api.example.com"},
        auth=(other.client_id, other.client_secret),
    )
    assert response.status_code == 200, response.text
    bound = response.json()["access_token"]
    assert jwt.decode(bound, options={"verify_signature": False})["aud"] == "https://api.example.com"
    refused = await admin_api.call("GET", "/keys", token=bound)
    assert_problem(refused, 401)
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert (
        await admin_api.call("GET", "/keys", token=await admin_api.token_for(other, "ostiary:admin:keys"))
    ).status_code == 200


async def test_values_that_are_not_text_or_numbers_are_refused_not_crashed_on(admin_api: AdminApi) -> None:
    lone = await admin_api.http.post(
        API + "/keys/rotate",
        content=b'{"alg": "\\ud800"}',
        headers={"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"},
    )
    problem = assert_problem(lone, 422)
    assert problem["errors"] == [{"field": "alg", "detail": "must be a string of text"}]
    assert_problem(await admin_api.call("GET", "/audit?limit=%C2%B2"), 422)  # a superscript two
    problem = assert_problem(await admin_api.call("GET", "/audit?since=0001-01-01T00:00:00%2B14:00"), 422)
    assert problem["errors"][0]["field"] == "since"


async def test_a_users_token_cannot_touch_an_administrator(admin_api: AdminApi) -> None:
    """``ostiary:admin:users`` manages accounts, not administrators: else a new e-mail
    address and a reset link would hand it any administrator's account (and ``ostiary:admin``)."""
    boss = await admin_api.ok("POST", "/users", json={"username": "boss", "email": "boss@example.com", "admin": True})
    clerk = await admin_api.ok("POST", "/users", json={"username": "clerk", "email": "clerk@example.com"})
    token = await admin_api.token_for(admin_api.client, "ostiary:admin:users")
    for method, path, body in (
        ("PATCH", f"/users/{boss['sub']}", {"email": "mallory@example.com", "email_verified": True}),
        ("POST", f"/users/{boss['sub']}/send-reset-link", None),
        ("POST", f"/users/{boss['sub']}/reset-mfa", None),
        ("POST", f"/users/{boss['sub']}/disable", None),
        ("DELETE", f"/users/{boss['sub']}/sessions", None),
        ("DELETE", f"/users/{boss['sub']}", None),
    ):
        response = await admin_api.call(method, path, json=body, token=token)
        assert_problem(response, 403)
        assert 'scope="ostiary:admin"' in response.headers["www-authenticate"]
    assert (await admin_api.ok("GET", f"/users/{boss['sub']}", token=token))["email"] == "boss@example.com"
    renamed = await admin_api.ok("PATCH", f"/users/{clerk['sub']}", json={"name": "Clerk"}, token=token)
    assert renamed["name"] == "Clerk"


async def test_the_last_administrator_stays(admin_api: AdminApi) -> None:
    only = await admin_api.ok("POST", "/users", json={"username": "only", "admin": True})
    for method, path, body in (
        ("POST", f"/users/{only['sub']}/disable", None),
        ("PATCH", f"/users/{only['sub']}", {"admin": False}),
        ("DELETE", f"/users/{only['sub']}", None),
    ):
        problem = assert_problem(await admin_api.call(method, path, json=body), 409)
        assert "last enabled administrator" in problem["detail"]
    second = await admin_api.ok("POST", "/users", json={"username": "second", "admin": True})
    assert (await admin_api.ok("POST", f"/users/{only['sub']}/disable"))["disabled"] is True
    assert_problem(await admin_api.call("DELETE", f"/users/{second['sub']}"), 409)
    events = (await admin_api.ok("GET", f"/audit?user={second['sub']}&type=user.updated"))["items"]
    assert events[0]["details"] == {"changed": ["is_admin"], "admin": True}


async def test_if_match_guards_actions_and_deletes_too(admin_api: AdminApi) -> None:
    other = await create_client(admin_api.live.settings, name="target")
    first = await admin_api.call("GET", f"/clients/{other.client_id}")
    stale = first.headers["etag"]
    await admin_api.ok("PATCH", f"/clients/{other.client_id}", json={"client_name": "renamed"})
    for method, path in (("POST", "/disable"), ("POST", "/rotate-secret"), ("DELETE", "")):
        response = await admin_api.call(method, f"/clients/{other.client_id}{path}", headers={"If-Match": stale})
        assert_problem(response, 412)
    current = (await admin_api.call("GET", f"/clients/{other.client_id}")).headers["etag"]
    assert current != stale
    disabled = await admin_api.call("POST", f"/clients/{other.client_id}/disable", headers={"If-Match": current})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
