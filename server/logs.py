"""Logging setup. Authlib logs issued tokens at DEBUG, so its logger never goes below WARNING."""

from __future__ import annotations

import logging
import sys

from .settings import Settings


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("authlib").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True  # ours omits query strings
