"""Pushed authorization requests (RFC 9126) over real HTTP: a client pushes its request to
``/par`` (authenticated as at ``/token``), then sends the browser to ``/authorize`` with
nothing but its ``client_id`` and the ``request_uri`` it got back.

A push is checked as ``/authorize`` checks a request, but refused with RFC 6749 §5.2 JSON
(RFC 9126 §2.3); a ``request_uri`` that cannot be used is an error page, never a redirect;
a client (or, with ``OSTIARY_REQUIRE_PAR``, every client) may be required to push.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import update

from server.clients import service
from server.storage.base import utcnow
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import PushedAuthorizationRequest
from tests.flows.conftest import Live, SignIn
from tests.flows.test_refresh_tokens import run_sql
from tests.helpers import Client, Db, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

SCOPES = ["openid", "profile", "email"]
REQUEST_URI = re.compile(r"^urn:ietf:params:oauth:request_uri:[A-Za-z0-9_-]{43}$")


# -- helpers ---------------------------------------------------------------------------


async def push(
    http: httpx.AsyncClient, client: Client, form: dict[str, str], *, public: bool = False
) -> httpx.Response:
    """``POST /par``: with the client's secret in a Basic header, or as a public client."""
    if public:
        return await http.post("/par", data={"client_id": client.client_id, **form})
    return await http.post("/par", data=form, auth=(client.client_id, client.client_secret))


async def pushed_uri(http: httpx.AsyncClient, client: Client, form: dict[str, str], *, public: bool = False) -> str:
    response = await push(http, client, form, public=public)
    assert response.status_code == 201, response.text
    request_uri: str = response.json()["request_uri"]
    return request_uri


