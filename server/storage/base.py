"""Declarative base, constraint naming convention and portable column types."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import DateTime, Insert, MetaData, Table, TypeDecorator, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite as on PostgreSQL.

    PostgreSQL stores ``timestamptz``; SQLite stores the UTC wall time as text.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def sha256(value: str) -> bytes:
    """The SHA-256 of a random value we hand out (a code, a token, a secret): what is stored."""
    return hashlib.sha256(value.encode("utf-8")).digest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def insert_row(model: type[Any]) -> Insert:
    """A Core ``INSERT`` into ``model``'s table, built once: execute it on the session's
    connection with a dict keyed by column names. Core, because the ORM's bulk-insert
    bookkeeping costs more than the statement on the token endpoint's paths."""
    return insert(cast(Table, model.__table__))
