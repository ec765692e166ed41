"""The admin API's ``/invitations``, over real HTTP on SQLite and PostgreSQL, with
``OSTIARY_SIGNUP=invite``: an invitation made through the API, its link shown once and
never listed, lists newest first (the live ones, or with ``state=all`` every one, paged by
cursor), revocation, the audit rows naming the calling client, bad input as a validation
problem naming the field, an unknown id as 404, refusals for a token without the users
scope and for a user without the admin role, and the link really signing a user up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from server.storage.base import utcnow
from server.storage.models import User
from tests.admin import ADMIN_SCOPES, AdminApi, assert_problem
from tests.flows.conftest import Live
from tests.flows.test_admin_api_user_token import new_user, token_through_browser, with_totp
from tests.flows.test_signup import confirm, sign_up, verify_link
from tests.helpers import TestDatabase, create_client, make_settings, serve_in_process
from tests.mail import mailed_server
from tests.oidc import REDIRECT_URI

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Live]:
    """Ostiary whose sign-up takes invitations only."""
    settings = make_settings(database, tmp_path, signup="invite")
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        yield Live(settings, base_url, http, await create_client(settings))


async def admin_api_of(live: Live) -> AdminApi:
    client = await create_client(live.settings, name="provisioning", scopes=ADMIN_SCOPES)
    api = AdminApi(live, client, "")
    api.token = await api.token_for(client, "ostiary:admin:users")
    return api


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


async def test_make_list_and_revoke(admin_api: AdminApi) -> None:
    issuer = admin_api.live.settings.issuer
    actor = f"client:{admin_api.client.client_id}"
    made = await admin_api.call("POST", "/invitations")  # no body: any address, the default lifetime
    assert made.status_code == 201, made.text
    anyone = made.json()
    assert anyone["state"] == "live" and anyone["email"] is None and anyone["created_by"] == actor
    assert anyone["link"].startswith(issuer + "/signup?invitation=")
    ttl = admin_api.live.settings.invitation_ttl
    lasts = datetime.fromisoformat(anyone["expires_at"]) - datetime.fromisoformat(anyone["created_at"])
    assert abs(lasts - timedelta(seconds=ttl)) < timedelta(seconds=5)
    bob = await admin_api.ok("POST", "/invitations", json={"email": "Bob@Example.com", "expires_in": 86400})
    assert bob["email"] == "Bob@Example.com" and bob["id"] > anyone["id"]
    assert datetime.fromisoformat(bob["expires_at"]) - utcnow() < timedelta(days=1)

    listed = await admin_api.ok("GET", "/invitations")
    assert [item["id"] for item in listed["items"]] == [bob["id"], anyone["id"]]
    assert listed["next_cursor"] is None
    assert listed["items"][0] == {name: value for name, value in bob.items() if name != "link"}
    assert bob["link"] not in str(listed) and "link" not in listed["items"][0]

    revoked = await admin_api.call("DELETE", f"/invitations/{anyone['id']}")
    assert revoked.status_code == 204 and not revoked.content
    live_only = await admin_api.ok("GET", "/invitations?state=live")
    assert [item["id"] for item in live_only["items"]] == [bob["id"]]
    every = await admin_api.ok("GET", "/invitations?state=all")
    assert [(item["id"], item["state"]) for item in every["items"]] == [(bob["id"], "live"), (anyone["id"], "revoked")]
    again = await admin_api.call("DELETE", f"/invitations/{anyone['id']}")
    assert "no live invitation" in assert_problem(again, 404)["detail"]

    events = (await admin_api.ok("GET", "/audit?type=invitation"))["items"]
    assert [(event["kind"], event["actor"]) for event in events] == [
        ("invitation.revoked", actor),
        ("invitation.created", actor),
        ("invitation.created", actor),
    ]


async def test_lists_page_by_cursor_newest_first(admin_api: AdminApi) -> None:
    made = [(await admin_api.ok("POST", "/invitations", json={}))["id"] for _ in range(3)]
    first = await admin_api.ok("GET", "/invitations?limit=2")
    assert [item["id"] for item in first["items"]] == made[:0:-1] and first["next_cursor"]
    second = await admin_api.ok("GET", f"/invitations?limit=2&cursor={first['next_cursor']}")
    assert [item["id"] for item in second["items"]] == made[:1] and second["next_cursor"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"email": ""}, "email"),
        ({"email": 7}, "email"),
        ({"expires_in": 60}, "expires_in"),
        ({"expires_in": 91 * 86400}, "expires_in"),
        ({"expires_in": "1d"}, "expires_in"),
        ({"expires_in": 10**15}, "expires_in"),
        ({"link": "mine"}, "link"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field(
    admin_api: AdminApi, body: dict[str, object], field: str
) -> None:
    refused = await admin_api.call("POST", "/invitations", json=body)
    problem = assert_problem(refused, 422)
    assert problem["type"] == "urn:ostiary:problem:validation"
    assert [error["field"] for error in problem["errors"]] == [field]
    assert (await admin_api.ok("GET", "/invitations?state=all"))["items"] == []


async def test_bad_queries_and_unknown_ids(admin_api: AdminApi) -> None:
    listed = await admin_api.call("GET", "/invitations?state=dead&limit=0")
    assert [error["field"] for error in assert_problem(listed, 422)["errors"]] == ["limit", "state"]
    for unknown in ("12345", "abc", "-1", "1.5", "99999999999", "2147483648", "9" * 40):
        assert_problem(await admin_api.call("DELETE", f"/invitations/{unknown}"), 404)
    huge = await admin_api.call("GET", "/invitations?cursor=cDk5OTk5OTk5OTk5OTk")  # p9999999999999
    assert [error["field"] for error in assert_problem(huge, 422)["errors"]] == ["cursor"], "no id is that large"


async def test_the_users_scope_or_the_full_one_is_needed(live: Live) -> None:
    api = await admin_api_of(live)
    assert (await api.call("POST", "/invitations")).status_code == 201  # ostiary:admin:users
    for scope in ("ostiary:admin:keys", "ostiary:admin:clients"):
        token = await api.token_for(api.client, scope)
        for method, path in (("GET", "/invitations"), ("POST", "/invitations"), ("DELETE", "/invitations/1")):
            refused = await api.call(method, path, token=token)
            assert_problem(refused, 403)
            assert 'scope="ostiary:admin:users"' in refused.headers["www-authenticate"]
    nobody = await live.http.post("/admin/api/v1/invitations")
    assert_problem(nobody, 401)
    assert len((await api.ok("GET", "/invitations"))["items"]) == 1


async def test_a_user_without_the_admin_role_is_refused(admin_api: AdminApi) -> None:
    live = admin_api.live
    console = await create_client(
        live.settings,
        name="Admin console",
        grant_types=["authorization_code"],
        scopes=["openid", "ostiary:admin"],
        redirect_uris=[REDIRECT_URI],
    )
    await new_user(admin_api, "alice", is_admin=False)
    token = await token_through_browser(live, console, "alice", await with_totp(live, "alice"))
    refused = await admin_api.call("POST", "/invitations", token=token)
    assert_problem(refused, 403)
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert (await admin_api.ok("GET", "/invitations?state=all"))["items"] == []


async def test_the_link_signs_a_user_up_once(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path, signup="invite") as mailed:
        api = await admin_api_of(mailed.live)
        browser = mailed.browser()
        closed = await browser.http.get("/signup")
        assert closed.status_code == 403 and "by invitation only" in closed.text
        invited = await api.ok("POST", "/invitations", json={"email": "bob@example.com"})
        start = path_of(invited["link"])
        page = await browser.http.get(start)
        assert page.status_code == 200 and 'action="/signup"' in page.text, page.text
        assert "by invitation only" not in page.text and "bob@example.com" in page.text

        sent = await sign_up(browser, start, email="bob@example.com")
        assert 'id="signup-sent"' in sent.text, sent.text
        done = await confirm(mailed.browser(), verify_link((await mailed.mailbox.wait_for(1))[0]))
        assert 'id="verify-done"' in done.text
        (user,) = await mailed.sql(select(User).where(User.username == "bob"))
        assert user.email == "bob@example.com" and user.email_verified

        (used,) = (await api.ok("GET", "/invitations?state=all"))["items"]
        assert used["state"] == "used"
        assert (await browser.http.get(start)).status_code == 403
        assert_problem(await api.call("DELETE", f"/invitations/{invited['id']}"), 404)


async def test_a_revoked_link_no_longer_shows_the_form(admin_api: AdminApi) -> None:
    invited = await admin_api.ok("POST", "/invitations")
    async with httpx.AsyncClient(base_url=admin_api.live.base_url, timeout=10) as http:
        assert (await http.get(path_of(invited["link"]))).status_code == 200
        await admin_api.ok("DELETE", f"/invitations/{invited['id']}")
        gone = await http.get(path_of(invited["link"]))
    assert gone.status_code == 403 and "revoked" in gone.text and 'action="/signup"' not in gone.text
