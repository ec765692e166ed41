"""The mails Ostiary sends, each plain text plus HTML, from templates in ``templates/``."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"

SUBJECTS = {
    "password_reset": "Reset your password",
    "password_changed": "Your password was changed",
    "refresh_token_reuse": "Security alert: a sign-in token was used twice",
    "totp_enabled": "Two-step sign-in is on",
    "totp_disabled": "Two-step sign-in is off",
}


class UnknownTemplate(Exception):
    pass


class Messages:
    def __init__(self, sender: str, issuer: str) -> None:
        self.sender = sender
        self.issuer = issuer
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def build(self, recipient: str, template: str, context: dict[str, Any], secret: str | None) -> EmailMessage:
        """The message for an outbox row; ``secret`` is its decrypted secret (a reset link)."""
        subject = SUBJECTS.get(template)
        if subject is None:
            raise UnknownTemplate(template)
        values = {**context, "secret": secret, "issuer": self.issuer, "account_url": f"{self.issuer}/account"}
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = recipient
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="ostiary")
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self.env.get_template(f"{template}.txt").render(**values))
        message.add_alternative(self.env.get_template(f"{template}.html").render(**values), subtype="html")
        return message
