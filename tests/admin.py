"""The admin API over real HTTP: a service client allowed the admin scopes, its tokens,
and calls with them (tests/flows/test_admin_*.py). A pytest plugin (tests/conftest.py):
every test may ask for the ``admin_api`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.helpers import Client, create_client

if TYPE_CHECKING:
    from tests.flows.conftest import Live

API = "/admin/api/v1"
#: every admin scope, as a provisioning client would be registered for them
ADMIN_SCOPES = (
    "ostiary:admin",
    "ostiary:admin:clients",
    "ostiary:admin:users",
    "ostiary:admin:keys",
    "ostiary:admin:audit",
)


@dataclass
class AdminApi:
    live: Live
    #: a client_credentials client registered for every admin scope
    client: Client
    #: its token for ``ostiary:admin``
    token: str

    @property
    def http(self) -> httpx.AsyncClient:
        return self.live.http

    async def token_for(self, client: Client, scope: str) -> str:
        response = await self.http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(client.client_id, client.client_secret),
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """``method`` on ``/admin/api/v1`` + ``path`` with the admin token (or ``token``)."""
        sent = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        return await self.http.request(method, API + path, json=json, headers=sent)

    async def ok(self, method: str, path: str, **options: Any) -> Any:
        response = await self.call(method, path, **options)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem of ``status``; returns its document."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    return problem


@pytest.fixture
async def admin_api(live: Live) -> AsyncIterator[AdminApi]:
    client = await create_client(live.settings, name="provisioning", scopes=ADMIN_SCOPES)
    api = AdminApi(live, client, "")
    api.token = await api.token_for(client, "ostiary:admin")
    yield api
