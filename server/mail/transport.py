"""Delivering one message: over SMTP (STARTTLS, implicit TLS, or plain on a trusted
network), or, with no SMTP host configured, into the log (development only: a logged
reset link is a working credential)."""

from __future__ import annotations

import functools
import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Protocol

import anyio

from ..settings import Settings

log = logging.getLogger("ostiary.mail")


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpTransport:
    """``smtplib`` in a worker thread: a slow mail server never blocks the event loop."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host is not None
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.user = settings.smtp_user
        self.password = settings.smtp_password
        self.timeout = settings.smtp_timeout

    async def send(self, message: EmailMessage) -> None:
        await anyio.to_thread.run_sync(self._send, message)

    @functools.cached_property
    def tls(self) -> ssl.SSLContext:
        """Made once, on the first message: a context parses the whole CA bundle."""
        return ssl.create_default_context()

    def _send(self, message: EmailMessage) -> None:
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.tls)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=self.tls)
            if self.user and self.password:
                smtp.login(self.user, self.password)
            smtp.send_message(message)


class LogTransport:
    async def send(self, message: EmailMessage) -> None:
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        log.warning(
            "no OSTIARY_SMTP_HOST: mail to %s (%s) written here instead of sent:\n%s",
            message["To"],
            message["Subject"],
            text,
        )


def transport_for(settings: Settings) -> Transport:
    return LogTransport() if settings.mail_to_log else SmtpTransport(settings)
