"""Fixed one-minute request windows per bucket (an endpoint and a client address), in the
database so every server process counts together. One statement per request."""

from __future__ import annotations

from sqlalchemy import case

from . import Session
from .dialect import upsert_insert
from .models import RateLimit


def hit(session: Session, bucket: str, window_start: int) -> int:
    """Count one request in ``bucket`` for the window starting at ``window_start`` (minutes
    since the epoch); returns the requests counted in that window, this one included."""
    statement = upsert_insert(session, RateLimit).values(bucket=bucket, window_start=window_start, hits=1)
    statement = statement.on_conflict_do_update(
        index_elements=[RateLimit.bucket],
        set_={
            "hits": case((RateLimit.window_start == statement.excluded.window_start, RateLimit.hits + 1), else_=1),
            "window_start": statement.excluded.window_start,
        },
    ).returning(RateLimit.hits)
    return int(session.execute(statement).scalar_one())
