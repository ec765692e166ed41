"""OpenID Connect Back-Channel Logout 1.0, over real HTTP: a listener on loopback stands
for the relying parties and verifies every logout token with joserfc against ``/jwks``.

Every way a browser session ends (RP-initiated logout, /account's sign-out everywhere, an
administrator ending it, a password reset, another person signing in in the browser) tells
each client that signed in through it and registered a ``backchannel_logout_uri``, through
the logout-notice outbox: at least once, retried with backoff, never holding up the user.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select, update

from server.storage import transactions
from server.storage.base import utcnow
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import AuditEvent, Client as ClientRow, LogoutNotice
from server.users import admin
from tests.flows.conftest import SignIn
from tests.helpers import Client, TestDatabase, create_client, create_user, free_port
from tests.mail import Mailed, eventually, forgot, link_in, mailed_server, run_sql
from tests.oidc import LOGOUT_URI, REDIRECT_URI, Browser, Flow, forms_of

pytestmark = pytest.mark.anyio

EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class Listener:
    """A relying party's back-channel logout endpoint: records each POST, answering
    ``statuses`` in turn (then 200), or holding every answer until ``release`` is set."""

    url: str
    received: list[dict[str, list[str]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    release: asyncio.Event | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(
            {"path": [scope["path"]], "content-type": [_header(scope, b"content-type")], **parse_qs(body.decode())}
        )
        if self.release is not None:
            await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})

    def tokens(self, path: str) -> list[str]:
        return [post["logout_token"][0] for post in self.received if post["path"] == [path]]


def _header(scope: dict[str, Any], name: bytes) -> str:
    return next((value.decode() for key, value in scope["headers"] if key == name), "")


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    port = free_port()
    rp = Listener(f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(rp, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield rp
    if rp.release is not None:
        rp.release.set()
    server.should_exit = True
    await task


@pytest.fixture
async def mailed(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Mailed]:
    async with mailed_server(database, tmp_path, backchannel_logout_poll_interval=1) as server:
        yield server


@dataclass
class Apps:
    """Two relying parties alice signs in to in one browser: Notes is told of logouts at
    the listener's /notes, Legacy registered no back-channel logout URI."""

    notes: SignIn
    legacy: SignIn
    browser: Browser


async def _rp(mailed: Mailed, name: str, **options: Any) -> Client:
    return await create_client(
        mailed.live.settings,
        name=name,
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile"],
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[LOGOUT_URI],
        **options,
    )


@pytest.fixture
async def apps(mailed: Mailed, listener: Listener) -> Apps:
    notes = await _rp(mailed, "Notes", backchannel_logout_uri=listener.url + "/notes")
    legacy = await _rp(mailed, "Legacy")
    browser = mailed.browser()
    return Apps(SignIn(mailed.live, notes, "alice", browser), SignIn(mailed.live, legacy, "alice", browser), browser)


