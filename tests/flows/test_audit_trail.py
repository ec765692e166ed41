"""The audit trail, over real HTTP: every security event of the sign-in, the second factor,
the account pages, the password reset, sessions and refresh-token families is one row of
``audit_events``, naming whom it concerns (``user_sub``, ``client_id``) and never a secret."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from server.settings import Settings
from server.storage import audit, transactions
from server.storage.audit import EventFilter, StoredEvent
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import User
from tests.flows.conftest import Live, SignIn
from tests.flows.test_account_pages import another_browser, rows
from tests.flows.test_lockout import WRONG, LoginBrowser
from tests.flows.test_mfa_step_up import code_from, otp_page_after_password, serve, signed_out_with_totp
from tests.flows.test_password_reset import choose, mailed_link
from tests.flows.test_refresh_tokens import Offline, make_offline
from tests.helpers import TestDatabase
from tests.mail import Mailed, mailed_server
from tests.mfa import change_password_at_account, enrol, sign_in_to_account, submit_form
from tests.oidc import LOGOUT_URI, PASSWORD, Flow

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase for alice"
LOOPBACK = "127.0.0.1"


# -- reading the trail ------------------------------------------------------------------


async def events(settings: Settings, kind: str | None = None) -> list[StoredEvent]:
    """The recorded events (of ``kind`` and the kinds under it), oldest first."""
    engine = make_engine(settings.database_url)
    try:
        found = await transactions.run(
            create_sessionmaker(engine), lambda db: audit.events(db, EventFilter(kind=kind), limit=1000), read_only=True
        )
    finally:
        await engine.dispose()
    return found[::-1]


async def only(settings: Settings, kind: str) -> StoredEvent:
    """The one event of exactly ``kind``."""
    found = [event for event in await events(settings, kind) if event.kind == kind]
    assert len(found) == 1, found
    return found[0]


async def sub_of(live: Live, username: str = "alice") -> str:
    (sub,) = [row.sub for row in await rows(live, select(User.sub).where(User.username == username))]
    assert isinstance(sub, str)
    return sub


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, read by the relying party (the signature is other tests' concern)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def columns_of(event: StoredEvent) -> str:
    """Every free-text column of a row (not its id or time), as one string to search."""
    values = (event.kind, event.actor, event.user_sub, event.client_id, event.subject)
    return "\n".join([*(str(v) for v in values), json.dumps(event.details)])


def tokens_in(body: dict[str, Any]) -> list[str]:
    """What a token response issued: the tokens, not their type, scope or lifetime."""
    return [body[name] for name in ("access_token", "refresh_token", "id_token") if name in body]


@pytest.fixture
async def strict(database: TestDatabase, tmp_path: Path) -> AsyncIterator[SignIn]:
    """The second wrong password locks the account."""
    async with serve(database, tmp_path, lockout_threshold=2) as signin:
        yield signin


@pytest.fixture
async def offline(signin: SignIn) -> Offline:
    return await make_offline(signin)


@pytest.fixture
async def mailed(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Mailed]:
    async with mailed_server(database, tmp_path) as server:
        yield server


class Counted:
    """The metrics (``observe.metrics``) counted since it was made. The server runs in the
    test's process here, so its counters are this process's."""

    def __init__(self) -> None:
        self.start = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in REGISTRY.collect()
            for sample in family.samples
        }

    def since(self, name: str, **labels: str) -> float:
        now = REGISTRY.get_sample_value(name, labels) or 0.0
        return now - self.start.get((name, tuple(sorted(labels.items()))), 0.0)


# -- signing in -------------------------------------------------------------------------


async def test_a_sign_in_names_the_user_and_the_client(signin: SignIn) -> None:
    counted = Counted()
    await signin.code(Flow.start(signin.rp.client_id))
    assert counted.since("ostiary_signins_succeeded_total") == 1
    sub = await sub_of(signin.live)
    event = await only(signin.live.settings, "login.succeeded")
    assert (event.actor, event.user_sub, event.client_id) == (sub, sub, signin.rp.client_id)
    assert event.details["amr"] == ["pwd"]
    assert [e.kind for e in await events(signin.live.settings, "login")] == ["login.succeeded"]


async def test_a_wrong_password_is_a_failure_of_the_known_user(signin: SignIn) -> None:
    counted = Counted()
    refused = await LoginBrowser(signin.http, signin.rp.client_id).attempt("alice", WRONG)
    assert refused.status_code == 200 and 'id="login-error"' in refused.text
    assert counted.since("ostiary_signins_failed_total", reason="bad_password") == 1
    assert counted.since("ostiary_signins_succeeded_total") == 0
    sub = await sub_of(signin.live)
    event = await only(signin.live.settings, "login.failed")
    assert (event.actor, event.user_sub, event.client_id) == (sub, sub, signin.rp.client_id)
    assert event.details == {"reason": "bad_password", "ip": LOOPBACK, "known_device": False}
    assert [e.kind for e in await events(signin.live.settings, "login")] == ["login.failed"]  # not locked


async def test_an_unknown_username_is_a_failure_of_nobody_and_the_name_is_not_kept(signin: SignIn) -> None:
    # Perhaps a password typed into the wrong box: it must not be written down.
    typed = "Tr0ub4dor&3-in-the-username-box"
    refused = await LoginBrowser(signin.http, signin.rp.client_id).attempt(typed, WRONG)
    assert refused.status_code == 200 and 'id="login-error"' in refused.text
    event = await only(signin.live.settings, "login.failed")
    assert (event.actor, event.user_sub, event.client_id) == (None, None, signin.rp.client_id)
    assert event.details["reason"] == "unknown_user" and event.details["ip"] == LOOPBACK
    for event in await events(signin.live.settings):
        text = columns_of(event)
        assert typed not in text and typed.lower() not in text and WRONG not in text, event


async def test_the_failure_that_locks_the_account_is_followed_by_one_lock_event(strict: SignIn) -> None:
    settings = strict.live.settings
    browser = LoginBrowser(strict.http, strict.rp.client_id)
    counted = Counted()
    for _ in range(2):
        assert (await browser.attempt("alice", WRONG)).status_code == 200
    assert (await browser.attempt("alice", PASSWORD)).status_code == 429  # locked: not even checked
    assert counted.since("ostiary_signins_failed_total", reason="bad_password") == 2
    assert counted.since("ostiary_signins_failed_total", reason="locked") == 1
    assert counted.since("ostiary_lockouts_total", factor="password") == 1
    sub = await sub_of(strict.live)

    trail = await events(settings, "login")
    assert [(e.kind, e.details.get("reason")) for e in trail] == [
        ("login.failed", "bad_password"),
        ("login.failed", "bad_password"),
        ("login.locked", None),
        ("login.failed", "locked"),
    ]
    for event in trail:
        assert (event.actor, event.user_sub, event.client_id) == (sub, sub, strict.rp.client_id), event
        assert event.details["ip"] == LOOPBACK, event
    locked = trail[2]
    assert 0 < locked.details["retry_after"] <= settings.lockout_window_seconds


# -- the second factor ------------------------------------------------------------------


async def test_a_wrong_code_is_a_second_factor_failure(signin: SignIn) -> None:
    enrolled = await signed_out_with_totp(signin)
    page = await otp_page_after_password(signin, Flow.start(signin.rp.client_id))
    counted = Counted()
    refused = await signin.browser.submit(page, {"code": enrolled.app.wrong()})
    assert refused.status_code == 200 and 'id="otp-error"' in refused.text
    assert counted.since("ostiary_second_factor_failures_total") == 1
    sub = await sub_of(signin.live)
    event = await only(signin.live.settings, "mfa.failed")
    assert (event.actor, event.user_sub, event.client_id) == (sub, sub, None)
    assert event.details == {"reason": "wrong_code", "known_device": False}
    assert [e.kind for e in await events(signin.live.settings, "login")] == ["login.succeeded"]  # the enrolment's


async def test_a_backup_code_in_place_of_the_app_is_recorded_as_used(signin: SignIn) -> None:
    enrolled = await signed_out_with_totp(signin)
    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)
    await code_from(signin, await signin.browser.submit(page, {"code": enrolled.backup_codes[0]}), flow)
    sub = await sub_of(signin.live)
    event = await only(signin.live.settings, "mfa.backup_code_used")
    assert (event.actor, event.user_sub, event.client_id, event.details) == (sub, sub, None, {})
    signed_in = (await events(signin.live.settings, "login.succeeded"))[-1]
    assert signed_in.client_id == signin.rp.client_id
    assert signed_in.details["method"] == "backup_code" and signed_in.details["amr"] == ["pwd", "otp", "mfa"]


async def test_turning_the_second_factor_on_and_off_on_the_account_page(signin: SignIn) -> None:
    settings = signin.live.settings
    enrolled = await enrol(signin.browser, "alice")
    sub = await sub_of(signin.live)
    on = await only(settings, "mfa.enabled")
    assert (on.actor, on.user_sub, on.client_id, on.details) == (sub, sub, None, {"method": "totp"})

    page = await signin.http.get("/account")
    off = await submit_form(
        signin.browser, page, "/account/totp/disable", password=PASSWORD, code=await enrolled.app.code()
    )
    assert off.status_code == 303, off.text
    event = await only(settings, "mfa.disabled")
    assert (event.actor, event.user_sub, event.client_id, event.details) == (sub, sub, None, {})
    assert event.id > on.id


# -- the password -----------------------------------------------------------------------


async def test_a_password_change_on_the_account_page(signin: SignIn) -> None:
    changed = await change_password_at_account(signin.browser, NEW_PASSWORD)
    assert changed.status_code == 303, changed.text
    sub = await sub_of(signin.live)
    event = await only(signin.live.settings, "user.password_changed")
    assert (event.actor, event.user_sub, event.client_id) == (sub, sub, None)
    assert event.details == {"families": 0, "sessions": 0, "reset_links": 0, "kept_session": True}
    for event in await events(signin.live.settings):
        assert PASSWORD not in columns_of(event) and NEW_PASSWORD not in columns_of(event), event


async def test_a_password_reset_by_mail(mailed: Mailed) -> None:
    settings = mailed.live.settings
    link = await mailed_link(mailed)
    done = await choose(mailed.browser(), link, NEW_PASSWORD)
    assert done.status_code == 200 and 'id="reset-done"' in done.text
    sub = await sub_of(mailed.live)

    trail = [e for e in await events(settings, "user") if e.kind != "user.created"]
    assert [e.kind for e in trail] == ["user.password_reset_requested", "user.password_changed", "user.password_reset"]
    for event in trail:
        assert (event.actor, event.user_sub, event.client_id) == (sub, sub, None), event
        text = columns_of(event)
        assert link.rsplit("=", 1)[1] not in text and NEW_PASSWORD not in text, event
    assert trail[1].details["kept_session"] is False


# -- sessions ---------------------------------------------------------------------------


async def test_logout_ends_the_session_by_its_sid(signin: SignIn) -> None:
    tokens = await signin.tokens(Flow.start(signin.rp.client_id))
    out = await signin.http.get(
        "/logout", params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert out.status_code == 302, out.text
    sub = await sub_of(signin.live)
    event = await only(signin.live.settings, "session.ended")
    assert (event.actor, event.user_sub, event.client_id) == (sub, sub, None)
    assert event.details == {"reason": "logout", "sid": claims_of(tokens["id_token"])["sid"]}


async def test_signing_out_everywhere_ends_every_session_in_one_event(signin: SignIn) -> None:
    await sign_in_to_account(signin.browser, "alice")
    async with another_browser(signin.live) as other:
        await sign_in_to_account(other, "alice")
        page = await signin.http.get("/account")
        out = await submit_form(signin.browser, page, "/account/sign-out-everywhere")
        assert out.status_code == 303, out.text
    sub = await sub_of(signin.live)
    event = await only(signin.live.settings, "session.ended")
    assert (event.actor, event.user_sub, event.client_id) == (sub, sub, None)
    assert event.details == {"reason": "signed_out_everywhere", "sessions": 2, "families": 0}


# -- refresh tokens and grants ----------------------------------------------------------


async def test_a_replayed_refresh_token_names_the_client_the_user_and_the_grant(offline: Offline) -> None:
    first = await offline.tokens()
    assert (await offline.refresh(first["refresh_token"])).status_code == 200
    counted = Counted()
    assert (await offline.refresh(first["refresh_token"])).status_code == 400
    assert counted.since("ostiary_refresh_reuse_detected_total") == 1
    assert counted.since("ostiary_token_families_revoked_total", reason="refresh_token_reuse") == 1
    sub, grant = await sub_of(offline.signin.live), claims_of(first["access_token"])["gid"]
    event = await only(offline.signin.live.settings, "refresh_token.reuse")
    client_id = offline.rp.client_id
    assert (event.actor, event.user_sub, event.client_id, event.subject) == (client_id, sub, client_id, grant)
    assert event.details["grant_id"] == grant and event.details["client_id"] == client_id
    assert event.details["ip"] == LOOPBACK


async def test_a_client_revoking_its_refresh_token_revokes_the_grant(offline: Offline) -> None:
    tokens = await offline.tokens()
    counted = Counted()
    revoked = await offline.http.post(
        "/revoke", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}, auth=offline.auth
    )
    assert revoked.status_code == 200
    assert counted.since("ostiary_token_families_revoked_total", reason="revoked_by_client") == 1
    sub, grant = await sub_of(offline.signin.live), claims_of(tokens["access_token"])["gid"]
    event = await only(offline.signin.live.settings, "grant.revoked")
    client_id = offline.rp.client_id
    assert (event.actor, event.user_sub, event.client_id, event.subject) == (client_id, sub, client_id, grant)
    assert event.details == {"reason": "revoked_by_client"}


async def test_a_replayed_code_revokes_the_grant_it_created(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    code = await signin.code(flow)
    auth = (signin.rp.client_id, signin.rp.client_secret)
    first = await signin.http.post("/token", data=flow.token_form(code), auth=auth)
    assert first.status_code == 200, first.text
    counted = Counted()
    replayed = await signin.http.post("/token", data=flow.token_form(code), auth=auth)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    assert counted.since("ostiary_token_families_revoked_total", reason="code_replay") == 1
    assert counted.since("ostiary_tokens_issued_total", grant_type="authorization_code") == 0
    sub, grant = await sub_of(signin.live), claims_of(first.json()["access_token"])["gid"]
    event = await only(signin.live.settings, "grant.revoked")
    client_id = signin.rp.client_id
    assert (event.actor, event.client_id, event.subject) == (client_id, client_id, grant)
    assert event.details == {"reason": "code_replay"}
    assert event.user_sub == sub  # the grant is the user's: readable in the user's trail


# -- no secrets -------------------------------------------------------------------------


async def test_no_row_of_a_full_flow_holds_a_secret(offline: Offline) -> None:
    """Enrolment, both factors, a backup code, tokens, a refresh, a replayed code, a replayed
    refresh token, a revocation, a password change: none of what was typed or issued."""
    settings, scope = offline.signin.live.settings, "openid profile offline_access"
    signin = SignIn(offline.signin.live, offline.rp, "alice", offline.signin.browser)
    enrolled = await enrol(signin.browser, "alice")
    secrets = [PASSWORD, NEW_PASSWORD, enrolled.app.secret, enrolled.app.replay(), *enrolled.backup_codes]
    signin.http.cookies.clear()

    # Both factors; the code is then replayed, which revokes its grant.
    flow = Flow.start(offline.rp.client_id)
    page = await otp_page_after_password(signin, flow, scope=scope)
    totp_code = await enrolled.app.code()
    code = await code_from(signin, await signin.browser.submit(page, {"code": totp_code}), flow)
    issued = await signin.http.post("/token", data=flow.token_form(code), auth=offline.auth)
    assert issued.status_code == 200, issued.text
    assert (await signin.http.post("/token", data=flow.token_form(code), auth=offline.auth)).status_code == 400
    secrets += [totp_code, code, flow.verifier, *tokens_in(issued.json())]

    # The session goes straight through; its refresh token is rotated, then replayed.
    again = Flow.start(offline.rp.client_id)
    code = await signin.code(again, scope=scope)
    issued = await signin.http.post("/token", data=again.token_form(code), auth=offline.auth)
    first = issued.json()
    second = (await offline.refresh(first["refresh_token"])).json()
    assert (await offline.refresh(first["refresh_token"])).status_code == 400
    secrets += [code, again.verifier, *tokens_in(first), *tokens_in(second)]

    # A backup code in a new browser session; the client revokes what it got.
    signin.http.cookies.clear()
    third = Flow.start(offline.rp.client_id)
    page = await otp_page_after_password(signin, third, scope=scope)
    code = await code_from(signin, await signin.browser.submit(page, {"code": enrolled.backup_codes[1]}), third)
    issued = await signin.http.post("/token", data=third.token_form(code), auth=offline.auth)
    revoked = await offline.http.post("/revoke", data={"token": issued.json()["refresh_token"]}, auth=offline.auth)
    assert revoked.status_code == 200
    secrets += [code, third.verifier, *tokens_in(issued.json())]

    changed = await change_password_at_account(signin.browser, NEW_PASSWORD)
    assert changed.status_code == 303, changed.text

    trail = await events(settings)
    assert {e.kind for e in trail} >= {
        "mfa.enabled",
        "login.succeeded",
        "grant.revoked",
        "refresh_token.reuse",
        "mfa.backup_code_used",
        "user.password_changed",
    }
    for event in trail:
        text = columns_of(event)
        for secret in secrets:
            assert secret not in text and secret.lower() not in text.lower(), (secret, event)
