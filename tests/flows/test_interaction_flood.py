"""What an unauthenticated ``GET /authorize`` may cost: a bounded row.

Every request that must wait for the user stores an *interaction*. Its parameters are
capped (4096 bytes, the ``id_token_hint`` aside, which is never stored), and one client
address keeps at most ``OSTIARY_PENDING_INTERACTIONS_PER_ADDRESS`` pending ones: past
that, its oldest gives way to the new one. Expired ones are never counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.flows.conftest import Live, SignIn
from tests.flows.test_refresh_tokens import run_sql
from tests.helpers import TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import REDIRECT_URI, Browser, Flow, forms_of, query_of

pytestmark = pytest.mark.anyio

LIMIT = 50


@pytest.fixture
async def capped(database: TestDatabase, tmp_path: Path) -> AsyncIterator[SignIn]:
    """A server that keeps 50 pending sign-ins per address. Its requests wait up to a minute
    for a database connection: 200 at once share five, and on a loaded machine the default
    5 s ends some in a 503, which is load shedding, not what these tests are about."""
    settings = make_settings(
        database, tmp_path, pending_interactions_per_address=LIMIT, rate_limit_login=0, db_pool_timeout=60
    )
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=90) as http:
        rp = await create_client(
            settings,
            name="Photo Prints",
            grant_types=["authorization_code"],
            scopes=["openid"],
            redirect_uris=[REDIRECT_URI],
            first_party=True,
        )
        await create_user(settings, "alice")
        yield SignIn(Live(settings, base_url, http, rp), rp, "alice", Browser(http))


async def login_page(browser: Browser, client_id: str) -> httpx.Response:
    page = await browser.authorize(**Flow.start(client_id).params(scope="openid"))
    assert page.status_code == 200 and 'name="password"' in page.text, page.text
    return page


async def still_open(browser: Browser, page: httpx.Response) -> bool:
    """Signing in on ``page`` reaches the client (its interaction was kept), or the page
    says the sign-in expired (it was evicted)."""
    response = await browser.sign_in(page, "alice")
    if response.status_code == 303:
        assert "code" in query_of(response.headers["location"]), response.headers["location"]
        return True
    assert "This sign-in has expired" in response.text, response.text
    return False


async def pending_rows(signin: SignIn) -> int:
    """Rows of sign-ins not completed (expired ones included: they must be gone too)."""
    rows = await run_sql(signin.live.settings, "SELECT count(*) FROM interactions WHERE completed_at IS NULL")
    return int(rows[0][0])


def an_hour_ago(signin: SignIn) -> object:
    """A past time as the column holds it: UTC wall time as text on SQLite, timestamptz on PostgreSQL."""
    past = datetime.now(UTC) - timedelta(hours=1)
    if signin.live.settings.database_url.startswith("sqlite"):
        return past.replace(tzinfo=None).isoformat(sep=" ")
    return past


def handle_of(page: httpx.Response) -> str:
    (form,) = forms_of(page.text)
    return form.fields["interaction"]


async def test_a_flood_from_one_address_keeps_its_newest_pending_sign_ins_only(capped: SignIn) -> None:
    signin = capped
    pages = [await login_page(signin.browser, signin.rp.client_id) for _ in range(300)]

    assert await pending_rows(signin) == LIMIT
    all_rows = await run_sql(signin.live.settings, "SELECT count(*) FROM interactions")
    assert all_rows[0][0] == LIMIT
    # The oldest gave way; the newest still sign in.
    assert not await still_open(signin.browser, pages[300 - LIMIT - 1])
    signin.http.cookies.delete("ostiary_session")
    assert await still_open(signin.browser, pages[300 - LIMIT])


async def test_a_concurrent_flood_is_answered_and_trimmed_back_to_the_limit(capped: SignIn) -> None:
    signin = capped
    responses = await asyncio.gather(
        *(signin.http.get("/authorize", params=Flow.start(signin.rp.client_id).params(scope="openid"))
          for _ in range(4 * LIMIT))
    )  # fmt: skip
    assert {response.status_code for response in responses} == {200}
    # Requests that ran side by side may each have left one over; the next one trims them.
    await login_page(signin.browser, signin.rp.client_id)
    assert await pending_rows(signin) == LIMIT


async def test_another_address_is_not_touched_by_the_flood(capped: SignIn) -> None:
    signin = capped
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=signin.live.base_url, timeout=10, transport=transport) as elsewhere:
        other = Browser(elsewhere)
        waiting = await login_page(other, signin.rp.client_id)
        for _ in range(3 * LIMIT):
            await login_page(signin.browser, signin.rp.client_id)

        assert await pending_rows(signin) == LIMIT + 1
        assert await still_open(other, waiting)


async def test_expired_sign_ins_are_not_counted(capped: SignIn) -> None:
    signin = capped
    pages = [await login_page(signin.browser, signin.rp.client_id) for _ in range(LIMIT)]
    oldest = hashlib.sha256(handle_of(pages[0]).encode()).digest()
    await run_sql(
        signin.live.settings,
        "UPDATE interactions SET expires_at = :past WHERE id_digest <> :oldest",
        past=an_hour_ago(signin),
        oldest=oldest,
    )

    # 49 newer ones expired: 49 new requests fit beside the oldest, which stays.
    for _ in range(LIMIT - 1):
        await login_page(signin.browser, signin.rp.client_id)

    assert await pending_rows(signin) == LIMIT
    assert await still_open(signin.browser, pages[0])


async def test_a_request_over_the_parameter_cap_is_refused_and_stores_nothing(capped: SignIn) -> None:
    signin = capped
    flow = Flow.start(signin.rp.client_id)
    params = flow.params(scope="openid")
    used = sum(len(name) + len(value) for name, value in params.items())
    too_big = {**params, "state": params["state"] + "s" * (4097 - used)}  # one byte over

    response = await signin.browser.authorize(**too_big)

    assert response.status_code == 302, response.text
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    assert query_of(response.headers["location"])["error"] == "invalid_request"
    assert (await run_sql(signin.live.settings, "SELECT count(*) FROM interactions"))[0][0] == 0

    # Without a client to answer, the user sees an error page, and nothing is stored either.
    response = await signin.browser.authorize(**{**too_big, "client_id": "no-such-client"})
    assert response.status_code == 400 and "location" not in response.headers
    assert (await run_sql(signin.live.settings, "SELECT count(*) FROM interactions"))[0][0] == 0


async def test_rotating_ipv6_addresses_of_one_64_share_one_allowance(database: TestDatabase, tmp_path: Path) -> None:
    # Behind a trusted proxy, so each request can come from another address: every IPv6
    # address of a /64 belongs to one line, whose holder picks them at will.
    settings = make_settings(
        database,
        tmp_path,
        pending_interactions_per_address=LIMIT,
        rate_limit_login=0,
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        rp = await create_client(
            settings, grant_types=["authorization_code"], scopes=["openid"], redirect_uris=[REDIRECT_URI]
        )
        signin = SignIn(Live(settings, base_url, http, rp), rp, "alice", Browser(http))
        for n in range(3 * LIMIT):
            page = await http.get(
                "/authorize",
                params=Flow.start(rp.client_id).params(scope="openid"),
                headers={"X-Forwarded-For": f"2001:db8:1:2::{n + 1:x}"},
            )
            assert page.status_code == 200, page.text
        assert await pending_rows(signin) == LIMIT

        await http.get(
            "/authorize",
            params=Flow.start(rp.client_id).params(scope="openid"),
            headers={"X-Forwarded-For": "2001:db8:1:3::1"},  # the next /64: another line
        )
        assert await pending_rows(signin) == LIMIT + 1