async def verified(mailed: Mailed, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The logout token's header and claims, its signature checked with the server's JWKS."""
    keys = KeySet.import_key_set(await mailed.live.jwks())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    return dict(decoded.header), dict(decoded.claims)


async def assert_logout_token(mailed: Mailed, token: str, client_id: str, sub: str, sid: str) -> dict[str, Any]:
    header, claims = await verified(mailed, token)
    assert header["typ"] == "logout+jwt" and header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == mailed.live.settings.issuer
    assert claims["aud"] == client_id
    assert claims["events"] == {EVENT: {}}
    assert (claims["sub"], claims["sid"]) == (sub, sid)
    assert "nonce" not in claims
    now = time.time()
    assert claims["iat"] <= now + 5 and now < claims["exp"] <= claims["iat"] + 300
    assert len(claims["jti"]) >= 16
    return claims


async def received(listener: Listener, path: str, count: int = 1) -> list[str]:
    async def enough() -> bool:
        return len(listener.tokens(path)) >= count

    await eventually(enough, timeout=15)
    return listener.tokens(path)


def _unverified(token: str) -> dict[str, Any]:
    """An ID token's claims (the tests that got it checked it already)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def signed_in_to_both(apps: Apps) -> tuple[dict[str, str], dict[str, str]]:
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    legacy = await apps.legacy.tokens(Flow.start(apps.legacy.rp.client_id), scope="openid profile")
    return notes, legacy


async def pending(mailed: Mailed) -> list[Any]:
    return await run_sql(mailed.live.settings.database_url, select(LogoutNotice))


# -- what discovery says -------------------------------------------------------------------


async def test_discovery_advertises_back_channel_logout(mailed: Mailed) -> None:
    metadata = (await mailed.http.get("/.well-known/openid-configuration")).json()
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True
    assert metadata["end_session_endpoint"] == mailed.live.base_url + "/logout"


# -- RP-initiated logout ------------------------------------------------------------------


async def test_rp_initiated_logout_tells_the_clients_of_the_session_and_ends_their_families(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    notes, legacy = await signed_in_to_both(apps)
    sid = _unverified(notes["id_token"])["sid"]
    sub = _unverified(notes["id_token"])["sub"]
    assert _unverified(legacy["id_token"])["sid"] == sid, "one browser session"

    response = await apps.browser.http.get(
        "/logout", params={"id_token_hint": notes["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert response.status_code == 302 and response.headers["location"].startswith(LOGOUT_URI)

    (token,) = await received(listener, "/notes")
    post = listener.received[0]
    assert post["content-type"] == ["application/x-www-form-urlencoded"]
    await assert_logout_token(mailed, token, apps.notes.rp.client_id, sub, sid)

    # the session-bound families ended with the session, for both clients
    for rp, tokens in ((apps.notes.rp, notes), (apps.legacy.rp, legacy)):
        refreshed = await mailed.http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(rp.client_id, rp.client_secret),
        )
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"

    async def delivered() -> bool:
        return not await pending(mailed)

    await eventually(delivered, timeout=10)
    assert len(listener.tokens("/notes")) == 1, "delivered once, and only to the client that asked"


async def test_the_logout_pages_name_the_apps_told_and_those_that_cannot_be(mailed: Mailed, apps: Apps) -> None:
    await signed_in_to_both(apps)
    confirm = await apps.browser.http.get("/logout")
    assert confirm.status_code == 200 and 'name="confirm"' in confirm.text
    told, untold = confirm.text.split('id="apps-untold"')
    assert "<li>Notes</li>" in told and "<li>Legacy</li>" not in told
    assert "<li>Legacy</li>" in untold and "<li>Notes</li>" not in untold
    assert "every application" not in confirm.text

    done = await apps.browser.submit(confirm, confirm="yes")
    assert done.status_code == 200 and 'id="apps-told"' in done.text and "<li>Notes</li>" in done.text
    assert 'id="apps-untold"' in done.text


async def test_the_logout_answers_while_the_client_is_still_being_told(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    listener.release = asyncio.Event()
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    response = await apps.browser.http.get(
        "/logout", params={"id_token_hint": notes["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert response.status_code == 302
    await received(listener, "/notes")  # the post arrived and hangs; the user was answered
    listener.release.set()

    async def delivered() -> bool:
        return not await pending(mailed)

    await eventually(delivered, timeout=10)


# -- the other ways a session ends ---------------------------------------------------------


async def test_signing_out_everywhere_tells_the_clients_of_every_session(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    other_browser = mailed.browser()
    other = SignIn(mailed.live, apps.notes.rp, "alice", other_browser)
    other_tokens = await other.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    sids = {_unverified(notes["id_token"])["sid"], _unverified(other_tokens["id_token"])["sid"]}
    assert len(sids) == 2

    account = await apps.browser.http.get("/account")
    (form,) = [form for form in forms_of(account.text) if form.action == "/account/sign-out-everywhere"]
    ended = await apps.browser.http.post(form.action, data=form.fields)
    assert ended.status_code in (302, 303)

    tokens = await received(listener, "/notes", 2)
    told = {(await verified(mailed, token))[1]["sid"] for token in tokens}
    assert told == sids


async def test_an_administrator_ending_the_session_tells_its_clients(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    claims = _unverified(notes["id_token"])
    engine = make_engine(mailed.live.settings.database_url)
    try:
        await transactions.run(
            create_sessionmaker(engine), lambda db: admin.end_session(db, "alice", claims["sid"], actor="cli")
        )
    finally:
        await engine.dispose()
    # another process ended it: this server's sender finds the notice at its next look
    (token,) = await received(listener, "/notes")
    await assert_logout_token(mailed, token, apps.notes.rp.client_id, claims["sub"], claims["sid"])


async def test_a_password_reset_tells_the_clients_of_the_sessions_it_ends(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    claims = _unverified(notes["id_token"])
    assert (await forgot(mailed.browser(), "alice@example.com")).status_code == 200
    link = link_in((await mailed.mailbox.wait_for(1))[0])
    resetting = mailed.browser()
    page = await resetting.http.get(link)
    new = "a brand new passphrase for alice"
    done = await resetting.submit(page, {"new_password": new, "confirm_password": new})
    assert 'id="reset-done"' in done.text

    (token,) = await received(listener, "/notes")
    await assert_logout_token(mailed, token, apps.notes.rp.client_id, claims["sub"], claims["sid"])


async def test_another_person_signing_in_in_the_browser_tells_the_first_ones_clients(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    claims = _unverified(notes["id_token"])
    await create_user(mailed.live.settings, "bob", email="bob@example.com")
    bob = SignIn(mailed.live, apps.notes.rp, "bob", apps.browser)
    await bob.tokens(Flow.start(apps.notes.rp.client_id), prompt="login", scope="openid profile")

    (token,) = await received(listener, "/notes")
    await assert_logout_token(mailed, token, apps.notes.rp.client_id, claims["sub"], claims["sid"])


async def test_the_same_person_signing_in_again_keeps_the_session_and_tells_nobody(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    # alice signs in anew through another application (prompt=login): the session goes on
    again = await apps.legacy.tokens(Flow.start(apps.legacy.rp.client_id), prompt="login", scope="openid profile")
    sid = _unverified(notes["id_token"])["sid"]
    assert _unverified(again["id_token"])["sid"] == sid
    assert _unverified(again["id_token"])["auth_time"] >= _unverified(notes["id_token"])["auth_time"]
    assert await pending(mailed) == [] and listener.received == []

    # its end tells Notes, with the sid of the ID token Notes holds
    response = await apps.browser.http.get(
        "/logout", params={"id_token_hint": again["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert response.status_code == 302
    (token,) = await received(listener, "/notes")
    await assert_logout_token(mailed, token, apps.notes.rp.client_id, _unverified(notes["id_token"])["sub"], sid)


# -- delivery ----------------------------------------------------------------------------


async def test_a_failed_delivery_is_retried_with_the_same_jti(mailed: Mailed, apps: Apps, listener: Listener) -> None:
    listener.statuses = [500, 503]
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    await apps.browser.http.get(
        "/logout", params={"id_token_hint": notes["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    (first,) = await received(listener, "/notes")
    url = mailed.live.settings.database_url

    async def retried_later() -> bool:
        rows = await pending(mailed)
        return len(rows) == 1 and rows[0].attempts == 1 and rows[0].last_error == "HTTP 500"

    await eventually(retried_later, timeout=10)
    (row,) = await pending(mailed)
    assert row.next_attempt_at >= utcnow() + timedelta(seconds=20), "backoff: about 30 s"

    for count in (2, 3):  # time passes: the notice is due again
        await run_sql(url, update(LogoutNotice).values(next_attempt_at=utcnow()))
        tokens = await received(listener, "/notes", count)

    jtis = {(await verified(mailed, token))[1]["jti"] for token in tokens}
    assert len(tokens) == 3 and jtis == {(await verified(mailed, first))[1]["jti"]}

    async def delivered() -> bool:
        return not await pending(mailed)

    await eventually(delivered, timeout=10)


async def test_a_client_that_never_answers_is_given_up_after_a_day(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    listener.statuses = [500] * 5
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    url = mailed.live.settings.database_url
    await apps.browser.http.get(
        "/logout", params={"id_token_hint": notes["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    await received(listener, "/notes")

    async def failed_once() -> bool:
        rows = await pending(mailed)
        return len(rows) == 1 and rows[0].last_error is not None

    await eventually(failed_once, timeout=10)
    await run_sql(
        url, update(LogoutNotice).values(next_attempt_at=utcnow(), created_at=utcnow() - timedelta(days=1, minutes=1))
    )
    await received(listener, "/notes", 2)

    async def given_up() -> bool:
        return not await pending(mailed)

    await eventually(given_up, timeout=10)
    events = await run_sql(url, select(AuditEvent).where(AuditEvent.kind == "logout_notice.abandoned"))
    assert [(event.client_id, event.details["error"]) for event in events] == [(apps.notes.rp.client_id, "HTTP 500")]


async def test_a_client_disabled_before_delivery_is_not_told(mailed: Mailed, apps: Apps, listener: Listener) -> None:
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    url = mailed.live.settings.database_url
    listener.release = asyncio.Event()  # hold the first delivery so the disable lands before a retry
    listener.statuses = [500]
    await apps.browser.http.get(
        "/logout", params={"id_token_hint": notes["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    await received(listener, "/notes")
    await run_sql(url, update(ClientRow).values(disabled_at=utcnow()))
    listener.release.set()

    async def failed_once() -> bool:
        rows = await pending(mailed)
        return len(rows) == 1 and rows[0].last_error is not None

    await eventually(failed_once, timeout=10)
    await run_sql(url, update(LogoutNotice).values(next_attempt_at=utcnow()))

    async def dropped() -> bool:
        return not await pending(mailed)

    await eventually(dropped, timeout=10)
    assert len(listener.tokens("/notes")) == 1, "no second post to a disabled client"


async def test_a_client_that_does_not_answer_is_cut_off_and_retried_later(
    mailed: Mailed, apps: Apps, listener: Listener
) -> None:
    listener.release = asyncio.Event()  # the client takes the post and never answers
    notes = await apps.notes.tokens(Flow.start(apps.notes.rp.client_id), scope="openid profile")
    await apps.browser.http.get(
        "/logout", params={"id_token_hint": notes["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    await received(listener, "/notes")

    async def cut_off() -> bool:
        rows = await pending(mailed)
        return len(rows) == 1 and rows[0].last_error is not None

    await eventually(cut_off, timeout=15)
    (row,) = await pending(mailed)
    assert row.last_error == "no answer within 5 s" and row.next_attempt_at > utcnow()
