"""The mail outbox and its sender: requests only write to the outbox; every server process
sends what is due, retrying with exponential backoff (30 s, 1 min, 2 min ... at most an hour
apart) until the mail server takes the message, and each message goes out once. With no
SMTP host, mail is written to the log instead (development).

Over real HTTP with a real SMTP server (aiosmtpd) on loopback; the helpers are shared with
the password-reset tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session as SmtpSession
from sqlalchemy import select, text, update

from server.bootstrap import prepare
from server.mail.sender import LEASE, backoff
from server.settings import Settings
from server.storage import Session, outbox
from server.storage.base import utcnow
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import MailOutbox
from tests.helpers import TestDatabase, create_user, free_port, make_settings, serve_in_process
from tests.mail import (
    RESET_LINK,
    Mailbox,
    Mailed,
    eventually,
    forgot,
    link_in,
    mailed_server,
    run_sql,
    smtp_server,
)
from tests.mfa import change_password_at_account, enrol
from tests.oidc import Browser

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase for alice"


@pytest.fixture
async def mailed(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Mailed]:
    async with mailed_server(database, tmp_path) as server:
        yield server


def smtp_settings(database: TestDatabase, tmp_path: Path, smtp_port: int, **overrides: Any) -> Settings:
    return make_settings(
        database,
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_security="none",
        mail_poll_interval=1,
        **overrides,
    )


async def the_mail(settings: Settings) -> Any:
    """The outbox's one reset mail (None until the sender has looked the address up)."""
    rows = await run_sql(settings.database_url, select(MailOutbox).where(MailOutbox.template == "password_reset"))
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


async def recorded_as_sent(settings: Settings) -> bool:
    """The outbox's one mail is recorded as sent."""
    (row,) = await run_sql(settings.database_url, select(MailOutbox))
    return row.sent_at is not None


async def enqueue(settings: Settings, *mails: tuple[str, str]) -> None:
    """Queue (recipient, template) messages as a request would."""

    def queue(db: Session) -> None:
        for recipient, template in mails:
            outbox.enqueue(db, recipient, template, {"username": "u"})

    engine = make_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await session.run_sync(queue)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("attempts", "seconds"), [(1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (9, 3600), (1000, 3600)]
)
def test_retries_back_off_exponentially_from_30_seconds_to_an_hour(attempts: int, seconds: int) -> None:
    assert backoff(attempts) == timedelta(seconds=seconds)


