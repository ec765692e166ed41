"""Fixtures of the repository contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.storage.engine import create_sessionmaker, make_engine
from tests.helpers import Db, TestDatabase


@pytest.fixture
async def db(database: TestDatabase) -> AsyncIterator[Db]:
    """The test's database, one committed transaction per call."""
    engine = make_engine(database.url)
    try:
        yield Db(create_sessionmaker(engine))
    finally:
        await engine.dispose()
