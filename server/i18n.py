"""Languages: pages and mails in the reader's language, from gettext catalogs.

The catalogs are ``server/locales/<locale>/LC_MESSAGES/messages.po``, extracted from the
templates and the marked messages of the code by Babel (``scripts/translations``) and
compiled in memory when first used, so no compiled ``.mo`` file is kept in the tree. English
is the source language: its messages are the catalogs' keys.

A page's language is, in this order (as Keycloak and node-oidc-provider choose it): the
first supported one of the authorization request's ``ui_locales`` (OIDC Core §3.1.2.1,
remembered in a cookie for the rest of that sign-in), the cookie, the browser's
``Accept-Language``, and ``OSTIARY_DEFAULT_LOCALE``. A mail is written in the language of
the request that queued it (the outbox row keeps it), else the default.
"""

from __future__ import annotations

import gettext as gettext_module
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment

SOURCE = "en"
CATALOGS = Path(__file__).parent / "locales"
DOMAIN = "messages"
#: the cookie that keeps a sign-in's ``ui_locales`` choice
COOKIE = "ostiary_locale"
_MAX_TAGS = 16

#: the language of the request or mail being written; "" outside one (the default applies)
_chosen: ContextVar[str] = ContextVar("ostiary_locale", default="")


def N_(message: str) -> str:
    """Mark ``message`` for the catalogs; it is translated where it is shown."""
    return message


@cache
def supported() -> tuple[str, ...]:
    """English and every language with a catalog."""
    found = sorted(path.parent.parent.name for path in CATALOGS.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return (SOURCE, *(locale for locale in found if locale != SOURCE))


@cache
def translations(locale: str) -> gettext_module.NullTranslations:
    """The compiled catalog of ``locale`` (English: none, the messages are English)."""
    if locale == SOURCE or locale not in supported():
        return gettext_module.NullTranslations()
    with (CATALOGS / locale / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as source:
        catalog = read_po(source, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out: they fall back to English
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def match(tag: str) -> str | None:
    """The supported locale a language tag asks for: itself, or its primary language
    (``de-CH`` -> ``de``); None for another language."""
    tag = tag.strip().replace("_", "-").lower()
    if not tag or tag == "*":
        return None
    for candidate in (tag, tag.split("-")[0]):
        if candidate in supported():
            return candidate
    return None


def accepted(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (RFC 9110 §12.5.4);
    ``q=0`` means "not this one"."""
    if not header:
        return []
    weighed: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:_MAX_TAGS]):
        tag, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and tag.strip():
            weighed.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighed)]


def choose(*, ui_locales: str | None, cookie: str | None, accept_language: str | None, default: str) -> str:
    """The language to answer in (see the module's docstring for the order)."""
    wanted = [*(ui_locales or "").split()[:_MAX_TAGS], cookie or "", *accepted(accept_language)]
    for tag in wanted:
        found = match(tag)
        if found is not None:
            return found
    return default


def current(default: str = SOURCE) -> str:
    """The language of the request or mail being written."""
    return _chosen.get() or default


def chosen() -> str | None:
    """The language a request chose, None outside one (what an outbox row keeps)."""
    return _chosen.get() or None


@contextmanager
def using(locale: str) -> Iterator[None]:
    """Write in ``locale`` until the block ends."""
    token = _chosen.set(locale)
    try:
        yield
    finally:
        _chosen.reset(token)


def install(env: Environment) -> None:
    """Give a Jinja environment ``{% trans %}``, ``_()`` and the ``translate`` filter, in the
    language of the moment. ``{% trans %}`` blocks are trimmed (whitespace and line breaks
    inside them become one space), as the extraction in ``babel.cfg`` reads them.

    ``translate`` is for messages made by the code (shown with ``{{ message | translate }}``):
    it returns plain text, escaped as any value, where ``_()`` would trust its argument."""
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["translate"] = gettext
    env.globals["html_lang"] = current


def gettext(message: str) -> str:
    return translations(current()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return translations(current()).ngettext(singular, plural, count)
