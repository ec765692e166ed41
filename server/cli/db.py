"""``ostiary db upgrade``, ``ostiary db check`` and ``ostiary db cleanup``."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..bootstrap import StartupError, connect_checked, open_database
from ..observe.logs import configure_logging
from ..settings import Settings
from ..storage import cleanup, migrate
from ..storage.engine import create_engine, create_sessionmaker


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("db", help="database schema")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply pending migrations")
    upgrade.set_defaults(run=run_upgrade)
    check = actions.add_parser(
        "check", help="tell whether the schema is current (exit 0), behind or empty (3), or not this release's (1)"
    )
    check.set_defaults(run=run_check)
    cleanup = actions.add_parser("cleanup", help="delete expired codes, tokens, sessions (in bounded batches)")
    cleanup.set_defaults(run=run_cleanup)


def run_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    configure_logging(settings)
    asyncio.run(_upgrade(settings))
    return 0


async def _upgrade(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await connect_checked(engine, settings)
        state, revision = await migrate.schema_state(engine)
        if state is migrate.SchemaState.UNKNOWN:
            raise StartupError(
                f"the database holds tables that are not Ostiary's, or a newer schema (revision {revision})"
            )
        await migrate.upgrade(engine)
        print(f"database at revision {migrate.head_revision()}")
    finally:
        await engine.dispose()


#: ``db check``'s exit status for a schema that ``db upgrade`` would bring up to date
EXIT_BEHIND = 3


def run_check(settings: Settings, args: argparse.Namespace) -> int:
    configure_logging(settings)
    state, revision = asyncio.run(_state(settings))
    head = migrate.head_revision()
    if state is migrate.SchemaState.CURRENT:
        print(f"current: the database is at revision {head}, this release's head")
        return 0
    if state is migrate.SchemaState.EMPTY:
        print(f"empty: no schema yet; `ostiary db upgrade` creates it (revision {head})")
        return EXIT_BEHIND
    if state is migrate.SchemaState.BEHIND:
        print(f"behind: the database is at revision {revision}, this release needs {head}: run `ostiary db upgrade`")
        return EXIT_BEHIND
    print(
        f"unknown: the database is at revision {revision or '(none)'}, which this release does not know: "
        "a newer release's schema, or tables that are not Ostiary's"
    )
    return 1


async def _state(settings: Settings) -> tuple[migrate.SchemaState, str | None]:
    engine = create_engine(settings)
    try:
        await connect_checked(engine, settings)
        return await migrate.schema_state(engine)
    finally:
        await engine.dispose()


def run_cleanup(settings: Settings, args: argparse.Namespace) -> int:
    configure_logging(settings)
    counts = asyncio.run(_cleanup(settings))
    for name, count in counts.items():
        print(f"{name}: {count} deleted")
    return 0


async def _cleanup(settings: Settings) -> dict[str, int]:
    async with open_database(settings) as engine:
        return await cleanup.sweep(create_sessionmaker(engine), audit_retention_days=settings.audit_retention_days)
