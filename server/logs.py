"""Logging setup.

``OSTIARY_LOG_LEVEL`` applies to Ostiary's own loggers. Libraries stay at WARNING whatever
it says: at DEBUG, Authlib logs issued tokens and aiosqlite logs every SQL parameter.
"""

from __future__ import annotations

import logging
import sys

from .settings import Settings

_QUIET_LIBRARIES = ("authlib", "aiosqlite", "asyncpg", "sqlalchemy", "httpx", "httpcore", "asyncio")


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level)
    logging.basicConfig(
        level=max(level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ostiary").setLevel(settings.log_level)
    logging.getLogger("uvicorn.access").disabled = True  # ours omits query strings
