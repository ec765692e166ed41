"""The edge of the server, over real HTTP and raw sockets: clients that leave mid-body or
never finish one, request data that tries to forge log lines, forwarding headers from
trusted and untrusted peers, and HSTS on an https issuer."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from server.observe.logs import handler
from server.settings import Settings
from tests.helpers import TestDatabase, make_settings, serve_in_process

pytestmark = pytest.mark.anyio

FORM = b"application/x-www-form-urlencoded"
CLIENT_A, CLIENT_B = "203.0.113.5", "198.51.100.9"
LOAD_BALANCER = "10.0.0.7"


def request_head(path: str, *headers: tuple[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {FORM.decode()}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@contextmanager
def log_lines(logger: str) -> Iterator[io.StringIO]:
    """What the server's own log handler writes for ``logger``'s records, at INFO."""
    stream = io.StringIO()
    target = logging.getLogger(logger)
    installed, level = handler(stream), target.level
    target.addHandler(installed)
    target.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        target.removeHandler(installed)
        target.setLevel(level)


async def until(condition: object, seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


# A client that disconnects mid-body


async def test_a_client_that_leaves_mid_body_is_a_logged_disconnect_not_an_error(
    database: TestDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(database, tmp_path, access_log=True)
    async with serve_in_process(settings):
        caplog.clear()  # what start-up logged is not the point
        _, writer = await asyncio.open_connection("127.0.0.1", settings.port)
        writer.write(request_head("/token", ("Content-Length", "100")) + b"grant_type=client_")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

        def logged() -> bool:
            return any(r.name == "ostiary.access" and "/token" in r.getMessage() for r in caplog.records)

        await until(logged)
    (access,) = [r for r in caplog.records if r.name == "ostiary.access"]
    assert access.levelno == logging.INFO and '"POST /token" 499' in access.getMessage()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not any(r.exc_info for r in caplog.records)


# Control characters in request data never reach the log raw


async def test_a_newline_in_the_path_is_escaped_in_one_access_log_line(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, access_log=True)
    forged = "/jwks%0A2026-01-01 00:00:00,000 INFO ostiary.access: 10.9.9.9 %22POST /token%22 200%0D%1B[2J%E2%80%A8"
    with log_lines("ostiary.access") as stream:
        async with serve_in_process(settings) as base, httpx.AsyncClient(base_url=base) as http:
            assert (await http.get(forged)).status_code == 404
    (line,) = stream.getvalue().splitlines()
    assert (
        '"GET /jwks\\n2026-01-01 00:00:00,000 INFO ostiary.access: 10.9.9.9 "POST /token" 200\\r\\x1b[2J\\u2028"'
        in line
    )
    assert line.endswith("ms") and line.isprintable()


def test_every_log_record_is_escaped_and_a_traceback_cannot_pass_for_a_record() -> None:
    stream = io.StringIO()
    record_handler = handler(stream)
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO forged: \x1b[2J")
    except ValueError as exc:
        record = logging.LogRecord(
            "ostiary", logging.ERROR, __file__, 1, "user %s", ("eve\r\nroot",), (type(exc), exc, exc.__traceback__)
        )
    record_handler.handle(record)
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("ERROR ostiary: user eve\\r\\nroot")
    assert rest and all(line.startswith("  ") for line in rest)
    assert "  ValueError: bad" in rest and "  2026-01-01 00:00:00,000 INFO forged: \\x1b[2J" in rest


# A body that never ends


@pytest.mark.parametrize("path", ["/token", "/introspect", "/userinfo", "/login", "/password/forgot"])
async def test_a_body_still_trickling_at_the_deadline_gets_408_and_the_connection_closes(
    database: TestDatabase, tmp_path: Path, path: str
) -> None:
    settings = make_settings(database, tmp_path, body_timeout=1)
    async with serve_in_process(settings):
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.port)
        writer.write(request_head(path, ("Transfer-Encoding", "chunked")))

        async def trickle() -> None:
            while not writer.is_closing():
                writer.write(b"1\r\na\r\n")
                await asyncio.sleep(0.2)

        trickling = asyncio.create_task(trickle())
        try:
            async with asyncio.timeout(15):
                status_line = await reader.readline()
                with suppress(ConnectionResetError):
                    await reader.read()  # returns once the server has closed the connection
        finally:
            trickling.cancel()
            writer.close()
    assert status_line.startswith(b"HTTP/1.1 408 "), status_line


async def test_a_chunked_body_that_arrives_in_time_is_read(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, body_timeout=1)
    async with serve_in_process(settings):
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.port)
        body = b"grant_type=client_credentials"
        writer.write(request_head("/token", ("Transfer-Encoding", "chunked")))
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        async with asyncio.timeout(15):
            status_line = await reader.readline()
        writer.close()
    # the body was read and parsed: no client authentication in it
    assert status_line.startswith(b"HTTP/1.1 401 "), status_line


# Forwarding headers: believed from trusted proxies only


def _networks(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


async def _statuses(settings: Settings, requests: list[dict[str, str]]) -> list[int]:
    """The status of each ``/token`` call in turn (with these extra headers); only the
    per-address rate limit (two a minute) can make one 429."""
    settings = replace(settings, rate_limit_token=2)
    # the limit counts per clock minute: start with the minute's end far enough away
    if time.time() % 60 > 45:
        await asyncio.sleep(60 - time.time() % 60)
    async with serve_in_process(settings) as base, httpx.AsyncClient(base_url=base) as http:
        return [(await http.post("/token", data={}, headers=headers)).status_code for headers in requests]


async def test_without_trusted_proxies_forwarding_headers_are_ignored(database: TestDatabase, tmp_path: Path) -> None:
    statuses = await _statuses(
        make_settings(database, tmp_path),
        [{"X-Forwarded-For": CLIENT_A}, {"X-Forwarded-For": CLIENT_A}, {"X-Forwarded-For": CLIENT_B}],
    )
    assert statuses == [400, 400, 429]  # all three from 127.0.0.1, whatever they claim


async def test_an_untrusted_peer_cannot_claim_another_address(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, trusted_proxies=_networks("10.0.0.0/8", "::1/128"))
    statuses = await _statuses(
        settings, [{"X-Forwarded-For": CLIENT_A}, {"Forwarded": f"for={CLIENT_A}"}, {"X-Forwarded-For": CLIENT_B}]
    )
    assert statuses == [400, 400, 429]


async def test_behind_a_trusted_proxy_each_client_has_its_own_address(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, trusted_proxies=_networks("127.0.0.1/32"))
    statuses = await _statuses(
        settings,
        [
            {"X-Forwarded-For": CLIENT_A},
            {"Forwarded": f'for="{CLIENT_A}:51000";proto=https'},
            {"X-Forwarded-For": CLIENT_A},
            {"X-Forwarded-For": CLIENT_B},
            # what the client wrote before the proxy's own entry does not help it
            {"X-Forwarded-For": f"{CLIENT_B}, {CLIENT_A}"},
            {},  # the proxy itself, asking on its own behalf
        ],
    )
    assert statuses == [400, 400, 429, 400, 429, 400]


async def test_a_chain_of_two_trusted_proxies_names_the_client(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, trusted_proxies=_networks("127.0.0.1/32", "10.0.0.0/8"))
    statuses = await _statuses(
        settings,
        [
            {"X-Forwarded-For": f"{CLIENT_A}, {LOAD_BALANCER}"},
            {"X-Forwarded-For": f"{CLIENT_B}, {CLIENT_A}, {LOAD_BALANCER}"},
            {"X-Forwarded-For": CLIENT_A},
            {"X-Forwarded-For": f"{CLIENT_B}, {LOAD_BALANCER}"},
        ],
    )
    assert statuses == [400, 400, 429, 400]


async def test_the_access_log_names_the_client_a_trusted_proxy_forwarded(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(
        database, tmp_path, access_log=True, trusted_proxies=_networks("127.0.0.1/32", "10.0.0.0/8")
    )
    with log_lines("ostiary.access") as stream:
        async with serve_in_process(settings) as base, httpx.AsyncClient(base_url=base) as http:
            await http.get("/jwks", headers={"X-Forwarded-For": f"{CLIENT_B}, {CLIENT_A}, {LOAD_BALANCER}"})
            await http.get("/jwks")
    forwarded, direct = stream.getvalue().splitlines()
    assert f'ostiary.access: {CLIENT_A} "GET /jwks" 200' in forwarded
    assert 'ostiary.access: 127.0.0.1 "GET /jwks" 200' in direct


# Strict-Transport-Security


async def test_an_https_issuer_sends_hsts_on_every_response(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    settings = replace(settings, issuer=settings.issuer.replace("http://", "https://"))
    async with serve_in_process(settings), httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as http:
        responses = [
            await http.get("/jwks"),
            await http.get("/.well-known/openid-configuration"),
            await http.post("/token", data={}),
            await http.get("/password/forgot"),
            await http.get("/nowhere"),
            await http.post("/token", content=b"x" * (settings.max_body_bytes + 1)),
        ]
    assert [r.status_code for r in responses] == [200, 200, 400, 200, 404, 413]
    assert {r.headers.get("strict-transport-security") for r in responses} == {"max-age=31536000"}


async def test_an_http_issuer_sends_no_hsts(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    async with serve_in_process(settings) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/jwks")
    assert response.status_code == 200 and "strict-transport-security" not in response.headers
