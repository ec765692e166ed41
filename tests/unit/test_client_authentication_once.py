"""A token request authenticates its client once per endpoint: a refresh that rotates ahead
asks twice (to plan the rotation, then in Authlib's grant), and must look the client up and
check its secret only once. A failure is never remembered."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from authlib.oauth2.rfc6749.errors import InvalidClientError

from server.keys.holder import KeyRingHolder
from server.oauth.bridge import OstiaryRequest, call_without_session
from server.oauth.client_auth import claimed_client_ids
from server.oauth.server import OstiaryAuthorizationServer
from server.settings import Settings
from tests.unit.test_client_auth import SECRET, basic, make_client

METHODS = ["client_secret_basic", "client_secret_post"]


class CountingClients(dict[str, Any]):
    """The prefetched clients, counting how often the server looks one up."""

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
    request.prefetched_clients = clients
    return request, clients


def authenticate(server: OstiaryAuthorizationServer, request: OstiaryRequest, endpoint: str = "token") -> Any:
    return call_without_session(request, lambda: server.authenticate_client(request, METHODS, endpoint))


def test_a_second_authentication_for_the_same_endpoint_looks_nothing_up(server: OstiaryAuthorizationServer) -> None:
    request, clients = request_with(basic("client-1:" + SECRET))
    first = authenticate(server, request)
    request.auth_method = None  # as a fresh grant would find it
    second = authenticate(server, request)
    assert first is second and first.get_client_id() == "client-1"
    assert request.auth_method == "client_secret_basic"
    assert clients.lookups == 1


def test_another_endpoint_authenticates_again(server: OstiaryAuthorizationServer) -> None:
    request, clients = request_with(basic("client-1:" + SECRET))
    authenticate(server, request)
    authenticate(server, request, "introspection")
    assert clients.lookups == 2


def test_a_failed_authentication_is_not_remembered(server: OstiaryAuthorizationServer) -> None:
    request, clients = request_with(basic("client-1:wrong-secret"))
    for _ in range(2):
        with pytest.raises(InvalidClientError) as refused:
            authenticate(server, request)
        assert refused.value.status_code == 401
    assert clients.lookups == 2


def test_the_claimed_client_ids_come_from_the_header_and_the_form_once_each() -> None:
    request, _ = request_with(basic("client-1:" + SECRET), [("client_id", "client-1"), ("client_id", "other")])
    assert claimed_client_ids(request) == ["client-1", "other"]
    empty_id = "Basic " + base64.b64encode(b":secret").decode()
    request, _ = request_with(empty_id, [("client_id", "")])
    assert claimed_client_ids(request) == []
