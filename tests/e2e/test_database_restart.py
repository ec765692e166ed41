"""PostgreSQL restarting under load: every request answers, none with 500. While the
database shuts down (``pg_ctl stop -m fast``: sessions end with 57P01, new ones are refused
with 57P03), is down, and starts up again, each endpoint answers 503 with Retry-After (a
page on browser routes, JSON on the protocol endpoints) or succeeds; no refresh token is
lost or spent twice, and every refresh chain goes on after the restart.

The cluster is the test's own (``tests.pgcluster``), never the machine's shared one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select

from server.storage.models import RefreshToken
from tests.flows.test_database_outage import seed_families
from tests.helpers import Client, TestDatabase, create_client, make_settings, serve_in_process
from tests.mail import run_sql
from tests.oidc import REDIRECT_URI, Flow, forms_of
from tests.pgcluster import Cluster, throwaway_cluster

pytestmark = pytest.mark.anyio

CHAINS = 4
WARM_UP = 1.0
DOWN_FOR = 1.0
LOAD_AFTER = 4.0
RECOVERY = 20.0


@dataclass
class Tally:
    """What the load saw: statuses per endpoint, and every answer that broke a rule."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    broken: list[str] = field(default_factory=list)

    async def answer(
        self, name: str, request: Awaitable[httpx.Response], *, page: bool = False
    ) -> httpx.Response | None:
        """The response to ``request``, noted; None (noted as broken) if none came."""
        try:
            response = await request
        except httpx.TransportError as error:
            self.broken.append(f"{name}: no response ({type(error).__name__})")
            return None
        self.note(name, response, page=page)
        return response

    def note(self, name: str, response: httpx.Response, *, page: bool = False) -> None:
        self.statuses[(name, response.status_code)] += 1
        if response.status_code not in (200, 503):
            self.broken.append(f"{name}: {response.status_code} {response.text[:200]}")
        elif response.status_code == 503:
            if response.headers.get("retry-after") != "5":
                self.broken.append(f"{name}: 503 without Retry-After")
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/html" if page else "application/json"):
                self.broken.append(f"{name}: 503 as {kind}")


@dataclass
class Chain:
    """One refresh-token family as its client holds it."""

    grant_id: str
    token: str
    successes: int = 0


@dataclass
class Load:
    http: httpx.AsyncClient
    rp: Client
    resource_server: Client
    tally: Tally
    stop: asyncio.Event
    access_token: str = ""

    def refresh_form(self, chain: Chain) -> dict[str, str]:
        return {
            "grant_type": "refresh_token",
            "refresh_token": chain.token,
            "client_id": self.rp.client_id,
            "client_secret": self.rp.client_secret,
        }

    async def refresh(self, chain: Chain) -> httpx.Response:
        response = await self.http.post("/token", data=self.refresh_form(chain))
        if response.status_code == 200:
            tokens = response.json()
            chain.token, self.access_token = tokens["refresh_token"], tokens["access_token"]
            chain.successes += 1
        return response

    async def refreshing(self, chain: Chain) -> None:
        while not self.stop.is_set():
            response = await self.tally.answer("refresh", self.refresh(chain))
            if response is None or response.status_code not in (200, 503):
                return  # the chain is broken: reported by the tally
            await asyncio.sleep(0.01)

    async def introspecting(self) -> None:
        while not self.stop.is_set():
            request = self.http.post(
                "/introspect",
                data={"token": self.access_token},
                auth=(self.resource_server.client_id, self.resource_server.client_secret),
            )
            await self.tally.answer("introspect", request)
            await asyncio.sleep(0.01)

    async def browsing(self) -> None:
        """The sign-in page, and the form that promises a mail (its row is queued in the request)."""
        flow = Flow.start(self.rp.client_id)
        async with httpx.AsyncClient(base_url=str(self.http.base_url), timeout=30) as browser:
            (form,) = forms_of((await browser.get("/password/forgot")).text)
            forgot = {**form.fields, "email": "nobody@example.com"}
            while not self.stop.is_set():
                await self.tally.answer(
                    "authorize", browser.get("/authorize", params=flow.params(scope="openid")), page=True
                )
                await self.tally.answer("forgot", browser.post(form.action, data=forgot), page=True)
                await self.tally.answer("healthz", browser.get("/healthz"))
                await asyncio.sleep(0.01)


async def restart(cluster: Cluster) -> None:
    """Stop the cluster as an operator does, leave it down a moment, start it again."""
    await asyncio.to_thread(cluster.stop, "fast")
    await asyncio.sleep(DOWN_FOR)
    await asyncio.to_thread(cluster.start)


async def test_a_restart_under_load_answers_503_never_500_and_loses_no_token(tmp_path: Path) -> None:
    started = time.monotonic()
    with throwaway_cluster() as cluster:
        connection = await asyncpg.connect(cluster.url().replace("+asyncpg", ""))
        try:
            await connection.execute("CREATE DATABASE ostiary")
        finally:
            await connection.close()
        database = TestDatabase("postgresql", cluster.url("ostiary"))
        settings = make_settings(
            database,
            tmp_path,
            db_pool_timeout=2,
            client_cache_ttl=0,
            rate_limit_login=0,
            pending_interactions_per_address=100000,
        )
        async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            rp = await create_client(
                settings,
                grant_types=["authorization_code", "refresh_token"],
                scopes=["openid", "offline_access"],
                redirect_uris=[REDIRECT_URI],
                token_endpoint_auth_method="client_secret_post",
            )
            resource_server = await create_client(settings, name="resource server", introspection=True)
            tokens = [f"restart-refresh-token-{i}" for i in range(CHAINS)]
            await seed_families(database.url, rp.client_id, tokens)
            chains = [Chain(f"g{i}", token) for i, token in enumerate(tokens)]
            load = Load(http, rp, resource_server, Tally(), asyncio.Event())
            assert (await load.refresh(chains[0])).status_code == 200  # an access token to introspect

            workers = [
                *(asyncio.create_task(load.refreshing(chain)) for chain in chains),
                *(asyncio.create_task(load.introspecting()) for _ in range(2)),
                *(asyncio.create_task(load.browsing()) for _ in range(2)),
            ]
            await asyncio.sleep(WARM_UP)
            await restart(cluster)
            await asyncio.sleep(LOAD_AFTER)
            load.stop.set()
            await asyncio.gather(*workers)

            assert load.tally.broken == [], load.tally.broken
            assert sum(n for (_, status), n in load.tally.statuses.items() if status == 503), (
                f"the restart was never seen: {load.tally.statuses}"
            )
            for chain in chains:
                await refreshes_again(load, chain)
            issued = dict(
                await run_sql(
                    database.url,
                    select(RefreshToken.grant_id, func.count()).group_by(RefreshToken.grant_id),
                )
            )
            assert issued == {chain.grant_id: chain.successes + 1 for chain in chains}, (
                "each family holds its first token and one successor per successful refresh: none spent twice"
            )
    assert time.monotonic() - started < 60


async def refreshes_again(load: Load, chain: Chain) -> None:
    """The chain's latest token works once the database is back (it was neither lost nor spent)."""
    deadline = time.monotonic() + RECOVERY
    while True:
        response = await load.refresh(chain)
        load.tally.note("refresh after", response)
        if response.status_code == 200:
            return
        assert response.status_code == 503 and time.monotonic() < deadline, response.text
        await asyncio.sleep(0.2)
