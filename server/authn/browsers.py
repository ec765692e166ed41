"""What a session's browser is, in words: "Firefox 128 on Windows", from its User-Agent.

The User-Agent is parsed with ``ua-parser`` and the rules of the uap-core project
(``ua-parser-builtins``), which are kept up to date with new browsers and systems: better
than regular expressions of our own, which would go stale. Only the browser's family and
major version and the system's family are shown: enough to tell one's sessions apart
(Windows 11 still says "Windows NT 10.0", so a system version would mislead).
"""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

from .. import i18n
from ..i18n import N_

UNKNOWN = N_("Unknown browser")


def describe(user_agent: str | None) -> str:
    """``user_agent`` as "Browser major on System", "Browser major", "Unknown browser on
    System", or :data:`UNKNOWN` when nothing in it is recognised (or there is none), in the
    language of the moment."""
    browser, system = _parts(user_agent) if user_agent else (None, None)
    named = browser or i18n.gettext(UNKNOWN)
    if system is None:
        return named
    return i18n.gettext("%(browser)s on %(system)s") % {"browser": named, "system": system}


@lru_cache(maxsize=256)
def _parts(user_agent: str) -> tuple[str | None, str | None]:
    """The browser's family and major version, and the system's family, when recognised."""
    result = parse(user_agent)
    browser = None
    if result.user_agent is not None:
        browser = " ".join(part for part in (result.user_agent.family, result.user_agent.major) if part)
    return browser, result.os.family if result.os is not None else None
