"""``ostiary`` as an operator runs it: where the issuer comes from, the page at ``/``,
``ostiary db check``, and a stop (SIGTERM) that lets the requests in flight finish.

Each test runs the real command in its own process. The ones about the process itself
run on PostgreSQL only; ``db check`` runs on every database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import inspect, text

from server.settings import Settings
from server.storage.engine import make_engine
from server.storage.migrate import head_revision, known_revisions
from tests.e2e.process import sign_in
from tests.e2e.test_grace_window import digest, usable_tokens
from tests.e2e.test_refresh_concurrency import _prepare as prepare
from tests.e2e.test_workers import wait_for
from tests.helpers import (
    TestDatabase,
    free_port,
    make_settings,
    ostiary_command,
    ostiary_env,
    run_ostiary,
    wait_healthy,
)

#: How ``ostiary serve`` ends at SIGTERM, with one worker (uvicorn in the main process) and
#: with several (the supervisor): a requested stop is a clean exit either way.
EXIT_AT_SIGTERM = {1: 0, 2: 0}


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def running(tmp_path: Path, env: dict[str, str], *args: str, port: int, workers: int = 1) -> Iterator[Server]:
    """``ostiary serve *args`` with exactly ``env``, every worker started; at the end, if the
    test has not stopped it, SIGTERM (and a kill should that not do)."""
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*ostiary_command(), "serve", *args],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", process)
            wait_for(lambda: log_path.read_text().count("Application startup complete") == workers, 60, "workers")
            yield Server(process, port, log_path)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {key: value for key, value in env.items() if key not in names}


def another_port(taken: int) -> int:
    port = free_port()
    while port == taken:
        port = free_port()
    return port


def discovery_of(base: str) -> dict[str, str]:
    response = httpx.get(base + "/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200, response.text
    document: dict[str, str] = response.json()
    return document


# Where the issuer comes from.


@pytest.mark.parametrize("source", ["flag", "variable"])
def test_without_an_issuer_the_issuer_follows_the_listen_port(
    postgres_database: TestDatabase, tmp_path: Path, source: str
) -> None:
    settings = make_settings(postgres_database, tmp_path)
    port = another_port(settings.port)
    env = without(ostiary_env(settings), "OSTIARY_ISSUER")
    if source == "flag":  # --port wins over OSTIARY_PORT (still set, to another port), issuer included
        args: tuple[str, ...] = ("--port", str(port))
    else:
        env["OSTIARY_PORT"], args = str(port), ()
    with running(tmp_path, env, *args, port=port) as server:
        discovery = discovery_of(server.base)
    issuer = f"http://127.0.0.1:{port}"
    assert discovery["issuer"] == issuer
    assert discovery["token_endpoint"] == issuer + "/token"
    assert discovery["jwks_uri"] == issuer + "/jwks"


def test_an_explicit_issuer_wins_over_the_port(postgres_database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(postgres_database, tmp_path)
    port = another_port(settings.port)
    issuer = f"http://localhost:{port}"  # not the issuer the port alone would give
    with running(tmp_path, ostiary_env(replace(settings, issuer=issuer)), "--port", str(port), port=port) as server:
        discovery = discovery_of(server.base)
    assert discovery["issuer"] == issuer
    assert discovery["token_endpoint"] == issuer + "/token"


# The page at /.


def test_the_home_page_names_the_issuer_and_links_discovery_and_the_account(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(postgres_database, tmp_path)
    port = another_port(settings.port)
    issuer = f"http://127.0.0.1:{port}"
    env = without(ostiary_env(settings), "OSTIARY_ISSUER")
    with running(tmp_path, env, "--port", str(port), port=port) as server:
        page = httpx.get(server.base + "/", timeout=10)
        linked = discovery_of(issuer)  # the link an operator follows
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "set-cookie" not in page.headers
    assert f"<code>{issuer}</code>" in page.text
    assert f'href="{issuer}/.well-known/openid-configuration"' in page.text
    assert f'href="{issuer}/account"' in page.text
    assert linked["issuer"] == issuer


# ostiary db check.


def db_check(settings: Settings, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_ostiary(["db", "check"], ostiary_env(settings), cwd=tmp_path)


def execute(url: str, statement: str, **params: str) -> None:
    async def run() -> None:
        engine = make_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text(statement), params)
        finally:
            await engine.dispose()

    asyncio.run(run())


def table_names(url: str) -> list[str]:
    async def run() -> list[str]:
        engine = make_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda c: inspect(c).get_table_names())
        finally:
            await engine.dispose()

    return asyncio.run(run())


def one_line(result: subprocess.CompletedProcess[str], status: int, word: str) -> str:
    """The command exited with ``status`` and said one line that starts with ``word``."""
    assert result.returncode == status, (result.stdout, result.stderr)
    (line,) = result.stdout.splitlines()
    assert line.startswith(word + ":"), line
    assert "Traceback" not in result.stderr
    return line


def test_db_check_says_current_on_a_migrated_database(database: TestDatabase, tmp_path: Path) -> None:
    line = one_line(db_check(make_settings(database, tmp_path), tmp_path), 0, "current")
    assert head_revision() in line


def test_db_check_says_empty_and_creates_nothing(empty_database: TestDatabase, tmp_path: Path) -> None:
    line = one_line(db_check(make_settings(empty_database, tmp_path), tmp_path), 3, "empty")
    assert "ostiary db upgrade" in line
    assert table_names(empty_database.url) == []


def test_db_check_says_behind_at_an_older_revision(database: TestDatabase, tmp_path: Path) -> None:
    older = sorted(known_revisions() - {head_revision()})[0]
    execute(database.url, "UPDATE alembic_version SET version_num = :revision", revision=older)
    line = one_line(db_check(make_settings(database, tmp_path), tmp_path), 3, "behind")
    assert older in line and head_revision() in line
    assert "ostiary db upgrade" in line


def test_db_check_says_unknown_at_a_revision_no_migration_has(database: TestDatabase, tmp_path: Path) -> None:
    newer = "f00dfeedbeef"
    assert newer not in known_revisions()
    execute(database.url, "UPDATE alembic_version SET version_num = :revision", revision=newer)
    line = one_line(db_check(make_settings(database, tmp_path), tmp_path), 1, "unknown")
    assert newer in line


def test_db_check_says_unknown_for_tables_that_are_not_ostiarys(empty_database: TestDatabase, tmp_path: Path) -> None:
    execute(empty_database.url, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    one_line(db_check(make_settings(empty_database, tmp_path), tmp_path), 1, "unknown")


# Stopping with requests in flight.


def token_request(port: int, body: bytes, auth: tuple[str, str] | None = None) -> bytes:
    """The head of ``POST /token`` with ``Expect: 100-continue``: the server answers ``100
    Continue`` when the handler starts reading the body, so the client knows the request
    is in the server's hands before it sends the body."""
    lines = [
        "POST /token HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
        "Expect: 100-continue",
        "Connection: close",
    ]
    if auth:
        lines.append("Authorization: Basic " + base64.b64encode(":".join(auth).encode()).decode())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def start_in_flight(port: int, head: bytes, first_part: bytes) -> socket.socket:
    """A connection whose request the handler is reading, with ``first_part`` of its body sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = sock.recv(1024)
        assert chunk, "the server closed the connection before reading the body"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100 "), interim
    sock.sendall(first_part)
    return sock


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_a_refresh_in_flight_at_sigterm_completes_and_its_new_token_is_the_usable_one(
    postgres_database: TestDatabase, tmp_path: Path, workers: int
) -> None:
    settings = make_settings(postgres_database, tmp_path)
    client = prepare(settings, tmp_path)
    auth = (client["client_id"], client["client_secret"])
    env = ostiary_env(settings, OSTIARY_WORKERS=str(workers))
    with running(tmp_path, env, port=settings.port, workers=workers) as server:
        old = sign_in(server.base, client, "alice", "openid offline_access")["refresh_token"]
        body = urlencode({"grant_type": "refresh_token", "refresh_token": old}).encode()
        with start_in_flight(settings.port, token_request(settings.port, body, auth), body[:20]) as sock:
            server.process.send_signal(signal.SIGTERM)
            # The listeners close: a new connection is refused...
            wait_for(lambda: refuses_connections(settings.port), 10, "the listener to close")
            # ...while the process waits for the request it holds.
            time.sleep(0.5)
            assert server.process.poll() is None, server.log()
            sock.sendall(body[20:])
            response = read_until_closed(sock)
        returncode = server.process.wait(timeout=30)
        log = server.log()
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), response
    new = json.loads(payload)["refresh_token"]
    assert new != old
    # Rotated and committed: the old token consumed, the new one the family's only usable one.
    assert usable_tokens(postgres_database.url) == [digest(new)]
    assert returncode == EXIT_AT_SIGTERM[workers], log
    assert log.count("Application shutdown complete") == workers, log
    assert "Traceback" not in log and "Cancel" not in log


@pytest.mark.parametrize("workers", [1, 2])
def test_a_request_that_never_finishes_holds_the_process_no_longer_than_the_grace(
    postgres_database: TestDatabase, tmp_path: Path, workers: int
) -> None:
    settings = make_settings(postgres_database, tmp_path)
    env = ostiary_env(settings, OSTIARY_WORKERS=str(workers), OSTIARY_SHUTDOWN_GRACE_SECONDS="1")
    body = b"grant_type=client_credentials&scope=" + b"x" * 1000
    with running(tmp_path, env, port=settings.port, workers=workers) as server:
        with start_in_flight(settings.port, token_request(settings.port, body), body[:20]) as sock:
            stopped = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            returncode = server.process.wait(timeout=15)
            took = time.monotonic() - stopped
            answered = read_until_closed(sock)
        log = server.log()
    # The request had its second of grace, then the process went on stopping without it.
    assert 1 <= took < 15, took
    assert returncode == EXIT_AT_SIGTERM[workers], log
    assert not answered.startswith(b"HTTP/1.1 200 "), answered
    assert log.count("Application shutdown complete") == workers, log
    assert "did not stop in" not in log, log  # no worker had to be killed
