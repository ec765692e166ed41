"""The periodic in-process cleanup: every ``OSTIARY_CLEANUP_INTERVAL`` seconds (0: off),
at a random offset per process, by one process at a time (an advisory lock on PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
import random

from .storage import AsyncEngine, AsyncSession, async_sessionmaker
from .storage.cleanup import sweep_if_alone

log = logging.getLogger("ostiary.cleanup")


async def run_periodically(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], interval: int, *, audit_retention_days: int
) -> None:
    await asyncio.sleep(random.uniform(0, interval))  # noqa: S311  (spreading load, not security)
    while True:
        try:
            counts = await sweep_if_alone(engine, sessionmaker, audit_retention_days=audit_retention_days)
        except Exception:  # a database that is down must not end the sweeper
            log.warning("cleanup failed; retrying in %d s", interval, exc_info=True)
        else:
            if counts and any(counts.values()):
                log.info("cleanup deleted %s", ", ".join(f"{n} {name}" for name, n in counts.items() if n))
        await asyncio.sleep(interval)
