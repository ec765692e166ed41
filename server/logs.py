"""Logging setup.

``OSTIARY_LOG_LEVEL`` applies to Ostiary's own loggers. Libraries stay at WARNING whatever
it says: at DEBUG, Authlib logs issued tokens and aiosqlite logs every SQL parameter.

Every record goes through :class:`EscapingFormatter`, so request data in a message (a
``%0A`` in a path, an escape sequence in a header) can neither forge a log line nor drive
the terminal that shows the log.
"""

from __future__ import annotations

import logging
import re
import sys
from types import TracebackType
from typing import TextIO

from .settings import Settings

_QUIET_LIBRARIES = ("authlib", "aiosqlite", "asyncpg", "sqlalchemy", "httpx", "httpcore", "asyncio")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: C0 controls, DEL, C1 controls (NEL among them) and the Unicode line and paragraph
#: separators: everything a terminal or a line-splitting log reader may act on
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str, pattern: re.Pattern[str] = _CONTROL) -> str:
    """``text`` with each control character written as its Python escape (``\\n``, ``\\x1b``,
    ``\\u2028``): printable, on one line, still recognisable."""
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


class EscapingFormatter(logging.Formatter):
    """One record, one line: control characters in the message are escaped.

    A traceback (or stack) keeps its line breaks, which make it readable, but every other
    control character is escaped and its lines are indented, so that no line of it can pass
    for the start of a record (which begins with the timestamp, at the start of a line).
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        return _block(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _block(super().formatStack(stack_info))


def _block(text: str) -> str:
    return "  " + escape_controls(text, _CONTROL_BUT_NEWLINE).replace("\n", "\n  ")


def handler(stream: TextIO) -> logging.Handler:
    """The handler every record of the server goes through."""
    result = logging.StreamHandler(stream)
    result.setFormatter(EscapingFormatter(FORMAT))
    return result


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level)
    logging.basicConfig(level=max(level, logging.INFO), handlers=[handler(sys.stderr)], force=True)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ostiary").setLevel(settings.log_level)
    logging.getLogger("uvicorn.access").disabled = True  # ours omits query strings
