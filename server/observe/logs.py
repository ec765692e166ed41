"""Logging setup.

``OSTIARY_LOG_LEVEL`` applies to Ostiary's own loggers. Libraries stay at WARNING whatever
it says: at DEBUG, Authlib logs issued tokens and aiosqlite logs every SQL parameter.

``OSTIARY_LOG_FORMAT``: ``text`` goes through :class:`EscapingFormatter`, so request data in
a message (a ``%0A`` in a path, an escape sequence in a header) can neither forge a log line
nor drive the terminal that shows the log. ``json`` writes one object per line with
python-json-logger, ASCII only (every control character escaped by JSON itself), with the
request's id, client and user (``observe.context``) where known.
"""

from __future__ import annotations

import logging
import re
import sys
from types import TracebackType
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from ..settings import Settings
from . import context

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


class ContextFilter(logging.Filter):
    """Adds the request's id, client and user (those known) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = context.current()
        if current is not None:
            record.request_id = current.request_id
            if current.client_id is not None:
                record.client_id = current.client_id
            if current.user_id is not None:
                record.user_id = current.user_id
        return True


class _TimeFirst(JsonFormatter):
    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        return super().jsonify_log_record({"time": log_data.pop("time", None), **log_data})


def json_formatter() -> logging.Formatter:
    """time (ISO 8601, UTC), level, logger, event, then the request's fields and any extras."""
    return _TimeFirst(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger", "message": "event"},
        timestamp="time",
        json_ensure_ascii=True,
    )


def handler(stream: TextIO, log_format: str = "text") -> logging.Handler:
    """The handler every record of the server goes through."""
    result = logging.StreamHandler(stream)
    result.setFormatter(json_formatter() if log_format == "json" else EscapingFormatter(FORMAT))
    result.addFilter(ContextFilter())
    return result


def chosen_format(settings: Settings, stream: TextIO) -> str:
    """``json`` or ``text``: ``auto`` is text for a person at a terminal, json for a collector."""
    if settings.log_format != "auto":
        return settings.log_format
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level)
    stream_handler = handler(sys.stderr, chosen_format(settings, sys.stderr))
    logging.basicConfig(level=max(level, logging.INFO), handlers=[stream_handler], force=True)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ostiary").setLevel(settings.log_level)
    logging.getLogger("uvicorn.access").disabled = True  # ours omits query strings
