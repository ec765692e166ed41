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

UNKNOWN = "Unknown browser"


@lru_cache(maxsize=256)
def describe(user_agent: str | None) -> str:
    """``user_agent`` as "Browser major on System", "Browser major", "Unknown browser on
    System", or :data:`UNKNOWN` when nothing in it is recognised (or there is none)."""
    if not user_agent:
        return UNKNOWN
    result = parse(user_agent)
    browser = UNKNOWN
    if result.user_agent is not None:
        browser = " ".join(part for part in (result.user_agent.family, result.user_agent.major) if part)
    if result.os is None:
        return browser
    return f"{browser} on {result.os.family}"
