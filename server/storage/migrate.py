"""Applying Alembic migrations from code, on SQLite and PostgreSQL alike.

On PostgreSQL the upgrade holds an advisory lock, so several processes or machines starting
together against one empty database migrate it once.
"""

from __future__ import annotations

import enum
import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

_LOCK_ID = 0x05_71A7  # arbitrary, stable: "ostia"
MIGRATIONS_DIR = Path(migrations.__file__).parent


class SchemaState(enum.Enum):
    EMPTY = "empty"
    CURRENT = "current"
    BEHIND = "behind"
    UNKNOWN = "unknown"


_REVISION = text("SELECT version_num FROM alembic_version")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision of this release's migrations."""
    return frozenset(rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def classify(revision: str | None) -> SchemaState:
    """Where a database at ``revision`` stands against this release: UNKNOWN is a revision
    this release has no migration for (a newer release's, during a rolling upgrade)."""
    if revision is None:
        return SchemaState.EMPTY
    if revision == head_revision():
        return SchemaState.CURRENT
    return SchemaState.BEHIND if revision in known_revisions() else SchemaState.UNKNOWN


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision, in one statement (for a probe: no inspection of tables)."""
    async with engine.connect() as connection:
        revision: str | None = (await connection.execute(_REVISION)).scalar_one_or_none()
        return revision


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _state(connection: Connection) -> tuple[SchemaState, str | None]:
    current = _current_revision(connection)
    if current is None:
        tables = set(inspect(connection).get_table_names())
        return (SchemaState.EMPTY if not tables else SchemaState.UNKNOWN), None
    return classify(current), current


async def schema_state(engine: AsyncEngine) -> tuple[SchemaState, str | None]:
    async with engine.connect() as connection:
        return await connection.run_sync(_state)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply pending migrations up to ``revision`` in one transaction."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        await connection.run_sync(_upgrade, revision)


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
