"""A token request's client is authenticated from the clients its endpoint looked up before
the call (``request.extras.clients``): no database, one lookup per authentication, a client
not looked up is unknown, and a failure is never remembered."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from authlib.oauth2.rfc6749.errors import InvalidClientError

from server.keys.holder import KeyRingHolder
from server.oauth.request import OstiaryRequest
from server.oauth.server import OstiaryAuthorizationServer
from server.settings import Settings
from tests.unit.test_client_auth import SECRET, basic, make_client

METHODS = ["client_secret_basic", "client_secret_post"]


class CountingClients(dict[str, Any]):
    """The looked-up clients, counting how often the server reads one."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.lookups += 1
        return super().get(key, default)


@pytest.fixture
def server() -> OstiaryAuthorizationServer:
    # client authentication reads no key: the ring can stay empty
    return OstiaryAuthorizationServer(Settings(), KeyRingHolder(None))  # type: ignore[arg-type]


def request_with(
    authorization: str, form: list[tuple[str, str]] | None = None
) -> tuple[OstiaryRequest, CountingClients]:
    request = OstiaryRequest("POST", "https://id.example.com/token", {"Authorization": authorization}, form or [])
    clients = CountingClients({"client-1": make_client().stored})
    request.extras.clients = clients
    return request, clients


def test_an_authentication_reads_the_looked_up_client_once(server: OstiaryAuthorizationServer) -> None:
    request, clients = request_with(basic("client-1:" + SECRET))
    client = server.authenticate_client(request, METHODS)
    assert client.get_client_id() == "client-1"
    assert request.auth_method == "client_secret_basic"
    assert clients.lookups == 1


def test_a_client_that_was_not_looked_up_is_unknown(server: OstiaryAuthorizationServer) -> None:
    request, _ = request_with(basic("client-1:" + SECRET))
    request.extras.clients = {}
    with pytest.raises(InvalidClientError) as refused:
        server.authenticate_client(request, METHODS)
    assert refused.value.status_code == 401


def test_a_failed_authentication_is_not_remembered(server: OstiaryAuthorizationServer) -> None:
    request, clients = request_with(basic("client-1:wrong-secret"))
    for _ in range(2):
        with pytest.raises(InvalidClientError) as refused:
            server.authenticate_client(request, METHODS)
        assert refused.value.status_code == 401
    assert clients.lookups == 2


def test_the_claimed_client_ids_come_from_the_header_and_the_form_once_each() -> None:
    request, _ = request_with(basic("client-1:" + SECRET), [("client_id", "client-1"), ("client_id", "other")])
    assert request.claimed_client_ids() == ["client-1", "other"]
    empty_id = "Basic " + base64.b64encode(b":secret").decode()
    request, _ = request_with(empty_id, [("client_id", "")])
    assert request.claimed_client_ids() == []
