"""The mails Ostiary sends, each plain text plus HTML, from templates in ``templates/``."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .. import i18n
from ..brand import DEFAULT_LIGHT, LOGO_PATH, MAIL_IMAGE_TYPES, Palette
from ..i18n import N_
from ..settings import Settings
from ..templating import CompiledTemplates

TEMPLATES = Path(__file__).parent / "templates"
_COMPILED = CompiledTemplates()

SUBJECTS = {
    "password_reset": N_("Reset your password"),
    "password_changed": N_("Your password was changed"),
    "refresh_token_reuse": N_("Security alert: a sign-in token was used twice"),
    "totp_enabled": N_("Two-step sign-in is on"),
    "totp_disabled": N_("Two-step sign-in is off"),
    "email_verify": N_("Confirm your e-mail address"),
    "email_changed": N_("Your e-mail address was changed"),
}


class UnknownTemplate(Exception):
    pass


def message_domain(issuer: str) -> str:
    """The right-hand side of our Message-IDs: the issuer's host (RFC 5322 3.6.4)."""
    return urlsplit(issuer).hostname or "ostiary"


def associated(recipient: str, template: str) -> str:
    """What a mail's sealed secret is bound to: copied onto another recipient's row, it
    does not decrypt."""
    return f"mail:{template}:{recipient.casefold()}"


@dataclass(frozen=True)
class MailBrand:
    """The branding as the mail templates use it (``brand``)."""

    name: str
    #: the light-mode accent: mail clients show mail on white, or darken it themselves
    color: str
    #: the logo's absolute URL, when it is of a type mail clients show; else None
    logo: str | None

    @classmethod
    def of(cls, settings: Settings) -> MailBrand:
        palette = Palette.of(settings.brand_color, settings.brand_color_dark)
        logo, url = settings.brand_logo, None
        if logo is not None and logo.content_type in MAIL_IMAGE_TYPES:
            url = settings.endpoint(f"{LOGO_PATH}?v={logo.version}")
        color = palette.light if palette is not None else DEFAULT_LIGHT
        return cls(name=settings.brand_name, color=color, logo=url)


class Messages:
    def __init__(self, settings: Settings) -> None:
        self.sender = settings.sender_address
        self.issuer = settings.issuer
        self.brand = MailBrand.of(settings)
        #: the language of a mail whose row names none (queued outside a page's request)
        self.default_locale = settings.default_locale
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            bytecode_cache=_COMPILED,
        )
        i18n.install(self.env)

    def build(
        self, recipient: str, template: str, context: dict[str, Any], secret: str | None, *, message_id: str
    ) -> EmailMessage:
        """The message for an outbox row; ``secret`` is its decrypted secret (a reset link),
        ``message_id`` the row's Message-ID (the same on every attempt, RFC 5322 3.6.4)."""
        subject = SUBJECTS.get(template)
        if subject is None:
            raise UnknownTemplate(template)
        locale = i18n.match(str(context.get("locale") or "")) or self.default_locale
        values = {
            **context,
            "secret": secret,
            "issuer": self.issuer,
            "account_url": f"{self.issuer}/account",
            "brand": self.brand,
        }
        with i18n.using(locale):
            return self._message(recipient, template, values, i18n.gettext(subject), message_id)

    def _message(
        self, recipient: str, template: str, values: dict[str, Any], subject: str, message_id: str
    ) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = recipient
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self.env.get_template(f"{template}.txt").render(**values))
        message.add_alternative(self.env.get_template(f"{template}.html").render(**values), subtype="html")
        return message
