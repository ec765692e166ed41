"""The mail sender when the server stops: cancelled in the middle of a batch, it hands back
the messages it claimed and had not begun (due again now, the claim's attempt not counted),
so another process sends them at once rather than after the lease; the message being sent
at that moment keeps its lease, since whether the mail server took it is unknown. And the
sender's rhythm, as the readiness probe reads it.

Each sender runs as it does in a server process, against a real SMTP server on loopback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session as SmtpSession
from sqlalchemy import select

from server.keys.wrapping import KeyWrapper, KeyWrappers
from server.mail.sender import LEASE, OutboxSender
from server.mail.transport import SmtpTransport
from server.settings import Settings
from server.storage.base import utcnow
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import MailOutbox
from tests.flows.test_mail_delivery import enqueue
from tests.helpers import TestDatabase, free_port, make_settings
from tests.mail import Mailbox, eventually, run_sql, smtp_server

pytestmark = pytest.mark.anyio

KEYS_SECRET = "a key-encryption secret of thirty-two characters or more"
#: how long a cancelled sender may take to end
STOP_TIMEOUT = 5


class HeldMailbox(Mailbox):
    """A slow mail server: it answers DATA only once ``release`` is set. ``begun`` is set,
    with the recipients in ``in_flight``, when a message reaches DATA."""

    def __init__(self) -> None:
        super().__init__()
        self.begun = threading.Event()
        self.release = threading.Event()
        self.in_flight: list[str] = []

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        self.in_flight.extend(envelope.rcpt_tos)
        self.begun.set()
        while not self.release.is_set():  # the server's own loop keeps running meanwhile
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


def smtp_settings(database: TestDatabase, tmp_path: Path, smtp_port: int, **overrides: Any) -> Settings:
    """Mail to 127.0.0.1:``smtp_port`` in plain SMTP, the outbox looked at every second."""
    defaults: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_security": "none", "mail_poll_interval": 1}
    return make_settings(database, tmp_path, smtp_port=smtp_port, **{**defaults, **overrides})


@asynccontextmanager
async def outbox_sender(settings: Settings) -> AsyncIterator[OutboxSender]:
    """A sender as a server process builds it, on an engine of its own."""
    engine = make_engine(settings.database_url)
    try:
        yield OutboxSender(
            settings,
            create_sessionmaker(engine),
            KeyWrappers(KeyWrapper(KEYS_SECRET)),
            SmtpTransport(settings),
            resolvers={},
        )
    finally:
        await engine.dispose()


async def stop(task: asyncio.Task[None], timeout: float = STOP_TIMEOUT) -> None:
    """Cancel the sender's task as the server's shutdown does; it must end within ``timeout``."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    assert task in done, f"the sender still runs {timeout} s after it was cancelled"
    assert task.cancelled(), "the cancellation reaches whoever stops the sender"


async def rows(settings: Settings) -> dict[str, Any]:
    """The outbox by recipient."""
    found = await run_sql(settings.database_url, select(MailOutbox).order_by(MailOutbox.id))
    return {row.recipient: row for row in found}


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async def check() -> bool:
        return condition()

    await eventually(check, timeout)


async def test_a_stopping_sender_hands_back_what_it_had_not_begun_and_another_sends_it_at_once(
    database: TestDatabase, tmp_path: Path
) -> None:
    slow_port, working_port = free_port(), free_port()
    stopping = smtp_settings(database, tmp_path, slow_port, smtp_timeout=30)
    recipients = ["carol@example.com", "dave@example.com", "erin@example.com"]
    await enqueue(stopping, *((recipient, "password_changed") for recipient in recipients))
    held = HeldMailbox()
    with smtp_server(slow_port, held):
        try:
            async with outbox_sender(stopping) as sender:
                task = asyncio.create_task(sender.run())
                await wait_until(held.begun.is_set)
                assert held.in_flight == ["carol@example.com"], "the batch goes oldest first"
                before = await rows(stopping)
                assert all(row.attempts == 1 for row in before.values()), "the whole batch was claimed"
                await stop(task)
                stopped_at = utcnow()

            after = await rows(stopping)
            for recipient in ("dave@example.com", "erin@example.com"):
                row = after[recipient]
                assert row.sent_at is None and row.last_error is None
                assert row.attempts == 0, "a claim handed back unused is no attempt"
                assert stopped_at - timedelta(seconds=STOP_TIMEOUT) < row.next_attempt_at <= stopped_at, (
                    "due again now, not after the lease"
                )
            carol = after["carol@example.com"]
            assert carol.sent_at is None and carol.attempts == 1
            assert LEASE - timedelta(seconds=30) < carol.next_attempt_at - stopped_at <= LEASE, (
                "the mail in flight keeps its lease: the mail server may have taken it"
            )
            assert carol.next_attempt_at == before["carol@example.com"].next_attempt_at

            # another process, with a working mail server: the handed-back mail goes out at once
            taking_over = smtp_settings(database, tmp_path, working_port)
            with smtp_server(working_port) as mailbox:
                async with outbox_sender(taking_over) as other:
                    task = asyncio.create_task(other.run())
                    messages = await mailbox.wait_for(2, timeout=5)  # a lease is 5 min
                    assert sorted(message["To"] for message in messages) == ["dave@example.com", "erin@example.com"]

                    async def recorded() -> bool:
                        sent = {r for r, row in (await rows(taking_over)).items() if row.sent_at is not None}
                        return sent == {"dave@example.com", "erin@example.com"}

                    await eventually(recorded, timeout=5)
                    await asyncio.sleep(2)  # more poll intervals: carol's lease still stands
                    await stop(task)
                assert len(mailbox.messages) == 2
            final = await rows(taking_over)
            assert [final[r].attempts for r in ("dave@example.com", "erin@example.com")] == [1, 1]
            assert final["carol@example.com"].sent_at is None
            assert final["carol@example.com"].next_attempt_at == carol.next_attempt_at
        finally:
            held.release.set()  # the slow mail server answers at last, so it can stop


