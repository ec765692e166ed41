"""The one place that picks PostgreSQL's or SQLite's INSERT (both support ON CONFLICT)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import Session


def upsert_insert(session: Session, table: Any) -> Any:
    """``INSERT`` for ``table`` with ``on_conflict_do_*`` available, for this session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)
