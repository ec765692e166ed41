"""The admin API's ``/users``, over real HTTP with a client_credentials admin token, on SQLite
and PostgreSQL: search and cursor paging, creation (with and without a password), edits
guarded by ``If-Match``, the account actions (disable, unlock, reset the second factor,
require a password change, mail a reset link), a user's sessions and grants, deletion, the
audit rows naming the calling client, and what a narrower token may not do.

The server here counts three wrong passwords as a lock, asks a local Have I Been Pwned
range server about passwords, and sends its mail to a real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.admin.calls import encode_cursor
from tests.admin import AdminApi, assert_problem
from tests.flows.conftest import Live, SignIn
from tests.flows.test_admin_bootstrap import assert_change_page
from tests.helpers import Client, TestDatabase, create_client, create_user, free_port, make_settings, serve_in_process
from tests.hibp import BREACHED, RangeServer
from tests.mail import Mailbox, link_in, smtp_server
from tests.mfa import enrol
from tests.oidc import PASSWORD, REDIRECT_URI, Browser, Flow

pytestmark = pytest.mark.anyio

WRONG = "not the password at all"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def mailbox() -> Iterator[tuple[int, Mailbox]]:
    port = free_port()
    with smtp_server(port) as box:
        yield port, box


@pytest.fixture
async def live(database: TestDatabase, tmp_path: Path, mailbox: tuple[int, Mailbox]) -> AsyncIterator[Live]:
    """Ostiary with a three-attempt lockout, a breached-password list and mail over SMTP."""
    port, _ = mailbox
    with RangeServer(listed={BREACHED: 52_579}) as hibp:
        settings = make_settings(
            database,
            tmp_path,
            lockout_threshold=3,
            hibp_url=hibp.url,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            mail_poll_interval=1,
        )
        async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            yield Live(settings, base_url, http, await create_client(settings))


@pytest.fixture
async def app(live: Live) -> SignIn:
    """A relying party with refresh tokens, and alice."""
    rp = await create_client(
        live.settings,
        name="Notes app",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    await create_user(live.settings, "alice")
    return SignIn(live, rp, "alice", Browser(live.http))


async def sub_of(api: AdminApi, username: str) -> str:
    (found,) = (await api.ok("GET", f"/users?q={username}"))["items"]
    sub: str = found["sub"]
    return sub


async def sign_in(live: Live, rp: Client, username: str, password: str = PASSWORD) -> httpx.Response:
    """A new browser submits the password at an authorization request; the answer."""
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        browser = Browser(http)
        login = await browser.authorize(**Flow.start(rp.client_id).params(scope="openid"))
        assert login.status_code == 200, login.text
        return await browser.sign_in(login, username, password)


def accepted(answer: httpx.Response) -> bool:
    """The password was taken: a session cookie and the next step (consent or the redirect)."""
    return answer.status_code in (200, 303) and "ostiary_session" in answer.cookies


async def audit_of(api: AdminApi, sub: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (await api.ok("GET", f"/audit?user={sub}"))["items"]
    return events


async def refresh(app: SignIn, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token}
    return await app.http.post("/token", data=form, auth=(app.rp.client_id, app.rp.client_secret))


async def introspect(app: SignIn, token: str, by: Client) -> dict[str, Any]:
    response = await app.http.post("/introspect", data={"token": token}, auth=(by.client_id, by.client_secret))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# -- listing ----------------------------------------------------------------------------------


async def test_search_matches_part_of_the_username_or_the_address_in_any_case(admin_api: AdminApi) -> None:
    settings = admin_api.live.settings
    await create_user(settings, "alice", email="alice@example.com")
    await create_user(settings, "bob", email="bob@corp.example")
    await create_user(settings, "malice", email="m@example.org")

    names = [[u["username"] for u in (await admin_api.ok("GET", f"/users?q={q}"))["items"]] for q in ("ALIC", "CORP.")]
    assert names == [["alice", "malice"], ["bob"]]
    (bob,) = (await admin_api.ok("GET", "/users?q=corp"))["items"]
    assert set(bob) == {
        "sub", "username", "email", "email_verified", "name", "admin", "disabled", "must_change_password", "created_at"
    }  # fmt: skip
    assert bob["email"] == "bob@corp.example" and bob["admin"] is False and bob["disabled"] is False


async def test_a_cursor_pages_through_five_users_two_at_a_time(admin_api: AdminApi) -> None:
    for n in range(5):
        await create_user(admin_api.live.settings, f"user{n}", email=f"user{n}@example.com")
    seen, path, pages = [], "/users?limit=2", 0
    while path:
        page = await admin_api.ok("GET", path)
        pages += 1
        seen += [user["username"] for user in page["items"]]
        path = f"/users?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert (seen, pages) == ([f"user{n}" for n in range(5)], 3)

    problem = assert_problem(await admin_api.call("GET", "/users?limit=0&cursor=nonsense"), 422)
    assert {error["field"] for error in problem["errors"]} == {"limit", "cursor"}
    # a position past any 32-bit id: refused as a cursor of nobody's, on PostgreSQL too (was a 500)
    for listing in ("/users", "/audit"):
        beyond = assert_problem(await admin_api.call("GET", f"{listing}?cursor={encode_cursor(2**31)}"), 422)
        assert [error["field"] for error in beyond["errors"]] == ["cursor"]
    assert (await admin_api.ok("GET", f"/users?cursor={encode_cursor(2**31 - 1)}"))["items"] == []  # after them all


# -- creating ---------------------------------------------------------------------------------


async def test_a_created_user_signs_in_with_the_password_given(admin_api: AdminApi, app: SignIn) -> None:
    body = {"username": "carol", "email": "carol@example.com", "name": "Carol", "password": NEW_PASSWORD}
    response = await admin_api.call("POST", "/users", json=body)
    assert response.status_code == 201, response.text
    carol = response.json()
    assert response.headers["location"] == f"/admin/api/v1/users/{carol['sub']}"
    assert carol["username"] == "carol" and carol["email_verified"] is False and carol["admin"] is False
    assert carol["second_factor"] == {"enrolled": False} and carol["locked"] == []
    assert "password" not in carol and "password_hash" not in carol

    assert accepted(await sign_in(app.live, app.rp, "carol", NEW_PASSWORD))
    fetched = await admin_api.call("GET", f"/users/{carol['sub']}")
    assert fetched.json() == carol and fetched.headers["etag"] == response.headers["etag"]


async def test_a_user_created_without_a_password_signs_in_only_after_a_reset_link(
    admin_api: AdminApi, app: SignIn, mailbox: tuple[int, Mailbox]
) -> None:
    created = await admin_api.ok("POST", "/users", json={"username": "dave", "email": "dave@example.com"})
    assert not accepted(await sign_in(app.live, app.rp, "dave", ""))
    assert not accepted(await sign_in(app.live, app.rp, "dave", NEW_PASSWORD))

    response = await admin_api.call("POST", f"/users/{created['sub']}/send-reset-link")
    assert (response.status_code, response.json()) == (202, {"queued": True})
    (message,) = await mailbox[1].wait_for(1)
    assert message["To"] == "dave@example.com"
    async with httpx.AsyncClient(base_url=app.live.base_url, timeout=10) as http:
        browser = Browser(http)
        page = await browser.http.get(link_in(message))
        chosen = await browser.submit(page, {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
        assert chosen.status_code in (200, 303), chosen.text
    assert accepted(await sign_in(app.live, app.rp, "dave", NEW_PASSWORD))
    kinds = {(event["kind"], event["actor"]) for event in await audit_of(admin_api, created["sub"])}
    assert ("user.reset_link_sent", f"client:{admin_api.client.client_id}") in kinds


async def test_no_reset_link_for_an_account_without_an_address(admin_api: AdminApi) -> None:
    created = await admin_api.ok("POST", "/users", json={"username": "erin", "email": None})
    assert_problem(await admin_api.call("POST", f"/users/{created['sub']}/send-reset-link"), 409)


@pytest.mark.parametrize("password", ["short", BREACHED, "erin@example.com"])
async def test_a_password_the_policy_refuses_is_422_naming_password_and_creates_nobody(
    admin_api: AdminApi, password: str
) -> None:
    body = {"username": "erin", "email": "erin@example.com", "password": password}
    problem = assert_problem(await admin_api.call("POST", "/users", json=body), 422)
    assert [error["field"] for error in problem["errors"]] == ["password"]
    assert (await admin_api.ok("GET", "/users?q=erin"))["items"] == []


async def test_bad_fields_are_each_named_and_a_taken_username_is_refused(admin_api: AdminApi) -> None:
    body = {"username": 7, "colour": "red", "admin": "yes", "email_verified": True}
    problem = assert_problem(await admin_api.call("POST", "/users", json=body), 422)
    assert {error["field"] for error in problem["errors"]} == {"username", "colour", "admin"}
    assert_problem(await admin_api.call("POST", "/users", json={"email": "x@example.com"}), 422)
    bad = assert_problem(await admin_api.call("POST", "/users", json={"username": "has space"}), 422)
    assert bad["errors"][0]["field"] == "username"

    await admin_api.ok("POST", "/users", json={"username": "frank"})
    taken = assert_problem(await admin_api.call("POST", "/users", json={"username": "FRANK"}), 422)
    assert taken["errors"][0]["field"] == "username"
    assert len((await admin_api.ok("GET", "/users?q=frank"))["items"]) == 1


# -- editing ----------------------------------------------------------------------------------


async def test_a_stale_if_match_is_412_and_changes_nothing(admin_api: AdminApi, app: SignIn) -> None:
    sub = await sub_of(admin_api, "alice")
    first = await admin_api.call("GET", f"/users/{sub}")
    etag = first.headers["etag"]

    edited = await admin_api.call("PATCH", f"/users/{sub}", json={"name": "Alice L."}, headers={"If-Match": etag})
    assert edited.status_code == 200, edited.text
    assert edited.json()["name"] == "Alice L." and edited.headers["etag"] != etag

    stale = await admin_api.call("PATCH", f"/users/{sub}", json={"name": "Mallory"}, headers={"If-Match": etag})
    assert_problem(stale, 412)
    now = await admin_api.call("GET", f"/users/{sub}")
    assert now.json()["name"] == "Alice L." and now.headers["etag"] == edited.headers["etag"]


async def test_a_patch_validates_like_creation_and_null_removes_the_address(admin_api: AdminApi, app: SignIn) -> None:
    sub = await sub_of(admin_api, "alice")
    await create_user(admin_api.live.settings, "bob", email="bob@example.com")
    taken = assert_problem(await admin_api.call("PATCH", f"/users/{sub}", json={"email": "BOB@example.com"}), 422)
    assert taken["errors"][0]["field"] == "email"
    wrong = assert_problem(await admin_api.call("PATCH", f"/users/{sub}", json={"email_verified": "no"}), 422)
    assert wrong["errors"][0]["field"] == "email_verified"

    removed = await admin_api.ok("PATCH", f"/users/{sub}", json={"email": None, "username": "alice2"})
    assert (removed["email"], removed["email_verified"], removed["username"]) == (None, False, "alice2")
    assert_problem(await admin_api.call("PATCH", "/users/no-such-sub", json={"name": "x"}), 404)
    event = (await audit_of(admin_api, sub))[0]
    assert event["kind"] == "user.updated" and event["actor"] == f"client:{admin_api.client.client_id}"
    assert set(event["details"]["changed"]) == {"username", "email", "email_verified"}


# -- actions ----------------------------------------------------------------------------------


async def test_disabling_refuses_sign_in_and_ends_the_sessions(admin_api: AdminApi, app: SignIn) -> None:
    await app.tokens(Flow.start(app.rp.client_id), scope="openid")
    sub = await sub_of(admin_api, "alice")
    assert len((await admin_api.ok("GET", f"/users/{sub}/sessions"))["items"]) == 1

    disabled = await admin_api.ok("POST", f"/users/{sub}/disable")
    assert disabled["disabled"] is True
    assert (await admin_api.ok("GET", f"/users/{sub}/sessions"))["items"] == []
    refused = await sign_in(app.live, app.rp, "alice")
    assert not accepted(refused) and "do not match" in refused.text

    assert (await admin_api.ok("POST", f"/users/{sub}/enable"))["disabled"] is False
    assert accepted(await sign_in(app.live, app.rp, "alice"))
    kinds = [(event["kind"], event["actor"]) for event in await audit_of(admin_api, sub)]
    actor = f"client:{admin_api.client.client_id}"
    assert ("user.disabled", actor) in kinds and ("user.enabled", actor) in kinds


async def test_unlock_lifts_a_lockout(admin_api: AdminApi, app: SignIn) -> None:
    for _ in range(3):
        assert not accepted(await sign_in(app.live, app.rp, "alice", WRONG))
    sub = await sub_of(admin_api, "alice")
    assert (await admin_api.ok("GET", f"/users/{sub}"))["locked"] == ["password"]
    assert (await sign_in(app.live, app.rp, "alice")).status_code == 429

    assert (await admin_api.ok("POST", f"/users/{sub}/unlock"))["locked"] == []
    assert accepted(await sign_in(app.live, app.rp, "alice"))


async def test_reset_mfa_removes_the_second_factor(admin_api: AdminApi, app: SignIn) -> None:
    await enrol(app.browser, "alice")
    sub = await sub_of(admin_api, "alice")
    assert (await admin_api.ok("GET", f"/users/{sub}"))["second_factor"] == {"enrolled": True}

    assert (await admin_api.ok("POST", f"/users/{sub}/reset-mfa"))["second_factor"] == {"enrolled": False}
    answer = await sign_in(app.live, app.rp, "alice")
    assert accepted(answer) and 'action="/login/otp"' not in answer.text
    kinds = {(event["kind"], event["actor"]) for event in await audit_of(admin_api, sub)}
    assert ("mfa.reset", f"client:{admin_api.client.client_id}") in kinds


async def test_require_password_change_leads_the_next_sign_in_to_the_change_page(
    admin_api: AdminApi, app: SignIn
) -> None:
    sub = await sub_of(admin_api, "alice")
    assert (await admin_api.ok("POST", f"/users/{sub}/require-password-change"))["must_change_password"] is True
    assert_change_page(await sign_in(app.live, app.rp, "alice"))

    body = {"username": "ivy", "password": NEW_PASSWORD, "require_password_change": True}
    assert (await admin_api.ok("POST", "/users", json=body))["must_change_password"] is True
    assert_change_page(await sign_in(app.live, app.rp, "ivy", NEW_PASSWORD))


async def test_unknown_users_are_404(admin_api: AdminApi) -> None:
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/disable"), ("GET", "/sessions"), ("GET", "/grants")]:
        assert_problem(await admin_api.call(method, f"/users/nobody{path}"), 404)


# -- sessions and grants ----------------------------------------------------------------------


async def test_sessions_and_grants_are_listed_and_ended_one_by_one(admin_api: AdminApi, app: SignIn) -> None:
    tokens = await app.tokens(Flow.start(app.rp.client_id), scope="openid profile")
    resource_server = await create_client(app.live.settings, name="API", introspection=True)
    assert (await introspect(app, tokens["access_token"], resource_server))["active"] is True
    sub = await sub_of(admin_api, "alice")
    (session,) = (await admin_api.ok("GET", f"/users/{sub}/sessions"))["items"]
    assert session["amr"] == ["pwd"] and session["sid"]
    (grant,) = (await admin_api.ok("GET", f"/users/{sub}/grants"))["items"]
    assert (grant["client_id"], grant["session_sid"], grant["offline"]) == (app.rp.client_id, session["sid"], False)

    assert_problem(await admin_api.call("DELETE", f"/users/{sub}/grants/not-a-grant"), 404)
    assert_problem(await admin_api.call("DELETE", f"/users/{sub}/sessions/not-a-sid"), 404)
    assert (await admin_api.call("DELETE", f"/users/{sub}/grants/{grant['grant_id']}")).status_code == 204
    assert (await admin_api.ok("GET", f"/users/{sub}/grants"))["items"] == []
    assert await introspect(app, tokens["access_token"], resource_server) == {"active": False}
    assert (await admin_api.call("DELETE", f"/users/{sub}/sessions/{session['sid']}")).status_code == 204
    assert (await admin_api.ok("GET", f"/users/{sub}/sessions"))["items"] == []

    kinds = {(event["kind"], event["actor"]) for event in await audit_of(admin_api, sub)}
    actor = f"client:{admin_api.client.client_id}"
    assert {("grant.revoked", actor), ("session.ended", actor)} <= kinds


async def test_ending_all_sessions_and_grants_counts_them(admin_api: AdminApi, app: SignIn) -> None:
    await app.tokens(Flow.start(app.rp.client_id), scope="openid offline_access")
    sub = await sub_of(admin_api, "alice")
    assert await admin_api.ok("DELETE", f"/users/{sub}/sessions") == {"ended": 1}
    # The offline family outlives the session, until the grants are revoked too.
    assert len((await admin_api.ok("GET", f"/users/{sub}/grants"))["items"]) == 1
    assert await admin_api.ok("DELETE", f"/users/{sub}/grants?client=someone-else") == {"revoked": 0}
    assert await admin_api.ok("DELETE", f"/users/{sub}/grants?client={app.rp.client_id}") == {"revoked": 1}
    assert (await admin_api.ok("GET", f"/users/{sub}/grants"))["items"] == []


async def test_deleting_a_user_ends_their_tokens(admin_api: AdminApi, app: SignIn) -> None:
    tokens = await app.tokens(Flow.start(app.rp.client_id), scope="openid offline_access")
    resource_server = await create_client(app.live.settings, name="API", introspection=True)
    assert (await introspect(app, tokens["refresh_token"], resource_server))["active"] is True
    sub = await sub_of(admin_api, "alice")

    assert (await admin_api.call("DELETE", f"/users/{sub}")).status_code == 204
    assert_problem(await admin_api.call("GET", f"/users/{sub}"), 404)
    assert await introspect(app, tokens["refresh_token"], resource_server) == {"active": False}
    refused = await refresh(app, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


# -- narrower tokens --------------------------------------------------------------------------


async def test_a_clients_only_token_is_403_on_users(admin_api: AdminApi) -> None:
    token = await admin_api.token_for(admin_api.client, "ostiary:admin:clients")
    problem = assert_problem(await admin_api.call("GET", "/users", token=token), 403)
    assert problem["detail"]
    response = await admin_api.call("GET", "/users", token=token)
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="ostiary:admin:users"' in response.headers["www-authenticate"]


async def test_a_users_token_cannot_give_the_admin_role(admin_api: AdminApi, app: SignIn) -> None:
    token = await admin_api.token_for(admin_api.client, "ostiary:admin:users")
    refused = await admin_api.call("POST", "/users", json={"username": "gina", "admin": True}, token=token)
    assert_problem(refused, 403)
    assert (await admin_api.ok("GET", "/users?q=gina"))["items"] == []
    sub = await sub_of(admin_api, "alice")
    assert_problem(await admin_api.call("PATCH", f"/users/{sub}", json={"admin": True}, token=token), 403)
    assert (await admin_api.ok("GET", f"/users/{sub}"))["admin"] is False

    made = await admin_api.call("POST", "/users", json={"username": "gina"}, token=token)
    assert made.status_code == 201, made.text
    full = await admin_api.ok("POST", "/users", json={"username": "hank", "admin": True})
    assert full["admin"] is True
    events = await audit_of(admin_api, full["sub"])
    assert ("user.updated", f"client:{admin_api.client.client_id}") in {(e["kind"], e["actor"]) for e in events}
