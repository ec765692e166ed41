"""Plain helpers for tests: settings, clients, and Ostiary served over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.applications import Starlette

from server.app import create_app
from server.bootstrap import prepare
from server.clients.service import register_client
from server.settings import Settings
from server.storage import AsyncSession, Session, async_sessionmaker
from server.storage.engine import create_sessionmaker, make_engine

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # not a test class, despite the name

    kind: str
    url: str


T = TypeVar("T")


@dataclass
class Db:
    """Repository calls on a test database: each call runs in its own committed
    transaction, as the server's requests do (fixture ``db`` in tests/storage/conftest.py)."""

    sessionmaker: async_sessionmaker[AsyncSession]

    async def __call__(self, work: Callable[[Session], T]) -> T:
        async with self.sessionmaker.begin() as session:
            return await session.run_sync(work)


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str


#: each test worker's own block of loopback ports, below the kernel's ephemeral range
#: (32768 and up on Linux), where every outgoing connection takes a port: one of those
#: could take a port the kernel just handed out for a server, between this check and the
#: server's bind, and a port of the shared range could go to two workers the same way
_PORT_BLOCK = 1500
_PORTS_FROM = 20000
_next_ports = itertools.cycle(range(_PORT_BLOCK))


def free_port() -> int:
    """A loopback port nothing listens on, from this worker's block (``PYTEST_XDIST_WORKER``
    gwN: block N), handed out in turn, so a port comes back only after the whole block."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = _PORTS_FROM + (int(worker) if worker.isdigit() else 0) % 8 * _PORT_BLOCK
    for _ in range(_PORT_BLOCK):
        port = first + next(_next_ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (another service of this machine)
            return port
    raise RuntimeError(f"no free port in {first}-{first + _PORT_BLOCK - 1}")


def make_settings(database: TestDatabase, tmp_path: Path, **overrides: Any) -> Settings:
    port = overrides.pop("port", None) or free_port()
    settings = Settings(
        issuer=f"http://127.0.0.1:{port}",
        database_url=database.url,
        keys_dir=tmp_path / "keys",
        port=port,
        access_log=False,
        # No periodic cleanup in tests (its tests set an interval): a sweep at a random
        # moment would delete expired rows a test is about to inspect.
        cleanup_interval=0,
        # Argon2id at OWASP's minimum cost: the suite hashes and verifies many passwords.
        argon2_time_cost=2,
        argon2_memory_kib=19456,
        argon2_parallelism=1,
        # No test reaches the internet: the breached-password tests run a local range server.
        hibp_url="",
    )
    return replace(settings, **overrides)


async def create_client(
    settings: Settings,
    *,
    scopes: Iterable[str] = ("api:read", "api:write"),
    grant_types: Iterable[str] = ("client_credentials",),
    audiences: Iterable[str] = (),
    redirect_uris: Iterable[str] = (),
    name: str = "test client",
    **options: Any,
) -> Client:
    engine = make_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            stored, secret = await session.run_sync(
                lambda s: register_client(
                    s,
                    name=name,
                    grant_types=grant_types,
                    scopes=scopes,
                    audiences=audiences,
                    redirect_uris=redirect_uris,
                    **options,
                )
            )
    finally:
        await engine.dispose()
    return Client(stored.client_id, secret or "")


@asynccontextmanager
async def app_in_process(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Starlette]]:
    """The app over in-process ASGI, its lifespan run in this event loop (so its runtime is
    reachable as ``app.state.runtime``), and a client for it."""
    await prepare(settings)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as http,
    ):
        yield http, app


@asynccontextmanager
async def serve_in_process(settings: Settings) -> AsyncIterator[str]:
    """Ostiary on a real loopback port, in this event loop; yields its base URL."""
    await prepare(settings)
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,  # as `ostiary serve`: forwarding headers only from trusted proxies
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped during startup")
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def served_with(
    database: TestDatabase, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    """Ostiary on a loopback port with ``overrides`` of the test settings, and a client for it."""
    settings = make_settings(database, tmp_path, **overrides)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        yield settings, http


def ostiary_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for running the ``ostiary`` command against ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OSTIARY_")}
    env.update(
        OSTIARY_ISSUER=settings.issuer,
        OSTIARY_DATABASE_URL=settings.database_url,
        OSTIARY_KEYS_DIR=str(settings.keys_dir),
        OSTIARY_PORT=str(settings.port),
        OSTIARY_HOST=settings.host,
        OSTIARY_HIBP_URL=settings.hibp_url or "off",
    )
    env.update(extra)
    return env


def ostiary_command() -> list[str]:
    """The installed console script, next to this interpreter."""
    script = Path(sys.executable).parent / "ostiary"
    return [str(script)] if script.exists() else [sys.executable, "-m", "server"]


def run_ostiary(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ostiary_command(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


async def run_ostiary_beside_server(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """:func:`run_ostiary` while a server runs in this event loop (:func:`serve_in_process`).
    The command runs in a thread so the loop goes on: a blocked loop can stop the server in
    the middle of a transaction, and on SQLite the command then waits for its write lock
    until the busy timeout and fails with "database is locked"."""
    return await asyncio.to_thread(run_ostiary, args, env)


def wait_healthy(base_url: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ostiary serve exited with {process.returncode}")
        try:
            if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("ostiary serve did not become healthy")


async def create_user(
    settings: Settings,
    username: str = "alice",
    password: str = "correct horse battery staple",
    *,
    email: str | None = "alice@example.com",
    name: str | None = "Alice Liddell",
    password_hash: str | None = None,
) -> Any:
    from server.users.passwords import Passwords
    from server.users.service import create_user as store_user

    hashed = password_hash or Passwords(settings).hash(password)
    engine = make_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await session.run_sync(
                lambda s: store_user(
                    s, username=username, email=email, name=name, password_hash=hashed, email_verified=True
                )
            )
    finally:
        await engine.dispose()
