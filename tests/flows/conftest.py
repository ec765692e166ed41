from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.settings import Settings
from tests.helpers import Client, TestDatabase, create_client, make_settings, serve_in_process


@dataclass
class Live:
    settings: Settings
    base_url: str
    http: httpx.AsyncClient
    client: Client

    async def jwks(self) -> dict[str, object]:
        response = await self.http.get("/jwks")
        assert response.status_code == 200
        data: dict[str, object] = response.json()
        return data


@pytest.fixture
async def live(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Live]:
    """Ostiary over real HTTP on a fresh database, with one client_credentials client."""
    settings = make_settings(database, tmp_path)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        client = await create_client(settings, audiences=["https://api.example.com", "https://billing.example.com"])
        yield Live(settings, base_url, http, client)
