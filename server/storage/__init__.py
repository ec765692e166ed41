"""Persistence: the only package (besides migrations/ and tests/) that imports SQLAlchemy.

Repositories are plain functions over a synchronous ``Session``: they run inside
``AsyncSession.run_sync`` (whose I/O still goes through asyncpg or aiosqlite on the event
loop), so Authlib's synchronous hooks and our async endpoints share one implementation.
"""

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

__all__ = ["AsyncEngine", "AsyncSession", "IntegrityError", "Session", "async_sessionmaker"]
