"""The admin API's OpenAPI 3.1 document (``server/admin/openapi.json``) against the API that
exists.

The document must be valid OpenAPI 3.1; it must describe exactly the operations the
resources' table (``server.admin.resources.ROUTES``) and the app's routes hold, so a route
without documentation, or documentation without a route, fails here; it is served at
``/admin/api/v1/openapi.json``; and what real calls answer, successes and refusals alike,
is what the document says they answer: a status it lists, its media type, a body its
schema accepts, the headers it names.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

from server.admin.principal import SCOPE, SCOPES
from server.admin.resources import ROUTES
from server.app import create_app
from server.settings import Settings
from server.web.admin_api import OPENAPI, PREFIX
from tests.admin import ADMIN_SCOPES, AdminApi, admin_api, assert_problem  # noqa: F401
from tests.flows.conftest import Live, SignIn
from tests.helpers import TestDatabase, create_client, make_settings, serve_in_process
from tests.oidc import Flow

pytestmark = pytest.mark.anyio

DOCUMENT: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
#: the document as a JSON Schema resource, so that response schemas' ``$ref`` resolve in it
BASE = "urn:ostiary:admin-openapi"
REGISTRY: Registry[Any] = Registry().with_resource(BASE, Resource.from_contents(DOCUMENT, DRAFT202012))
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: the one operation every caller may read (it describes the API, not its data)
PUBLIC = ("GET", "/openapi.json")


def operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item if method in HTTP_METHODS
    }


def operation_of(method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = DOCUMENT["paths"][path][method.lower()]
    return found


def resolved(node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` (a pointer into the document) names."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """What ``instance`` breaks of ``schema`` (a schema of the document, or a ``$ref`` to one)."""
    root = {"$ref": BASE + schema["$ref"]} if "$ref" in schema else schema
    validator = Draft202012Validator(root, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(instance)]


def body_errors(method: str, path: str, body: Any) -> list[str]:
    """What ``body`` breaks of the request body the document gives ``method path``."""
    return schema_errors(operation_of(method, path)["requestBody"]["content"]["application/json"]["schema"], body)


def assert_documented(response: httpx.Response, method: str, path: str) -> Any:
    """``response`` is one the document gives for ``method path`` (a template such as
    ``/clients/{client_id}``): its status, media type, body and headers. Returns the body."""
    answers = operation_of(method, path)["responses"]
    status = str(response.status_code)
    assert status in answers, f"{method} {path} answered {status}, undocumented: {response.text}"
    answer = resolved(answers[status])
    for header in answer.get("headers", {}):
        assert header.lower() in response.headers, f"{method} {path} {status}: no {header} header"
    content = answer.get("content")
    if not content:
        assert not response.content, f"{method} {path} {status} has an undocumented body"
        return None
    media = response.headers["content-type"].partition(";")[0].strip()
    assert media in content, f"{method} {path} {status}: {media} is not among {list(content)}"
    body = response.json()
    errors = schema_errors(content[media]["schema"], body)
    assert not errors, f"{method} {path} {status} breaks its schema: {errors}\n{json.dumps(body, indent=2)}"
    return body


async def documented(
    api: AdminApi, method: str, template: str, path: str | None = None, *, json: Any = None, **options: Any
) -> tuple[httpx.Response, Any]:
    """``method`` on ``path`` (default: ``template``), its answer checked against the document;
    a body the API took must be one the document's request schema takes too."""
    response = await api.call(method, path or template, json=json, **options)
    if json is not None and response.status_code < 300:
        assert not body_errors(method, template, json), f"the API took {json} that the document refuses"
    return response, assert_documented(response, method, template)


def concrete(path: str) -> str:
    """A template path with every parameter filled in."""
    return path.replace("{", "x-").replace("}", "")


# -- the document itself ----------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["servers"] == [{"url": PREFIX}]
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert set(schemes["oauth2"]["flows"]["clientCredentials"]["scopes"]) == set(SCOPES)


