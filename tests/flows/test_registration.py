"""Dynamic client registration (RFC 7591) and its management (RFC 7592) over real HTTP:
``OSTIARY_REGISTRATION`` off, with initial access tokens, and open; a stock client
(pyoidc) registering itself and then signing a user in; the metadata errors RFC 7591 §3.2.2
names; reading, replacing and deleting a registration with its registration access token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import jwt
import pytest
from oic.oic import Client as PyoidcClient
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from sqlalchemy import select

from server.clients import registration
from server.clients.service import set_disabled
from server.settings import Settings
from server.storage import Session
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import AuditEvent, Client as ClientRow
from tests.helpers import TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

T = TypeVar("T")

#: what a web app registers, in RFC 7591's names
WEB_APP: dict[str, Any] = {
    "client_name": "Photo Prints",
    "redirect_uris": [REDIRECT_URI],
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "openid profile offline_access",
    "logo_uri": "https://rp.example.com/logo.png",
}


@dataclass
class Served:
    settings: Settings
    http: httpx.AsyncClient

    async def register(self, document: dict[str, Any], token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # JSON escapes what UTF-8 cannot carry (a lone surrogate), as a client may send it
        body = json.dumps(document).encode("ascii")
        return await self.http.post("/register", content=body, headers={**headers, "Content-Type": "application/json"})

    async def db(self, work: Callable[[Session], T]) -> T:
        """``work`` in its own committed transaction, as an administrator's command runs."""
        engine = make_engine(self.settings.database_url)
        try:
            async with create_sessionmaker(engine).begin() as session:
                return await session.run_sync(work)
        finally:
            await engine.dispose()

    async def initial_token(self, *, expires_in: int | None = None, max_uses: int | None = None) -> str:
        _, token = await self.db(
            lambda db: registration.create_initial_token(db, expires_in=expires_in, max_uses=max_uses, actor="test")
        )
        return token


@asynccontextmanager
async def serving(database: TestDatabase, tmp_path: Path, mode: str, **overrides: Any) -> AsyncIterator[Served]:
    # No client cache: a deleted or changed registration is seen at once.
    settings = make_settings(database, tmp_path, registration=mode, client_cache_ttl=0, **overrides)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        yield Served(settings, http)


