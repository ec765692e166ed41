"""A database that goes away gives 503 with Retry-After, never a 500, and the server recovers
alone: JSON on the protocol endpoints, a page a person can read on the browser routes. A form
that promises a mail says so only once the mail is queued.

PostgreSQL is reached through a TCP proxy in this process that the test cuts and restores,
as a network partition or a database restart would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import insert, select

from server.storage.engine import make_engine
from server.storage.models import Grant, MailOutbox, RefreshToken, User
from tests.helpers import TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.mail import run_sql
from tests.oidc import REDIRECT_URI, Browser, Flow

pytestmark = pytest.mark.anyio


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        assert self.server is not None
        self.server.close()
        for writer in list(self.pipes):
            writer.transport.abort()
        self.pipes.clear()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.pipes |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self.pipes.discard(writer)


async def behind_a_proxy(database: TestDatabase) -> tuple[TcpProxy, TestDatabase]:
    """A started proxy to ``database``, and the database as reached through it."""
    real = urlsplit(database.url)
    proxy = TcpProxy(real.hostname or "127.0.0.1", real.port or 5432)
    await proxy.start()
    through = database.url.replace(real.netloc, f"{real.username}@127.0.0.1:{proxy.port}")
    return proxy, TestDatabase("postgresql", through)


async def test_token_and_health_answer_503_while_down_and_recover(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    proxy, proxied = await behind_a_proxy(postgres_database)
    # No client cache: every token request reaches the database.
    settings = make_settings(proxied, tmp_path, client_cache_ttl=0, db_pool_timeout=2)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        client = await create_client(settings, token_endpoint_auth_method="client_secret_post")
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        assert (await http.post("/token", data=form)).status_code == 200

        await proxy.cut()
        for _ in range(3):
            down = await http.post("/token", data=form)
            assert down.status_code == 503, down.text
            assert down.json()["error"] == "temporarily_unavailable"
            assert down.headers["retry-after"] == "5"
            assert "Traceback" not in down.text and "sqlalchemy" not in down.text.lower()
        health = await http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert health.headers["retry-after"] == "5"

        await proxy.start()  # same port: the database is back
        for _ in range(50):
            if (await http.post("/token", data=form)).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await http.post("/token", data=form)).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
    await proxy.cut()


async def test_a_refresh_answers_503_while_down_and_its_token_works_afterwards(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    # On PostgreSQL a refresh is one statement on a pooled connection (rotated ahead of its
    # grant): a connection cut under it is discarded, and the client hears 503, not 500.
    proxy, proxied = await behind_a_proxy(postgres_database)
    settings = make_settings(proxied, tmp_path, db_pool_timeout=2)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        client = await create_client(
            settings,
            grant_types=["authorization_code", "refresh_token"],
            scopes=["offline_access"],
            redirect_uris=["https://app.example.com/cb"],
            token_endpoint_auth_method="client_secret_post",
        )
        tokens = [f"refresh-token-{i}" for i in range(3)]
        await seed_families(postgres_database.url, client.client_id, tokens)

        def form(token: str) -> dict[str, str]:
            return {
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            }

        assert (await http.post("/token", data=form(tokens[0]))).status_code == 200  # the pool holds a connection
        await proxy.cut()
        for _ in range(3):
            down = await http.post("/token", data=form(tokens[1]))
            assert down.status_code == 503, down.text
            assert down.json()["error"] == "temporarily_unavailable"

        await proxy.start()
        for _ in range(50):
            if (await http.post("/token", data=form(tokens[1]))).status_code == 200:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("no refresh succeeded after the database came back")
        assert (await http.post("/token", data=form(tokens[2]))).status_code == 200
    await proxy.cut()


async def test_pages_answer_a_readable_503_page_and_the_apis_503_json(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    proxy, proxied = await behind_a_proxy(postgres_database)
    settings = make_settings(proxied, tmp_path, client_cache_ttl=0, db_pool_timeout=2)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        rp = await create_client(
            settings, grant_types=["authorization_code"], scopes=["openid"], redirect_uris=[REDIRECT_URI]
        )
        flow = Flow.start(rp.client_id)
        assert (await Browser(http).authorize(**flow.params(scope="openid"))).status_code == 200

        await proxy.cut()
        page = await Browser(http).authorize(**flow.params(scope="openid"))
        assert page.status_code == 503, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["retry-after"] == "5"
        assert "try again" in page.text and "Traceback" not in page.text

        api = await http.post("/introspect", data={"token": "x"}, auth=(rp.client_id, rp.client_secret))
        assert api.status_code == 503, api.text
        assert api.json()["error"] == "temporarily_unavailable"
        assert api.headers["retry-after"] == "5"
    await proxy.cut()


async def test_forgot_password_during_an_outage_promises_no_mail(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    # The request queues the mail before it answers: no queue, no "on its way".
    proxy, proxied = await behind_a_proxy(postgres_database)
    settings = make_settings(proxied, tmp_path, db_pool_timeout=2, mail_poll_interval=0)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await create_user(settings, "alice")
        browser = Browser(http)
        form = await http.get("/password/forgot")

        await proxy.cut()
        refused = await browser.submit(form, {"email": "alice@example.com"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("text/html")
        assert refused.headers["retry-after"] == "5"
        assert "try again" in refused.text
        assert 'id="forgot-sent"' not in refused.text and "on its way" not in refused.text

        await proxy.start()
        assert await run_sql(postgres_database.url, select(MailOutbox)) == [], "nothing was queued"
        for _ in range(50):
            sent = await browser.submit(form, {"email": "alice@example.com"})
            if sent.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert 'id="forgot-sent"' in sent.text
        (queued,) = await run_sql(postgres_database.url, select(MailOutbox))
        assert queued.recipient == "alice@example.com"
    await proxy.cut()


async def seed_families(url: str, client_id: str, tokens: list[str]) -> None:
    """A user and one refresh-token family per token, written directly."""
    now = datetime.now(UTC)
    engine = make_engine(url)
    try:
        async with engine.begin() as db:
            await db.execute(
                insert(User).values(id=1, sub="s", username="u", username_key="u", created_at=now, updated_at=now)
            )
            for i, token in enumerate(tokens):
                grant = {
                    "id": f"g{i}",
                    "client_id": client_id,
                    "user_id": 1,
                    "scope": "offline_access",
                    "head_generation": 1,
                }
                await db.execute(insert(Grant).values(**grant, created_at=now, expires_at=now + timedelta(days=1)))
                await db.execute(
                    insert(RefreshToken).values(
                        token_digest=hashlib.sha256(token.encode()).digest(),
                        grant_id=f"g{i}",
                        client_id=client_id,
                        generation=1,
                        created_at=now,
                        expires_at=now + timedelta(days=1),
                    )
                )
    finally:
        await engine.dispose()
