"""One transaction for a CLI command: open the database, run ``work`` in it, commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from ..bootstrap import open_database
from ..settings import Settings
from ..storage import Session, transactions
from ..storage.engine import create_sessionmaker

T = TypeVar("T")


def in_transaction(settings: Settings, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction on a fresh engine (committed when it returns, rolled
    back when it raises); a database error reaches ``server.cli.main``, which reports it."""

    async def run() -> T:
        async with open_database(settings) as engine:
            return await transactions.run(create_sessionmaker(engine), work)

    return asyncio.run(run())