async def test_a_mail_server_that_is_down_gets_the_message_once_it_is_back(
    database: TestDatabase, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here yet
    settings = smtp_settings(database, tmp_path, port)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await create_user(settings, "alice")
        assert (await forgot(Browser(http), "alice@example.com")).status_code == 200

        async def failed(attempts: int) -> bool:
            row = await the_mail(settings)
            # the failure is recorded: the claim's lease is replaced by the retry time
            leased = row is None or row.next_attempt_at > utcnow() + LEASE - timedelta(minutes=1)
            return not leased and bool(row.attempts == attempts)

        async def retry_now() -> None:
            await run_sql(
                settings.database_url,
                update(MailOutbox).where(MailOutbox.sent_at.is_(None)).values(next_attempt_at=utcnow()),
            )

        await eventually(lambda: failed(1))
        row = await the_mail(settings)
        assert row.last_error.startswith("ConnectionRefusedError")
        assert timedelta(seconds=25) < row.next_attempt_at - utcnow() <= timedelta(seconds=30)
        assert row.sent_at is None and row.secret_enc is not None, "the sealed link waits for the next attempt"

        await retry_now()  # instead of waiting the 30 s
        await eventually(lambda: failed(2))
        assert timedelta(seconds=55) < (await the_mail(settings)).next_attempt_at - utcnow() <= timedelta(seconds=60)

        with smtp_server(port) as mailbox:
            await retry_now()
            (message,) = await mailbox.wait_for(1)

            async def sent() -> bool:
                return (await the_mail(settings)).sent_at is not None

            await eventually(sent)
            await asyncio.sleep(3)  # a few more poll intervals
            assert len(mailbox.messages) == 1, "delivered exactly once"

        row = await the_mail(settings)
        assert (row.attempts, row.last_error, row.secret_enc) == (3, None, None)
        assert message["To"] == "alice@example.com"
        page = await http.get(link_in(message))
        assert 'name="new_password"' in page.text, "the link survived the retries"


async def test_a_message_that_cannot_be_built_waits_and_the_others_go_out(mailed: Mailed) -> None:
    settings = mailed.live.settings
    await enqueue(settings, ("bob@example.com", "no_such_template"), ("carol@example.com", "password_changed"))
    (message,) = await mailed.mailbox.wait_for(1)
    assert message["To"] == "carol@example.com"

    async def failed() -> bool:
        rows = await mailed.sql(select(MailOutbox).where(MailOutbox.recipient == "bob@example.com"))
        return rows[0].last_error is not None

    await eventually(failed)
    (row,) = await mailed.sql(select(MailOutbox).where(MailOutbox.recipient == "bob@example.com"))
    assert row.last_error == "unknown template no_such_template"
    assert row.sent_at is None and row.attempts == 1


#: a row whose "sent" bookkeeping the database refuses: a real database error for one mail
_REFUSE_BOB = {
    "sqlite": [
        "CREATE TRIGGER refuse_bob BEFORE UPDATE OF sent_at ON mail_outbox "
        "WHEN NEW.recipient = 'bob@example.com' AND NEW.sent_at IS NOT NULL "
        "BEGIN SELECT RAISE(ABORT, 'bookkeeping refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_bob() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'bookkeeping refused'; END $$",
        "CREATE TRIGGER refuse_bob BEFORE UPDATE ON mail_outbox FOR EACH ROW "
        "WHEN (NEW.recipient = 'bob@example.com' AND NEW.sent_at IS NOT NULL) EXECUTE FUNCTION refuse_bob()",
    ],
}
_ALLOW_BOB = {"sqlite": ["DROP TRIGGER refuse_bob"], "postgresql": ["DROP TRIGGER refuse_bob ON mail_outbox"]}


async def run_ddl(database_url: str, statements: list[str]) -> None:
    for statement in statements:
        await run_sql(database_url, text(statement))


async def test_a_database_error_for_one_mail_does_not_hold_back_the_rest_of_its_batch(
    database: TestDatabase, tmp_path: Path
) -> None:
    port = free_port()
    settings = smtp_settings(database, tmp_path, port)
    with smtp_server(port) as mailbox:
        async with serve_in_process(settings):
            await run_ddl(settings.database_url, _REFUSE_BOB[database.kind])
            # bob first: the batch meets the database error before it reaches the others
            await enqueue(settings, *((f"{who}@example.com", "password_changed") for who in ("bob", "carol", "dave")))
            messages = await mailbox.wait_for(3)
            assert sorted(message["To"] for message in messages) == [
                "bob@example.com",
                "carol@example.com",
                "dave@example.com",
            ]

            async def others_recorded() -> bool:
                rows = await run_sql(settings.database_url, select(MailOutbox.recipient, MailOutbox.sent_at))
                return {recipient for recipient, sent_at in rows if sent_at is not None} == {
                    "carol@example.com",
                    "dave@example.com",
                }

            await eventually(others_recorded)
            (bob,) = await run_sql(
                settings.database_url, select(MailOutbox).where(MailOutbox.recipient == "bob@example.com")
            )
            assert bob.sent_at is None and bob.next_attempt_at > utcnow() + LEASE - timedelta(minutes=1), (
                "bob's mail, sent but not recorded, waits out its lease"
            )
    assert [message["To"] for message in mailbox.messages].count("bob@example.com") == 1


async def test_a_mail_sent_again_carries_the_same_message_id(database: TestDatabase, tmp_path: Path) -> None:
    # Delivery is at least once: sent, then its success not recorded, the mail goes out again
    # after its lease; a mail client recognises the copy by its Message-ID.
    port = free_port()
    settings = smtp_settings(database, tmp_path, port)
    with smtp_server(port) as mailbox:
        async with serve_in_process(settings):
            await run_ddl(settings.database_url, _REFUSE_BOB[database.kind])
            await enqueue(settings, ("bob@example.com", "password_changed"))
            (first,) = await mailbox.wait_for(1)
            await asyncio.sleep(1.5)  # the failed bookkeeping has run
            await run_ddl(settings.database_url, _ALLOW_BOB[database.kind])
            await run_sql(settings.database_url, update(MailOutbox).values(next_attempt_at=utcnow()))  # lease over
            _, second = await mailbox.wait_for(2)
            await eventually(lambda: recorded_as_sent(settings))
            (row,) = await run_sql(settings.database_url, select(MailOutbox))
    assert first["Message-ID"] == second["Message-ID"] == f"<{row.message_id}@127.0.0.1>"
    assert row.attempts == 2


async def test_a_mail_queued_before_message_ids_gets_one_that_stays_the_same(
    database: TestDatabase, tmp_path: Path
) -> None:
    port = free_port()
    settings = smtp_settings(database, tmp_path, port)
    # as a row from before the column: no Message-ID; queued and changed before any server
    # runs, whose sender could otherwise send it with the id it was queued with
    await prepare(settings)
    await enqueue(settings, ("carol@example.com", "password_changed"))
    await run_sql(settings.database_url, update(MailOutbox).values(message_id=None))
    with smtp_server(port) as mailbox:
        async with serve_in_process(settings):
            (first,) = await mailbox.wait_for(1)
            await eventually(lambda: recorded_as_sent(settings))
            # as if that send had failed: sent again
            await run_sql(settings.database_url, update(MailOutbox).values(sent_at=None, next_attempt_at=utcnow()))
            _, second = await mailbox.wait_for(2)
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"].startswith("<outbox.1.") and first["Message-ID"].endswith("@127.0.0.1>")


def assert_both_parts(message: EmailMessage, *texts: str) -> None:
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    for part in message.iter_parts():
        content = part.get_content()
        assert all(text in content for text in texts), (texts, content)


async def test_security_mails_come_with_a_plain_and_an_html_part(mailed: Mailed) -> None:
    issuer = mailed.live.settings.issuer
    browser = mailed.browser()
    changed = await change_password_at_account(browser, NEW_PASSWORD)
    assert changed.status_code == 303 and changed.headers["location"] == "/account?done=password"
    (message,) = await mailed.mailbox.wait_for(1)
    assert (message["To"], message["Subject"]) == ("alice@example.com", "Your password was changed")
    assert_both_parts(message, "Hello alice", issuer)

    await enrol(browser, "alice", NEW_PASSWORD)
    _, message = await mailed.mailbox.wait_for(2)
    assert (message["To"], message["Subject"]) == ("alice@example.com", "Two-step sign-in is on")
    assert_both_parts(message, "Hello alice", f"{issuer}/account")


class SlowMailbox(Mailbox):
    """A mail server that takes 50 ms per message: a batch outlasts a poll interval."""

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


async def test_two_servers_sharing_an_outbox_send_each_message_once(database: TestDatabase, tmp_path: Path) -> None:
    port = free_port()
    first = smtp_settings(database, tmp_path, port, mail_from="First <first@example.com>")
    second = smtp_settings(database, tmp_path, port, mail_from="Second <second@example.com>")
    recipients = [f"user{n}@example.com" for n in range(50)]
    with smtp_server(port, SlowMailbox()) as mailbox:
        async with serve_in_process(first), serve_in_process(second):
            await enqueue(first, *((recipient, "password_changed") for recipient in recipients))
            await mailbox.wait_for(len(recipients), timeout=30)
            await asyncio.sleep(3)  # a few more poll intervals
    assert Counter(message["To"] for message in mailbox.messages) == Counter(recipients)
    senders = Counter(message["From"] for message in mailbox.messages)
    assert set(senders) == {"First <first@example.com>", "Second <second@example.com>"}, senders
    rows = await run_sql(first.database_url, select(MailOutbox.attempts, MailOutbox.sent_at))
    assert all(attempts == 1 and sent_at is not None for attempts, sent_at in rows)


async def test_without_an_smtp_host_mail_is_written_to_the_log(
    database: TestDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ostiary.mail")
    settings = make_settings(database, tmp_path, smtp_host=None, mail_poll_interval=1)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await create_user(settings, "alice")
        assert (await forgot(Browser(http), "alice@example.com")).status_code == 200

        async def logged() -> bool:
            return any("no OSTIARY_SMTP_HOST" in record.getMessage() for record in caplog.records)

        await eventually(logged)
        (text,) = [record.getMessage() for record in caplog.records if "no OSTIARY_SMTP_HOST" in record.getMessage()]
        assert "mail to alice@example.com (Reset your password)" in text
        link = RESET_LINK.search(text)
        assert link is not None
        assert 'name="new_password"' in (await http.get(link.group(0))).text

        async def sent() -> bool:
            return (await the_mail(settings)).sent_at is not None

        await eventually(sent)
