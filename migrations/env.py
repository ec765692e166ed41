"""Alembic environment: runs on a connection handed in by Ostiary, or on a URL.

``ostiary db upgrade`` passes its own connection (``config.attributes["connection"]``).
Developers writing a migration may run Alembic directly with a database URL:
``alembic -c migrations/alembic.ini -x url=sqlite+aiosqlite:///dev.db revision --autogenerate -m "..."``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from server.storage.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database with -x url=postgresql+asyncpg://... or sqlite+aiosqlite:///...")
    asyncio.run(_run_on_url(url))
