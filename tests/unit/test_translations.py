"""The catalogs and the templates: every message of the pages, the mails and the code is in
every language's catalog, translated, not fuzzy, with the same placeholders; no template
shows a word that does not go through the catalogs; and the language is chosen in
OIDC's order (``ui_locales``, the remembered choice, ``Accept-Language``, the default)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from server import i18n

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = (ROOT / "server/web/templates", ROOT / "server/web/templates/admin", ROOT / "server/mail/templates")
#: words a page may show untranslated: names, not language
NAMES = {"Ostiary"}


def catalog(locale: str):  # type: ignore[no-untyped-def]
    with (i18n.CATALOGS / locale / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source, locale=locale)


def extracted() -> set[str | tuple[str, str]]:
    """Every message ``scripts/translations`` extracts (babel.cfg), as the catalogs key them."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: set[str | tuple[str, str]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        ROOT, method_map, options_map, keywords={"N_": None, "gettext": None, "ngettext": (1, 2), "_": None}
    ):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def test_german_and_french_are_shipped() -> None:
    assert set(i18n.supported()) >= {"en", "de", "fr"}


@pytest.mark.parametrize("locale", [locale for locale in i18n.supported() if locale != i18n.SOURCE])
def test_every_message_is_translated_in_every_catalog(locale: str) -> None:
    messages = extracted()
    assert len(messages) > 100, "the extraction found the templates' messages"
    held = catalog(locale)
    missing, untranslated, fuzzy = [], [], []
    for key in messages:
        entry = held.get(key[0] if isinstance(key, tuple) else key)
        if entry is None:
            missing.append(key)
        elif entry.fuzzy:
            fuzzy.append(key)
        elif not entry.string or (isinstance(entry.string, tuple) and not all(entry.string)):
            untranslated.append(key)
    assert missing == [], f"not in the {locale} catalog (run scripts/translations): {missing}"
    assert untranslated == [], f"untranslated in {locale}: {untranslated}"
    assert fuzzy == [], f"fuzzy in {locale} (check and clear the flag): {fuzzy}"
    problems = [(message.id, errors) for message, errors in held.check() if errors]
    assert problems == [], f"placeholders that differ from the English in {locale}: {problems}"


def test_a_missing_translation_is_found() -> None:
    """The check above on a catalog that lacks one message of the extraction."""
    held = catalog("de")
    some = next(iter(sorted(str(key) for key in extracted() if isinstance(key, str))))
    assert held.get(some) is not None
    held.delete(some)
    assert held.get(some) is None


# -- literals in templates ------------------------------------------------------------------

_TRANS = re.compile(r"{%-?\s*trans\b.*?{%-?\s*endtrans\s*-?%}", re.S)
_JINJA = re.compile(r"{#.*?#}|{%.*?%}|{{.*?}}", re.S)
#: blocks whose content is markup, not text (a page's CSS classes)
_NOT_TEXT = re.compile(r"{%-?\s*block card_class\s*-?%}.*?{%-?\s*endblock\s*-?%}", re.S)
_ATTRIBUTES = {"alt", "title", "placeholder", "aria-label", "value", "content"}
#: a placeholder that shows a format, not words (a device's user code)
_FORMAT = re.compile(r"[X\d]+(-[X\d]+)*")


class _Words(HTMLParser):
    """Text and human-read attribute values of an HTML (or plain text) template, with every
    Jinja construct removed."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        named = dict(attrs)
        machine = tag == "button" or (tag == "input" and named.get("type") == "hidden")
        machine = machine or (tag == "meta" and named.get("name") != "description")
        for name, value in attrs:
            if name in ("value", "content") and machine:
                continue  # what the form sends or the browser reads, not what the page shows
            if name in _ATTRIBUTES and value and not _FORMAT.fullmatch(value):
                self._check(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._check(data)

    def _check(self, text: str) -> None:
        words = [word for word in re.findall(r"[^\W\d_]{2,}", text) if word not in NAMES]
        if words:
            self.found.append(" ".join(text.split()))


def literals(source: str) -> list[str]:
    """The words of ``source`` (a template) shown as they are, not through the catalogs."""
    stripped = _JINJA.sub(" ", _TRANS.sub(" ", _NOT_TEXT.sub(" ", source)))
    parser = _Words()
    parser.feed(stripped)
    parser.close()
    return parser.found


def test_the_literal_check_finds_words_outside_the_catalogs() -> None:
    planted = (
        '{% extends "base.html" %}{% block title %}{{ _("Fine") }}{% endblock %}'
        "<h1>{% trans %}Fine too{% endtrans %}</h1><p>Left in English</p>"
        '<img alt="A logo" src="{{ logo }}"><input type="hidden" name="x" value="token">'
        '<button name="decision" value="allow">{{ _("Allow") }}</button><input placeholder="XXXX-XXXX">'
        '<input type="submit" value="Send it">{% block card_class %}card wide{% endblock %}'
        '<meta name="viewport" content="width=device-width"><meta name="description" content="A sign-in page">'
        "{# a comment, not shown #}<p>{{ error | translate }} · ◆ Ostiary</p>"
    )
    assert literals(planted) == ["Left in English", "A logo", "Send it", "A sign-in page"]


def templates() -> list[Path]:
    return sorted(path for folder in TEMPLATE_DIRS for path in folder.glob("*") if path.is_file())


@pytest.mark.parametrize("path", templates(), ids=lambda path: path.name)
def test_no_template_shows_an_untranslated_word(path: Path) -> None:
    assert literals(path.read_text()) == []


# -- choosing the language ----------------------------------------------------------------


def test_ui_locales_come_first_then_the_cookie_then_the_browser_then_the_default() -> None:
    def choose(ui: str | None = None, cookie: str | None = None, accept: str | None = None) -> str:
        return i18n.choose(ui_locales=ui, cookie=cookie, accept_language=accept, default="fr")

    assert choose() == "fr"
    assert choose(accept="de-DE,de;q=0.9,en;q=0.5") == "de"
    assert choose(cookie="en", accept="de") == "en"
    assert choose(ui="ja de-CH", cookie="en", accept="fr") == "de", "the first supported of ui_locales"
    assert choose(ui="ja", accept="de") == "de", "none of ui_locales is supported: the next source"
    assert choose(accept="en;q=0.1, de;q=0.8, fr;q=0") == "de", "by weight; q=0 is a refusal"
    assert choose(accept="*") == "fr"
    assert choose(accept="xx;q=oops, de") == "de"


def test_a_language_is_matched_by_its_primary_subtag() -> None:
    assert [i18n.match(tag) for tag in ("de", "DE-at", "fr_CA", "en-GB", "pt-BR", "", "*")] == [
        "de",
        "de",
        "fr",
        "en",
        None,
        None,
        None,
    ]


def test_gettext_follows_the_chosen_language() -> None:
    with i18n.using("de"):
        german = i18n.gettext("Sign in")
    with i18n.using("fr"):
        french = i18n.gettext("Sign in")
    assert "Sign in" not in (german, french) and german != french
    assert i18n.gettext("Sign in") == "Sign in"
