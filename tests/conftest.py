"""Shared fixtures: a fresh database per test, on SQLite and on PostgreSQL.

Every database test is parametrised over both. PostgreSQL comes from
``OSTIARY_TEST_POSTGRES_URL``: unset, its variants are skipped (with that reason); set but
unreachable, they fail, so CI never skips it silently. Each test gets its own database,
copied from a template migrated once per test worker, so a test may also hand it to a
server in another process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from server.storage import migrate
from server.storage.engine import make_engine
from tests.helpers import TestDatabase

#: fixtures of more than one directory's tests
pytest_plugins = ["tests.admin"]

PG_URL = os.environ.get("OSTIARY_TEST_POSTGRES_URL")

# Every httpx client builds an SSL context, and one built from a CA file (SSL_CERT_FILE, or
# certifi's bundle) parses the whole file: some 50 ms of CPU a client, and the tests make
# thousands of clients that speak plain HTTP on loopback. A CA directory is read only when
# a certificate is checked, which no test does with the system's CAs.
os.environ.pop("SSL_CERT_FILE", None)
os.environ["SSL_CERT_DIR"] = "/etc/ssl/certs"
DB_KINDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _pg_url_for(database: str) -> str:
    assert PG_URL is not None
    base, _, _ = _pg_dsn(PG_URL).rpartition("/")
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + database


async def _pg_admin(*statements: str) -> None:
    assert PG_URL is not None
    connection = await asyncpg.connect(_pg_dsn(PG_URL), timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    if PG_URL is None:
        pytest.skip("OSTIARY_TEST_POSTGRES_URL is not set")
    name = f"ostiary_tpl_{_worker_id()}_{os.getpid()}"
    try:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"OSTIARY_TEST_POSTGRES_URL is set but PostgreSQL cannot be used: {exc}")
    asyncio.run(_migrate(_pg_url_for(name)))
    yield name
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _fresh_pg(template: str | None) -> Iterator[TestDatabase]:
    if PG_URL is None:
        pytest.skip("OSTIARY_TEST_POSTGRES_URL is not set")
    name = f"ostiary_t_{uuid.uuid4().hex[:16]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"{clause}'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"OSTIARY_TEST_POSTGRES_URL is set but PostgreSQL cannot be used: {exc}")
    yield TestDatabase("postgresql", _pg_url_for(name))
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=DB_KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A fresh database with the current schema."""
    if request.param == "sqlite":
        path = tmp_path / "ostiary.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield TestDatabase("sqlite", f"sqlite+aiosqlite:///{path}")
    else:
        yield from _fresh_pg(request.getfixturevalue("pg_template"))


@pytest.fixture(params=DB_KINDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A fresh database with no tables at all."""
    if request.param == "sqlite":
        yield TestDatabase("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    else:
        yield from _fresh_pg(None)


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    """A fresh PostgreSQL database with the current schema, for what only a server database has."""
    if PG_URL is None:
        pytest.skip("OSTIARY_TEST_POSTGRES_URL is not set")
    yield from _fresh_pg(request.getfixturevalue("pg_template"))
