"""A real SMTP server on loopback (aiosmtpd) and Ostiary serving with mail sent to it, for
the mail tests; and small helpers to wait for the background sender."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session as SmtpSession
from sqlalchemy.sql import Executable

from server.storage.engine import make_engine
from tests.flows.conftest import Live
from tests.helpers import TestDatabase, create_client, create_user, free_port, make_settings, serve_in_process
from tests.oidc import Browser

RESET_LINK = re.compile(r"http://127\.0\.0\.1:\d+/password/reset\?token=([A-Za-z0-9_-]+)")


class Mailbox:
    """The SMTP server's handler: keeps every message it accepts (in its own thread)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        #: SMTP conversations open now (a sender mid-message when the test ends)
        self.open_connections = 0

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        content = cast(bytes, envelope.original_content or envelope.content)
        self.messages.append(message_from_bytes(content, policy=policy.default))
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, timeout: float = 10) -> list[EmailMessage]:
        """The first ``count`` messages, once that many have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} mails arrived in {timeout} s"
            await asyncio.sleep(0.1)
        return list(self.messages[:count])


class _CountingSmtp(SMTP):
    """aiosmtpd's server, counting its open conversations in the mailbox."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.event_handler.open_connections += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.open_connections -= 1
        super().connection_lost(error)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _CountingSmtp(self.handler, **self.SMTP_kwargs)


@contextmanager
def smtp_server(port: int, mailbox: Mailbox | None = None) -> Iterator[Mailbox]:
    """A mail server listening on 127.0.0.1:``port`` until the block ends. It stops once
    the conversations still open have ended (a background sender may be mid-message when
    a test ends): stopping aiosmtpd's loop leaves an open one's socket unclosed."""
    mailbox = mailbox or Mailbox()
    controller = _Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox
    finally:
        deadline = time.monotonic() + 15
        while mailbox.open_connections and time.monotonic() < deadline:
            time.sleep(0.05)
        controller.stop()


@dataclass
class Mailed:
    """Ostiary over real HTTP, sending its mail to ``mailbox`` every second; alice exists."""

    live: Live
    mailbox: Mailbox
    browsers: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def http(self) -> httpx.AsyncClient:
        return self.live.http

    def browser(self) -> Browser:
        """Another browser: its own cookies, closed with the server."""
        http = httpx.AsyncClient(base_url=self.live.base_url, timeout=10)
        self.browsers.append(http)
        return Browser(http)

    async def sql(self, statement: Executable) -> list[Any]:
        return await run_sql(self.live.settings.database_url, statement)


@asynccontextmanager
async def mailed_server(
    database: TestDatabase, tmp_path: Path, *, smtp_port: int | None = None, **overrides: Any
) -> AsyncIterator[Mailed]:
    port = smtp_port or free_port()
    settings = make_settings(
        database,
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        mail_poll_interval=1,
        **overrides,
    )
    with smtp_server(port) as mailbox:
        async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            await create_user(settings, "alice")
            mailed = Mailed(Live(settings, base_url, http, await create_client(settings)), mailbox)
            try:
                yield mailed
            finally:
                for browser in mailed.browsers:
                    await browser.aclose()


async def run_sql(database_url: str, statement: Executable) -> list[Any]:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(statement)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Wait until ``check`` holds (the sender works in the background)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"still not so after {timeout} s"
        await asyncio.sleep(0.1)


async def forgot(browser: Browser, email: str) -> httpx.Response:
    page = await browser.http.get("/password/forgot")
    assert page.status_code == 200 and 'name="email"' in page.text
    return await browser.submit(page, {"email": email})


def link_in(message: EmailMessage) -> str:
    """The reset link, the same in the plain-text and the HTML part."""
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    in_plain, in_html = ({link.group(0) for link in RESET_LINK.finditer(p.get_content())} for p in (plain, html))
    assert len(in_plain) == 1 and in_html == in_plain, (in_plain, in_html)
    return in_plain.pop()