def push_form(flow: Flow, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The flow's authorization request as a push: no ``client_id`` (the client authenticates)."""
    params = {key: value for key, value in flow.params(**extra).items() if key not in drop}
    params.pop("client_id")
    return params


def assert_push_refused(response: httpx.Response, error: str, status: int = 400) -> dict[str, Any]:
    """An RFC 6749 §5.2 error in JSON, never a redirect."""
    assert response.status_code == status, (response.status_code, response.text)
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert "state" not in body
    return body


def assert_error_page(response: httpx.Response, error: str) -> None:
    """An error shown to the user, never a redirect to anywhere."""
    assert response.status_code == 400, (response.status_code, response.headers, response.text)
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in response.text
    assert f"({error})" in response.text
    assert "code=" not in response.text


async def finish(signin: SignIn, page: httpx.Response) -> httpx.Response:
    """Sign in and consent on the pages ``page`` leads to; the response that leaves Ostiary."""
    if page.status_code == 200 and 'name="password"' in page.text:
        page = await signin.browser.sign_in(page, signin.username)
    if page.status_code == 200 and 'name="decision"' in page.text:
        page = await signin.browser.submit(page, decision="allow")
    return page


async def code_through_par(signin: SignIn, flow: Flow, request_uri: str) -> str:
    page = await signin.browser.authorize(client_id=flow.client_id, request_uri=request_uri)
    response = await finish(signin, page)
    assert response.status_code in (302, 303), response.text
    params = query_of(response.headers["location"])
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    assert params["state"] == flow.state
    assert params["iss"] == signin.live.settings.issuer
    return params["code"]


async def age(settings: Any, seconds: int) -> None:
    """Every pushed request now expired ``seconds`` ago."""
    engine = make_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            expired = utcnow() - timedelta(seconds=seconds)
            await session.execute(update(PushedAuthorizationRequest).values(expires_at=expired))
    finally:
        await engine.dispose()


async def require_push(settings: Any, client: Client) -> None:
    """The client's registration changed as ``ostiary clients update
    --require-pushed-authorization-requests`` changes it."""
    engine = make_engine(settings.database_url)
    try:
        changes = {"require_pushed_authorization_requests": True}
        await Db(create_sessionmaker(engine))(lambda db: service.update(db, client.client_id, changes, actor="test"))
    finally:
        await engine.dispose()


async def public_client(live: Live) -> Client:
    return await create_client(
        live.settings,
        name="Photo Viewer",
        grant_types=["authorization_code"],
        scopes=SCOPES,
        redirect_uris=[REDIRECT_URI],
        public=True,
    )


# -- the flow --------------------------------------------------------------------------


async def test_a_code_flow_through_a_pushed_request(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    response = await push(signin.http, signin.rp, push_form(flow))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"request_uri", "expires_in"}
    assert REQUEST_URI.match(body["request_uri"]), body
    assert body["expires_in"] == signin.live.settings.par_ttl == 60

    code = await code_through_par(signin, flow, body["request_uri"])
    tokens = await signin.http.post(
        "/token", data=flow.token_form(code), auth=(signin.rp.client_id, signin.rp.client_secret)
    )
    assert tokens.status_code == 200, tokens.text
    assert {"access_token", "id_token"} <= set(tokens.json())


async def test_a_public_client_pushes_too(signin: SignIn) -> None:
    viewer = await public_client(signin.live)
    flow = Flow.start(viewer.client_id)
    request_uri = await pushed_uri(signin.http, viewer, push_form(flow), public=True)
    code = await code_through_par(signin, flow, request_uri)
    form = {**flow.token_form(code), "client_id": viewer.client_id}
    tokens = await signin.http.post("/token", data=form)
    assert tokens.status_code == 200, tokens.text


async def test_a_push_may_name_its_own_client_and_its_secret_is_not_kept(signin: SignIn) -> None:
    poster = await create_client(
        signin.live.settings,
        grant_types=["authorization_code"],
        scopes=SCOPES,
        redirect_uris=[REDIRECT_URI],
        token_endpoint_auth_method="client_secret_post",
    )
    flow = Flow.start(poster.client_id)
    form = {**push_form(flow), "client_id": poster.client_id, "client_secret": poster.client_secret}
    response = await signin.http.post("/par", data=form)
    assert response.status_code == 201, response.text
    (stored,) = await run_sql(signin.live.settings, "SELECT parameters FROM pushed_authorization_requests")
    parameters = stored[0] if isinstance(stored[0], dict) else json.loads(stored[0])
    assert parameters["client_id"] == poster.client_id
    assert "client_secret" not in parameters
    assert parameters["code_challenge"] == flow.challenge


async def test_query_parameters_beside_the_request_uri_are_ignored(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    request_uri = await pushed_uri(signin.http, signin.rp, push_form(flow))
    page = await signin.browser.authorize(
        client_id=signin.rp.client_id,
        request_uri=request_uri,
        redirect_uri="https://attacker.example/callback",
        state="attacker-state",
        scope="openid",
        prompt="none",
        code_challenge="x" * 43,
    )
    response = await finish(signin, page)  # prompt=none would have been login_required
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    params = query_of(location)
    assert params["state"] == flow.state
    tokens = await signin.http.post(
        "/token", data=flow.token_form(params["code"]), auth=(signin.rp.client_id, signin.rp.client_secret)
    )
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"].split() == SCOPES


async def test_prompt_none_is_checked_when_the_browser_comes(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    request_uri = await pushed_uri(signin.http, signin.rp, push_form(flow, prompt="none"))
    response = await signin.browser.authorize(client_id=signin.rp.client_id, request_uri=request_uri)
    assert response.status_code == 302, response.text
    params = query_of(response.headers["location"])
    assert params["error"] == "login_required"
    assert params["state"] == flow.state


# -- refused pushes ----------------------------------------------------------------------


async def test_a_push_with_a_wrong_secret_or_from_an_unknown_client_is_401(signin: SignIn) -> None:
    form = push_form(Flow.start(signin.rp.client_id))
    wrong = Client(signin.rp.client_id, "not-the-secret")
    response = await push(signin.http, wrong, form)
    assert_push_refused(response, "invalid_client", 401)
    assert response.headers["www-authenticate"].startswith("Basic")
    assert_push_refused(await push(signin.http, Client("no-such-client", ""), form, public=True), "invalid_client", 401)
    # a confidential client cannot push as a public one, naming itself without its secret
    assert_push_refused(await push(signin.http, signin.rp, form, public=True), "invalid_client", 401)
    assert await run_sql(signin.live.settings, "SELECT digest FROM pushed_authorization_requests") == []


REFUSALS: dict[str, tuple[dict[str, str], tuple[str, ...], str]] = {
    "an unregistered redirect_uri": ({"redirect_uri": "https://rp.example.com/other"}, (), "invalid_request"),
    "no redirect_uri": ({}, ("redirect_uri",), "invalid_request"),
    "no code_challenge": ({}, ("code_challenge",), "invalid_request"),
    "code_challenge_method=plain": ({"code_challenge_method": "plain"}, (), "invalid_request"),
    "an unknown scope": ({"scope": "openid photos:delete"}, (), "invalid_scope"),
    "response_type=token": ({"response_type": "token"}, (), "unsupported_response_type"),
    "a request_uri": ({"request_uri": "urn:ietf:params:oauth:request_uri:abc"}, (), "invalid_request"),
    "a request object": ({"request": "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9."}, (), "request_not_supported"),
    "response_mode=jwt": ({"response_mode": "jwt"}, (), "invalid_request"),
    "max_age=abc": ({"max_age": "abc"}, (), "invalid_request"),
    "an id_token_hint not issued here": ({"id_token_hint": "not.a.token"}, (), "invalid_request"),
}


async def test_a_push_is_checked_as_an_authorization_request_and_refused_in_json(signin: SignIn) -> None:
    # one server for every case: each is a request of its own, and none may store anything
    for case, (extra, drop, error) in REFUSALS.items():
        form = push_form(Flow.start(signin.rp.client_id), drop, **extra)
        response = await push(signin.http, signin.rp, form)
        try:
            assert_push_refused(response, error)
        except AssertionError as failure:
            raise AssertionError(f"{case}: {failure}") from None
    assert await run_sql(signin.live.settings, "SELECT digest FROM pushed_authorization_requests") == []


async def test_a_push_naming_another_client_is_refused(signin: SignIn) -> None:
    other = await public_client(signin.live)
    form = {**push_form(Flow.start(signin.rp.client_id)), "client_id": other.client_id}
    response = await push(signin.http, signin.rp, form)
    # the Basic header's client authenticates; the body names another one
    assert_push_refused(response, "invalid_request")


async def test_a_repeated_parameter_is_refused(signin: SignIn) -> None:
    form = [*push_form(Flow.start(signin.rp.client_id)).items(), ("scope", "openid")]
    response = await signin.http.post(
        "/par",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(signin.rp.client_id, signin.rp.client_secret),
    )
    assert_push_refused(response, "invalid_request")


async def test_par_takes_post_only(signin: SignIn) -> None:
    response = await signin.http.get("/par")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


# -- request_uri at /authorize ---------------------------------------------------------


async def test_a_request_uri_serves_once(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    request_uri = await pushed_uri(signin.http, signin.rp, push_form(flow))
    first = await signin.browser.authorize(client_id=signin.rp.client_id, request_uri=request_uri)
    assert 'name="password"' in first.text, first.text
    again = await signin.browser.authorize(client_id=signin.rp.client_id, request_uri=request_uri)
    assert_error_page(again, "invalid_request_uri")
    # the first one's sign-in still completes: the request was kept with its interaction
    response = await finish(signin, first)
    assert query_of(response.headers["location"])["state"] == flow.state


async def test_another_clients_request_uri_is_an_error_page_and_stays_its_own(signin: SignIn) -> None:
    other = await public_client(signin.live)
    flow = Flow.start(signin.rp.client_id)
    request_uri = await pushed_uri(signin.http, signin.rp, push_form(flow))
    response = await signin.browser.authorize(
        client_id=other.client_id, request_uri=request_uri, redirect_uri=REDIRECT_URI
    )
    assert_error_page(response, "invalid_request_uri")
    await code_through_par(signin, flow, request_uri)


async def test_an_unknown_or_malformed_request_uri_is_an_error_page(signin: SignIn) -> None:
    client_id = signin.rp.client_id
    for request_uri in ("urn:ietf:params:oauth:request_uri:" + "A" * 43, "urn:ietf:params:oauth:request_uri:"):
        # a registered redirect_uri beside it changes nothing: never a redirect
        response = await signin.browser.authorize(
            client_id=client_id, request_uri=request_uri, redirect_uri=REDIRECT_URI
        )
        assert_error_page(response, "invalid_request_uri")
    response = await signin.browser.authorize(request_uri="urn:ietf:params:oauth:request_uri:abc")
    assert_error_page(response, "invalid_request")


async def test_a_request_uri_of_another_form_is_still_not_supported(signin: SignIn) -> None:
    """A URL is a request object by reference (OIDC Core §6.2), which is not served."""
    flow = Flow.start(signin.rp.client_id)
    response = await signin.browser.authorize(**flow.params(request_uri="https://rp.example.com/request.jwt"))
    assert response.status_code == 302, response.text
    assert query_of(response.headers["location"])["error"] == "request_uri_not_supported"


async def test_an_expired_request_uri_is_an_error_page(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, par_ttl=10)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        rp = await create_client(
            settings, grant_types=["authorization_code"], scopes=SCOPES, redirect_uris=[REDIRECT_URI]
        )
        response = await push(http, rp, push_form(Flow.start(rp.client_id)))
        assert response.status_code == 201, response.text
        assert response.json()["expires_in"] == 10
        await age(settings, 1)
        page = await Browser(http).authorize(client_id=rp.client_id, request_uri=response.json()["request_uri"])
        assert_error_page(page, "invalid_request_uri")


# -- requiring pushed requests (RFC 9126 §6) ---------------------------------------------


async def test_a_client_required_to_push_is_refused_without_a_request_uri(signin: SignIn) -> None:
    await require_push(signin.live.settings, signin.rp)
    flow = Flow.start(signin.rp.client_id)
    response = await signin.browser.authorize(**flow.params())
    assert response.status_code == 302, response.text
    params = query_of(response.headers["location"])
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    assert params["error"] == "invalid_request"
    assert "pushed authorization request is required" in params["error_description"]
    assert params["state"] == flow.state
    # an unregistered redirect URI: the error page
    unregistered = await signin.browser.authorize(**flow.params(redirect_uri="https://attacker.example/cb"))
    assert_error_page(unregistered, "invalid_request")
    # pushed, it goes through
    await code_through_par(signin, flow, await pushed_uri(signin.http, signin.rp, push_form(flow)))


async def test_the_setting_requires_every_client_to_push(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, require_par=True)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        rp = await create_client(
            settings, grant_types=["authorization_code"], scopes=SCOPES, redirect_uris=[REDIRECT_URI]
        )
        await create_user(settings, "alice")
        metadata = (await http.get("/.well-known/openid-configuration")).json()
        assert metadata["require_pushed_authorization_requests"] is True
        flow = Flow.start(rp.client_id)
        browser = Browser(http)
        refused = await browser.authorize(**flow.params())
        assert query_of(refused.headers["location"])["error"] == "invalid_request"
        signin = SignIn(Live(settings, base_url, http, rp), rp, "alice", browser)
        await code_through_par(signin, flow, await pushed_uri(http, rp, push_form(flow)))


# -- discovery -------------------------------------------------------------------------


async def test_discovery_names_the_endpoint(live: Live) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        metadata = (await live.http.get(path)).json()
        assert metadata["pushed_authorization_request_endpoint"] == live.settings.issuer + "/par"
        assert metadata["require_pushed_authorization_requests"] is False
        # about request objects by reference, not pushed requests
        assert metadata["request_uri_parameter_supported"] is False