def test_a_broken_document_would_fail_the_check() -> None:
    """The validator is not a formality: a response without its description is refused."""
    broken = json.loads(json.dumps(DOCUMENT))
    del broken["paths"]["/keys"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError, match="description"):
        validate(broken)


def test_the_document_describes_exactly_the_routes_table() -> None:
    table = {(method, path) for path, method, _, _ in ROUTES}
    assert operations() - {PUBLIC} == table


def test_the_document_describes_exactly_the_apps_routes() -> None:
    served: set[tuple[str, str]] = set()
    for route in create_app(Settings()).routes:
        if not isinstance(route, Route) or not route.path.startswith(PREFIX + "/"):
            continue
        if route.path == PREFIX + "/{rest:path}":
            continue  # the catch-all: a problem for any other path
        served |= {(method, route.path.removeprefix(PREFIX)) for method in route.methods or () if method != "HEAD"}
    assert PUBLIC in served
    assert operations() == served


def test_each_operation_needs_the_scope_of_its_area() -> None:
    for path, method, area, _ in ROUTES:
        needed = [set(requirement.get("oauth2", ())) for requirement in operation_of(method, path)["security"]]
        assert {f"{SCOPE}:{area}"} in needed and {SCOPE} in needed, (method, path)
    assert operation_of(*PUBLIC)["security"] == []


def test_each_operation_documents_its_refusals() -> None:
    ids = []
    for method, path in operations() - {PUBLIC}:
        operation = operation_of(method, path)
        ids.append(operation["operationId"])
        assert operation["summary"], (method, path)
        answers = operation["responses"]
        assert {"401", "403", "422", "429"} <= set(answers), (method, path)
        if "{" in path:
            assert "404" in answers, (method, path)
        if method in ("POST", "PATCH"):
            assert {"400", "413", "415"} <= set(answers), (method, path)
        if "requestBody" in operation:
            body = resolved(operation["requestBody"]["content"]["application/json"]["schema"])
            assert body["additionalProperties"] is False, (method, path)
            assert "422" in answers, (method, path)
        if method != "GET" and ("{client_id}" in path or "{sub}" in path):  # a change of one: If-Match
            assert "412" in answers and "If-Match" in [resolved(p)["name"] for p in operation["parameters"]]
        if method == "PATCH" or (method == "GET" and path.endswith("}")):
            assert "ETag" in resolved(answers["200"]).get("headers", {}), (method, path)
    assert len(ids) == len(set(ids)), "operationIds repeat"


# -- over HTTP --------------------------------------------------------------------------------


