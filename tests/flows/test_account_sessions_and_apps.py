"""``/account``'s sessions and applications over real HTTP (issue 24, point 2): each session
named by its browser (from the User-Agent), "this device", first and last seen (written at
most every few minutes), a place only with a local GeoIP database; ending one session the
way a sign-out ends it; the applications the user let in (name, logo, scopes, last used)
and revoking one. Every form needs the page's CSRF token, and nothing of another account's
can be ended.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from sqlalchemy import func, select, update
from sqlalchemy.sql import Select

from server.storage.base import utcnow
from server.storage.models import AuditEvent, BrowserSession, Grant, RefreshToken, User
from tests.flows.conftest import Live, SignIn
from tests.helpers import TestDatabase, create_client, create_user, served_with
from tests.mail import run_sql
from tests.mfa import sign_in_to_account
from tests.oidc import REDIRECT_URI, Browser, Flow, forms_of

pytestmark = pytest.mark.anyio

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
#: nothing uap-core knows
ODD = "Odd/1 (a thing no rule knows)"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
LOGO = "https://rp.example.com/logo.svg"
_DEVICE_NAME = re.compile(r'<h3 class="device-name" id="session-\d+-name">(.*?)</h3>', re.S)


# -- helpers ----------------------------------------------------------------------------


async def rows(settings: Any, query: Select[Any]) -> list[Any]:
    return await run_sql(settings.database_url, query)


@asynccontextmanager
async def browser_as(base_url: str, user_agent: str | None) -> AsyncIterator[Browser]:
    headers = {"User-Agent": user_agent} if user_agent else {}
    async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=headers) as http:
        yield Browser(http)


async def signed_in(browser: Browser, username: str = "alice") -> httpx.Response:
    page = await sign_in_to_account(browser, username)
    assert page.status_code == 200 and f'id="account-username">{username}<' in page.text, page.text
    return page


def sessions_shown(page: httpx.Response) -> list[str]:
    """Each session's heading as text: "Firefox 128 on Windows this device"."""
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", name)).split()) for name in _DEVICE_NAME.findall(page.text)]


def form_with(page: httpx.Response, action: str, **hidden: str) -> dict[str, str]:
    """The fields of the page's form to ``action`` whose hidden fields hold ``hidden``."""
    (form,) = [f for f in forms_of(page.text) if f.action == action and hidden.items() <= f.fields.items()]
    return form.fields


async def sid_of(settings: Any, user_agent: str) -> str:
    (sid,) = await rows(
        settings,
        select(BrowserSession.sid).where(BrowserSession.user_agent == user_agent, BrowserSession.ended_at.is_(None)),
    )
    return str(sid[0])


async def last_seen(settings: Any, sid: str) -> datetime:
    ((seen,),) = await rows(settings, select(BrowserSession.last_seen_at).where(BrowserSession.sid == sid))
    assert isinstance(seen, datetime)
    return seen


async def audit_rows(settings: Any, kind: str) -> list[Any]:
    return await rows(settings, select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id))


@dataclass
class App:
    """An application signed in to, holding its latest refresh token."""

    client_id: str
    refresh: Callable[[], Awaitable[httpx.Response]]


async def signed_in_app(live: Live, browser: Browser, name: str, scope: str, **options: Any) -> App:
    """A new application ``name`` signed in to from ``browser`` with ``scope``; its
    ``refresh()`` rotates its refresh token, as the app would."""
    rp = await create_client(
        live.settings,
        name=name,
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
        redirect_uris=[REDIRECT_URI],
        **options,
    )
    tokens = await SignIn(live, rp, "alice", browser).tokens(Flow.start(rp.client_id), scope=scope)
    current = {"token": tokens["refresh_token"]}

    async def refresh() -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": current["token"]}
        response = await live.http.post("/token", data=form, auth=(rp.client_id, rp.client_secret))
        if response.status_code == 200:
            current["token"] = response.json()["refresh_token"]
        return response

    return App(rp.client_id, refresh)


# -- sessions ---------------------------------------------------------------------------


