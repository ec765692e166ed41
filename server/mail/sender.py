"""The outbox sender: every server process runs one. It claims due messages (a lease, so
no two processes send the same one), sends them, and marks them sent; a failure is retried
with exponential backoff (30 s, 1 min, 2 min ... at most an hour apart) until the mail
server takes it. Requests only ever write to the outbox, so a slow or absent mail server
never slows or fails them, and no message is lost.

Each message of a batch stands alone: an error while sending or recording one (the
database gone for a moment, a row that cannot be updated) is logged and the batch goes on,
so it never holds the others back until their lease ends. A message sent whose success
could not be recorded goes out again after its lease, with the same Message-ID."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

from ..keys.errors import KeyMaterialError
from ..keys.wrapping import KeyWrappers
from ..observe import metrics
from ..settings import Settings
from ..storage import AsyncSession, Session, async_sessionmaker, outbox, transactions
from ..storage.base import utcnow
from ..storage.errors import is_unavailable
from ..storage.leases import backoff
from ..storage.outbox import QueuedMail
from .messages import Messages, UnknownTemplate, associated, message_domain
from .transport import Transport

__all__ = ["BATCH", "LEASE", "OutboxSender", "Resolver", "associated", "backoff", "message_id_of"]

log = logging.getLogger("ostiary.mail")

BATCH = 20
#: how long a claimed message is left to its sender before another may try it
LEASE = timedelta(minutes=5)


def message_id_of(mail: QueuedMail, domain: str) -> str:
    """The row's Message-ID at ``domain`` (our issuer's host); for a row queued before rows
    carried one, one derived from the row itself, so its attempts share it too."""
    if mail.message_id:
        return f"<{mail.message_id}@{domain}>"
    return f"<outbox.{mail.id}.{int(mail.created_at.timestamp())}@{domain}>"


class Resolver(Protocol):
    """What a row that asks for work rather than carries a mail leads to, done in the
    sender's transaction: the mail to send next (queued already claimed for ``lease``), or
    None when there is nothing to send. The row itself is marked done."""

    def __call__(self, db: Session, row: QueuedMail, /, *, lease: timedelta) -> QueuedMail | None: ...


class OutboxSender:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        wrappers: KeyWrappers,
        transport: Transport,
        *,
        resolvers: Mapping[str, Resolver],
    ) -> None:
        """``resolvers``: by template, the rows to resolve before anything is sent; the
        packages that queue them supply them, since what they ask (an account looked up by
        its address) is not this package's to know."""
        self.settings = settings
        self.interval = settings.mail_poll_interval
        self.sessionmaker = sessionmaker
        self.wrappers = wrappers
        self.transport = transport
        self.domain = message_domain(settings.issuer)
        self.messages = Messages(settings)
        self.resolvers = dict(resolvers)
        #: when the loop last began a round or finished a message (``time.monotonic()``),
        #: for the readiness probe
        self.last_progress = time.monotonic()
        #: messages of the current batch claimed but not yet begun
        self._waiting: dict[int, None] = {}

    async def run(self) -> None:
        """Forever: send what is due, then sleep the poll interval (spread across processes).
        Cancelled (the server stopping), it hands back what it claimed and had not begun."""
        try:
            await asyncio.sleep(random.uniform(0, self.interval))  # noqa: S311  (spreading load)
            while True:
                self.last_progress = time.monotonic()
                try:
                    while await self.send_due() == BATCH:
                        pass
                except Exception:  # a database that is down must not end the sender
                    log.warning("mail outbox: sending failed; retrying in %d s", self.interval, exc_info=True)
                await asyncio.sleep(self.interval)
        except asyncio.CancelledError:
            await self.hand_back()
            raise

    def stalled_for(self) -> float:
        """Seconds the loop is overdue (0 while it keeps its rhythm). A round that drains a
        backlog goes on as long as it must, but each message ends within one SMTP
        conversation, so the loop is overdue only when neither a round began nor a message
        ended for three poll intervals and an SMTP timeout, and a minute to spare."""
        allowed = 3 * self.interval + self.settings.smtp_timeout + 60
        return max(0.0, time.monotonic() - self.last_progress - allowed)

    async def send_due(self) -> int:
        """Send one batch of due messages; returns how many were claimed."""
        batch = await transactions.run(self.sessionmaker, lambda db: outbox.claim_due(db, limit=BATCH, lease=LEASE))
        self._waiting = dict.fromkeys(mail.id for mail in batch)
        for mail in batch:
            del self._waiting[mail.id]
            await self._handle(mail)
            self.last_progress = time.monotonic()
        return len(batch)

    async def hand_back(self) -> None:
        """Release the claims on messages not yet begun, so another process sends them now,
        not after the lease. One being sent when the server stopped keeps its lease: whether
        the mail server took it is unknown, and it goes out again with the same Message-ID."""
        waiting, self._waiting = list(self._waiting), {}
        if not waiting:
            return
        try:
            async with asyncio.timeout(5):
                await transactions.run(self.sessionmaker, lambda db: outbox.release(db, waiting))
        except Exception as error:  # the lease ends by itself: nothing is lost
            log.warning("mail outbox: %d claim(s) not handed back: %s", len(waiting), _describe(error))
        else:
            log.info("mail outbox: handed back %d claimed message(s)", len(waiting))

    async def _handle(self, mail: QueuedMail) -> None:
        """One claimed row, on its own: whatever fails here fails for this row only."""
        try:
            resolver = self.resolvers.get(mail.template)
            if resolver is not None:
                resolved = await self._resolve(resolver, mail)
                if resolved is None:
                    return
                mail = resolved
            await self._deliver(mail)
        except Exception as error:  # its lease stands: it is tried again when the lease ends
            log.warning(
                "mail %d (%s): %s; tried again in %s",
                mail.id,
                mail.template,
                _describe(error),
                LEASE,
                exc_info=not is_unavailable(error),  # an outage needs no traceback per mail
            )

    async def _resolve(self, resolver: Resolver, row: QueuedMail) -> QueuedMail | None:
        """A row that asks for work: the mail it leads to (claimed by this sender), or None."""
        return await transactions.run(self.sessionmaker, lambda db: resolver(db, row, lease=LEASE))

    async def _deliver(self, mail: QueuedMail) -> None:
        try:
            message = self.messages.build(
                mail.recipient,
                mail.template,
                mail.context,
                self._secret(mail),
                message_id=message_id_of(mail, self.domain),
            )
            await self.transport.send(message)
        except Exception as error:  # any failure: the message waits and is tried again
            wait = backoff(mail.attempts)
            reason = _describe(error)
            log.warning("mail %d (%s) not sent: %s; retrying in %s", mail.id, mail.template, reason, wait)
            metrics.MAIL_FAILED.inc()
            await transactions.run(
                self.sessionmaker, lambda db: outbox.retry_later(db, mail.id, utcnow() + wait, reason)
            )
            return
        await transactions.run(self.sessionmaker, lambda db: outbox.mark_sent(db, mail.id))
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
