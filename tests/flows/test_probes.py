"""The probes an orchestrator asks (``/livez``, ``/readyz``, ``/healthz``) and the page a
person sees at ``/``.

Liveness never depends on the database, so a database failover restarts no process;
readiness names each check that fails, with 503 and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from server.storage import migrate
from server.web.runtime import Runtime
from tests.flows.test_database_outage import behind_a_proxy
from tests.helpers import TestDatabase, app_in_process, make_settings, serve_in_process
from tests.mail import run_sql

pytestmark = pytest.mark.anyio

CHECKS = {"database", "schema", "keys", "mail"}


async def until(http: httpx.AsyncClient, status: int, timeout: float = 10) -> httpx.Response:
    """``/readyz`` once it answers ``status``."""
    deadline = time.monotonic() + timeout
    while (response := await http.get("/readyz")).status_code != status:
        assert time.monotonic() < deadline, f"/readyz still {response.status_code}: {response.text}"
        await asyncio.sleep(0.1)
    return response


def assert_unready(response: httpx.Response, failing: list[str]) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == failing
    assert set(body["checks"]) == CHECKS
    return body


async def test_a_healthy_server_is_live_and_ready_with_each_check_named(database: TestDatabase, tmp_path: Path) -> None:
    async with app_in_process(make_settings(database, tmp_path, mail_poll_interval=1)) as (http, _):
        live = await http.get("/livez")
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        for path in ("/readyz", "/healthz"):
            ready = await http.get(path)
            assert ready.status_code == 200, ready.text
            assert ready.json() == {
                "status": "ok",
                "checks": {"database": "ok", "schema": "ok", "keys": "ok", "mail": "ok"},
            }
            assert ready.headers["cache-control"] == "no-store"


async def test_a_process_that_sends_no_mail_is_ready_with_mail_off(database: TestDatabase, tmp_path: Path) -> None:
    async with app_in_process(make_settings(database, tmp_path, mail_poll_interval=0)) as (http, _):
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["mail"] == "off"


async def test_a_database_outage_fails_readiness_but_not_liveness(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    proxy, proxied = await behind_a_proxy(postgres_database)
    settings = make_settings(proxied, tmp_path, db_pool_timeout=2)
    try:
        async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            assert (await http.get("/readyz")).status_code == 200
            await proxy.cut()
            for path in ("/readyz", "/healthz"):
                body = assert_unready(await http.get(path), ["database", "schema"])
                assert body["checks"]["database"] == "unreachable"
                assert body["checks"]["keys"] == "ok"  # what is loaded stays loaded
            live = await http.get("/livez")
            assert live.status_code == 200, live.text
            await proxy.start()
            await until(http, 200)
    finally:
        await proxy.cut()


async def test_a_schema_behind_this_release_fails_readiness_and_a_newer_one_does_not(
    database: TestDatabase, tmp_path: Path
) -> None:
    head = migrate.head_revision()
    older = sorted(migrate.known_revisions() - {head})[0]
    set_revision = "UPDATE alembic_version SET version_num = :revision"
    async with app_in_process(make_settings(database, tmp_path, mail_poll_interval=0)) as (http, _):
        await run_sql(database.url, text(set_revision).bindparams(revision=older))
        body = assert_unready(await http.get("/readyz"), ["schema"])
        assert older in body["checks"]["schema"] and head in body["checks"]["schema"]
        assert "ostiary db upgrade" in body["checks"]["schema"]

        # a newer release migrated the database during a rolling upgrade: keep serving
        await run_sql(database.url, text(set_revision).bindparams(revision="f00dfeedcafe"))
        ahead = await http.get("/readyz")
        assert ahead.status_code == 200, ahead.text
        assert ahead.json()["checks"]["schema"].startswith("ahead")

        await run_sql(database.url, text("DROP TABLE alembic_version"))
        body = assert_unready(await http.get("/readyz"), ["schema"])
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["schema"].startswith("not migrated")


async def test_no_active_key_for_the_access_token_algorithm_fails_readiness(
    database: TestDatabase, tmp_path: Path
) -> None:
    # Without an active RS256 key (ID tokens) the key watcher stops the process; without
    # one for OSTIARY_ACCESS_TOKEN_ALG it could go on serving everything but tokens.
    settings = make_settings(database, tmp_path, mail_poll_interval=0, keys_poll_interval=1, access_token_alg="ES256")
    async with app_in_process(settings) as (http, _):
        assert (await http.get("/readyz")).status_code == 200
        retire = "UPDATE signing_keys SET state = 'retired' WHERE state = 'active' AND alg = 'ES256'"
        await run_sql(database.url, text(retire))
        body = assert_unready(await until(http, 503), ["keys"])
        assert body["checks"]["keys"] == "no active signing key for ES256"


async def test_a_stopped_mail_sender_fails_readiness(database: TestDatabase, tmp_path: Path) -> None:
    async with app_in_process(make_settings(database, tmp_path, mail_poll_interval=1)) as (http, app):
        runtime: Runtime = app.state.runtime
        assert runtime.sender_task is not None
        runtime.sender_task.cancel()  # as a crash would end it
        with pytest.raises(asyncio.CancelledError):
            await runtime.sender_task
        body = assert_unready(await http.get("/readyz"), ["mail"])
        assert body["checks"]["mail"] == "the sender stopped"


async def test_the_home_page_names_the_issuer_and_where_to_go(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, mail_poll_interval=0)
    async with app_in_process(settings) as (http, _):
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "set-cookie" not in page.headers
        issuer = settings.issuer
        assert f"<code>{issuer}</code>" in page.text
        assert f'href="{issuer}/.well-known/openid-configuration"' in page.text
        assert f'href="{issuer}/account"' in page.text