async def test_sessions_show_their_browser_and_when_seen_and_end_one_at_a_time(live: Live) -> None:
    settings = live.settings
    await create_user(settings, "alice")
    await create_user(settings, "bob", email="bob@example.com")
    async with (
        browser_as(live.base_url, FIREFOX) as firefox,
        browser_as(live.base_url, IPHONE) as iphone,
        browser_as(live.base_url, ODD) as bobs,
    ):
        await signed_in(firefox)
        await signed_in(iphone)
        page = await signed_in(firefox)
        assert sessions_shown(page) == ["Mobile Safari 17 on iOS", "Firefox 128 on Windows this device"]
        assert sessions_shown(await signed_in(iphone)) == [
            "Mobile Safari 17 on iOS this device",
            "Firefox 128 on Windows",
        ]
        assert "session-place" not in page.text  # no place without OSTIARY_GEOIP_DATABASE
        iphone_sid, firefox_sid = await sid_of(settings, IPHONE), await sid_of(settings, FIREFOX)

        # last seen: written when the session is used, at most every 5 minutes
        recently, long_ago = utcnow() - timedelta(minutes=2), utcnow() - timedelta(minutes=30)
        await run_sql(
            settings.database_url,
            update(BrowserSession).where(BrowserSession.sid == iphone_sid).values(last_seen_at=recently),
        )
        await signed_in(iphone)
        assert abs(await last_seen(settings, iphone_sid) - recently) < timedelta(seconds=1)  # throttled: no write
        await run_sql(
            settings.database_url,
            update(BrowserSession).where(BrowserSession.sid == iphone_sid).values(last_seen_at=long_ago),
        )
        page = await signed_in(firefox)
        assert long_ago.strftime("%Y-%m-%d %H:%M UTC") in page.text  # the page shows what is stored
        await signed_in(iphone)
        assert utcnow() - await last_seen(settings, iphone_sid) < timedelta(seconds=30)

        iphone_refresh = (await signed_in_app(live, iphone, "Phone app", "openid")).refresh  # bound to its session
        firefox_refresh = (await signed_in_app(live, firefox, "Desktop app", "openid")).refresh
        ending_iphone = form_with(await signed_in(firefox), "/account/sessions/end", sid=iphone_sid)

        # without this browser's CSRF token: 403, nothing ends
        for token in ({"csrf_token": ""}, {"csrf_token": "x" * 43}):
            refused = await firefox.http.post("/account/sessions/end", data={**ending_iphone, **token})
            assert refused.status_code == 403, refused.text
        assert sessions_shown(await signed_in(iphone))[0] == "Mobile Safari 17 on iOS this device"

        # bob's session cannot be ended from alice's account
        assert sessions_shown(await signed_in(bobs, "bob")) == ["Unknown browser this device"]
        bobs_sid = await sid_of(settings, ODD)
        refused = await firefox.http.post("/account/sessions/end", data={**ending_iphone, "sid": bobs_sid})
        assert refused.status_code == 404 and 'id="account-problem"' in refused.text, refused.text
        assert 'id="account-username">bob<' in (await bobs.http.get("/account")).text

        # alice ends the iPhone's session from Firefox: it and its bound family end, the rest goes on
        ended = await firefox.http.post("/account/sessions/end", data=ending_iphone)
        assert ended.status_code == 303 and ended.headers["location"] == "/account?done=session-ended", ended.text
        page = await firefox.http.get(ended.headers["location"])
        assert sessions_shown(page) == ["Firefox 128 on Windows this device"] and 'id="account-done"' in page.text
        assert 'action="/login"' in (await iphone.http.get("/account")).text
        assert (await iphone_refresh()).json()["error"] == "invalid_grant"
        assert (await firefox_refresh()).status_code == 200
        (event,) = [e for e in await audit_rows(settings, "session.ended") if e.details.get("sid") == iphone_sid]
        alice_sub = (await rows(settings, select(User.sub).where(User.username == "alice")))[0][0]
        assert (event.actor, event.user_sub, event.details["reason"]) == (alice_sub, alice_sub, "ended_by_user")
        # ended already: not found, and no second audit row
        again = await firefox.http.post("/account/sessions/end", data=ending_iphone)
        assert again.status_code == 404
        assert len([e for e in await audit_rows(settings, "session.ended") if e.details.get("sid") == iphone_sid]) == 1

        # ending this browser's own session signs it out, as /logout would
        own = form_with(await signed_in(firefox), "/account/sessions/end", sid=firefox_sid)
        out = await firefox.http.post("/account/sessions/end", data=own)
        assert out.status_code == 303 and out.headers["location"] == "/account"
        assert 'action="/login"' in (await firefox.http.get("/account")).text
        assert (await firefox_refresh()).json()["error"] == "invalid_grant"
        assert 'id="account-username">bob<' in (await bobs.http.get("/account")).text