async def test_a_sender_stopped_with_nothing_claimed_ends_at_once_and_writes_nothing(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = smtp_settings(database, tmp_path, free_port())  # nothing listens: each attempt fails
    await enqueue(settings, ("carol@example.com", "password_changed"))
    async with outbox_sender(settings) as sender:
        task = asyncio.create_task(sender.run())

        async def failed() -> bool:
            return bool((await rows(settings))["carol@example.com"].last_error)

        await eventually(failed)  # its batch is over: the mail waits for its retry
        await asyncio.sleep(0.2)  # the sender is back to sleeping
        before = await rows(settings)
        (row,) = before.values()
        assert row.attempts == 1 and row.next_attempt_at > utcnow() + timedelta(seconds=20)
        started = time.monotonic()
        await stop(task, timeout=1)
        assert time.monotonic() - started < 1
    after = await rows(settings)
    assert [tuple(row) for row in after.values()] == [tuple(row) for row in before.values()]


async def test_an_empty_outbox_sender_stopped_before_its_first_round_ends_at_once(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = smtp_settings(database, tmp_path, free_port(), mail_poll_interval=60)
    async with outbox_sender(settings) as sender:
        task = asyncio.create_task(sender.run())
        await asyncio.sleep(0.1)
        await stop(task, timeout=1)
    assert await rows(settings) == {}


async def test_a_sender_is_stalled_only_when_neither_a_round_began_nor_a_message_ended_in_time(
    database: TestDatabase, tmp_path: Path
) -> None:
    # allowed: three poll intervals, one SMTP conversation, and a minute
    settings = smtp_settings(database, tmp_path, free_port(), smtp_timeout=10)  # a poll interval of 1 s
    allowed = 3 * 1 + 10 + 60
    async with outbox_sender(settings) as sender:
        created = sender.last_progress
        task = asyncio.create_task(sender.run())
        try:
            await wait_until(lambda: sender.last_progress > created, timeout=3)
            assert sender.stalled_for() == 0

            sender.last_progress = time.monotonic() - allowed - 30  # as if nothing happened for 103 s
            assert 29 < sender.stalled_for() < 35
            await wait_until(lambda: sender.stalled_for() == 0, timeout=3)  # the next round began
        finally:
            await stop(task)

        # the loop stopped, the time that passed is set by hand
        sender.last_progress = time.monotonic() - allowed + 2
        assert sender.stalled_for() == 0, "a slow round is allowed its minute"
        sender.last_progress = time.monotonic() - allowed - 2
        late = sender.stalled_for()
        assert 1.5 < late < 4
        await asyncio.sleep(0.3)
        assert sender.stalled_for() > late, "the delay grows while nothing happens"

    # the allowance grows with the interval and the SMTP timeout
    slow = smtp_settings(database, tmp_path, free_port(), mail_poll_interval=30, smtp_timeout=120)
    async with outbox_sender(slow) as sender:
        sender.last_progress = time.monotonic() - (3 * 30 + 120 + 60) + 2
        assert sender.stalled_for() == 0
        sender.last_progress = time.monotonic() - (3 * 30 + 120 + 60) - 2
        assert 1.5 < sender.stalled_for() < 4


async def test_a_long_round_draining_a_backlog_is_not_stalled(database: TestDatabase, tmp_path: Path) -> None:
    # A full batch starts another round at once, so a backlog is one long round: each
    # message it sends counts as the loop keeping its rhythm.
    mailbox = Mailbox()
    with smtp_server(port := free_port(), mailbox):
        settings = smtp_settings(database, tmp_path, port)
        await enqueue(settings, *((f"user{i}@example.com", "password_changed") for i in range(3)))
        async with outbox_sender(settings) as sender:
            sender.last_progress = time.monotonic() - 1000  # long before: the round began ages ago
            assert sender.stalled_for() > 0
            sent = await sender.send_due()
        assert sent == 3 and len(mailbox.messages) == 3
        assert sender.stalled_for() == 0