async def test_the_document_is_served_to_anyone(live: Live) -> None:
    response = await live.http.get(PREFIX + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == DOCUMENT
    assert_documented(response, *PUBLIC)


async def test_every_documented_operation_exists_and_asks_for_a_token(live: Live) -> None:
    """A documented operation without a route would answer the catch-all's 404 or 405."""
    for method, path in sorted(operations() - {PUBLIC}):
        response = await live.http.request(method, PREFIX + concrete(path))
        problem = assert_problem(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer realm="ostiary-admin"'
        assert problem == assert_documented(response, method, path)


async def test_a_method_the_document_does_not_give_a_path_is_not_allowed(live: Live) -> None:
    for path, item in DOCUMENT["paths"].items():
        given = sorted(method.upper() for method in item if method in HTTP_METHODS)
        response = await live.http.put(PREFIX + concrete(path))
        assert_problem(response, 405)
        assert response.headers["allow"] == ", ".join(given), path


async def test_keys_and_audit_answer_as_documented(admin_api: AdminApi) -> None:  # noqa: F811
    _, keys = await documented(admin_api, "GET", "/keys")
    assert keys["items"] and keys["next_cursor"] is None
    _, staged = await documented(admin_api, "POST", "/keys/rotate", json={"alg": "ES256"})
    assert staged["state"] == "next"
    refused, problem = await documented(admin_api, "POST", "/keys/rotate", json={"alg": "ES256", "then": 1})
    assert refused.status_code == 422 and [error["field"] for error in problem["errors"]] == ["then"]
    assert body_errors("POST", "/keys/rotate", {"alg": "ES256", "then": 1})
    _, revoked = await documented(admin_api, "POST", "/keys/{kid}/revoke", f"/keys/{staged['kid']}/revoke")
    assert revoked["state"] == "removed"
    missing, _ = await documented(admin_api, "POST", "/keys/{kid}/revoke", "/keys/no-such-key/revoke")
    assert_problem(missing, 404)

    _, events = await documented(admin_api, "GET", "/audit", "/audit?limit=1")
    assert len(events["items"]) == 1 and events["next_cursor"]
    assert events["items"][0]["actor"] == f"client:{admin_api.client.client_id}"
    for query, field in (("since=yesterday", "since"), ("limit=0", "limit"), ("cursor=nope", "cursor")):
        invalid, _ = await documented(admin_api, "GET", "/audit", f"/audit?{query}")
        assert [error["field"] for error in assert_problem(invalid, 422)["errors"]] == [field]


async def test_refusals_at_the_edge_answer_as_documented(admin_api: AdminApi) -> None:  # noqa: F811
    bad_token = await admin_api.call("GET", "/clients", token="not-a-token")
    assert_problem(bad_token, 401)
    assert_documented(bad_token, "GET", "/clients")
    keys_only = await admin_api.token_for(admin_api.client, "ostiary:admin:keys")
    wrong_scope = await admin_api.call("GET", "/users", token=keys_only)
    assert_problem(wrong_scope, 403)
    assert 'scope="ostiary:admin:users"' in wrong_scope.headers["www-authenticate"]
    assert_documented(wrong_scope, "GET", "/users")

    typed = await admin_api.http.post(
        PREFIX + "/clients", content=b"client_name=x", headers={"Authorization": f"Bearer {admin_api.token}"}
    )
    assert_problem(typed, 415)
    assert_documented(typed, "POST", "/clients")
    broken = await admin_api.http.post(
        PREFIX + "/clients",
        content=b"{nope",
        headers={"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"},
    )
    assert_problem(broken, 400)
    assert_documented(broken, "POST", "/clients")
    too_large = b'{"client_name": "' + b"x" * admin_api.live.settings.max_body_bytes + b'"}'
    declared = await admin_api.http.post(
        PREFIX + "/clients",
        content=too_large,
        headers={"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"},
    )
    assert_problem(declared, 413)  # by Content-Length, before any route: a problem all the same
    assert_documented(declared, "POST", "/clients")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(too_large), 8192):
            yield too_large[start : start + 8192]

    chunked = await admin_api.http.post(
        PREFIX + "/clients",
        content=chunks(),
        headers={"Authorization": f"Bearer {admin_api.token}", "Content-Type": "application/json"},
    )
    assert_problem(chunked, 413)
    assert_documented(chunked, "POST", "/clients")


async def test_the_problem_in_docs_admin_md_is_what_the_api_answers(admin_api: AdminApi) -> None:  # noqa: F811
    """docs/admin.md shows the 422 of one request: it is the real answer, word for word."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "admin.md").read_text(encoding="utf-8")
    (shown,) = re.findall(r"^```json\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    (request,) = re.findall(r"`POST /clients` with\n`(\{.*\})`$", text, re.MULTILINE)
    answer, problem = await documented(admin_api, "POST", "/clients", json=json.loads(request))
    assert answer.status_code == 422
    assert problem == json.loads(shown)


async def test_clients_answer_as_documented(admin_api: AdminApi) -> None:  # noqa: F811
    registration = {
        "client_name": "Photo Prints",
        "redirect_uris": ["https://prints.example.com/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid profile",
        "logo_uri": "https://prints.example.com/logo.png",
        "audiences": ["https://api.example.com"],
        "require_mfa": True,
    }
    created, client = await documented(admin_api, "POST", "/clients", json=registration)
    assert created.status_code == 201 and client["client_secret"]
    one = f"/clients/{client['client_id']}"
    _, listed = await documented(admin_api, "GET", "/clients", "/clients?limit=1")
    assert len(listed["items"]) == 1 and listed["next_cursor"]
    read, shown = await documented(admin_api, "GET", "/clients/{client_id}", one)
    assert "client_secret" not in shown
    version = {"If-Match": read.headers["etag"]}
    no_logo = {"logo_uri": None}
    changed, _ = await documented(admin_api, "PATCH", "/clients/{client_id}", one, json=no_logo, headers=version)
    assert changed.status_code == 200
    stale, precondition = await documented(
        admin_api, "PATCH", "/clients/{client_id}", one, json={"client_name": "x"}, headers=version
    )
    assert stale.status_code == 412 and precondition["type"] == "urn:ostiary:problem:precondition-failed"
    wrong = {"redirect_uris": "https://x", "client_id": "y", "color": 1}
    invalid, problem = await documented(admin_api, "PATCH", "/clients/{client_id}", one, json=wrong)
    assert invalid.status_code == 422 and problem["type"] == "urn:ostiary:problem:validation"
    assert {error["field"] for error in problem["errors"]} == {"redirect_uris", "client_id", "color"}
    assert len(body_errors("PATCH", "/clients/{client_id}", wrong)) >= 2  # the document refuses them too
    for action in ("disable", "enable"):
        answered, _ = await documented(admin_api, "POST", "/clients/{client_id}/" + action, f"{one}/{action}")
        assert answered.status_code == 200
    _, rotated = await documented(
        admin_api, "POST", "/clients/{client_id}/rotate-secret", f"{one}/rotate-secret", json={"keep_old_for": 60}
    )
    assert rotated["keep_old_for"] == 60 and rotated["client_secret"] != client["client_secret"]
    stale_delete, _ = await documented(admin_api, "DELETE", "/clients/{client_id}", one, headers=version)
    assert_problem(stale_delete, 412)
    deleted, _ = await documented(admin_api, "DELETE", "/clients/{client_id}", one)
    assert deleted.status_code == 204
    gone, _ = await documented(admin_api, "GET", "/clients/{client_id}", one)
    assert_problem(gone, 404)


async def test_users_answer_as_documented(admin_api: AdminApi, signin: SignIn) -> None:  # noqa: F811
    """alice (of ``signin``) has a browser session and a grant to show; bob is made here."""
    await signin.tokens(Flow.start(signin.rp.client_id))
    _, listed = await documented(admin_api, "GET", "/users", "/users?q=ALICE")
    (alice,) = listed["items"]
    alice_path = f"/users/{alice['sub']}"
    _, sessions = await documented(admin_api, "GET", "/users/{sub}/sessions", f"{alice_path}/sessions")
    _, grants = await documented(admin_api, "GET", "/users/{sub}/grants", f"{alice_path}/grants")
    assert sessions["items"] and grants["items"]
    _, ended = await documented(admin_api, "DELETE", "/users/{sub}/sessions", f"{alice_path}/sessions")
    assert ended["ended"] >= 1
    await documented(admin_api, "DELETE", "/users/{sub}/grants", f"{alice_path}/grants")

    bob = {"username": "bob", "email": "bob@example.com", "name": "Bob", "admin": True, "password": "a long passphrase"}
    created, user = await documented(admin_api, "POST", "/users", json=bob)
    assert created.status_code == 201 and user["admin"] is True
    one = f"/users/{user['sub']}"
    read, _ = await documented(admin_api, "GET", "/users/{sub}", one)
    version = {"If-Match": read.headers["etag"]}
    _, changed = await documented(admin_api, "PATCH", "/users/{sub}", one, json={"name": None}, headers=version)
    assert changed["name"] is None
    stale, _ = await documented(admin_api, "PATCH", "/users/{sub}", one, json={"name": "B"}, headers=version)
    assert_problem(stale, 412)
    wrong = {"username": 7, "password": "x"}
    invalid, problem = await documented(admin_api, "PATCH", "/users/{sub}", one, json=wrong)
    assert invalid.status_code == 422
    assert {error["field"] for error in problem["errors"]} == {"username", "password"}
    assert len(body_errors("PATCH", "/users/{sub}", wrong)) == 2  # the document refuses both too
    stale_action, _ = await documented(admin_api, "POST", "/users/{sub}/disable", f"{one}/disable", headers=version)
    assert_problem(stale_action, 412)
    last, _ = await documented(admin_api, "POST", "/users/{sub}/disable", f"{one}/disable")
    assert_problem(last, 409)  # bob is the only administrator
    carol = {"username": "carol", "admin": True}
    assert (await documented(admin_api, "POST", "/users", json=carol))[0].status_code == 201
    for action in ("disable", "enable", "unlock", "reset-mfa", "require-password-change"):
        answered, _ = await documented(admin_api, "POST", "/users/{sub}/" + action, f"{one}/{action}")
        assert answered.status_code == 200
    _, sent = await documented(admin_api, "POST", "/users/{sub}/send-reset-link", f"{one}/send-reset-link")
    assert sent == {"queued": True}
    no_session, _ = await documented(admin_api, "DELETE", "/users/{sub}/sessions/{sid}", f"{one}/sessions/no-such")
    assert_problem(no_session, 404)
    deleted, _ = await documented(admin_api, "DELETE", "/users/{sub}", one)
    assert deleted.status_code == 204
    gone, _ = await documented(admin_api, "GET", "/users/{sub}", one)
    assert_problem(gone, 404)


async def test_invitations_answer_as_documented(admin_api: AdminApi) -> None:  # noqa: F811
    created, invitation = await documented(admin_api, "POST", "/invitations", json={"email": "ann@example.com"})
    assert created.status_code == 201 and invitation["link"]
    bare, _ = await documented(admin_api, "POST", "/invitations")
    assert bare.status_code == 201
    _, listed = await documented(admin_api, "GET", "/invitations", "/invitations?limit=1")
    assert len(listed["items"]) == 1 and listed["next_cursor"] and "link" not in listed["items"][0]
    wrong = {"email": "nope", "expires_in": 1}
    invalid, problem = await documented(admin_api, "POST", "/invitations", json=wrong)
    assert invalid.status_code == 422 and {error["field"] for error in problem["errors"]} == {"email", "expires_in"}
    assert body_errors("POST", "/invitations", wrong)  # the document refuses it too
    bad_state, _ = await documented(admin_api, "GET", "/invitations", "/invitations?state=dead")
    assert_problem(bad_state, 422)
    one = f"/invitations/{invitation['id']}"
    revoked, _ = await documented(admin_api, "DELETE", "/invitations/{invitation_id}", one)
    assert revoked.status_code == 204
    _, every = await documented(admin_api, "GET", "/invitations", "/invitations?state=all")
    assert [item["state"] for item in every["items"]] == ["live", "revoked"]
    gone, _ = await documented(admin_api, "DELETE", "/invitations/{invitation_id}", one)
    assert_problem(gone, 404)


async def test_the_rate_limit_answers_as_documented(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, rate_limit_admin=2)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        client = await create_client(settings, name="provisioning", scopes=ADMIN_SCOPES)
        api = AdminApi(Live(settings, base_url, http, client), client, "")
        api.token = await api.token_for(client, "ostiary:admin:audit")
        # five calls: even if a minute's window ends among them, one is refused
        answers = [await api.call("GET", "/audit") for _ in range(5)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:2] == [200, 200] and set(statuses) == {200, 429}, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert_problem(refused, 429)
    assert_documented(refused, "GET", "/audit")