# -- applications -----------------------------------------------------------------------


async def test_applications_are_listed_and_revoked_one_at_a_time(live: Live) -> None:
    settings = live.settings
    await create_user(settings, "alice")
    async with browser_as(live.base_url, FIREFOX) as firefox:
        await signed_in(firefox)
        assert 'id="no-apps"' in (await firefox.http.get("/account")).text
        prints = await signed_in_app(live, firefox, "Photo Prints", "openid profile offline_access", logo_uri=LOGO)
        notes = await signed_in_app(live, firefox, "Notes", "openid", first_party=True)  # no consent: a live grant
        assert (await prints.refresh()).status_code == 200  # a refresh: its last use

        page = await firefox.http.get("/account")
        apps = re.findall(r'<span class="app-name">(.*?)</span>', page.text)
        assert apps == ["Photo Prints", "Notes"]  # the one used last first
        assert f'<img class="app-logo" src="{LOGO}" alt="Photo Prints logo"' in page.text
        assert "img-src 'self' data: https://rp.example.com;" in page.headers["content-security-policy"]
        assert "Stay connected when you are not using it" in page.text and "See your name and username" in page.text
        newest = await rows(
            settings,
            select(func.max(RefreshToken.created_at))
            .join(Grant, Grant.id == RefreshToken.grant_id)
            .where(Grant.client_id == prints.client_id),
        )
        assert f"{newest[0][0]:%Y-%m-%d %H:%M} UTC" in page.text
        revoking = form_with(page, "/account/apps/revoke", client_id=prints.client_id)

        refused = await firefox.http.post("/account/apps/revoke", data={**revoking, "csrf_token": ""})
        assert refused.status_code == 403
        assert (await prints.refresh()).status_code == 200
        unknown = await firefox.http.post("/account/apps/revoke", data={**revoking, "client_id": "no-such-app"})
        assert unknown.status_code == 404
        everything = await firefox.http.post("/account/apps/revoke", data={**revoking, "client_id": ""})
        assert everything.status_code == 404
        assert (await notes.refresh()).status_code == 200

        revoked = await firefox.http.post("/account/apps/revoke", data=revoking)
        assert revoked.status_code == 303 and revoked.headers["location"] == "/account?done=app-revoked"
        assert (await prints.refresh()).json()["error"] == "invalid_grant"  # offline_access too
        page = await firefox.http.get("/account")
        assert re.findall(r'<span class="app-name">(.*?)</span>', page.text) == ["Notes"]
        assert "rp.example.com" not in page.headers["content-security-policy"]
        assert (await notes.refresh()).status_code == 200
        (event,) = await audit_rows(settings, "grants.revoked")
        assert event.client_id == prints.client_id
        assert event.details == {"reason": "user_revoked", "families": 1, "consent_forgotten": True}
        # the consent is forgotten: the next sign-in asks again
        flow = Flow.start(prints.client_id)
        asked = await firefox.authorize(**flow.params(scope="openid profile offline_access"))
        assert 'name="decision"' in asked.text, asked.text
        again = await firefox.http.post("/account/apps/revoke", data=revoking)
        assert again.status_code == 404


# -- places -----------------------------------------------------------------------------


def geoip_database(path: Path) -> Path:
    """A tiny City database: loopback is in "Testville, Testland"."""
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-City", languages=["en"], ipv4_compatible=True)
    place = {"city": {"names": {"en": "Testville"}}, "country": {"iso_code": "ZZ", "names": {"en": "Testland"}}}
    writer.insert_network(IPSet(["127.0.0.0/8"]), place)
    writer.to_db_file(str(path))
    return path


async def test_the_place_comes_from_the_local_geoip_database(database: TestDatabase, tmp_path: Path) -> None:
    mmdb = geoip_database(tmp_path / "city.mmdb")
    async with served_with(database, tmp_path, geoip_database=mmdb) as (settings, http):
        await create_user(settings, "alice")
        async with browser_as(str(http.base_url), FIREFOX) as firefox:
            page = await signed_in(firefox)
        assert '<dd class="session-place">Testville, Testland</dd>' in page.text, page.text
