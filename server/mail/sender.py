"""The outbox sender: every server process runs one. It claims due messages (a lease, so
no two processes send the same one), sends them, and marks them sent; a failure is retried
with exponential backoff (30 s, 1 min, 2 min ... at most an hour apart) until the mail
server takes it. Requests only ever write to the outbox, so a slow or absent mail server
never slows or fails them, and no message is lost."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

from ..keys.errors import KeyMaterialError
from ..keys.wrapping import KeyWrappers
from ..settings import Settings
from ..storage import AsyncSession, async_sessionmaker, outbox
from ..storage.base import utcnow
from ..storage.outbox import QueuedMail
from .messages import Messages, UnknownTemplate
from .transport import Transport

log = logging.getLogger("ostiary.mail")

BATCH = 20
#: how long a claimed message is left to its sender before another may try it
LEASE = timedelta(minutes=5)
FIRST_RETRY = 30
LAST_RETRY = 3600


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt."""
    return timedelta(seconds=min(LAST_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1)))


def associated(recipient: str, template: str) -> str:
    """What a mail's sealed secret is bound to: copied onto another recipient's row, it
    does not decrypt."""
    return f"mail:{template}:{recipient.casefold()}"


class OutboxSender:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        wrappers: KeyWrappers,
        transport: Transport,
    ) -> None:
        self.interval = settings.mail_poll_interval
        self.sessionmaker = sessionmaker
        self.wrappers = wrappers
        self.transport = transport
        sender = (
            settings.mail_from or f"Ostiary <no-reply@{settings.issuer.split('//', 1)[1].split(':')[0].split('/')[0]}>"
        )
        self.messages = Messages(sender, settings.issuer)

    async def run(self) -> None:
        """Forever: send what is due, then sleep the poll interval (spread across processes)."""
        await asyncio.sleep(random.uniform(0, self.interval))  # noqa: S311  (spreading load)
        while True:
            try:
                while await self.send_due() == BATCH:
                    pass
            except Exception:  # a database that is down must not end the sender
                log.warning("mail outbox: sending failed; retrying in %d s", self.interval, exc_info=True)
            await asyncio.sleep(self.interval)

    async def send_due(self) -> int:
        """Send one batch of due messages; returns how many were claimed."""
        async with self.sessionmaker.begin() as session:
            batch = await session.run_sync(lambda db: outbox.claim_due(db, limit=BATCH, lease=LEASE))
        for mail in batch:
            await self._deliver(mail)
        return len(batch)

    async def _deliver(self, mail: QueuedMail) -> None:
        try:
            message = self.messages.build(mail.recipient, mail.template, mail.context, self._secret(mail))
            await self.transport.send(message)
        except Exception as error:  # any failure: the message waits and is tried again
            wait = backoff(mail.attempts)
            reason = _describe(error)
            log.warning("mail %d (%s) not sent: %s; retrying in %s", mail.id, mail.template, reason, wait)
            async with self.sessionmaker.begin() as session:
                await session.run_sync(lambda db: outbox.retry_later(db, mail.id, utcnow() + wait, reason))
            return
        async with self.sessionmaker.begin() as session:
            await session.run_sync(lambda db: outbox.mark_sent(db, mail.id))
        log.info("mail %d (%s) sent", mail.id, mail.template)

    def _secret(self, mail: QueuedMail) -> str | None:
        if mail.secret_enc is None:
            return None
        wrapper = self.wrappers.for_id(mail.wrapping_key_id or "")
        if wrapper is None:
            raise KeyMaterialError(f"mail {mail.id} is sealed under a key-encryption secret that is not configured")
        return wrapper.unwrap(mail.secret_enc, associated=associated(mail.recipient, mail.template)).decode("utf-8")


def _describe(error: Exception) -> str:
    """A reason for the log and the row: the error's type and message (never the mail)."""
    if isinstance(error, UnknownTemplate):
        return f"unknown template {error}"
    return f"{type(error).__name__}: {error}"[:300]