@pytest.fixture
async def open_server(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(database, tmp_path, "open") as served:
        yield served


@pytest.fixture
async def token_server(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(database, tmp_path, "initial-token") as served:
        yield served


def assert_error(response: httpx.Response, status: int, error: str, *mentions: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    for text in mentions:
        assert text in body["error_description"], body
    assert response.headers["cache-control"] == "no-store"


def assert_bad_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] in ("invalid_token", "invalid_request")


async def code_flow(served: Served, client_id: str, client_secret: str) -> tuple[httpx.Response, dict[str, Any]]:
    """alice signs in to the client and allows it; returns the consent page and the tokens."""
    browser, flow = Browser(served.http), Flow.start(client_id)
    page = await browser.sign_in(await browser.authorize(**flow.params(scope="openid profile")), "alice")
    consent = page
    assert 'name="decision"' in consent.text, consent.text
    page = await browser.submit(consent, decision="allow")
    assert page.status_code in (302, 303), page.text
    code = query_of(page.headers["location"])["code"]
    response = await served.http.post("/token", data=flow.token_form(code), auth=(client_id, client_secret))
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return consent, tokens


# A stock RFC 7591 client.


async def test_a_stock_client_registers_itself_and_signs_a_user_in(open_server: Served) -> None:
    await create_user(open_server.settings, "alice")

    def register() -> PyoidcClient:
        # pyoidc is synchronous (requests): it runs in a thread while the server serves here
        client = PyoidcClient(client_authn_method=CLIENT_AUTHN_METHOD)
        client.provider_config(open_server.settings.issuer)
        client.register(
            client.provider_info["registration_endpoint"],
            redirect_uris=[REDIRECT_URI],
            client_name="Photo Prints",
            contacts=["ops@rp.example.com"],  # metadata Ostiary does not keep: ignored (RFC 7591 §2)
        )
        return client

    client = await anyio.to_thread.run_sync(register)
    answer = client.registration_response
    assert client.client_id and client.client_secret
    assert answer["registration_client_uri"] == f"{open_server.settings.issuer}/register/{client.client_id}"
    assert answer["client_secret_expires_at"] == 0
    assert answer["redirect_uris"] == [REDIRECT_URI]
    assert answer["token_endpoint_auth_method"] == "client_secret_basic"
    assert "contacts" not in answer

    consent, tokens = await code_flow(open_server, client.client_id, client.client_secret)
    assert "Allow Photo Prints?" in consent.text  # never first-party: the user is asked
    assert 'id="client-unverified"' in consent.text, "nobody here vouches for the name it chose"
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["aud"] == client.client_id

    read = await open_server.http.get(
        answer["registration_client_uri"],
        headers={"Authorization": f"Bearer {answer['registration_access_token']}"},
    )
    assert read.status_code == 200, read.text
    assert read.json()["client_name"] == "Photo Prints" and "client_secret" not in read.json()


# OSTIARY_REGISTRATION=off (the default), initial-token and open.


async def test_off_registration_has_no_endpoint_and_is_not_advertised(database: TestDatabase, tmp_path: Path) -> None:
    async with serving(database, tmp_path, "off") as served:
        assert "registration_endpoint" not in (await served.http.get("/.well-known/openid-configuration")).json()
        assert_error(await served.register(WEB_APP), 404, "invalid_request", "not enabled")
        read = await served.http.get("/register/some-client", headers={"Authorization": "Bearer x"})
        assert_error(read, 404, "invalid_request")
        count = await served.db(lambda db: len(db.execute(select(ClientRow.client_id)).all()))
        assert count == 0


async def test_open_registration_is_advertised_and_needs_no_token(open_server: Served) -> None:
    metadata = (await open_server.http.get("/.well-known/openid-configuration")).json()
    assert metadata["registration_endpoint"] == f"{open_server.settings.issuer}/register"
    response = await open_server.register(WEB_APP)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"


async def test_initial_token_mode_refuses_a_missing_or_unknown_token(token_server: Served) -> None:
    assert_bad_token(await token_server.register(WEB_APP))
    assert_bad_token(await token_server.register(WEB_APP, "not-a-token"))
    unknown = await token_server.register(WEB_APP, "not-a-token")
    assert unknown.json()["error"] == "invalid_token"
    assert unknown.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_an_initial_token_registers_up_to_its_max_uses(token_server: Served) -> None:
    token = await token_server.initial_token(max_uses=2)
    first = await token_server.register(WEB_APP, token)
    second = await token_server.register({**WEB_APP, "client_name": "Second"}, token)
    assert first.status_code == second.status_code == 201
    assert first.json()["client_id"] != second.json()["client_id"]
    assert_bad_token(await token_server.register(WEB_APP, token))  # used up


async def test_a_refused_registration_does_not_spend_a_use(token_server: Served) -> None:
    token = await token_server.initial_token(max_uses=1)
    bad = await token_server.register({**WEB_APP, "redirect_uris": ["http://rp.example.com/cb"]}, token)
    assert_error(bad, 400, "invalid_redirect_uri")
    assert (await token_server.register(WEB_APP, token)).status_code == 201
    assert_bad_token(await token_server.register(WEB_APP, token))


async def test_concurrent_registrations_never_exceed_max_uses(token_server: Served) -> None:
    token = await token_server.initial_token(max_uses=2)
    answers = await asyncio.gather(
        *(token_server.register({**WEB_APP, "client_name": f"App {i}"}, token) for i in range(6))
    )
    assert sorted(answer.status_code for answer in answers) == [201, 201, 401, 401, 401, 401]
    tokens = await token_server.db(registration.list_initial_tokens)
    assert [t.uses for t in tokens] == [2]


async def test_expired_and_revoked_initial_tokens_are_refused(token_server: Served) -> None:
    expiring = await token_server.initial_token(expires_in=1)
    revoked = await token_server.initial_token()
    (_, revoked_id) = sorted((t.created_at, t.id) for t in await token_server.db(registration.list_initial_tokens))[-1]
    assert await token_server.db(lambda db: registration.revoke_initial_token(db, revoked_id, actor="test"))
    assert_bad_token(await token_server.register(WEB_APP, revoked))
    await asyncio.sleep(1.2)
    assert_bad_token(await token_server.register(WEB_APP, expiring))
    assert (await token_server.register(WEB_APP, await token_server.initial_token())).status_code == 201


async def test_registrations_per_address_are_limited(database: TestDatabase, tmp_path: Path) -> None:
    async with serving(database, tmp_path, "open", rate_limit_register=2) as served:
        assert (await served.register(WEB_APP)).status_code == 201
        assert_error(await served.register({"redirect_uris": "x"}), 400, "invalid_redirect_uri")  # counts too
        limited = await served.register(WEB_APP)
        assert_error(limited, 429, "temporarily_unavailable")
        assert 0 < int(limited.headers["retry-after"]) <= 60


# The response, and what a self-registered client is.


async def test_the_response_has_the_registered_metadata_and_the_credentials(open_server: Served) -> None:
    response = await open_server.register(
        {
            **WEB_APP,
            "policy_uri": "https://rp.example.com/privacy",
            "tos_uri": "https://rp.example.com/terms",
            "backchannel_logout_uri": "https://rp.example.com/backchannel",
            "backchannel_logout_session_required": True,
        }
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_name"] == "Photo Prints"
    assert body["redirect_uris"] == [REDIRECT_URI]
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["scope"] == "openid profile offline_access"
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["logo_uri"] == "https://rp.example.com/logo.png"
    assert body["policy_uri"] == "https://rp.example.com/privacy"
    assert body["tos_uri"] == "https://rp.example.com/terms"
    assert body["backchannel_logout_uri"] == "https://rp.example.com/backchannel"
    assert body["backchannel_logout_session_required"] is True
    assert abs(body["client_id_issued_at"] - time.time()) < 60
    assert body["client_secret_expires_at"] == 0 and len(body["client_secret"]) >= 43
    assert len(body["registration_access_token"]) >= 43
    assert body["registration_client_uri"].endswith("/register/" + body["client_id"])
    row = await open_server.db(
        lambda db: db.execute(select(ClientRow).where(ClientRow.client_id == body["client_id"])).scalar_one()
    )
    assert not row.first_party and not row.introspection and row.audiences == []
    assert row.registration_token_digest is not None and len(row.registration_token_digest) == 32
    # it works at the token endpoint with its secret, as it registered: in the Authorization header
    await create_user(open_server.settings, "alice")
    await code_flow(open_server, body["client_id"], body["client_secret"])


async def test_a_public_client_registers_without_a_secret(open_server: Served) -> None:
    response = await open_server.register(
        {
            "client_name": "Browser App",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "allowed_cors_origins": ["https://rp.example.com"],
        }
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert "client_secret" not in body and "client_secret_expires_at" not in body
    assert body["token_endpoint_auth_method"] == "none"
    assert body["allowed_cors_origins"] == ["https://rp.example.com"]
    assert body["grant_types"] == ["authorization_code"] and body["scope"] == "openid profile email"


async def test_defaults_and_a_name_for_a_client_that_gave_none(open_server: Served) -> None:
    response = await open_server.register({"redirect_uris": [REDIRECT_URI]})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_name"] == "rp.example.com"
    assert body["grant_types"] == ["authorization_code"] and body["response_types"] == ["code"]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"


async def test_registration_is_audited(open_server: Served) -> None:
    client_id = (await open_server.register(WEB_APP)).json()["client_id"]
    query = select(AuditEvent.kind, AuditEvent.actor, AuditEvent.client_id).where(AuditEvent.kind.like("client.%"))
    rows = await open_server.db(lambda db: db.execute(query).all())
    assert [tuple(row) for row in rows] == [("client.created", "registration", client_id)]


# Metadata errors (RFC 7591 §3.2.2).


@pytest.mark.parametrize(
    "changes, error, mentions",
    [
        ({"redirect_uris": ["http://rp.example.com/cb"]}, "invalid_redirect_uri", "redirect_uris"),
        ({"redirect_uris": ["https://rp.example.com/cb#x"]}, "invalid_redirect_uri", "fragment"),
        ({"redirect_uris": []}, "invalid_redirect_uri", "redirect_uris"),
        ({"redirect_uris": "https://rp.example.com/cb"}, "invalid_redirect_uri", "array"),
        ({"grant_types": ["client_credentials"]}, "invalid_client_metadata", "grant_types"),
        ({"grant_types": ["password"]}, "invalid_client_metadata", "grant_types"),
        ({"response_types": ["token"]}, "invalid_client_metadata", "response_types"),
        ({"scope": "openid api:write"}, "invalid_client_metadata", "scope"),
        ({"token_endpoint_auth_method": "client_secret_jwt"}, "invalid_client_metadata", "token_endpoint_auth_method"),
        ({"logo_uri": "http://rp.example.com/logo.png"}, "invalid_client_metadata", "logo_uri"),
        ({"policy_uri": "javascript:alert(1)"}, "invalid_client_metadata", "policy_uri"),
        ({"tos_uri": 42}, "invalid_client_metadata", "tos_uri"),
        ({"client_name": ""}, "invalid_client_metadata", "client_name"),
        ({"allowed_cors_origins": ["https://rp.example.com"]}, "invalid_client_metadata", "allowed_cors_origins"),
        ({"backchannel_logout_session_required": "yes"}, "invalid_client_metadata", "backchannel_logout"),
        ({"backchannel_logout_uri": "http://127.0.0.1:9000/logout"}, "invalid_client_metadata", "backchannel"),
        ({"backchannel_logout_uri": "https://127.0.0.1:6379/"}, "invalid_client_metadata", "backchannel"),
        ({"backchannel_logout_uri": "https://169.254.169.254/x"}, "invalid_client_metadata", "backchannel"),
        ({"backchannel_logout_uri": "https://10.1.2.3/logout"}, "invalid_client_metadata", "backchannel"),
        ({"backchannel_logout_uri": "https://[::1]/logout"}, "invalid_client_metadata", "backchannel"),
        ({"backchannel_logout_uri": "https://intranet/logout"}, "invalid_client_metadata", "backchannel"),
        ({"client_name": "a\u0000b"}, "invalid_client_metadata", "client_name"),
        ({"client_name": "a\ud800b"}, "invalid_client_metadata", "client_name"),
        ({"logo_uri": "https://rp.example.com/\u0001.png"}, "invalid_client_metadata", "logo_uri"),
        ({"redirect_uris": ["https://rp.example.com/cb\u0000"]}, "invalid_redirect_uri", "redirect_uris"),
    ],
)
async def test_bad_metadata_is_refused_naming_it(
    open_server: Served, changes: dict[str, Any], error: str, mentions: str
) -> None:
    response = await open_server.register({**WEB_APP, **changes})
    assert_error(response, 400, error, mentions)
    count = await open_server.db(lambda db: len(db.execute(select(ClientRow.client_id)).all()))
    assert count == 0


@pytest.mark.parametrize(
    "content, content_type",
    [("{", "application/json"), ("[]", "application/json"), ("client_name=x", "application/x-www-form-urlencoded")],
)
async def test_a_body_that_is_not_a_json_object_is_invalid_request(
    open_server: Served, content: str, content_type: str
) -> None:
    response = await open_server.http.post("/register", content=content, headers={"Content-Type": content_type})
    assert_error(response, 400, "invalid_request")


# RFC 7592: reading, replacing and deleting a registration.


async def registered(served: Served, document: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await served.register(document or WEB_APP)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(body: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['registration_access_token']}"}


async def test_a_client_reads_its_registration(open_server: Served) -> None:
    body = await registered(open_server)
    read = await open_server.http.get(body["registration_client_uri"], headers=bearer(body))
    assert read.status_code == 200, read.text
    expected = {key: value for key, value in body.items() if key != "client_secret"}
    assert read.json() == expected
    assert read.headers["cache-control"] == "no-store"


async def test_a_wrong_or_another_clients_token_is_refused(open_server: Served) -> None:
    mine, theirs = await registered(open_server), await registered(open_server)
    uri = mine["registration_client_uri"]
    assert_bad_token(await open_server.http.get(uri))
    assert_bad_token(await open_server.http.get(uri, headers={"Authorization": "Bearer wrong"}))
    for method in ("GET", "PUT", "DELETE"):
        response = await open_server.http.request(method, uri, headers=bearer(theirs), json={**WEB_APP})
        assert response.status_code == 401 and response.json()["error"] == "invalid_token", response.text
    # nor is the client's secret a registration access token
    assert_bad_token(await open_server.http.get(uri, headers={"Authorization": f"Bearer {mine['client_secret']}"}))
    assert_bad_token(await open_server.http.get("/register/unknown-client", headers=bearer(mine)))


async def test_an_update_replaces_the_metadata(open_server: Served) -> None:
    body = await registered(open_server)
    update = {
        "client_id": body["client_id"],
        "client_name": "Photo Prints 2",
        "redirect_uris": ["https://rp.example.com/v2/callback"],
        "scope": "openid",
    }
    response = await open_server.http.put(body["registration_client_uri"], json=update, headers=bearer(body))
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["client_name"] == "Photo Prints 2"
    assert updated["redirect_uris"] == ["https://rp.example.com/v2/callback"]
    assert updated["grant_types"] == ["authorization_code"]  # left out: the default, not the old value
    assert "logo_uri" not in updated
    assert updated["registration_access_token"] == body["registration_access_token"]
    assert updated["token_endpoint_auth_method"] == "client_secret_basic"
    read = await open_server.http.get(body["registration_client_uri"], headers=bearer(body))
    assert read.json() == updated


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"client_id": "someone-else"}, "invalid_request"),
        ({"client_id": None}, "invalid_request"),
        ({"registration_access_token": "x"}, "invalid_request"),
        ({"client_id_issued_at": 0}, "invalid_request"),
        ({"client_secret": "not-the-secret"}, "invalid_request"),
        ({"redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri"),
        ({"grant_types": ["client_credentials"]}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "none"}, "invalid_client_metadata"),
    ],
)
async def test_a_bad_update_changes_nothing(open_server: Served, changes: dict[str, Any], error: str) -> None:
    body = await registered(open_server)
    update = {**WEB_APP, "client_id": body["client_id"], **changes}
    update = {key: value for key, value in update.items() if value is not None}
    response = await open_server.http.put(body["registration_client_uri"], json=update, headers=bearer(body))
    assert_error(response, 400, error)
    read = await open_server.http.get(body["registration_client_uri"], headers=bearer(body))
    assert read.json() == {key: value for key, value in body.items() if key != "client_secret"}


async def test_an_update_may_repeat_the_current_secret(open_server: Served) -> None:
    body = await registered(open_server)
    update = {**WEB_APP, "client_id": body["client_id"], "client_secret": body["client_secret"]}
    response = await open_server.http.put(body["registration_client_uri"], json=update, headers=bearer(body))
    assert response.status_code == 200, response.text


async def test_a_deleted_registration_ends_the_client(open_server: Served) -> None:
    body = await registered(open_server)
    await create_user(open_server.settings, "alice")
    _, tokens = await code_flow(open_server, body["client_id"], body["client_secret"])
    deleted = await open_server.http.delete(body["registration_client_uri"], headers=bearer(body))
    assert deleted.status_code == 204 and deleted.content == b""
    assert_bad_token(await open_server.http.get(body["registration_client_uri"], headers=bearer(body)))
    refresh = await open_server.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(body["client_id"], body["client_secret"]),
    )
    assert refresh.status_code == 401 and refresh.json()["error"] == "invalid_client"
    kinds = await open_server.db(lambda db: db.execute(select(AuditEvent.kind, AuditEvent.actor)).all())
    assert ("client.deleted", "registration") in [tuple(row) for row in kinds]


async def test_a_disabled_client_cannot_manage_its_registration(open_server: Served) -> None:
    body = await registered(open_server)
    await open_server.db(
        lambda db: set_disabled(db, body["client_id"], True, actor="cli")  # an administrator's decision
    )
    for method in ("GET", "PUT", "DELETE"):
        response = await open_server.http.request(
            method, body["registration_client_uri"], headers=bearer(body), json={**WEB_APP}
        )
        assert response.status_code == 401 and response.json()["error"] == "invalid_token", response.text
    still = await open_server.db(lambda db: db.execute(select(ClientRow.disabled_at)).scalar_one())
    assert still is not None


async def test_an_administrators_client_cannot_be_managed_at_register(open_server: Served) -> None:
    client = await create_client(open_server.settings)
    for token in ("x", client.client_secret):
        response = await open_server.http.get(
            f"/register/{client.client_id}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
